/* Unit tests of the health verdicts from SES probes and worker reports. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "verdict.h"

#define FAILURE_MS 20000
#define WINDOW_MS  30000

enum { OK = VERDICT_PROBE_ENABLED, OFF = VERDICT_PROBE_DISABLED,
       FAIL = VERDICT_PROBE_FAILED, NOEV = VERDICT_PROBE_NO_EVIDENCE };
enum { UNKNOWN = FAILOVER_HEALTH_UNKNOWN, UP = FAILOVER_HEALTH_UP,
       DOWN = FAILOVER_HEALTH_DOWN };

struct probe_case {
    const char *name;
    int         outcomes[8];        /* one every 5 s from 0; -1 ends */
    int64_t     now_ms;
    int         health;
};

static const struct probe_case probe_cases[] = {
    { "no probe yet", { -1 }, 0, UNKNOWN },
    { "enabled is up", { OK, -1 }, 0, UP },
    { "sending disabled is down", { OK, OFF, -1 }, 5000, DOWN },
    { "short failure run unknown", { OK, FAIL, FAIL, -1 }, 10000, UNKNOWN },
    { "sustained failures are down",
      { OK, FAIL, FAIL, FAIL, FAIL, FAIL, -1 }, 25000, DOWN },
    { "answer ends failure run",
      { FAIL, FAIL, FAIL, FAIL, OK, -1 }, 25000, UP },
    { "throttling keeps failure run",
      { FAIL, NOEV, FAIL, NOEV, FAIL, -1 }, 20000, DOWN },
    { "credentials are no evidence", { OK, NOEV, -1 }, 5000, UNKNOWN },
    { "enabled after disabled is up", { OFF, OK, -1 }, 5000, UP },
};


static void
probe_table_verdicts(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(probe_cases) / sizeof(*probe_cases);
         i++) {
        const struct probe_case *c = &probe_cases[i];
        struct verdict_probes    p;

        print_message("case %s\n", c->name);
        verdict_probes_init(&p);
        for (int k = 0; k < 8 && c->outcomes[k] >= 0; k++)
            verdict_probes_note(&p,
                                (enum verdict_probe_outcome)c->outcomes[k],
                                (int64_t)k * 5000);
        assert_int_equal(verdict_probes_health(&p, c->now_ms, FAILURE_MS),
                         c->health);
    }
}


struct worker_row {
    const char *worker;
    int64_t     end_ms;             /* interval of 5 s ending here */
    uint64_t    delivered, throttled, transient, region_down, local_fault,
                rejected;
    const char *stop_class;
};

struct worker_case {
    const char             *name;
    struct worker_row       rows[4];
    size_t                  nrows;
    int64_t                 percent;
    int                     health;
};

static const struct worker_case worker_cases[] = {
    { "no records unknown", { { NULL } }, 0, 50, UNKNOWN },
    { "idle worker unknown",
      { { "a:1", 100000, 0, 0, 0, 0, 0, 0, "" } }, 1, 50, UNKNOWN },
    { "deliveries are up",
      { { "a:1", 100000, 10, 0, 0, 0, 0, 0, "" } }, 1, 50, UP },
    { "region down count is down",
      { { "a:1", 100000, 10, 0, 0, 1, 0, 0, "" } }, 1, 50, DOWN },
    { "stopped worker is down",
      { { "a:1", 100000, 0, 0, 0, 0, 0, 0, "region_down" } }, 1, 50, DOWN },
    { "older stop is forgotten",
      { { "a:1", 95000, 0, 0, 0, 0, 0, 0, "region_down" },
        { "a:1", 100000, 5, 0, 0, 0, 0, 0, "" } }, 2, 50, UP },
    { "transient share at threshold",
      { { "a:1", 100000, 5, 0, 5, 0, 0, 0, "" } }, 1, 50, DOWN },
    { "transient share below threshold",
      { { "a:1", 100000, 6, 0, 4, 0, 0, 0, "" } }, 1, 50, UP },
    { "transient over two workers",
      { { "a:1", 100000, 6, 0, 0, 0, 0, 0, "" },
        { "b:2", 100000, 0, 0, 6, 0, 0, 0, "" } }, 2, 50, DOWN },
    { "throttling is no outage",
      { { "a:1", 100000, 0, 50, 0, 0, 0, 0, "" } }, 1, 50, UNKNOWN },
    { "local faults are no outage",
      { { "a:1", 100000, 0, 0, 0, 0, 9, 0, "local_fault" } }, 1, 50,
      UNKNOWN },
    { "rejections are no outage",
      { { "a:1", 100000, 1, 0, 0, 0, 0, 30, "" } }, 1, 50, UP },
    { "records outside window dropped",
      { { "a:1", 60000, 0, 0, 0, 9, 0, 0, "region_down" },
        { "a:1", 100000, 3, 0, 0, 0, 0, 0, "" } }, 2, 50, UP },
};


static void
worker_table_verdicts(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(worker_cases) / sizeof(*worker_cases);
         i++) {
        const struct worker_case *c = &worker_cases[i];
        static struct verdict_workers w;

        print_message("case %s\n", c->name);
        memset(&w, 0, sizeof(w));
        for (size_t k = 0; k < c->nrows; k++) {
            const struct worker_row *r = &c->rows[k];
            struct health            h;

            memset(&h, 0, sizeof(h));
            snprintf(h.region, sizeof(h.region), "us-east-1");
            snprintf(h.worker_id, sizeof(h.worker_id), "%s", r->worker);
            h.interval_start_ms = r->end_ms - 5000;
            h.interval_ms = 5000;
            h.delivered = r->delivered;
            h.throttled = r->throttled;
            h.transient = r->transient;
            h.region_down = r->region_down;
            h.local_fault = r->local_fault;
            h.rejected = r->rejected;
            snprintf(h.stop_class, sizeof(h.stop_class), "%s",
                     r->stop_class);
            verdict_workers_add(&w, &h);
        }
        assert_int_equal(verdict_workers_health(&w, 100000, WINDOW_MS,
                                                c->percent), c->health);
    }
}


/* A full table replaces the record that ended first. */
static void
full_table_replaces_oldest(void **state)
{
    static struct verdict_workers w;
    struct health                 h;

    (void)state;
    memset(&w, 0, sizeof(w));
    memset(&h, 0, sizeof(h));
    h.interval_ms = 1000;
    h.region_down = 1;
    h.interval_start_ms = 0;
    verdict_workers_add(&w, &h);
    h.region_down = 0;
    h.delivered = 1;
    for (int i = 1; i < VERDICT_MAX_RECORDS + 1; i++) {
        h.interval_start_ms = 1000 + i;
        verdict_workers_add(&w, &h);
    }
    assert_int_equal(w.nrecords, VERDICT_MAX_RECORDS);
    assert_int_equal(verdict_workers_health(&w, 2000, 1000000, 50), UP);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(probe_table_verdicts),
        cmocka_unit_test(worker_table_verdicts),
        cmocka_unit_test(full_table_replaces_oldest),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

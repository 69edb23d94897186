/*
 * Unit tests of the send pacing: the token bucket, the decrease after
 * throttling, the additive increase, and reading GetAccount's send rate.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>

#include "pacing.h"

enum step_op {
    STEP_END,
    STEP_CHECK,         /* only the checks below */
    STEP_ACCOUNT,       /* pacing_set_account_rate(arg) */
    STEP_TAKE,          /* pacing_take(arg recipients) */
    STEP_THROTTLE,      /* pacing_on_throttle() */
    STEP_SUCCESS        /* pacing_on_success() */
};

/* One event at a time, then the expected rate and wait. */
struct step {
    int64_t      at_ms;
    enum step_op op;
    double       arg;
    double       rate;      /* expected p->rate afterwards */
    int64_t      wait_ms;   /* expected pacing_wait_ms(), -1: unchecked */
};

struct pacing_case {
    const char *name;
    struct step steps[16];
};

static const struct pacing_case pacing_cases[] = {
    { "unknown rate is one per second", {
        { 0, STEP_CHECK, 0, 1, 0 },
        { 0, STEP_TAKE, 1, 1, 1000 },
        { 500, STEP_CHECK, 0, 1, 500 },
        { 1000, STEP_CHECK, 0, 1, 0 },
        { 0, STEP_END, 0, 0, 0 } } },
    { "account rate fills one second", {
        { 0, STEP_ACCOUNT, 5, 5, 0 },
        { 1000, STEP_TAKE, 5, 5, 200 },
        { 1100, STEP_CHECK, 0, 5, 100 },
        { 1200, STEP_TAKE, 1, 5, 200 },
        { 0, STEP_END, 0, 0, 0 } } },
    { "bucket holds one second only", {
        { 0, STEP_ACCOUNT, 10, 10, 0 },
        { 60000, STEP_TAKE, 10, 10, 100 },
        { 0, STEP_END, 0, 0, 0 } } },
    { "recipients each take a token", {
        { 0, STEP_ACCOUNT, 10, 10, 0 },
        { 1000, STEP_TAKE, 25, 10, 1600 },
        { 2000, STEP_CHECK, 0, 10, 600 },
        { 0, STEP_END, 0, 0, 0 } } },
    { "zero recipients take one token", {
        { 0, STEP_ACCOUNT, 2, 2, 0 },
        { 1000, STEP_TAKE, 0, 2, 0 },
        { 1000, STEP_TAKE, 0, 2, 500 },
        { 0, STEP_END, 0, 0, 0 } } },
    { "throttle halves once per interval", {
        { 0, STEP_ACCOUNT, 8, 8, -1 },
        { 100, STEP_THROTTLE, 0, 4, -1 },
        { 600, STEP_THROTTLE, 0, 4, -1 },
        { 1100, STEP_THROTTLE, 0, 2, -1 },
        { 2100, STEP_THROTTLE, 0, 1, -1 },
        { 3100, STEP_THROTTLE, 0, 1, -1 },
        { 0, STEP_END, 0, 0, 0 } } },
    { "throttle drops the saved burst", {
        { 0, STEP_ACCOUNT, 10, 10, 0 },
        { 1000, STEP_THROTTLE, 0, 5, 200 },
        { 0, STEP_END, 0, 0, 0 } } },
    { "success climbs a tenth per interval", {
        { 0, STEP_ACCOUNT, 10, 10, -1 },
        { 0, STEP_THROTTLE, 0, 5, -1 },
        { 500, STEP_SUCCESS, 0, 5, -1 },
        { 1000, STEP_SUCCESS, 0, 6, -1 },
        { 1500, STEP_SUCCESS, 0, 6, -1 },
        { 2000, STEP_SUCCESS, 0, 7, -1 },
        { 3000, STEP_SUCCESS, 0, 8, -1 },
        { 4000, STEP_SUCCESS, 0, 9, -1 },
        { 5000, STEP_SUCCESS, 0, 10, -1 },
        { 6000, STEP_SUCCESS, 0, 10, -1 },
        { 0, STEP_END, 0, 0, 0 } } },
    { "throttle right after increase", {
        { 0, STEP_ACCOUNT, 10, 10, -1 },
        { 0, STEP_THROTTLE, 0, 5, -1 },
        { 1000, STEP_SUCCESS, 0, 6, -1 },
        { 1001, STEP_THROTTLE, 0, 3, -1 },
        { 0, STEP_END, 0, 0, 0 } } },
    { "success at account rate stays", {
        { 0, STEP_ACCOUNT, 14, 14, -1 },
        { 5000, STEP_SUCCESS, 0, 14, -1 },
        { 0, STEP_END, 0, 0, 0 } } },
    { "lower account rate applies at once", {
        { 0, STEP_ACCOUNT, 10, 10, -1 },
        { 10, STEP_ACCOUNT, 4, 4, -1 },
        { 20, STEP_ACCOUNT, 20, 4, -1 },
        { 1020, STEP_SUCCESS, 0, 6, -1 },
        { 0, STEP_END, 0, 0, 0 } } },
    { "account rate below the floor", {
        { 0, STEP_ACCOUNT, 0.5, 0.5, 0 },
        { 0, STEP_TAKE, 1, 0.5, 2000 },
        { 5000, STEP_THROTTLE, 0, 0.5, 2000 },
        { 0, STEP_END, 0, 0, 0 } } },
    { "non-positive account rate ignored", {
        { 0, STEP_ACCOUNT, 0, 1, -1 },
        { 0, STEP_ACCOUNT, -3, 1, -1 },
        { 5000, STEP_SUCCESS, 0, 1, -1 },
        { 0, STEP_END, 0, 0, 0 } } },
};


static void
run_pacing_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(pacing_cases) / sizeof(*pacing_cases);
         i++) {
        const struct pacing_case *c = &pacing_cases[i];
        struct pacing             p;

        pacing_init(&p, 0);
        for (size_t k = 0; c->steps[k].op != STEP_END; k++) {
            const struct step *s = &c->steps[k];

            switch (s->op) {
            case STEP_ACCOUNT:
                pacing_set_account_rate(&p, s->arg, s->at_ms);
                break;
            case STEP_TAKE:
                pacing_take(&p, (size_t)s->arg, s->at_ms);
                break;
            case STEP_THROTTLE:
                pacing_on_throttle(&p, s->at_ms);
                break;
            case STEP_SUCCESS:
                pacing_on_success(&p, s->at_ms);
                break;
            default:
                break;
            }
            if (fabs(p.rate - s->rate) > 1e-9)
                fail_msg("%s, step %zu: rate %.3f, expected %.3f", c->name,
                         k, p.rate, s->rate);
            if (s->wait_ms >= 0 && pacing_wait_ms(&p, s->at_ms) != s->wait_ms)
                fail_msg("%s, step %zu: wait %lld ms, expected %lld",
                         c->name, k, (long long)pacing_wait_ms(&p, s->at_ms),
                         (long long)s->wait_ms);
        }
    }
}


static void
parse_account_bodies(void **state)
{
    static const struct {
        const char *body;
        int         rc;
        double      rate;
    } cases[] = {
        { "{\"SendQuota\":{\"Max24HourSend\":50000,\"MaxSendRate\":14,"
          "\"SentLast24Hours\":3},\"SendingEnabled\":true}", 0, 14 },
        { "{\"SendQuota\":{\"MaxSendRate\":0.5}}", 0, 0.5 },
        { "{\"SendQuota\":{\"MaxSendRate\":0}}", -1, 0 },
        { "{\"SendQuota\":{\"MaxSendRate\":\"14\"}}", -1, 0 },
        { "{\"SendQuota\":{}}", -1, 0 },
        { "{\"SendingEnabled\":true}", -1, 0 },
        { "[1, 2]", -1, 0 },
        { "not json", -1, 0 },
        { "", -1, 0 },
        { NULL, -1, 0 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        double rate = -1;
        int    rc = pacing_parse_account(cases[i].body, &rate);

        if (rc != cases[i].rc)
            fail_msg("case %zu: returned %d, expected %d", i, rc,
                     cases[i].rc);
        if (rc == 0 && fabs(rate - cases[i].rate) > 1e-9)
            fail_msg("case %zu: rate %.3f, expected %.3f", i, rate,
                     cases[i].rate);
    }
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(run_pacing_cases),
        cmocka_unit_test(parse_account_bodies),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

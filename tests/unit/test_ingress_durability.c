/*
 * Unit tests of the periodic durability check. A fake check replaces the
 * brokers, and the monitor's verdict is read as the server reads it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "ingress_durability.h"
#include "log.h"

static const char *config_head =
    "kafka:\n"
    "  bootstrap_servers: 127.0.0.1:19092\n"
    "ingress:\n"
    "  durability_check_interval_seconds: 1\n";

static const char *config_tail =
    "regions:\n"
    "  us-east-1:\n"
    "organizations:\n"
    "  - name: acme\n"
    "    home_region: us-east-1\n"
    "    domains: [acme.example]\n";

/* What the fake check returns: 0 passes, -1 fails. */
static atomic_int fake_result;

/* The max.message.bytes the fake check reports. */
static atomic_llong fake_topic_max;


static int
fake_check(const struct config *cfg, int timeout_ms, int64_t *record_max,
           char *err, size_t errlen)
{
    (void)cfg;
    (void)timeout_ms;
    *record_max = atomic_load(&fake_topic_max);
    snprintf(err, errlen, "topic mail.us-east-1: replication factor 1, "
             "needs at least 3");
    return atomic_load(&fake_result);
}


static struct config *
load_mode(const char *mode)
{
    char           path[] = "/tmp/ferry-durability-test-XXXXXX";
    char           text[1024];
    char           err[512];
    int            fd = mkstemp(path);
    struct config *cfg;

    assert_true(fd >= 0);
    snprintf(text, sizeof(text), "%s  durability: %s\n%s", config_head, mode,
             config_tail);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    cfg = config_load(path, err, sizeof(err));
    unlink(path);
    if (cfg == NULL)
        fail_msg("%s", err);
    return cfg;
}


/* Waits until the monitor has completed one more run than before. */
static void
wait_for_run(struct ingress_durability_monitor *m)
{
    uint64_t        before = ingress_durability_monitor_runs(m);
    struct timespec pause = { 0, 20 * 1000 * 1000 };

    for (int i = 0; i < 250; i++) {
        if (ingress_durability_monitor_runs(m) > before)
            return;
        nanosleep(&pause, NULL);
    }
    fail_msg("no durability check ran within 5 s");
}


static void
strict_failure_refuses_until_fixed(void **state)
{
    struct config                     *cfg = load_mode("strict");
    struct ingress_durability_monitor *m;

    (void)state;
    atomic_store(&fake_result, 0);
    atomic_store(&fake_topic_max, 1048588);
    m = ingress_durability_monitor_start(cfg, 1000, fake_check);
    assert_non_null(m);
    assert_true(ingress_durability_monitor_safe(m));

    atomic_store(&fake_result, -1);
    wait_for_run(m);
    assert_false(ingress_durability_monitor_safe(m));

    atomic_store(&fake_result, 0);
    wait_for_run(m);
    assert_true(ingress_durability_monitor_safe(m));

    ingress_durability_monitor_stop(m);
    config_free(cfg);
}


static void
strict_small_topic_limit_refuses(void **state)
{
    struct config                     *cfg = load_mode("strict");
    struct ingress_durability_monitor *m;

    (void)state;
    atomic_store(&fake_result, 0);
    atomic_store(&fake_topic_max, 1000);
    m = ingress_durability_monitor_start(cfg, 1000, fake_check);
    assert_non_null(m);
    wait_for_run(m);
    assert_false(ingress_durability_monitor_safe(m));
    ingress_durability_monitor_stop(m);
    config_free(cfg);
}


static void
relaxed_failure_stays_safe(void **state)
{
    struct config                     *cfg = load_mode("relaxed");
    struct ingress_durability_monitor *m;

    (void)state;
    atomic_store(&fake_result, -1);
    atomic_store(&fake_topic_max, -1);
    m = ingress_durability_monitor_start(cfg, 1000, fake_check);
    assert_non_null(m);
    wait_for_run(m);
    wait_for_run(m);
    assert_true(ingress_durability_monitor_safe(m));
    ingress_durability_monitor_stop(m);
    config_free(cfg);
}


static void
interval_zero_starts_nothing(void **state)
{
    struct config *cfg = load_mode("strict");

    (void)state;
    cfg->ingress_durability_check_interval = 0;
    assert_null(ingress_durability_monitor_start(cfg, 1000, fake_check));
    assert_true(ingress_durability_monitor_safe(NULL));
    ingress_durability_monitor_stop(NULL);
    config_free(cfg);
}


/* Stopping does not wait for the rest of the interval. */
static void
stop_is_prompt(void **state)
{
    struct config                     *cfg = load_mode("strict");
    struct ingress_durability_monitor *m;
    struct timespec                    t0, t1;

    (void)state;
    cfg->ingress_durability_check_interval = 3600;
    m = ingress_durability_monitor_start(cfg, 1000, fake_check);
    assert_non_null(m);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ingress_durability_monitor_stop(m);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(t1.tv_sec - t0.tv_sec < 2);
    config_free(cfg);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(strict_failure_refuses_until_fixed),
        cmocka_unit_test(strict_small_topic_limit_refuses),
        cmocka_unit_test(relaxed_failure_stays_safe),
        cmocka_unit_test(interval_zero_starts_nothing),
        cmocka_unit_test(stop_is_prompt),
    };

    log_init("ingress", LOG_LEVEL_ERROR);
    return cmocka_run_group_tests_name("ingress_durability", tests, NULL,
                                       NULL);
}

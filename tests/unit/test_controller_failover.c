/* Unit tests of the failover state machine, one table row per transition. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "failover.h"

#define DWELL_MS 60000
#define T0       1000000

enum { UNKNOWN = FAILOVER_HEALTH_UNKNOWN, UP = FAILOVER_HEALTH_UP,
       DOWN = FAILOVER_HEALTH_DOWN };
enum { TICK = FAILOVER_EVENT_TICK, EMPTY = FAILOVER_EVENT_GROUPS_EMPTY,
       COPIED = FAILOVER_EVENT_OFFSETS_COPIED,
       COMMAND = FAILOVER_EVENT_COMMAND };
enum { PRI = CONTROL_PRIMARY, DPRI = CONTROL_DRAINING_PRIMARY,
       SEC = CONTROL_SECONDARY, DSEC = CONTROL_DRAINING_SECONDARY };
enum { NONE = 0, FAILOVER = CONTROL_FORCE_FAILOVER,
       FAILBACK = CONTROL_FORCE_FAILBACK, HOLD = CONTROL_HOLD,
       RELEASE = CONTROL_RELEASE };

struct step_case {
    const char *name;
    /* Machine before the event. */
    int         state;
    bool        hold;
    bool        copy_requested;
    int64_t     healthy_since_ms;   /* -1: not up */
    /* The event. */
    int         event;
    int         primary;
    bool        ready;
    int         command;
    int64_t     now_ms;
    /* Expected after the step. */
    int         next;
    unsigned    actions;
    bool        next_hold;
};

static const struct step_case step_cases[] = {
    /* PRIMARY */
    { "primary up stays", PRI, false, false, -1,
      TICK, UP, true, NONE, T0, PRI, 0, false },
    { "primary unknown stays", PRI, false, false, -1,
      TICK, UNKNOWN, true, NONE, T0, PRI, 0, false },
    { "primary down fails over", PRI, false, false, -1,
      TICK, DOWN, true, NONE, T0, DPRI, FAILOVER_PUBLISH, false },
    { "secondary not ready alerts", PRI, false, false, -1,
      TICK, DOWN, false, NONE, T0, PRI, FAILOVER_ALERT, false },
    { "held primary down stays", PRI, true, false, -1,
      TICK, DOWN, true, NONE, T0, PRI, 0, true },
    { "stale groups empty ignored", PRI, false, false, -1,
      EMPTY, DOWN, true, NONE, T0, PRI, 0, false },
    { "stale offsets copied ignored", PRI, false, false, -1,
      COPIED, DOWN, true, NONE, T0, PRI, 0, false },
    { "force failover drains", PRI, false, false, -1,
      COMMAND, UP, true, FAILOVER, T0, DPRI, FAILOVER_PUBLISH, true },
    { "force failover needs ready", PRI, false, false, -1,
      COMMAND, DOWN, false, FAILOVER, T0, PRI, FAILOVER_PUBLISH, false },
    { "force failback in primary holds", PRI, false, false, -1,
      COMMAND, UP, true, FAILBACK, T0, PRI, FAILOVER_PUBLISH, true },
    { "hold in primary", PRI, false, false, -1,
      COMMAND, UP, true, HOLD, T0, PRI, FAILOVER_PUBLISH, true },
    { "release in primary", PRI, true, false, -1,
      COMMAND, UP, true, RELEASE, T0, PRI, FAILOVER_PUBLISH, false },

    /* DRAINING_PRIMARY */
    { "draining ignores health", DPRI, false, false, -1,
      TICK, UP, true, NONE, T0, DPRI, 0, false },
    { "empty group copies offsets", DPRI, false, false, -1,
      EMPTY, DOWN, true, NONE, T0, DPRI, FAILOVER_COPY_OFFSETS, false },
    { "held drain still copies", DPRI, true, false, -1,
      EMPTY, DOWN, true, NONE, T0, DPRI, FAILOVER_COPY_OFFSETS, true },
    { "copy requested once", DPRI, false, true, -1,
      EMPTY, DOWN, true, NONE, T0, DPRI, 0, false },
    { "copied offsets make secondary", DPRI, false, true, -1,
      COPIED, DOWN, true, NONE, T0, SEC, FAILOVER_PUBLISH, false },
    { "copied without request ignored", DPRI, false, false, -1,
      COPIED, DOWN, true, NONE, T0, DPRI, 0, false },
    { "force failback aborts drain", DPRI, false, false, -1,
      COMMAND, DOWN, true, FAILBACK, T0, PRI, FAILOVER_PUBLISH, true },
    { "force failover while draining", DPRI, false, false, -1,
      COMMAND, DOWN, true, FAILOVER, T0, DPRI, FAILOVER_PUBLISH, true },

    /* SECONDARY */
    { "first up starts dwell", SEC, false, false, -1,
      TICK, UP, true, NONE, T0, SEC, 0, false },
    { "up within dwell stays", SEC, false, false, T0,
      TICK, UP, true, NONE, T0 + DWELL_MS - 1, SEC, 0, false },
    { "up for dwell fails back", SEC, false, false, T0,
      TICK, UP, true, NONE, T0 + DWELL_MS, DSEC, FAILOVER_PUBLISH, false },
    { "held up for dwell stays", SEC, true, false, T0,
      TICK, UP, true, NONE, T0 + DWELL_MS, SEC, 0, true },
    { "down again resets dwell", SEC, false, false, T0,
      TICK, DOWN, true, NONE, T0 + DWELL_MS, SEC, 0, false },
    { "unknown resets dwell", SEC, false, false, T0,
      TICK, UNKNOWN, true, NONE, T0 + DWELL_MS, SEC, 0, false },
    { "force failback drains", SEC, false, false, -1,
      COMMAND, DOWN, true, FAILBACK, T0, DSEC, FAILOVER_PUBLISH, true },
    { "force failover in secondary holds", SEC, false, false, -1,
      COMMAND, UP, false, FAILOVER, T0, SEC, FAILOVER_PUBLISH, true },

    /* DRAINING_SECONDARY */
    { "empty takeover copies back", DSEC, false, false, -1,
      EMPTY, UP, true, NONE, T0, DSEC, FAILOVER_COPY_OFFSETS, false },
    { "copied back makes primary", DSEC, false, true, -1,
      COPIED, UP, true, NONE, T0, PRI, FAILOVER_PUBLISH, false },
    { "draining back ignores down", DSEC, false, false, -1,
      TICK, DOWN, true, NONE, T0, DSEC, 0, false },
    { "force failover aborts failback", DSEC, false, false, -1,
      COMMAND, DOWN, true, FAILOVER, T0, SEC, FAILOVER_PUBLISH, true },
    { "abort failback needs ready", DSEC, false, false, -1,
      COMMAND, DOWN, false, FAILOVER, T0, DSEC, FAILOVER_PUBLISH, false },
};


static void
start_machine(struct failover *f, const struct step_case *c)
{
    struct control stored;

    memset(&stored, 0, sizeof(stored));
    snprintf(stored.region, sizeof(stored.region), "us-east-1");
    stored.state = (enum control_state)c->state;
    stored.epoch = 10;
    stored.since_ms = 1;
    stored.hold = c->hold;
    stored.command_offset = -1;
    assert_int_equal(failover_init(f, "us-east-1", &stored, "test:1",
                                   DWELL_MS, 0), 0);
    f->copy_requested = c->copy_requested;
    f->healthy_since_ms = c->healthy_since_ms;
}


static void
step_table_transitions(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(step_cases) / sizeof(*step_cases); i++) {
        const struct step_case *c = &step_cases[i];
        struct failover         f;
        struct failover_event   ev;
        struct failover_result  res;

        print_message("case %s\n", c->name);
        start_machine(&f, c);
        memset(&ev, 0, sizeof(ev));
        ev.kind = (enum failover_event_kind)c->event;
        ev.now_ms = c->now_ms;
        ev.primary = (enum failover_health)c->primary;
        ev.secondary_ready = c->ready;
        ev.not_ready_reason = "identity acme.example not verified";
        ev.command = (enum control_command_kind)c->command;
        ev.command_offset = 42;
        failover_step(&f, &ev, &res);

        assert_int_equal(res.from, c->state);
        assert_int_equal(f.rec.state, c->next);
        assert_int_equal(res.actions, c->actions);
        assert_int_equal(f.rec.hold, c->next_hold);
        if (c->actions & FAILOVER_PUBLISH) {
            assert_true(f.rec.epoch == 11);
            assert_string_equal(f.rec.reason, res.reason);
        } else {
            assert_true(f.rec.epoch == 10);
        }
        if (c->next != c->state)
            assert_true(f.rec.since_ms == c->now_ms);
        else
            assert_true(f.rec.since_ms == 1);
        if (c->event == COMMAND)
            assert_true(f.rec.command_offset == 42);
        else
            assert_true(f.rec.command_offset == -1);
    }
}


static void
feed_tick(struct failover *f, int primary, bool ready, int64_t now_ms,
          struct failover_result *res)
{
    struct failover_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.kind = FAILOVER_EVENT_TICK;
    ev.now_ms = now_ms;
    ev.primary = (enum failover_health)primary;
    ev.secondary_ready = ready;
    ev.not_ready_reason = "not ready";
    failover_step(f, &ev, res);
}


/* Health that flaps faster than the dwell never starts a failback. */
static void
flapping_health_never_fails_back(void **state)
{
    struct failover        f;
    struct failover_result res;
    struct control         stored;

    (void)state;
    memset(&stored, 0, sizeof(stored));
    snprintf(stored.region, sizeof(stored.region), "us-east-1");
    stored.state = CONTROL_SECONDARY;
    stored.epoch = 3;
    failover_init(&f, "us-east-1", &stored, "test:1", DWELL_MS, 0);

    /* Up for 50 s, down for 5 s, over and over for an hour. */
    for (int64_t t = 0; t < 3600000; t += 5000) {
        int primary = (t % 55000) == 50000 ? DOWN : UP;

        feed_tick(&f, primary, true, t, &res);
        assert_int_equal(f.rec.state, CONTROL_SECONDARY);
        assert_int_equal(res.actions, 0);
    }
    assert_true(f.rec.epoch == 3);

    /* Then up without a break: the failback comes after the dwell. */
    for (int64_t t = 3600000; t <= 3600000 + DWELL_MS; t += 5000)
        feed_tick(&f, UP, true, t, &res);
    assert_int_equal(f.rec.state, CONTROL_DRAINING_SECONDARY);
    assert_true(f.rec.epoch == 4);
}


/* The not-ready alert is raised once, cleared once, and never fails over. */
static void
not_ready_alerts_once(void **state)
{
    struct failover        f;
    struct failover_result res;

    (void)state;
    assert_int_equal(failover_init(&f, "us-east-1", NULL, "test:1",
                                   DWELL_MS, 5), 1);
    assert_int_equal(f.rec.state, CONTROL_PRIMARY);
    assert_true(f.rec.epoch == 1);
    assert_true(f.rec.command_offset == -1);

    feed_tick(&f, DOWN, false, 10, &res);
    assert_int_equal(res.actions, FAILOVER_ALERT);
    assert_non_null(strstr(res.reason, "not ready"));
    feed_tick(&f, DOWN, false, 20, &res);
    assert_int_equal(res.actions, 0);
    feed_tick(&f, UP, false, 30, &res);
    assert_int_equal(res.actions, FAILOVER_ALERT_CLEAR);
    feed_tick(&f, UP, false, 40, &res);
    assert_int_equal(res.actions, 0);
    assert_int_equal(f.rec.state, CONTROL_PRIMARY);
    assert_true(f.rec.epoch == 1);

    /* Ready while still down: fail over and clear the alert. */
    feed_tick(&f, DOWN, false, 50, &res);
    feed_tick(&f, DOWN, true, 60, &res);
    assert_int_equal(res.actions, FAILOVER_PUBLISH | FAILOVER_ALERT_CLEAR);
    assert_int_equal(f.rec.state, CONTROL_DRAINING_PRIMARY);
}


/* A whole failover and failback, each transition with a new epoch. */
static void
full_cycle_raises_epochs(void **state)
{
    struct failover        f;
    struct failover_event  ev;
    struct failover_result res;

    (void)state;
    failover_init(&f, "eu-west-1", NULL, "test:1", DWELL_MS, 0);
    feed_tick(&f, DOWN, true, 1000, &res);
    assert_int_equal(f.rec.state, CONTROL_DRAINING_PRIMARY);
    assert_string_equal(failover_source_group_prefix(f.rec.state),
                        "ferry-deliver.");
    assert_string_equal(failover_target_group_prefix(f.rec.state),
                        "ferry-takeover.");

    memset(&ev, 0, sizeof(ev));
    ev.kind = FAILOVER_EVENT_GROUPS_EMPTY;
    ev.now_ms = 2000;
    failover_step(&f, &ev, &res);
    assert_int_equal(res.actions, FAILOVER_COPY_OFFSETS);
    ev.kind = FAILOVER_EVENT_OFFSETS_COPIED;
    failover_step(&f, &ev, &res);
    assert_int_equal(f.rec.state, CONTROL_SECONDARY);
    assert_true(f.rec.epoch == 3);

    feed_tick(&f, UP, true, 3000, &res);
    feed_tick(&f, UP, true, 3000 + DWELL_MS, &res);
    assert_int_equal(f.rec.state, CONTROL_DRAINING_SECONDARY);
    assert_string_equal(failover_source_group_prefix(f.rec.state),
                        "ferry-takeover.");
    assert_string_equal(failover_target_group_prefix(f.rec.state),
                        "ferry-deliver.");

    ev.kind = FAILOVER_EVENT_GROUPS_EMPTY;
    failover_step(&f, &ev, &res);
    ev.kind = FAILOVER_EVENT_OFFSETS_COPIED;
    failover_step(&f, &ev, &res);
    assert_int_equal(f.rec.state, CONTROL_PRIMARY);
    assert_true(f.rec.epoch == 5);
    assert_false(f.rec.hold);
}


static void
health_sources_must_agree(void **state)
{
    static const struct {
        int probes, workers, combined;
    } cases[] = {
        { DOWN, DOWN, DOWN },     { DOWN, UNKNOWN, UNKNOWN },
        { DOWN, UP, UNKNOWN },    { UNKNOWN, DOWN, UNKNOWN },
        { UP, DOWN, UNKNOWN },    { UP, UP, UP },
        { UP, UNKNOWN, UP },      { UNKNOWN, UP, UNKNOWN },
        { UNKNOWN, UNKNOWN, UNKNOWN },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++)
        assert_int_equal(failover_health_combine(
                             (enum failover_health)cases[i].probes,
                             (enum failover_health)cases[i].workers),
                         cases[i].combined);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(step_table_transitions),
        cmocka_unit_test(flapping_health_never_fails_back),
        cmocka_unit_test(not_ready_alerts_once),
        cmocka_unit_test(full_cycle_raises_epochs),
        cmocka_unit_test(health_sources_must_agree),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

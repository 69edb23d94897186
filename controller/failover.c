#include "failover.h"

#include <stdio.h>
#include <string.h>

static void failover_enter(struct failover *f, enum control_state next,
                           int64_t now_ms, struct failover_result *res);
static void failover_on_tick(struct failover *f,
                             const struct failover_event *ev,
                             struct failover_result *res);
static void failover_on_command(struct failover *f,
                                const struct failover_event *ev,
                                struct failover_result *res);
static void failover_on_groups_empty(struct failover *f,
                                     struct failover_result *res);
static void failover_on_offsets_copied(struct failover *f,
                                       const struct failover_event *ev,
                                       struct failover_result *res);

static const char *const failover_health_names[] = {
    "unknown", "up", "down"
};


const char *
failover_health_name(enum failover_health health)
{
    return failover_health_names[health];
}


enum failover_health
failover_health_combine(enum failover_health probes,
                        enum failover_health workers)
{
    if (probes == FAILOVER_HEALTH_DOWN && workers == FAILOVER_HEALTH_DOWN)
        return FAILOVER_HEALTH_DOWN;
    if (probes == FAILOVER_HEALTH_UP && workers != FAILOVER_HEALTH_DOWN)
        return FAILOVER_HEALTH_UP;
    return FAILOVER_HEALTH_UNKNOWN;
}


/*
 * ferry-deliver.R consumes mail.R in PRIMARY and stops in DRAINING_PRIMARY.
 * ferry-takeover.R consumes it in SECONDARY and stops in
 * DRAINING_SECONDARY. The caller appends the region.
 */
const char *
failover_source_group_prefix(enum control_state state)
{
    return state == CONTROL_DRAINING_SECONDARY ||
                   state == CONTROL_SECONDARY
               ? "ferry-takeover."
               : "ferry-deliver.";
}


const char *
failover_target_group_prefix(enum control_state state)
{
    return state == CONTROL_DRAINING_SECONDARY ||
                   state == CONTROL_SECONDARY
               ? "ferry-deliver."
               : "ferry-takeover.";
}


int
failover_init(struct failover *f, const char *region,
              const struct control *stored, const char *controller_id,
              int64_t dwell_ms, int64_t now_ms)
{
    memset(f, 0, sizeof(*f));
    f->dwell_ms = dwell_ms;
    f->healthy_since_ms = -1;
    if (stored != NULL) {
        f->rec = *stored;
        return 0;
    }
    snprintf(f->rec.region, sizeof(f->rec.region), "%s", region);
    f->rec.state = CONTROL_PRIMARY;
    f->rec.epoch = 1;
    f->rec.since_ms = now_ms;
    snprintf(f->rec.reason, sizeof(f->rec.reason), "no stored state");
    snprintf(f->rec.controller_id, sizeof(f->rec.controller_id), "%s",
             controller_id);
    f->rec.hold = false;
    f->rec.command_offset = -1;
    return 1;
}


void
failover_step(struct failover *f, const struct failover_event *ev,
              struct failover_result *res)
{
    memset(res, 0, sizeof(*res));
    res->from = f->rec.state;

    switch (ev->kind) {
    case FAILOVER_EVENT_TICK:
        failover_on_tick(f, ev, res);
        break;
    case FAILOVER_EVENT_COMMAND:
        failover_on_command(f, ev, res);
        break;
    case FAILOVER_EVENT_GROUPS_EMPTY:
        failover_on_groups_empty(f, res);
        break;
    case FAILOVER_EVENT_OFFSETS_COPIED:
        failover_on_offsets_copied(f, ev, res);
        break;
    }
    if (res->actions & FAILOVER_PUBLISH)
        snprintf(f->rec.reason, sizeof(f->rec.reason), "%s", res->reason);
}


/* Moves to next with a new epoch; the caller publishes. */
static void
failover_enter(struct failover *f, enum control_state next, int64_t now_ms,
               struct failover_result *res)
{
    if (next != f->rec.state) {
        f->rec.state = next;
        f->rec.since_ms = now_ms;
        f->healthy_since_ms = -1;
        f->copy_requested = false;
    }
    f->rec.epoch++;
    res->actions |= FAILOVER_PUBLISH;
}


static void
failover_on_tick(struct failover *f, const struct failover_event *ev,
                 struct failover_result *res)
{
    const char *region = f->rec.region;

    switch (f->rec.state) {
    case CONTROL_PRIMARY:
        if (ev->primary != FAILOVER_HEALTH_DOWN) {
            if (f->alerting) {
                f->alerting = false;
                res->actions |= FAILOVER_ALERT_CLEAR;
                snprintf(res->reason, sizeof(res->reason),
                         "SES in %s no longer down", region);
            }
            return;
        }
        if (f->rec.hold)
            return;
        if (!ev->secondary_ready) {
            if (!f->alerting) {
                f->alerting = true;
                res->actions |= FAILOVER_ALERT;
                snprintf(res->reason, sizeof(res->reason),
                         "SES in %s down but the secondary region is not "
                         "ready: %s", region,
                         ev->not_ready_reason != NULL ? ev->not_ready_reason
                                                      : "unknown");
            }
            return;
        }
        if (f->alerting) {
            f->alerting = false;
            res->actions |= FAILOVER_ALERT_CLEAR;
        }
        snprintf(res->reason, sizeof(res->reason),
                 "SES in %s down by probes and worker reports", region);
        failover_enter(f, CONTROL_DRAINING_PRIMARY, ev->now_ms, res);
        return;

    case CONTROL_SECONDARY:
        /*
         * A tick that is not up restarts the dwell, so SES that flaps
         * faster than the dwell never fails back.
         */
        if (ev->primary != FAILOVER_HEALTH_UP) {
            f->healthy_since_ms = -1;
            return;
        }
        if (f->healthy_since_ms < 0)
            f->healthy_since_ms = ev->now_ms;
        if (f->rec.hold || ev->now_ms - f->healthy_since_ms < f->dwell_ms)
            return;
        snprintf(res->reason, sizeof(res->reason),
                 "SES in %s up for %lld s", region,
                 (long long)((ev->now_ms - f->healthy_since_ms) / 1000));
        failover_enter(f, CONTROL_DRAINING_SECONDARY, ev->now_ms, res);
        return;

    case CONTROL_DRAINING_PRIMARY:
    case CONTROL_DRAINING_SECONDARY:
        return;
    }
}


static void
failover_on_groups_empty(struct failover *f, struct failover_result *res)
{
    if (f->rec.state != CONTROL_DRAINING_PRIMARY &&
        f->rec.state != CONTROL_DRAINING_SECONDARY)
        return;
    if (f->copy_requested)
        return;
    f->copy_requested = true;
    res->actions |= FAILOVER_COPY_OFFSETS;
    snprintf(res->reason, sizeof(res->reason), "source group empty");
}


static void
failover_on_offsets_copied(struct failover *f,
                           const struct failover_event *ev,
                           struct failover_result *res)
{
    if (!f->copy_requested)
        return;
    if (f->rec.state == CONTROL_DRAINING_PRIMARY) {
        snprintf(res->reason, sizeof(res->reason),
                 "offsets copied to ferry-takeover.%s", f->rec.region);
        failover_enter(f, CONTROL_SECONDARY, ev->now_ms, res);
    } else if (f->rec.state == CONTROL_DRAINING_SECONDARY) {
        snprintf(res->reason, sizeof(res->reason),
                 "offsets copied back to ferry-deliver.%s", f->rec.region);
        failover_enter(f, CONTROL_PRIMARY, ev->now_ms, res);
    }
}


/*
 * Every command is published, even one that changes nothing, so that the
 * stored command_offset marks it handled and a restart does not repeat it.
 */
static void
failover_on_command(struct failover *f, const struct failover_event *ev,
                    struct failover_result *res)
{
    enum control_state state = f->rec.state;
    enum control_state next = state;
    const char        *name = control_command_name(ev->command);

    f->rec.command_offset = ev->command_offset;
    switch (ev->command) {
    case CONTROL_HOLD:
    case CONTROL_RELEASE:
        f->rec.hold = ev->command == CONTROL_HOLD;
        snprintf(res->reason, sizeof(res->reason), "operator: %s", name);
        break;

    case CONTROL_FORCE_FAILOVER:
        if ((state == CONTROL_PRIMARY ||
             state == CONTROL_DRAINING_SECONDARY) && !ev->secondary_ready) {
            snprintf(res->reason, sizeof(res->reason),
                     "operator: %s rejected, secondary region not ready: "
                     "%s", name,
                     ev->not_ready_reason != NULL ? ev->not_ready_reason
                                                  : "unknown");
            break;
        }
        f->rec.hold = true;
        if (state == CONTROL_PRIMARY)
            next = CONTROL_DRAINING_PRIMARY;
        else if (state == CONTROL_DRAINING_SECONDARY)
            next = CONTROL_SECONDARY;
        snprintf(res->reason, sizeof(res->reason), "operator: %s", name);
        break;

    case CONTROL_FORCE_FAILBACK:
        f->rec.hold = true;
        if (state == CONTROL_SECONDARY)
            next = CONTROL_DRAINING_SECONDARY;
        else if (state == CONTROL_DRAINING_PRIMARY)
            next = CONTROL_PRIMARY;
        snprintf(res->reason, sizeof(res->reason), "operator: %s", name);
        break;
    }
    if (next != state && f->alerting) {
        f->alerting = false;
        res->actions |= FAILOVER_ALERT_CLEAR;
    }
    failover_enter(f, next, ev->now_ms, res);
}

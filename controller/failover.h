/*
 * failover: the failover state machine of one primary region, without I/O.
 *
 *   PRIMARY --(R down, S ready)--> DRAINING_PRIMARY
 *   DRAINING_PRIMARY --(groups empty; offsets copied)--> SECONDARY
 *   SECONDARY --(R up for the failback dwell)--> DRAINING_SECONDARY
 *   DRAINING_SECONDARY --(groups empty; offsets copied back)--> PRIMARY
 *
 * The caller feeds events; failover_step() updates the state record in
 * place and returns the actions the caller must carry out. The caller
 * publishes a changed record. When publishing fails it restores the record
 * it had before the step, so the same inputs repeat the step later.
 *
 * Operators' commands: force-failover and force-failback start the hand-
 * over at once, whatever the health, and set hold, so the controller does
 * not undo them by itself; during a drain the opposite command turns back
 * to the state the drain started from, since no offsets have moved yet.
 * hold stops automatic failovers and failbacks but lets a drain finish.
 * Forcing a failover still needs S to be ready.
 */
#ifndef FERRY_FAILOVER_H
#define FERRY_FAILOVER_H

#include <stdbool.h>
#include <stdint.h>

#include "control.h"

/* A region's SES health as the controller judges it. */
enum failover_health {
    FAILOVER_HEALTH_UNKNOWN,        /* no evidence either way */
    FAILOVER_HEALTH_UP,
    FAILOVER_HEALTH_DOWN
};

enum failover_event_kind {
    FAILOVER_EVENT_TICK,            /* new health verdicts */
    FAILOVER_EVENT_GROUPS_EMPTY,    /* source and target group: no members */
    FAILOVER_EVENT_OFFSETS_COPIED,
    FAILOVER_EVENT_COMMAND
};

struct failover_event {
    enum failover_event_kind  kind;
    int64_t                   now_ms;
    /* The newest verdicts, with every event. */
    enum failover_health      primary;      /* both sources combined */
    bool                      secondary_ready;
    const char               *not_ready_reason;
    /* FAILOVER_EVENT_COMMAND only. */
    enum control_command_kind command;
    int64_t                   command_offset;
};

/* Bits of failover_result.actions. */
#define FAILOVER_PUBLISH      0x01  /* publish the updated record */
#define FAILOVER_COPY_OFFSETS 0x02  /* copy the draining state's offsets */
#define FAILOVER_ALERT        0x04  /* R down and S not ready: page */
#define FAILOVER_ALERT_CLEAR  0x08

struct failover_result {
    unsigned           actions;
    enum control_state from;        /* state before the step */
    char               reason[256]; /* why, for the log and the record */
};

struct failover {
    struct control rec;             /* the state as the caller stores it */
    int64_t        dwell_ms;        /* controller.failback_dwell_seconds */
    int64_t        healthy_since_ms; /* SECONDARY: R up since, -1 not up */
    bool           alerting;
    bool           copy_requested;  /* FAILOVER_COPY_OFFSETS pending */
};

/*
 * Starts the machine of region from its stored record, or, when stored is
 * NULL, in PRIMARY with epoch 1; returns 1 when the record must be
 * published (no stored record), else 0.
 */
int failover_init(struct failover *f, const char *region,
                  const struct control *stored, const char *controller_id,
                  int64_t dwell_ms, int64_t now_ms);

/* Carries out one event; see the file comment. */
void failover_step(struct failover *f, const struct failover_event *ev,
                   struct failover_result *res);

/*
 * Return the group name prefix, without the region, of the group that
 * gives up mail.R in state (source) and of the one that takes it (target).
 */
const char *failover_source_group_prefix(enum control_state state);
const char *failover_target_group_prefix(enum control_state state);

/* Combines the two sources' verdicts; down only when both are down. */
enum failover_health failover_health_combine(enum failover_health probes,
                                             enum failover_health workers);

const char *failover_health_name(enum failover_health health);

#endif

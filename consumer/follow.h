/*
 * follow: a worker's view of the failover states of the regions whose
 * mail it may consume, read from ferry.control.
 *
 * The worker assigns partition 0 of ferry.control from the earliest
 * offset, never subscribes or commits there, and reads it to the end
 * before it joins any mail group. It acts only on a state record of a
 * followed region whose epoch is above the last one it acted on, and
 * counts a region without a record as PRIMARY. Until it has read the
 * partition to its end once, it consumes no following source at all:
 * the state it has not read yet may be SECONDARY.
 *
 * A source that follows a region is consumed only in one state of it: a
 * primary worker's mail.R in PRIMARY, a takeover worker's mail.P in
 * SECONDARY. In any other state the worker leaves that group, after
 * committing the offsets of finished messages, so the controller finds
 * the group empty. Pinned topics follow nothing and are always consumed.
 */
#ifndef FERRY_FOLLOW_H
#define FERRY_FOLLOW_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "control.h"

struct deliver;

struct deliver_source;

struct follow_region {
    char                name[64];
    enum control_state  state;      /* last acted on; PRIMARY at start */
    uint64_t            epoch;      /* of that record, 0 without one */
};

struct follow {
    rd_kafka_t           *rk;       /* assigned consumer of ferry.control */
    struct follow_region *regions;  /* the owners of following sources */
    size_t                nregions;
    int                   loaded;   /* read to the end once */
};

/*
 * Creates the consumer of ferry.control and reads the partition up to its
 * end, or for at most wait_ms when the end cannot be reached. Returns -1
 * and fills err when the consumer cannot be created.
 */
int follow_start(struct deliver *d, int64_t wait_ms, char *err,
                 size_t errlen);

/*
 * Takes the control records that arrived without waiting and joins or
 * leaves the groups of following sources when a state requires it.
 */
void follow_poll(struct deliver *d);

/* Returns 1 when the worker may consume src now. */
int follow_wants(const struct follow *f, const struct deliver_source *src);

/* Returns the state of region; PRIMARY for a region not followed. */
enum control_state follow_state(const struct follow *f, const char *region);

void follow_fini(struct follow *f);

#endif

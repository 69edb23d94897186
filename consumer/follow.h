/*
 * follow: a primary worker's view of the failover state of its region,
 * read from ferry.control.
 *
 * The worker assigns partition 0 of ferry.control from the earliest
 * offset, never subscribes or commits there, and reads it to the end
 * before it joins any mail group. It acts only on a state record of its
 * own region whose epoch is above the last one it acted on, and counts a
 * region without a record as PRIMARY. In PRIMARY it consumes mail.R in
 * group ferry-deliver.R; in any other state it leaves that group, after
 * committing the offsets of finished messages, so the controller finds
 * the group empty. The pinned topic and its group are never affected.
 */
#ifndef FERRY_FOLLOW_H
#define FERRY_FOLLOW_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "control.h"

struct deliver;

struct follow {
    rd_kafka_t         *rk;         /* assigned consumer of ferry.control */
    enum control_state  state;      /* last acted on; PRIMARY at start */
    uint64_t            epoch;      /* of that record, 0 without one */
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
 * leaves the mail.R group when the state requires it.
 */
void follow_poll(struct deliver *d);

/* Returns 1 when the worker may consume mail.R. */
int follow_consuming(const struct follow *f);

void follow_fini(struct follow *f);

#endif

/*
 * dedup: the envelope ids that SES accepted from this worker process
 * recently, so that a message consumed a second time is not sent again.
 *
 * A record is consumed again when a rebalance hands its partition back to
 * the same process and the offset commit made after its delivery never
 * reached the broker, as during a broker outage. The set keeps the last
 * max ids in insertion order and drops the oldest first. For each id it
 * stores whether the ferry.delivered record was acknowledged, and until
 * then the SES message id, so that only that record is written again.
 *
 * Memory, on LP64: 40 bytes per entry and a 4-byte hash slot, with at
 * least two slots per entry, all allocated up front. For max = 100000 that
 * is 4,000,000 + 262,144 * 4 = 5,048,576 bytes (4.8 MiB), plus a copy of
 * the SES message id for each entry whose record is not acknowledged.
 *
 * The set lives in one process. When a partition moves to another worker,
 * or the worker restarts, recall.h fills the new owner's set from
 * ferry.delivered, within deliver.delivered_lookback_seconds.
 */
#ifndef FERRY_DEDUP_H
#define FERRY_DEDUP_H

#include <stddef.h>
#include <stdint.h>

#include "envelope.h"

struct dedup_entry {
    char           id[ENVELOPE_ID_LEN + 1];
    unsigned char  recorded;            /* ferry.delivered acknowledged */
    char          *ses_message_id;      /* NULL once recorded */
};

struct dedup {
    struct dedup_entry *entries;        /* ring buffer, oldest at head */
    size_t              head;
    size_t              len;
    size_t              max;
    uint32_t           *slots;          /* entry index + 1, or 0: free */
    size_t              nslots;         /* a power of two, >= 2 * max */
};

/* Creates an empty set for up to max ids; max is at least 1. */
struct dedup *dedup_new(size_t max);

void dedup_free(struct dedup *set);

/*
 * Adds id, which SES accepted as ses_message_id, with its record not yet
 * acknowledged. An id already in the set gets the new message id and
 * keeps its place. A full set drops its oldest id first.
 */
void dedup_add(struct dedup *set, const char *id,
               const char *ses_message_id);

/* Notes that the ferry.delivered record of id was acknowledged. */
void dedup_mark_recorded(struct dedup *set, const char *id);

/* Returns the entry of id, or NULL when id is not in the set. */
const struct dedup_entry *dedup_find(const struct dedup *set,
                                     const char *id);

size_t dedup_len(const struct dedup *set);

#endif

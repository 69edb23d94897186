/*
 * group: a worker's side of its consumer groups. It creates the state of
 * the partitions a rebalance assigns, hands partitions over when they are
 * revoked, pauses and resumes their fetching, and commits their offsets
 * (window.h defines which offset may be committed).
 */
#ifndef FERRY_GROUP_H
#define FERRY_GROUP_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

struct deliver;
struct deliver_partition;
struct deliver_source;

/* The rebalance callback of a consumer, whose opaque is its source. */
void group_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                        rd_kafka_topic_partition_list_t *parts, void *opaque);

/* The offset commit callback of a consumer, whose opaque is its source. */
void group_on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                     rd_kafka_topic_partition_list_t *offsets, void *opaque);

/* Returns the assigned partition of src, or NULL. */
struct deliver_partition *group_find(struct deliver_source *src,
                                     int32_t partition);

void group_free_partition(struct deliver_partition *part);

/*
 * Pauses or resumes fetching part. A resume seeks to the offset after the
 * last one consumed.
 */
void group_set_paused(struct deliver_partition *part, int paused);

/* Commits the done offsets of both sources, waiting for the broker if sync. */
void group_commit(struct deliver *d, int sync);

#endif

/*
 * recall: what earlier owners of newly assigned partitions delivered and
 * did not commit.
 *
 * A partition reaches a worker with a committed offset, and SES may
 * already have accepted messages at or after it: the previous owner was
 * killed before its commit, or a failover or failback moved the
 * partition between ferry-deliver.R and ferry-takeover.R. Before the
 * worker sends from its new partitions it reads the ferry.delivered
 * records written in the last deliver.delivered_lookback_seconds, and
 * adds to the worker's dedup set every envelope of those partitions at or
 * after their committed offsets. Such a message is then marked done
 * without another SendEmail.
 *
 * The read blocks the worker, inside the rebalance callback, for at most
 * RECALL_TIMEOUT_MS.
 */
#ifndef FERRY_RECALL_H
#define FERRY_RECALL_H

#include <librdkafka/rdkafka.h>

struct deliver_source;

#define RECALL_TIMEOUT_MS 30000

/*
 * Reads ferry.delivered for the partitions of src in committed (offsets
 * as the group committed them; RD_KAFKA_OFFSET_INVALID where none) and
 * fills the worker's dedup set. Logs and returns -1 when the records
 * could not all be read; the messages not recalled may then be sent a
 * second time.
 */
int recall_delivered(struct deliver_source *src,
                     const rd_kafka_topic_partition_list_t *committed);

#endif

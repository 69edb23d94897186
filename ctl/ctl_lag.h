/*
 * ctl_lag: "ferryctl lag", consumer lag per group, topic and partition,
 * from broker offsets (watermarks and committed offsets), never from
 * client statistics, which stop updating while a partition is paused.
 */
#ifndef FERRY_CTL_LAG_H
#define FERRY_CTL_LAG_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "kafka_group.h"

#define CTL_LAG_NONE KAFKA_GROUP_NO_OFFSET   /* never committed */

/*
 * Returns the lag in messages: end minus committed, or when the group
 * never committed the partition, end minus the low watermark. A committed
 * offset below the low watermark counts from the committed offset, as
 * Kafka's consumer-groups tool does. Never negative.
 */
int64_t ctl_lag_messages(int64_t committed, int64_t low, int64_t end);

/* Returns the offset of the oldest record not yet consumed. */
int64_t ctl_lag_oldest_offset(int64_t committed, int64_t low);

/*
 * Returns every committed offset of group (an empty list when it has
 * none), retrying while the coordinator moves or loads. Returns NULL and
 * fills err on failure.
 */
rd_kafka_topic_partition_list_t *ctl_lag_committed(rd_kafka_t *rk,
                                                   const char *group,
                                                   char *err, size_t errlen);

int ctl_lag_main(int argc, char **argv);

#endif

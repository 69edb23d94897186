/*
 * kafka_group: what the brokers store about a consumer group's progress,
 * its committed offsets and the watermarks of a partition, and the lag
 * between them. ferryctl lag and the controller's lag metrics both read
 * lag this way, from the brokers rather than from client statistics,
 * which stop updating while a partition is paused.
 */
#ifndef FERRY_KAFKA_GROUP_H
#define FERRY_KAFKA_GROUP_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

/* A partition the group never committed; librdkafka's invalid offset. */
#define KAFKA_GROUP_NO_OFFSET (-1001)

enum kafka_group_outcome {
    KAFKA_GROUP_OK,
    KAFKA_GROUP_RETRY,          /* the group coordinator moved or is loading */
    KAFKA_GROUP_FAILED
};

/*
 * Returns every committed offset of group (an empty list when it has
 * none) from one ListConsumerGroupOffsets request, or NULL with err and
 * *outcome saying whether a retry may succeed.
 */
rd_kafka_topic_partition_list_t *
kafka_group_committed_once(rd_kafka_t *rk, const char *group, int timeout_ms,
                           enum kafka_group_outcome *outcome, char *err,
                           size_t errlen);

/*
 * Same, with up to attempts requests 0.5 s apart while the coordinator
 * moves or loads: right after a broker starts, librdkafka 2.0.2 returns
 * "not coordinator" or "loading" instead of retrying itself.
 */
rd_kafka_topic_partition_list_t *
kafka_group_committed(rd_kafka_t *rk, const char *group, int timeout_ms,
                      int attempts, char *err, size_t errlen);

/* Queries the low and high watermark of a partition from its leader. */
int kafka_group_watermarks(rd_kafka_t *rk, const char *topic,
                           int32_t partition, int timeout_ms, int64_t *low,
                           int64_t *high, char *err, size_t errlen);

/*
 * Returns the lag in messages: end minus committed, or when the group
 * never committed the partition, end minus the low watermark. A committed
 * offset below the low watermark counts from the committed offset, as
 * Kafka's consumer-groups tool does. Never negative.
 */
int64_t kafka_group_lag(int64_t committed, int64_t low, int64_t end);

/* Returns the offset of the oldest record not yet consumed. */
int64_t kafka_group_oldest_offset(int64_t committed, int64_t low);

/* Classifies an admin request's error: retry for coordinator moves. */
enum kafka_group_outcome kafka_group_outcome_of(rd_kafka_resp_err_t code);

/* Waits for an admin result of type; NULL and err when none came. */
rd_kafka_event_t *kafka_group_wait(rd_kafka_queue_t *queue,
                                   rd_kafka_event_type_t type,
                                   int timeout_ms, char *err, size_t errlen);

#endif

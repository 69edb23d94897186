#include "kafka_group.h"

#include <stdio.h>
#include <unistd.h>

#include "util.h"

#define KAFKA_GROUP_RETRY_US 500000

rd_kafka_event_t *
kafka_group_wait(rd_kafka_queue_t *queue, rd_kafka_event_type_t type,
                 int timeout_ms, char *err, size_t errlen)
{
    int64_t deadline = util_monotonic_ms() + timeout_ms + 5000;

    while (util_monotonic_ms() < deadline) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(queue, 500);

        if (ev == NULL)
            continue;
        if (rd_kafka_event_type(ev) == type)
            return ev;
        rd_kafka_event_destroy(ev);
    }
    snprintf(err, errlen, "the broker did not answer within %d s",
             timeout_ms / 1000 + 5);
    return NULL;
}


enum kafka_group_outcome
kafka_group_outcome_of(rd_kafka_resp_err_t code)
{
    switch (code) {
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
        return KAFKA_GROUP_RETRY;
    default:
        return KAFKA_GROUP_FAILED;
    }
}


rd_kafka_topic_partition_list_t *
kafka_group_committed_once(rd_kafka_t *rk, const char *group, int timeout_ms,
                           enum kafka_group_outcome *outcome, char *err,
                           size_t errlen)
{
    rd_kafka_queue_t                                 *queue;
    rd_kafka_AdminOptions_t                          *options;
    rd_kafka_ListConsumerGroupOffsets_t              *request;
    rd_kafka_event_t                                 *ev;
    const rd_kafka_ListConsumerGroupOffsets_result_t *res;
    const rd_kafka_group_result_t                   **results;
    const rd_kafka_error_t                           *gerr;
    const rd_kafka_topic_partition_list_t            *parts;
    rd_kafka_topic_partition_list_t                  *copy = NULL;
    size_t                                            nresults;

    *outcome = KAFKA_GROUP_FAILED;
    queue = rd_kafka_queue_new(rk);
    options = rd_kafka_AdminOptions_new(
        rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS);
    rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, NULL, 0);
    request = rd_kafka_ListConsumerGroupOffsets_new(group, NULL);
    rd_kafka_ListConsumerGroupOffsets(rk, &request, 1, options, queue);
    rd_kafka_ListConsumerGroupOffsets_destroy(request);
    rd_kafka_AdminOptions_destroy(options);
    ev = kafka_group_wait(queue,
                          RD_KAFKA_EVENT_LISTCONSUMERGROUPOFFSETS_RESULT,
                          timeout_ms, err, errlen);
    if (ev == NULL)
        goto out;
    if (rd_kafka_event_error(ev)) {
        snprintf(err, errlen, "listing committed offsets: %s",
                 rd_kafka_event_error_string(ev));
        *outcome = kafka_group_outcome_of(rd_kafka_event_error(ev));
        goto out_event;
    }

    res = rd_kafka_event_ListConsumerGroupOffsets_result(ev);
    results = rd_kafka_ListConsumerGroupOffsets_result_groups(res, &nresults);
    if (nresults != 1) {
        snprintf(err, errlen, "listing committed offsets returned %zu "
                 "groups", nresults);
        goto out_event;
    }
    gerr = rd_kafka_group_result_error(results[0]);
    if (gerr != NULL &&
        rd_kafka_error_code(gerr) != RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
        snprintf(err, errlen, "listing committed offsets: %s",
                 rd_kafka_error_string(gerr));
        *outcome = kafka_group_outcome_of(rd_kafka_error_code(gerr));
        goto out_event;
    }
    parts = rd_kafka_group_result_partitions(results[0]);
    copy = parts != NULL ? rd_kafka_topic_partition_list_copy(parts)
                         : rd_kafka_topic_partition_list_new(0);
    *outcome = KAFKA_GROUP_OK;

out_event:
    rd_kafka_event_destroy(ev);
out:
    rd_kafka_queue_destroy(queue);
    return copy;
}


rd_kafka_topic_partition_list_t *
kafka_group_committed(rd_kafka_t *rk, const char *group, int timeout_ms,
                      int attempts, char *err, size_t errlen)
{
    for (int attempt = 1;; attempt++) {
        enum kafka_group_outcome         outcome;
        rd_kafka_topic_partition_list_t *committed;

        committed = kafka_group_committed_once(rk, group, timeout_ms,
                                               &outcome, err, errlen);
        if (outcome == KAFKA_GROUP_OK)
            return committed;
        if (outcome == KAFKA_GROUP_FAILED || attempt >= attempts)
            return NULL;
        usleep(KAFKA_GROUP_RETRY_US);
    }
}


int
kafka_group_watermarks(rd_kafka_t *rk, const char *topic, int32_t partition,
                       int timeout_ms, int64_t *low, int64_t *high,
                       char *err, size_t errlen)
{
    rd_kafka_resp_err_t kerr;

    kerr = rd_kafka_query_watermark_offsets(rk, topic, partition, low, high,
                                            timeout_ms);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "watermarks of %s [%d]: %s", topic,
                 (int)partition, rd_kafka_err2str(kerr));
        return -1;
    }
    return 0;
}


int64_t
kafka_group_lag(int64_t committed, int64_t low, int64_t end)
{
    int64_t from = committed == KAFKA_GROUP_NO_OFFSET ? low : committed;

    return end > from ? end - from : 0;
}


int64_t
kafka_group_oldest_offset(int64_t committed, int64_t low)
{
    if (committed == KAFKA_GROUP_NO_OFFSET || committed < low)
        return low;
    return committed;
}

#include "offsets.h"

#include <stdio.h>
#include <string.h>

#include "kafka_group.h"
#include "util.h"

/* Requests for committed offsets while the group coordinator moves. */
#define OFFSETS_ATTEMPTS 3

static rd_kafka_event_t *offsets_wait(rd_kafka_queue_t *queue,
                                      rd_kafka_event_type_t type, char *err,
                                      size_t errlen);
static int offsets_partitions(rd_kafka_t *rk, const char *topic, int *count,
                              char *err, size_t errlen);


static rd_kafka_event_t *
offsets_wait(rd_kafka_queue_t *queue, rd_kafka_event_type_t type, char *err,
             size_t errlen)
{
    int64_t deadline = util_monotonic_ms() + OFFSETS_TIMEOUT_MS + 5000;

    while (util_monotonic_ms() < deadline) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(queue, 500);

        if (ev == NULL)
            continue;
        if (rd_kafka_event_type(ev) == type)
            return ev;
        rd_kafka_event_destroy(ev);
    }
    snprintf(err, errlen, "broker request timed out");
    return NULL;
}


int
offsets_group_members(rd_kafka_t *rk, const char *group, size_t *members,
                      char *err, size_t errlen)
{
    rd_kafka_queue_t                               *queue;
    rd_kafka_AdminOptions_t                        *options;
    rd_kafka_event_t                               *ev;
    const rd_kafka_DescribeConsumerGroups_result_t *res;
    const rd_kafka_ConsumerGroupDescription_t     **descs;
    const rd_kafka_error_t                         *gerr;
    const char                                     *names[1] = { group };
    size_t                                          ndescs;
    int                                             rc = -1;

    queue = rd_kafka_queue_new(rk);
    options = rd_kafka_AdminOptions_new(
        rk, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
    rd_kafka_AdminOptions_set_request_timeout(options, OFFSETS_TIMEOUT_MS,
                                              NULL, 0);
    rd_kafka_DescribeConsumerGroups(rk, names, 1, options, queue);
    rd_kafka_AdminOptions_destroy(options);
    if ((ev = offsets_wait(queue, RD_KAFKA_EVENT_DESCRIBECONSUMERGROUPS_RESULT,
                           err, errlen)) == NULL)
        goto out;
    if (rd_kafka_event_error(ev)) {
        snprintf(err, errlen, "describing group %s: %s", group,
                 rd_kafka_event_error_string(ev));
        goto out_event;
    }
    res = rd_kafka_event_DescribeConsumerGroups_result(ev);
    descs = rd_kafka_DescribeConsumerGroups_result_groups(res, &ndescs);
    if (ndescs != 1) {
        snprintf(err, errlen, "describing group %s returned %zu groups",
                 group, ndescs);
        goto out_event;
    }
    gerr = rd_kafka_ConsumerGroupDescription_error(descs[0]);
    if (gerr != NULL &&
        rd_kafka_error_code(gerr) != RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
        snprintf(err, errlen, "describing group %s: %s", group,
                 rd_kafka_error_string(gerr));
        goto out_event;
    }
    *members = gerr != NULL
                   ? 0
                   : rd_kafka_ConsumerGroupDescription_member_count(descs[0]);
    rc = 0;

out_event:
    rd_kafka_event_destroy(ev);
out:
    rd_kafka_queue_destroy(queue);
    return rc;
}


static int
offsets_partitions(rd_kafka_t *rk, const char *topic, int *count, char *err,
                   size_t errlen)
{
    rd_kafka_topic_t               *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t             kerr;
    int                             rc = -1;

    kerr = rd_kafka_metadata(rk, 0, rkt, &md, OFFSETS_TIMEOUT_MS);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
        snprintf(err, errlen, "metadata of topic %s: %s", topic,
                 rd_kafka_err2str(kerr));
    else if (md->topic_cnt != 1 || md->topics[0].err != 0)
        snprintf(err, errlen, "topic %s: %s", topic,
                 md->topic_cnt != 1 ? "not found"
                                    : rd_kafka_err2str(md->topics[0].err));
    else {
        *count = md->topics[0].partition_cnt;
        rc = 0;
    }
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}


int
offsets_copy(rd_kafka_t *rk, const char *topic, const char *from,
             const char *to, char *summary, size_t summarylen, char *err,
             size_t errlen)
{
    rd_kafka_topic_partition_list_t *committed = NULL, *target = NULL;
    rd_kafka_topic_partition_list_t *check = NULL;
    rd_kafka_queue_t                *queue = NULL;
    rd_kafka_AdminOptions_t         *options;
    rd_kafka_AlterConsumerGroupOffsets_t *request;
    rd_kafka_event_t                *ev = NULL;
    const rd_kafka_group_result_t  **results;
    const rd_kafka_topic_partition_list_t *parts;
    size_t                           nresults, used = 0;
    int                              count, rc = -1;

    summary[0] = '\0';
    if (offsets_partitions(rk, topic, &count, err, errlen) == -1 ||
        (committed = kafka_group_committed(rk, from, OFFSETS_TIMEOUT_MS,
                                           OFFSETS_ATTEMPTS, err,
                                           errlen)) == NULL)
        goto out;

    /* The source's offsets, or the low watermark where it has none. */
    target = rd_kafka_topic_partition_list_new(count);
    for (int p = 0; p < count; p++) {
        const rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find(committed, topic, p);
        rd_kafka_topic_partition_t       *out;
        int64_t                           low, high, offset;

        if (kafka_group_watermarks(rk, topic, p, OFFSETS_TIMEOUT_MS, &low,
                                   &high, err, errlen) == -1)
            goto out;
        offset = tp != NULL && tp->offset >= 0 ? tp->offset : low;
        if (offset < low)
            offset = low;   /* records below low are gone */
        out = rd_kafka_topic_partition_list_add(target, topic, p);
        out->offset = offset;

        /*
         * The metadata lists the offsets after the committed one that are
         * done already (consumer/window.h); the next group skips them.
         */
        if (tp != NULL && tp->offset == offset && tp->metadata_size > 0) {
            out->metadata = xmalloc(tp->metadata_size);
            memcpy(out->metadata, tp->metadata, tp->metadata_size);
            out->metadata_size = tp->metadata_size;
        }
        if (used < summarylen)
            used += (size_t)snprintf(summary + used, summarylen - used,
                                     "%sp%d=%lld", p > 0 ? " " : "", p,
                                     (long long)offset);
    }

    /* Commit them for the target group. */
    queue = rd_kafka_queue_new(rk);
    options = rd_kafka_AdminOptions_new(
        rk, RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS);
    rd_kafka_AdminOptions_set_request_timeout(options, OFFSETS_TIMEOUT_MS,
                                              NULL, 0);
    request = rd_kafka_AlterConsumerGroupOffsets_new(to, target);
    rd_kafka_AlterConsumerGroupOffsets(rk, &request, 1, options, queue);
    rd_kafka_AlterConsumerGroupOffsets_destroy(request);
    rd_kafka_AdminOptions_destroy(options);
    if ((ev = offsets_wait(queue,
                           RD_KAFKA_EVENT_ALTERCONSUMERGROUPOFFSETS_RESULT,
                           err, errlen)) == NULL)
        goto out;
    if (rd_kafka_event_error(ev)) {
        snprintf(err, errlen, "committing offsets for group %s: %s", to,
                 rd_kafka_event_error_string(ev));
        goto out;
    }
    results = rd_kafka_AlterConsumerGroupOffsets_result_groups(
        rd_kafka_event_AlterConsumerGroupOffsets_result(ev), &nresults);
    if (nresults != 1 || rd_kafka_group_result_error(results[0]) != NULL) {
        snprintf(err, errlen, "committing offsets for group %s: %s", to,
                 nresults != 1 ? "no result"
                               : rd_kafka_error_string(
                                     rd_kafka_group_result_error(results[0])));
        goto out;
    }
    parts = rd_kafka_group_result_partitions(results[0]);
    for (int i = 0; parts != NULL && i < parts->cnt; i++) {
        if (parts->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "committing %s [%d] for group %s: %s",
                     topic, parts->elems[i].partition, to,
                     rd_kafka_err2str(parts->elems[i].err));
            goto out;
        }
    }

    /* Read them back: the hand-over depends on them. */
    if ((check = kafka_group_committed(rk, to, OFFSETS_TIMEOUT_MS,
                                       OFFSETS_ATTEMPTS, err, errlen)) ==
        NULL)
        goto out;
    for (int i = 0; i < target->cnt; i++) {
        const rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find(check, topic,
                                               target->elems[i].partition);

        if (tp == NULL || tp->offset != target->elems[i].offset) {
            snprintf(err, errlen, "group %s has offset %lld on %s [%d] "
                     "after the commit of %lld", to,
                     tp != NULL ? (long long)tp->offset : -1LL, topic,
                     target->elems[i].partition,
                     (long long)target->elems[i].offset);
            goto out;
        }
    }
    rc = 0;

out:
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    if (queue != NULL)
        rd_kafka_queue_destroy(queue);
    if (committed != NULL)
        rd_kafka_topic_partition_list_destroy(committed);
    if (target != NULL)
        rd_kafka_topic_partition_list_destroy(target);
    if (check != NULL)
        rd_kafka_topic_partition_list_destroy(check);
    return rc;
}

#include "recall.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deliver.h"
#include "delivered.h"
#include "kafka.h"
#include "log.h"
#include "util.h"

static rd_kafka_t *recall_new_consumer(struct deliver *d, char *err,
                                       size_t errlen);
static int recall_start(rd_kafka_t *rk, int64_t since_ms,
                        rd_kafka_topic_partition_list_t **out,
                        int64_t **ends, char *err, size_t errlen);
static int recall_take(struct deliver_source *src,
                       const rd_kafka_topic_partition_list_t *committed,
                       const rd_kafka_message_t *msg);


int
recall_delivered(struct deliver_source *src,
                 const rd_kafka_topic_partition_list_t *committed)
{
    struct deliver                  *d = src->d;
    int64_t                          lookback_s =
        d->cfg->deliver_delivered_lookback_seconds;
    int64_t                          started = util_monotonic_ms();
    int64_t                          deadline = started + RECALL_TIMEOUT_MS;
    rd_kafka_topic_partition_list_t *from = NULL;
    rd_kafka_t                      *rk;
    int64_t                         *ends = NULL;
    int                              open_parts = 0, rc = -1;
    long long                        read = 0, recalled = 0;
    char                             err[512];

    if (lookback_s == 0 || committed->cnt == 0)
        return 0;
    if ((rk = recall_new_consumer(d, err, sizeof(err))) == NULL)
        goto out;
    if (recall_start(rk, util_now_ms() - lookback_s * 1000, &from, &ends,
                     err, sizeof(err)) == -1)
        goto out;
    for (int i = 0; i < from->cnt; i++)
        if (from->elems[i].offset >= 0)
            open_parts++;

    while (open_parts > 0 && util_monotonic_ms() < deadline) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 100);
        int32_t             p;

        if (msg == NULL)
            continue;
        p = msg->partition;
        if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            read++;
            recalled += recall_take(src, committed, msg);
        } else if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            log_warn(NULL, "recall-error", "topic=%s partition=%d "
                     "reason=\"%s\"", DELIVERED_TOPIC, (int)p,
                     rd_kafka_message_errstr(msg));
        }

        /* A partition is read once the offset before its end is seen. */
        if (p >= 0 && p < from->cnt && from->elems[p].offset >= 0 &&
            (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF ||
             (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR &&
              msg->offset + 1 >= ends[p]))) {
            from->elems[p].offset = -1;
            open_parts--;
        }
        rd_kafka_message_destroy(msg);
    }
    if (open_parts > 0) {
        snprintf(err, sizeof(err), "%d partition(s) of %s not read to "
                 "their end in %d ms", open_parts, DELIVERED_TOPIC,
                 RECALL_TIMEOUT_MS);
        goto out;
    }
    rc = 0;

out:
    if (rc == 0)
        log_info(NULL, "recalled", "topic=%s group=%s partitions=%d "
                 "lookback_s=%lld records_read=%lld envelopes=%lld "
                 "elapsed_ms=%lld", src->topic, src->group, committed->cnt,
                 (long long)lookback_s, read, recalled,
                 (long long)(util_monotonic_ms() - started));
    else
        log_warn(NULL, "recall-failed", "topic=%s group=%s reason=\"%s\" "
                 "records_read=%lld envelopes=%lld effect=\"messages "
                 "delivered and not committed before the hand-over may be "
                 "sent again\"", src->topic, src->group, err, read,
                 recalled);
    if (rk != NULL) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    if (from != NULL)
        rd_kafka_topic_partition_list_destroy(from);
    free(ends);
    return rc;
}


/* A consumer that reads ferry.delivered from chosen offsets. */
static rd_kafka_t *
recall_new_consumer(struct deliver *d, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf;
    char             group[128];

    snprintf(group, sizeof(group), "ferry-deliver.%s.recall.%ld", d->region,
             (long)getpid());
    if ((conf = kafka_conf_new(d->cfg, err, errlen)) == NULL)
        return NULL;
    return kafka_reader_new(conf, group, err, errlen);
}


/*
 * Finds, per partition of ferry.delivered, the first offset written at or
 * after since_ms and the end offset, and assigns the partitions that have
 * records in between. In *out the offset of a partition with nothing to
 * read is -1, and out's index is the partition number.
 */
static int
recall_start(rd_kafka_t *rk, int64_t since_ms,
             rd_kafka_topic_partition_list_t **out, int64_t **ends,
             char *err, size_t errlen)
{
    rd_kafka_topic_t                *rkt;
    const struct rd_kafka_metadata  *md = NULL;
    rd_kafka_topic_partition_list_t *list, *assign;
    rd_kafka_resp_err_t              kerr;
    int                              count;

    rkt = rd_kafka_topic_new(rk, DELIVERED_TOPIC, NULL);
    kerr = rd_kafka_metadata(rk, 0, rkt, &md, RECALL_TIMEOUT_MS / 3);
    rd_kafka_topic_destroy(rkt);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 ||
        md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "metadata of %s: %s", DELIVERED_TOPIC,
                 rd_kafka_err2str(kerr != RD_KAFKA_RESP_ERR_NO_ERROR
                                      ? kerr
                                      : md->topics[0].err));
        if (md != NULL)
            rd_kafka_metadata_destroy(md);
        return -1;
    }
    count = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);

    list = rd_kafka_topic_partition_list_new(count);
    for (int p = 0; p < count; p++)
        rd_kafka_topic_partition_list_add(list, DELIVERED_TOPIC, p)->offset =
            since_ms;
    kerr = rd_kafka_offsets_for_times(rk, list, RECALL_TIMEOUT_MS / 3);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "offsets of %s by time: %s", DELIVERED_TOPIC,
                 rd_kafka_err2str(kerr));
        rd_kafka_topic_partition_list_destroy(list);
        return -1;
    }

    *ends = xcalloc((size_t)count, sizeof(**ends));
    assign = rd_kafka_topic_partition_list_new(count);
    for (int p = 0; p < count; p++) {
        rd_kafka_topic_partition_t *tp = &list->elems[p];
        int64_t                     low, high;

        kerr = rd_kafka_query_watermark_offsets(rk, DELIVERED_TOPIC, p,
                                                &low, &high,
                                                RECALL_TIMEOUT_MS / 3);
        if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR || tp->err != 0) {
            snprintf(err, errlen, "offsets of %s [%d]: %s", DELIVERED_TOPIC,
                     p, rd_kafka_err2str(kerr != RD_KAFKA_RESP_ERR_NO_ERROR
                                             ? kerr
                                             : tp->err));
            rd_kafka_topic_partition_list_destroy(list);
            rd_kafka_topic_partition_list_destroy(assign);
            return -1;
        }
        (*ends)[p] = high;

        /* No record at or after since_ms: the lookup gives the end (-1). */
        if (tp->offset < 0 || tp->offset >= high) {
            tp->offset = -1;
            continue;
        }
        if (tp->offset < low)
            tp->offset = low;
        rd_kafka_topic_partition_list_add(assign, DELIVERED_TOPIC, p)
            ->offset = tp->offset;
    }
    kerr = rd_kafka_assign(rk, assign);
    rd_kafka_topic_partition_list_destroy(assign);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "assigning %s: %s", DELIVERED_TOPIC,
                 rd_kafka_err2str(kerr));
        rd_kafka_topic_partition_list_destroy(list);
        return -1;
    }
    *out = list;
    return 0;
}


/*
 * Adds the envelope of a ferry.delivered record to the dedup set when it
 * came from one of the partitions at or after their committed offset.
 * Returns 1 when it did.
 */
static int
recall_take(struct deliver_source *src,
            const rd_kafka_topic_partition_list_t *committed,
            const rd_kafka_message_t *msg)
{
    const rd_kafka_topic_partition_t *tp;
    struct delivered                  rec;

    if (msg->payload == NULL ||
        delivered_decode(msg->payload, msg->len, &rec) == -1 ||
        strcmp(rec.source_topic, src->topic) != 0)
        return 0;
    tp = rd_kafka_topic_partition_list_find(
        (rd_kafka_topic_partition_list_t *)committed, src->topic,
        rec.source_partition);
    if (tp == NULL || (tp->offset >= 0 && rec.source_offset < tp->offset))
        return 0;
    dedup_add(src->d->delivered_ids, rec.envelope_id, rec.ses_message_id);
    dedup_mark_recorded(src->d->delivered_ids, rec.envelope_id);
    return 1;
}

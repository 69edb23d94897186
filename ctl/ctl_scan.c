#include "ctl_scan.h"

#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "util.h"

static struct ctl_scan_range *ctl_scan_find(struct ctl_scan_range *ranges,
                                            size_t count,
                                            const rd_kafka_message_t *msg);
static void ctl_scan_finish(rd_kafka_t *rk, struct ctl_scan_range *range);


int
ctl_scan_run(rd_kafka_t *rk, struct ctl_scan_range *ranges, size_t count,
             ctl_scan_fn *fn, ctl_scan_progress_fn *progress, void *opaque,
             int idle_timeout_ms, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *assignment;
    rd_kafka_resp_err_t              kerr;
    size_t                           open = 0;
    int64_t                          idle_since = util_monotonic_ms();
    int                              rc = -1;

    assignment = rd_kafka_topic_partition_list_new((int)count);
    for (size_t i = 0; i < count; i++) {
        struct ctl_scan_range *r = &ranges[i];

        r->next = r->start;
        r->done = r->start >= r->end;
        if (r->done)
            continue;
        rd_kafka_topic_partition_list_add(assignment, r->topic, r->partition)
            ->offset = r->start;
        open++;
    }
    if (open == 0) {
        rd_kafka_topic_partition_list_destroy(assignment);
        return 0;
    }
    kerr = rd_kafka_assign(rk, assignment);
    rd_kafka_topic_partition_list_destroy(assignment);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "assigning partitions: %s",
                 rd_kafka_err2str(kerr));
        return -1;
    }

    while (open > 0) {
        rd_kafka_message_t    *msg = rd_kafka_consumer_poll(rk, 200);
        struct ctl_scan_range *r;

        if (ctl_interrupted) {
            snprintf(err, errlen, "interrupted");
            goto out;
        }
        if (util_monotonic_ms() - idle_since > idle_timeout_ms) {
            snprintf(err, errlen, "no records from the broker for %d s; is "
                     "it reachable?", idle_timeout_ms / 1000);
            if (msg != NULL)
                rd_kafka_message_destroy(msg);
            goto out;
        }
        if (msg == NULL)
            continue;

        r = ctl_scan_find(ranges, count, msg);
        if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* Control records can leave the end short of the watermark. */
            if (r != NULL && !r->done) {
                ctl_scan_finish(rk, r);
                open--;
            }
        } else if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR &&
                   msg->rkt == NULL) {
            /*
             * A client-wide error such as a lost connection: librdkafka
             * retries by itself, and the idle timeout ends a lasting one.
             */
        } else if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "reading %s [%d]: %s",
                     msg->rkt != NULL ? rd_kafka_topic_name(msg->rkt) : "-",
                     (int)msg->partition, rd_kafka_message_errstr(msg));
            rd_kafka_message_destroy(msg);
            goto out;
        } else if (r != NULL && !r->done) {
            enum ctl_scan_verdict verdict = CTL_SCAN_CONTINUE;

            idle_since = util_monotonic_ms();
            if (msg->offset < r->end) {
                r->next = msg->offset + 1;
                verdict = fn(r, msg, opaque);
            }
            if (verdict == CTL_SCAN_STOP_ALL) {
                rd_kafka_message_destroy(msg);
                rc = 0;
                goto out;
            }
            if (verdict == CTL_SCAN_STOP_PARTITION || r->next >= r->end ||
                msg->offset >= r->end) {
                ctl_scan_finish(rk, r);
                open--;
            }
        }
        rd_kafka_message_destroy(msg);
        if (progress != NULL)
            progress(ranges, count, opaque);
    }
    rc = 0;

out:
    rd_kafka_assign(rk, NULL);
    return rc;
}


int
ctl_scan_watermarks(rd_kafka_t *rk, struct ctl_scan_range *ranges,
                    size_t count, char *err, size_t errlen)
{
    for (size_t i = 0; i < count; i++) {
        struct ctl_scan_range *r = &ranges[i];
        int64_t                low, high;
        rd_kafka_resp_err_t    kerr;

        kerr = rd_kafka_query_watermark_offsets(rk, r->topic, r->partition,
                                                &low, &high,
                                                CTL_REQUEST_TIMEOUT_MS);
        if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "watermarks of %s [%d]: %s", r->topic,
                     (int)r->partition, rd_kafka_err2str(kerr));
            return -1;
        }
        r->start = low;
        r->end = high;
    }
    return 0;
}


int
ctl_scan_seek_time(rd_kafka_t *rk, struct ctl_scan_range *ranges,
                   size_t count, int64_t ms, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_resp_err_t              kerr;
    int                              rc = -1;

    if (ctl_scan_watermarks(rk, ranges, count, err, errlen) == -1)
        return -1;

    list = rd_kafka_topic_partition_list_new((int)count);
    for (size_t i = 0; i < count; i++)
        rd_kafka_topic_partition_list_add(list, ranges[i].topic,
                                          ranges[i].partition)->offset = ms;
    kerr = rd_kafka_offsets_for_times(rk, list, CTL_REQUEST_TIMEOUT_MS);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "looking up offsets for a time: %s",
                 rd_kafka_err2str(kerr));
        goto out;
    }

    for (size_t i = 0; i < count; i++) {
        struct ctl_scan_range           *r = &ranges[i];
        const rd_kafka_topic_partition_t *tp;

        tp = rd_kafka_topic_partition_list_find(list, r->topic,
                                                r->partition);
        if (tp == NULL) {
            snprintf(err, errlen, "looking up offsets for a time: no "
                     "answer for %s [%d]", r->topic, (int)r->partition);
            goto out;
        }
        if (tp->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "looking up offsets for a time in %s "
                     "[%d]: %s", r->topic, (int)r->partition,
                     rd_kafka_err2str(tp->err));
            goto out;
        }

        /*
         * RD_KAFKA_OFFSET_END (-1) means no record at or after ms. Any
         * other logical offset is unexpected and also means nothing to
         * read, never "start from the end".
         */
        if (tp->offset < 0)
            r->start = r->end;
        else if (tp->offset > r->start)
            r->start = tp->offset < r->end ? tp->offset : r->end;
    }
    rc = 0;

out:
    rd_kafka_topic_partition_list_destroy(list);
    return rc;
}


const char *
ctl_scan_header(const rd_kafka_message_t *msg, const char *name, char *buf,
                size_t size)
{
    rd_kafka_headers_t *hdrs;
    const void         *value;
    size_t              len;

    if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    if (rd_kafka_header_get_last(hdrs, name, &value, &len) !=
            RD_KAFKA_RESP_ERR_NO_ERROR || value == NULL)
        return NULL;
    if (len >= size)
        len = size - 1;
    memcpy(buf, value, len);
    buf[len] = '\0';
    return buf;
}


static struct ctl_scan_range *
ctl_scan_find(struct ctl_scan_range *ranges, size_t count,
              const rd_kafka_message_t *msg)
{
    const char *topic;

    if (msg->rkt == NULL)
        return NULL;
    topic = rd_kafka_topic_name(msg->rkt);
    for (size_t i = 0; i < count; i++)
        if (ranges[i].partition == msg->partition &&
            strcmp(ranges[i].topic, topic) == 0)
            return &ranges[i];
    return NULL;
}


/* Marks a range done and pauses its partition so no more is fetched. */
static void
ctl_scan_finish(rd_kafka_t *rk, struct ctl_scan_range *range)
{
    rd_kafka_topic_partition_list_t *one;

    range->done = true;
    one = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(one, range->topic, range->partition);
    rd_kafka_pause_partitions(rk, one);
    rd_kafka_topic_partition_list_destroy(one);
}

/*
 * ctl_scan: reads bounded ranges of partitions with an assign()ed
 * consumer that never commits.
 *
 * Each range stops at its end offset, normally the high watermark taken
 * before the scan, so records produced while it runs are not read. The
 * callback can stop a partition early, at the first record past a time
 * window for example.
 */
#ifndef FERRY_CTL_SCAN_H
#define FERRY_CTL_SCAN_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ctl_scan_range {
    const char *topic;
    int32_t     partition;
    int64_t     start;          /* first offset to read */
    int64_t     end;            /* exclusive */
    bool        done;           /* set by the scan */
    int64_t     next;           /* offset after the last record read */
    void       *opaque;         /* for the callback */
};

enum ctl_scan_verdict {
    CTL_SCAN_CONTINUE,
    CTL_SCAN_STOP_PARTITION,
    CTL_SCAN_STOP_ALL
};

typedef enum ctl_scan_verdict ctl_scan_fn(struct ctl_scan_range *range,
                                          const rd_kafka_message_t *msg,
                                          void *opaque);

/* Called after each poll with the records read so far, for progress. */
typedef void ctl_scan_progress_fn(const struct ctl_scan_range *ranges,
                                  size_t count, void *opaque);

/*
 * Reads every range of ranges (count entries) on the consumer rk and
 * calls fn for each record. Returns 0, or -1 and fills err when the
 * consumer reported an error for a range, made no progress for
 * idle_timeout_ms, or SIGINT arrived.
 */
int ctl_scan_run(rd_kafka_t *rk, struct ctl_scan_range *ranges,
                 size_t count, ctl_scan_fn *fn,
                 ctl_scan_progress_fn *progress, void *opaque,
                 int idle_timeout_ms, char *err, size_t errlen);

/*
 * Sets start of every range to the first offset whose timestamp is at or
 * after ms (rd_kafka_offsets_for_times), and end to the high watermark.
 * A partition with no such record gets start = end, so nothing is read
 * there: the END (-1) result never becomes "read from the end". Every
 * partition's own error is checked. Returns -1 and fills err on failure.
 */
int ctl_scan_seek_time(rd_kafka_t *rk, struct ctl_scan_range *ranges,
                       size_t count, int64_t ms, char *err, size_t errlen);

/*
 * Sets end of every range to its high watermark and start to the low
 * one. Returns -1 and fills err when a watermark query failed.
 */
int ctl_scan_watermarks(rd_kafka_t *rk, struct ctl_scan_range *ranges,
                        size_t count, char *err, size_t errlen);

/* Returns the value of the last header called name, or NULL. */
const char *ctl_scan_header(const rd_kafka_message_t *msg, const char *name,
                            char *buf, size_t size);

#endif

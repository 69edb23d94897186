#include "group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliver.h"
#include "log.h"
#include "recall.h"
#include "schedule.h"
#include "util.h"

/*
 * Room for the done offsets in a commit's metadata, below the broker's
 * offset.metadata.max.bytes default of 4096.
 */
#define GROUP_DONE_METADATA_MAX 3072

/* Wait for the committed offsets of newly assigned partitions. */
#define GROUP_COMMITTED_TIMEOUT_MS 10000

static void group_assign(struct deliver_source *src,
                         rd_kafka_topic_partition_list_t *parts);
static void group_release(struct deliver_source *src,
                          rd_kafka_topic_partition_list_t *parts,
                          int lost);
static void group_commit_source(struct deliver_source *src, int sync,
                                int only_revoking);
static int64_t group_grace_ms(const struct deliver *d);


/* Logs failed commits and lets the next round commit those again. */
void
group_on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    struct deliver_source *src = opaque;

    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET || offsets == NULL)
        return;
    for (int i = 0; i < offsets->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &offsets->elems[i];
        struct deliver_partition   *part = group_find(src, tp->partition);
        rd_kafka_resp_err_t         perr = tp->err ? tp->err : err;

        if (perr == RD_KAFKA_RESP_ERR_NO_ERROR) {
            log_debug(NULL, "committed", "topic=%s partition=%d offset=%lld",
                      tp->topic, (int)tp->partition, (long long)tp->offset);
            continue;
        }
        if (part != NULL)
            part->committed = -1;

        /* After a rebalance a commit of a lost partition fails; it is moot. */
        log_write(part != NULL ? LOG_LEVEL_WARN : LOG_LEVEL_INFO, NULL,
                  "commit-failed", "topic=%s partition=%d offset=%lld "
                  "owned=%s reason=%s", tp->topic, (int)tp->partition,
                  (long long)tp->offset, part != NULL ? "yes" : "no",
                  rd_kafka_err2name(perr));
    }
}


/*
 * Handles both rebalance protocols: range and roundrobin (eager, the
 * default) revoke everything at once; cooperative-sticky hands over only
 * the partitions that move.
 */
void
group_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                   rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct deliver_source *src = opaque;
    int                    cooperative =
        strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t      *error = NULL;

    switch (err) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        group_assign(src, parts);
        if (cooperative)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            rd_kafka_assign(rk, parts);
        break;

    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        group_release(src, parts, rd_kafka_assignment_lost(rk));
        if (cooperative)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            rd_kafka_assign(rk, NULL);
        break;

    default:
        log_error(NULL, "rebalance-failed", "topic=%s group=%s reason=%s",
                  src->topic, src->group, rd_kafka_err2str(err));
        group_release(src, parts, 1);
        rd_kafka_assign(rk, NULL);
        break;
    }
    if (error != NULL) {
        log_error(NULL, "rebalance-failed", "topic=%s group=%s reason=%s",
                  src->topic, src->group, rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}


/*
 * Creates the state of newly assigned partitions and loads, from the
 * metadata of their committed offsets, the offsets after the committed
 * one that an earlier owner already finished.
 */
static void
group_assign(struct deliver_source *src,
             rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *committed;
    rd_kafka_resp_err_t              err;

    committed = rd_kafka_topic_partition_list_copy(parts);
    err = rd_kafka_committed(src->rk, committed,
                             GROUP_COMMITTED_TIMEOUT_MS);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        log_warn(NULL, "committed-failed", "topic=%s group=%s reason=%s "
                 "effect=\"messages finished after the committed offset "
                 "are sent again\"", src->topic, src->group,
                 rd_kafka_err2name(err));

    for (int i = 0; i < committed->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &committed->elems[i];
        struct deliver_partition   *part;

        if (group_find(src, tp->partition) != NULL)
            continue;
        part = xcalloc(1, sizeof(*part));
        part->src = src;
        part->partition = tp->partition;
        part->committed = -1;
        window_init(&part->window);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && tp->err == 0 &&
            window_load_done(&part->window, tp->metadata,
                             tp->metadata_size) == -1)
            log_warn(NULL, "committed-metadata-invalid", "topic=%s "
                     "partition=%d reason=\"not a ferry-done list\"",
                     src->topic, (int)tp->partition);
        part->next = src->parts;
        src->parts = part;
        log_info(NULL, "assigned", "topic=%s partition=%d group=%s "
                 "committed=%lld done_ranges=%zu", src->topic,
                 (int)part->partition, src->group, (long long)tp->offset,
                 part->window.ndone_before);
    }

    /* Without known commits, every record of the window is recalled. */
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        for (int i = 0; i < committed->cnt; i++)
            committed->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
    recall_delivered(src, committed);
    rd_kafka_topic_partition_list_destroy(committed);
}


/*
 * Hands partitions over. It stops fetching them, lets their requests in
 * flight end within the grace period and commits what is done, unless the
 * partitions were lost. The next owner consumes the rest again from the
 * committed offset.
 */
static void
group_release(struct deliver_source *src,
              rd_kafka_topic_partition_list_t *parts, int lost)
{
    struct deliver *d = src->d;
    int64_t         deadline = util_monotonic_ms() + group_grace_ms(d);
    int             marked = 0;

    for (int i = 0; i < parts->cnt; i++) {
        struct deliver_partition *part =
            group_find(src, parts->elems[i].partition);

        if (part != NULL) {
            part->revoking = 1;
            group_set_paused(part, 1);
            marked++;
        }
    }
    if (marked == 0)
        return;

    while (!lost && schedule_busy(d, 1) &&
           util_monotonic_ms() < deadline) {
        ses_client_run(d->ses, -1, 50);
        rd_kafka_poll(d->producer, 0);
        schedule_retry_produces(d, 1);
    }
    if (!lost)
        group_commit_source(src, 1, 1);

    for (struct deliver_partition **pp = &src->parts; *pp != NULL;) {
        struct deliver_partition *part = *pp;
        int64_t                   offset;
        size_t                    dropped = 0;

        if (!part->revoking) {
            pp = &part->next;
            continue;
        }
        *pp = part->next;
        offset = window_commit_offset(&part->window);
        while (part->head != NULL) {
            outbound_drop(part->head);
            dropped++;
        }

        /*
         * librdkafka 2.0.2 keeps an application pause across unassign, so
         * a partition assigned here again later would never be fetched.
         */
        group_set_paused(part, 0);
        log_info(NULL, "revoked", "topic=%s partition=%d group=%s "
                 "committed=%lld dropped=%zu lost=%s", src->topic,
                 (int)part->partition, src->group, (long long)offset,
                 dropped, lost ? "yes" : "no");
        group_free_partition(part);
    }
}


struct deliver_partition *
group_find(struct deliver_source *src, int32_t partition)
{
    for (struct deliver_partition *part = src->parts; part != NULL;
         part = part->next)
        if (part->partition == partition)
            return part;
    return NULL;
}


void
group_free_partition(struct deliver_partition *part)
{
    window_fini(&part->window);
    free(part->committed_done);
    free(part);
}


/*
 * Pauses or resumes fetching. On resume it seeks to the offset after the
 * last one consumed, so records dropped from the fetch queue by the pause
 * are fetched again and none is skipped.
 */
void
group_set_paused(struct deliver_partition *part, int paused)
{
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_resp_err_t              err;
    rd_kafka_error_t                *error;

    if (part->paused == paused)
        return;
    list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, part->src->topic,
                                      part->partition);
    if (paused)
        err = rd_kafka_pause_partitions(part->src->rk, list);
    else
        err = rd_kafka_resume_partitions(part->src->rk, list);

    if (err == RD_KAFKA_RESP_ERR_NO_ERROR && !paused && !part->revoking &&
        part->window.next_offset >= 0) {
        list->elems[0].offset = part->window.next_offset;
        error = rd_kafka_seek_partitions(part->src->rk, list, 0);
        if (error != NULL) {
            log_warn(NULL, "seek-failed", "topic=%s partition=%d "
                     "offset=%lld reason=\"%s\"", part->src->topic,
                     (int)part->partition,
                     (long long)part->window.next_offset,
                     rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        }
    }
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        part->paused = paused;
    else
        log_warn(NULL, paused ? "pause-failed" : "resume-failed",
                 "topic=%s partition=%d reason=%s", part->src->topic,
                 (int)part->partition, rd_kafka_err2name(err));
    log_debug(NULL, paused ? "paused" : "resumed", "topic=%s partition=%d",
              part->src->topic, (int)part->partition);
    rd_kafka_topic_partition_list_destroy(list);
}


void
group_commit(struct deliver *d, int sync)
{
    for (size_t s = 0; s < d->nsources; s++)
        group_commit_source(&d->sources[s], sync, 0);
}


/*
 * Commits, per partition, the first offset whose message is not done,
 * with the done offsets after it as metadata. Partitions where neither
 * changed since the last commit are left out.
 */
static void
group_commit_source(struct deliver_source *src, int sync,
                    int only_revoking)
{
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_resp_err_t              err;
    char                             done[GROUP_DONE_METADATA_MAX];

    list = rd_kafka_topic_partition_list_new(8);
    for (struct deliver_partition *part = src->parts; part != NULL;
         part = part->next) {
        int64_t                     offset;
        size_t                      left_out;
        rd_kafka_topic_partition_t *tp;

        if (only_revoking && !part->revoking)
            continue;
        left_out = window_format_done(&part->window, done, sizeof(done));
        offset = window_commit_offset(&part->window);
        if (offset < 0 || (offset == part->committed &&
                           part->committed_done != NULL &&
                           strcmp(done, part->committed_done) == 0))
            continue;
        if (left_out > 0)
            log_warn(NULL, "commit-metadata-full", "topic=%s partition=%d "
                     "offset=%lld left_out=%zu effect=\"a next owner sends "
                     "those messages again\"", src->topic,
                     (int)part->partition, (long long)offset, left_out);

        /* The list frees metadata with free() when it is destroyed. */
        tp = rd_kafka_topic_partition_list_add(list, src->topic,
                                               part->partition);
        tp->offset = offset;
        tp->metadata = xstrdup(done);
        tp->metadata_size = strlen(done);
        part->committed = offset;
        free(part->committed_done);
        part->committed_done = xstrdup(done);
    }
    /* Per-partition results of both kinds reach group_on_commit(). */
    if (list->cnt > 0 &&
        (err = rd_kafka_commit(src->rk, list, !sync)) !=
            RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < list->cnt; i++) {
            struct deliver_partition *part =
                group_find(src, list->elems[i].partition);

            if (part != NULL)
                part->committed = -1;
        }
        log_write(only_revoking ? LOG_LEVEL_INFO : LOG_LEVEL_WARN, NULL,
                  "commit-failed", "topic=%s partitions=%d reason=%s",
                  src->topic, list->cnt, rd_kafka_err2name(err));
    }
    rd_kafka_topic_partition_list_destroy(list);
}


static int64_t
group_grace_ms(const struct deliver *d)
{
    return d->cfg->deliver_request_timeout_ms + 5000;
}

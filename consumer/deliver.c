#include "deliver.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "kafka.h"
#include "log.h"
#include "util.h"

/* Time between commits of the offsets done since the last one. */
#define DELIVER_COMMIT_INTERVAL_MS 1000

/* Maximum wait in one loop turn, so every handle is polled often. */
#define DELIVER_MAX_WAIT_MS 200

/* Records taken from one consumer in one loop turn. */
#define DELIVER_CONSUME_BATCH 256

/*
 * Room for the done offsets in a commit's metadata, below the broker's
 * offset.metadata.max.bytes default of 4096.
 */
#define DELIVER_DONE_METADATA_MAX 3072

/* Wait for the committed offsets of newly assigned partitions. */
#define DELIVER_COMMITTED_TIMEOUT_MS 10000

/* Time left for delivery reports after the consumers closed. */
#define DELIVER_FLUSH_MS 10000

/*
 * Envelope ids delivered by this process that are remembered, so that a
 * record consumed again after a lost offset commit is not sent again.
 * dedup.h gives the memory this costs: about 5 MB for 100000 ids.
 */
#define DELIVER_DEDUP_MAX 100000

/*
 * Consumer settings a deployment may override in kafka.properties.
 * librdkafka 2.0.2's defaults are 45 s and 300 s: a shorter session lets
 * a dead worker's partitions move sooner, and the poll interval stays far
 * above the longest wait of the loop, so backoff never ends membership.
 */
static const char *const deliver_consumer_defaults[][2] = {
    { "session.timeout.ms", "30000" },
    { "heartbeat.interval.ms", "3000" },
    { "max.poll.interval.ms", "300000" },
};

/* Consumer settings the commit logic depends on; always forced. */
static const char *const deliver_consumer_forced[][2] = {
    { "enable.auto.commit", "false" },
    { "enable.auto.offset.store", "false" },
    { "auto.offset.reset", "earliest" },
    { "enable.partition.eof", "false" },
};

static int deliver_user_sets(const struct config *cfg, const char *name);
static rd_kafka_t *deliver_new_producer(struct deliver *d, char *err,
                                        size_t errlen);
static int deliver_new_consumer(struct deliver *d,
                                struct deliver_source *src,
                                const char *topic, char *err, size_t errlen);
static void deliver_watch_queue(struct deliver *d, rd_kafka_queue_t *q);
static void deliver_on_log(const rd_kafka_t *rk, int level,
                           const char *facility, const char *message);
static void deliver_on_error(rd_kafka_t *rk, int err, const char *reason,
                             void *opaque);
static void deliver_on_delivery(rd_kafka_t *rk,
                                const rd_kafka_message_t *msg, void *opaque);
static void deliver_on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                              rd_kafka_topic_partition_list_t *offsets,
                              void *opaque);
static void deliver_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                 rd_kafka_topic_partition_list_t *parts,
                                 void *opaque);
static void deliver_assign(struct deliver_source *src,
                           rd_kafka_topic_partition_list_t *parts);
static void deliver_release(struct deliver_source *src,
                            rd_kafka_topic_partition_list_t *parts,
                            int lost);
static struct deliver_partition *deliver_find(struct deliver_source *src,
                                              int32_t partition);
static void deliver_free_partition(struct deliver_partition *part);
static void deliver_consume(struct deliver_source *src);
static void deliver_take(struct deliver_source *src,
                         const rd_kafka_message_t *msg);
static void deliver_schedule(struct deliver *d);
static void deliver_retry_produces(struct deliver *d, int only_revoking);
static struct outbound *deliver_oldest_waiting(struct deliver *d);
static int deliver_wait_ms(struct deliver *d);
static void deliver_update_pauses(struct deliver *d);
static void deliver_set_paused(struct deliver_partition *part, int paused);
static int deliver_has_state(const struct deliver_partition *part,
                             enum outbound_state state);
static void deliver_commit(struct deliver *d, int sync);
static void deliver_commit_source(struct deliver_source *src, int sync,
                                  int only_revoking);
static int deliver_busy(const struct deliver *d, int only_revoking);
static void deliver_serve(struct deliver *d, int timeout_ms);
static void deliver_drain_wake(struct deliver *d);
static int64_t deliver_grace_ms(const struct deliver *d);


int
deliver_check(const struct config *cfg, const char *region, char *err,
              size_t errlen)
{
    rd_kafka_conf_t *conf;

    if (region == NULL || region[0] == '\0')
        region = cfg->deliver_region;
    if (region == NULL || region[0] == '\0') {
        snprintf(err, errlen, "%s: key 'deliver.region' is missing; set it "
                 "or pass --region", cfg->path);
        return -1;
    }
    if (config_region(cfg, region) == NULL) {
        snprintf(err, errlen, "%s: region '%s' is not listed under "
                 "'regions'", cfg->path, region);
        return -1;
    }
    if (strlen(region) > 40) {
        snprintf(err, errlen, "%s: region name '%s' is longer than 40 "
                 "characters", cfg->path, region);
        return -1;
    }
    if ((conf = kafka_conf_new(cfg, err, errlen)) == NULL)
        return -1;
    rd_kafka_conf_destroy(conf);
    return 0;
}


struct deliver *
deliver_new(const struct config *cfg, const char *region,
            const struct ses_credentials *creds, char *err, size_t errlen)
{
    struct deliver           *d = xcalloc(1, sizeof(*d));
    const struct region      *reg;
    struct ses_client_options opts;

    d->cfg = cfg;
    d->wake[0] = d->wake[1] = -1;
    if (region == NULL || region[0] == '\0')
        region = cfg->deliver_region;
    snprintf(d->region, sizeof(d->region), "%s", region);
    snprintf(d->dead_topic, sizeof(d->dead_topic), "mail.%s.dead", region);
    reg = config_region(cfg, d->region);
    d->delivered_ids = dedup_new(DELIVER_DEDUP_MAX);
    srandom((unsigned)(util_now_ms() ^ getpid()));

    if (pipe2(d->wake, O_NONBLOCK | O_CLOEXEC) == -1) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto fail;
    }

    opts = (struct ses_client_options){
        d->region, reg->ses_endpoint, creds, cfg->deliver_request_timeout_ms,
        cfg->deliver_max_in_flight, outbound_on_ses
    };
    if ((d->ses = ses_client_new(&opts, err, errlen)) == NULL)
        goto fail;
    if ((d->producer = deliver_new_producer(d, err, errlen)) == NULL)
        goto fail;
    if (deliver_new_consumer(d, &d->sources[0], "", err, errlen) == -1 ||
        deliver_new_consumer(d, &d->sources[1], ".pinned", err,
                             errlen) == -1)
        goto fail;
    return d;

fail:
    deliver_free(d);
    return NULL;
}


/* True when kafka.properties names this property. */
static int
deliver_user_sets(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nkafka_properties; i++)
        if (strcmp(cfg->kafka_properties[i].name, name) == 0)
            return 1;
    return 0;
}


/* The idempotent, acks=all producer of ferry.delivered and mail.R.dead. */
static rd_kafka_t *
deliver_new_producer(struct deliver *d, char *err, size_t errlen)
{
    rd_kafka_conf_t  *conf = kafka_conf_new(d->cfg, err, errlen);
    rd_kafka_t       *rk;
    rd_kafka_queue_t *q;
    char              errstr[512];

    if (conf == NULL)
        return NULL;
    if (kafka_conf_set(conf, "enable.idempotence", "true", err,
                       errlen) == -1 ||
        kafka_conf_set(conf, "acks", "all", err, errlen) == -1) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, d);
    rd_kafka_conf_set_dr_msg_cb(conf, deliver_on_delivery);
    rd_kafka_conf_set_error_cb(conf, deliver_on_error);
    rd_kafka_conf_set_log_cb(conf, deliver_on_log);

    /* rd_kafka_new() owns conf from here on, also when it fails. */
    if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr,
                           sizeof(errstr))) == NULL) {
        snprintf(err, errlen, "cannot create the Kafka producer: %s",
                 errstr);
        return NULL;
    }
    q = rd_kafka_queue_get_main(rk);
    deliver_watch_queue(d, q);
    rd_kafka_queue_destroy(q);
    return rk;
}


/* One consumer of mail.R<suffix> in group ferry-deliver.R<suffix>. */
static int
deliver_new_consumer(struct deliver *d, struct deliver_source *src,
                     const char *suffix, char *err, size_t errlen)
{
    rd_kafka_conf_t                 *conf;
    rd_kafka_topic_partition_list_t *topics = NULL;
    rd_kafka_queue_t                *q;
    rd_kafka_resp_err_t              kerr;
    char                             errstr[512];

    src->d = d;
    snprintf(src->topic, sizeof(src->topic), "mail.%s%s", d->region,
             suffix);
    snprintf(src->group, sizeof(src->group), "ferry-deliver.%s%s",
             d->region, suffix);

    if ((conf = kafka_conf_new(d->cfg, err, errlen)) == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(deliver_consumer_defaults) /
                           sizeof(*deliver_consumer_defaults); i++) {
        if (deliver_user_sets(d->cfg, deliver_consumer_defaults[i][0]))
            continue;
        if (kafka_conf_set(conf, deliver_consumer_defaults[i][0],
                           deliver_consumer_defaults[i][1], err,
                           errlen) == -1)
            goto fail;
    }
    for (size_t i = 0; i < sizeof(deliver_consumer_forced) /
                           sizeof(*deliver_consumer_forced); i++)
        if (kafka_conf_set(conf, deliver_consumer_forced[i][0],
                           deliver_consumer_forced[i][1], err,
                           errlen) == -1)
            goto fail;
    if (kafka_conf_set(conf, "group.id", src->group, err, errlen) == -1)
        goto fail;
    rd_kafka_conf_set_opaque(conf, src);
    rd_kafka_conf_set_rebalance_cb(conf, deliver_on_rebalance);
    rd_kafka_conf_set_offset_commit_cb(conf, deliver_on_commit);
    rd_kafka_conf_set_error_cb(conf, deliver_on_error);
    rd_kafka_conf_set_log_cb(conf, deliver_on_log);

    src->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr,
                           sizeof(errstr));
    conf = NULL;
    if (src->rk == NULL) {
        snprintf(err, errlen, "cannot create the Kafka consumer of %s: %s",
                 src->topic, errstr);
        return -1;
    }
    rd_kafka_poll_set_consumer(src->rk);
    q = rd_kafka_queue_get_consumer(src->rk);
    deliver_watch_queue(d, q);
    rd_kafka_queue_destroy(q);

    topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, src->topic,
                                      RD_KAFKA_PARTITION_UA);
    kerr = rd_kafka_subscribe(src->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "cannot subscribe to %s: %s", src->topic,
                 rd_kafka_err2str(kerr));
        return -1;
    }
    return 0;

fail:
    rd_kafka_conf_destroy(conf);
    return -1;
}


/* Makes librdkafka write to the wake pipe when q gets an event. */
static void
deliver_watch_queue(struct deliver *d, rd_kafka_queue_t *q)
{
    rd_kafka_queue_io_event_enable(q, d->wake[1], "1", 1);
}


static void
deliver_on_log(const rd_kafka_t *rk, int level, const char *facility,
               const char *message)
{
    enum log_level lvl = level <= LOG_ERR       ? LOG_LEVEL_ERROR
                         : level == LOG_WARNING ? LOG_LEVEL_WARN
                         : level <= LOG_INFO    ? LOG_LEVEL_INFO
                                                : LOG_LEVEL_DEBUG;
    char           quoted[1024];

    log_write(lvl, NULL, "kafka", "client=%s facility=%s message=%s",
              rd_kafka_name(rk), facility,
              log_quote(quoted, sizeof(quoted), message));
}


static void
deliver_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    char quoted[1024];
    char fatal[512];

    log_quote(quoted, sizeof(quoted), reason);
    if (err != RD_KAFKA_RESP_ERR__FATAL) {
        log_warn(NULL, "kafka-error", "client=%s error=%s reason=%s",
                 rd_kafka_name(rk), rd_kafka_err2name(err), quoted);
        return;
    }

    /* The producer's opaque is the worker, a consumer's its source. */
    rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
    log_error(NULL, "kafka-fatal", "client=%s reason=%s", rd_kafka_name(rk),
              log_quote(quoted, sizeof(quoted), fatal));
    if (rd_kafka_type(rk) == RD_KAFKA_PRODUCER)
        ((struct deliver *)opaque)->fatal = 1;
    else
        ((struct deliver_source *)opaque)->d->fatal = 1;
}


static void
deliver_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg,
                    void *opaque)
{
    outbound_on_produced(msg->_private, msg->err);
}


/* Logs failed commits and lets the next round commit those again. */
static void
deliver_on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                  rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    struct deliver_source *src = opaque;

    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET || offsets == NULL)
        return;
    for (int i = 0; i < offsets->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &offsets->elems[i];
        struct deliver_partition   *part = deliver_find(src, tp->partition);
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
static void
deliver_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                     rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct deliver_source *src = opaque;
    int                    cooperative =
        strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t      *error = NULL;

    switch (err) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        deliver_assign(src, parts);
        if (cooperative)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            rd_kafka_assign(rk, parts);
        break;

    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        deliver_release(src, parts, rd_kafka_assignment_lost(rk));
        if (cooperative)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            rd_kafka_assign(rk, NULL);
        break;

    default:
        log_error(NULL, "rebalance-failed", "topic=%s group=%s reason=%s",
                  src->topic, src->group, rd_kafka_err2str(err));
        deliver_release(src, parts, 1);
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
deliver_assign(struct deliver_source *src,
               rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *committed;
    rd_kafka_resp_err_t              err;

    committed = rd_kafka_topic_partition_list_copy(parts);
    err = rd_kafka_committed(src->rk, committed,
                             DELIVER_COMMITTED_TIMEOUT_MS);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        log_warn(NULL, "committed-failed", "topic=%s group=%s reason=%s "
                 "effect=\"messages finished after the committed offset "
                 "are sent again\"", src->topic, src->group,
                 rd_kafka_err2name(err));

    for (int i = 0; i < committed->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &committed->elems[i];
        struct deliver_partition   *part;

        if (deliver_find(src, tp->partition) != NULL)
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
    rd_kafka_topic_partition_list_destroy(committed);
}


/*
 * Hands partitions over. It stops fetching them, lets their requests in
 * flight end within the grace period and commits what is done, unless the
 * partitions were lost. The next owner consumes the rest again from the
 * committed offset.
 */
static void
deliver_release(struct deliver_source *src,
                rd_kafka_topic_partition_list_t *parts, int lost)
{
    struct deliver *d = src->d;
    int64_t         deadline = util_monotonic_ms() + deliver_grace_ms(d);
    int             marked = 0;

    for (int i = 0; i < parts->cnt; i++) {
        struct deliver_partition *part =
            deliver_find(src, parts->elems[i].partition);

        if (part != NULL) {
            part->revoking = 1;
            deliver_set_paused(part, 1);
            marked++;
        }
    }
    if (marked == 0)
        return;

    while (!lost && deliver_busy(d, 1) &&
           util_monotonic_ms() < deadline) {
        ses_client_run(d->ses, -1, 50);
        rd_kafka_poll(d->producer, 0);
        deliver_retry_produces(d, 1);
    }
    if (!lost)
        deliver_commit_source(src, 1, 1);

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
        deliver_set_paused(part, 0);
        log_info(NULL, "revoked", "topic=%s partition=%d group=%s "
                 "committed=%lld dropped=%zu lost=%s", src->topic,
                 (int)part->partition, src->group, (long long)offset,
                 dropped, lost ? "yes" : "no");
        deliver_free_partition(part);
    }
}


static struct deliver_partition *
deliver_find(struct deliver_source *src, int32_t partition)
{
    for (struct deliver_partition *part = src->parts; part != NULL;
         part = part->next)
        if (part->partition == partition)
            return part;
    return NULL;
}


static void
deliver_free_partition(struct deliver_partition *part)
{
    window_fini(&part->window);
    free(part->committed_done);
    free(part);
}


int
deliver_run(struct deliver *d, volatile sig_atomic_t *stop)
{
    log_info(NULL, "started", "region=%s topics=%s,%s dead=%s "
             "max_in_flight=%lld", d->region, d->sources[0].topic,
             d->sources[1].topic, d->dead_topic,
             (long long)d->cfg->deliver_max_in_flight);

    while (!*stop && !d->fatal) {
        deliver_serve(d, deliver_wait_ms(d));
        deliver_schedule(d);
        deliver_update_pauses(d);
        if (util_monotonic_ms() >= d->next_commit_ms) {
            deliver_commit(d, 0);
            d->next_commit_ms = util_monotonic_ms() +
                                DELIVER_COMMIT_INTERVAL_MS;
        }
    }
    return d->fatal ? -1 : 0;
}


/* Waits for events, then serves SES, the producer and both consumers. */
static void
deliver_serve(struct deliver *d, int timeout_ms)
{
    if (ses_client_run(d->ses, d->wake[0], timeout_ms) == -1)
        log_error(NULL, "http-failed", "region=%s reason=\"libcurl multi "
                  "interface failed\"", d->region);
    deliver_drain_wake(d);
    rd_kafka_poll(d->producer, 0);
    deliver_consume(&d->sources[0]);
    deliver_consume(&d->sources[1]);
}


static void
deliver_drain_wake(struct deliver *d)
{
    char buf[256];

    while (read(d->wake[0], buf, sizeof(buf)) > 0)
        continue;
}


/*
 * Takes what the consumer has without waiting. Polling also serves the
 * rebalance and commit callbacks and keeps the group membership alive
 * while partitions are paused.
 */
static void
deliver_consume(struct deliver_source *src)
{
    for (int i = 0; i < DELIVER_CONSUME_BATCH; i++) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(src->rk, 0);

        if (msg == NULL)
            return;
        if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR)
            log_warn(NULL, "consume-error", "topic=%s partition=%d "
                     "reason=\"%s\"", src->topic, (int)msg->partition,
                     rd_kafka_message_errstr(msg));
        else
            deliver_take(src, msg);
        rd_kafka_message_destroy(msg);
    }
}


static void
deliver_take(struct deliver_source *src, const rd_kafka_message_t *msg)
{
    struct deliver_partition *part = deliver_find(src, msg->partition);

    if (part == NULL || part->revoking) {
        log_debug(NULL, "skipped", "topic=%s partition=%d offset=%lld "
                  "reason=\"partition not assigned\"", src->topic,
                  (int)msg->partition, (long long)msg->offset);
        return;
    }

    /* A fetch restarted by a pause or seek may repeat offsets. */
    switch (window_push(&part->window, msg->offset)) {
    case -1:
        log_debug(NULL, "skipped", "topic=%s partition=%d offset=%lld "
                  "reason=\"already consumed\"", src->topic,
                  (int)msg->partition, (long long)msg->offset);
        break;
    case 1:
        log_info(NULL, "skipped", "topic=%s partition=%d offset=%lld "
                 "reason=\"done by the previous owner\"", src->topic,
                 (int)msg->partition, (long long)msg->offset);
        break;
    default:
        outbound_consume(part, msg);
        break;
    }
}


/*
 * Starts what is due: outcome records to produce again, then SendEmail
 * for waiting messages while slots are free and the region may be used.
 */
static void
deliver_schedule(struct deliver *d)
{
    int64_t          now = util_monotonic_ms();
    size_t           max = (size_t)d->cfg->deliver_max_in_flight;
    struct outbound *probe;

    deliver_retry_produces(d, 0);
    if (d->stopping)
        return;

    /* While stopped, one message at a time tests whether SES is back. */
    if (d->region_stopped) {
        if (now < d->next_probe_ms || ses_client_in_flight(d->ses) > 0)
            return;
        if ((probe = deliver_oldest_waiting(d)) != NULL) {
            d->next_probe_ms = now + d->cfg->deliver_retry_max_ms;
            outbound_send(probe);
        }
        return;
    }
    if (now < d->hold_until_ms)
        return;

    for (int s = 0; s < 2; s++) {
        struct deliver_source *src = &d->sources[s];

        for (struct deliver_partition *part = src->parts; part != NULL;
             part = part->next) {
            for (struct outbound *ob = part->head, *next; ob != NULL;
                 ob = next) {
                next = ob->next;
                if (ses_client_in_flight(d->ses) >= max)
                    return;
                if (ob->state == OUTBOUND_READY ||
                    (ob->state == OUTBOUND_BACKOFF &&
                     now >= ob->next_attempt_ms))
                    outbound_send(ob);
            }
        }

        /* Rotate the partitions so none is always served first. */
        if (src->parts != NULL && src->parts->next != NULL) {
            struct deliver_partition *first = src->parts, *last = first;

            while (last->next != NULL)
                last = last->next;
            src->parts = first->next;
            first->next = NULL;
            last->next = first;
        }
    }
}


/*
 * Produces again the outcome records whose delivery report failed, once
 * their backoff passed, or at once when the partition is being revoked.
 */
static void
deliver_retry_produces(struct deliver *d, int only_revoking)
{
    int64_t now = util_monotonic_ms();

    for (int s = 0; s < 2; s++) {
        for (struct deliver_partition *part = d->sources[s].parts;
             part != NULL; part = part->next) {
            if (only_revoking && !part->revoking)
                continue;
            for (struct outbound *ob = part->head, *next; ob != NULL;
                 ob = next) {
                next = ob->next;
                if ((ob->state == OUTBOUND_RECORDING ||
                     ob->state == OUTBOUND_DEAD_LETTERING) &&
                    ob->produce_failed && ob->pending == 0 &&
                    (part->revoking || now >= ob->next_attempt_ms))
                    outbound_retry_produce(ob);
            }
        }
    }
}


/* Returns the message waiting longest for SES, or NULL. */
static struct outbound *
deliver_oldest_waiting(struct deliver *d)
{
    struct outbound *best = NULL;

    for (int s = 0; s < 2; s++) {
        for (struct deliver_partition *part = d->sources[s].parts;
             part != NULL; part = part->next) {
            for (struct outbound *ob = part->head; ob != NULL;
                 ob = ob->next) {
                if ((ob->state == OUTBOUND_READY ||
                     ob->state == OUTBOUND_BACKOFF) && !part->revoking &&
                    ob->env != NULL &&
                    (best == NULL ||
                     ob->env->received_at_ms < best->env->received_at_ms))
                    best = ob;
                if (ob->state == OUTBOUND_READY ||
                    ob->state == OUTBOUND_BACKOFF)
                    break;      /* later ones in the partition are newer */
            }
        }
    }
    return best;
}


/* Returns how long the loop may wait before something is due. */
static int
deliver_wait_ms(struct deliver *d)
{
    int64_t now = util_monotonic_ms();
    int64_t due = now + DELIVER_MAX_WAIT_MS;
    int     can_send = ses_client_in_flight(d->ses) <
                           (size_t)d->cfg->deliver_max_in_flight &&
                       !d->region_stopped && !d->stopping;

    if (d->next_commit_ms < due)
        due = d->next_commit_ms;
    if (d->region_stopped && !d->stopping &&
        ses_client_in_flight(d->ses) == 0 && d->next_probe_ms < due)
        due = d->next_probe_ms;
    for (int s = 0; s < 2; s++) {
        for (struct deliver_partition *part = d->sources[s].parts;
             part != NULL; part = part->next) {
            for (struct outbound *ob = part->head; ob != NULL;
                 ob = ob->next) {
                int64_t at = -1;

                if ((ob->state == OUTBOUND_READY ||
                     ob->state == OUTBOUND_BACKOFF) && can_send) {
                    at = ob->state == OUTBOUND_READY ? now
                                                     : ob->next_attempt_ms;
                    if (at < d->hold_until_ms)
                        at = d->hold_until_ms;
                } else if (ob->produce_failed && ob->pending == 0) {
                    at = ob->next_attempt_ms;
                }
                if (at >= 0 && at < due)
                    due = at;
            }
        }
    }
    return due <= now ? 0 : (int)(due - now);
}


/*
 * Pauses a partition while one of its messages waits for a retry, while
 * the region is stopped, during shutdown, or while the worker has too
 * many messages in progress. A partition still collecting chunks is never
 * paused for the last reason, because its next records are what it waits
 * for.
 */
static void
deliver_update_pauses(struct deliver *d)
{
    size_t low = (size_t)d->cfg->deliver_max_in_flight;

    if (!d->flow_paused && d->in_progress >= 2 * low)
        d->flow_paused = 1;
    else if (d->flow_paused && d->in_progress <= low)
        d->flow_paused = 0;

    for (int s = 0; s < 2; s++) {
        for (struct deliver_partition *part = d->sources[s].parts;
             part != NULL; part = part->next) {
            int collecting = deliver_has_state(part, OUTBOUND_COLLECTING);
            int want = d->stopping || d->region_stopped ||
                       part->revoking ||
                       deliver_has_state(part, OUTBOUND_BACKOFF) ||
                       (d->flow_paused && !collecting);

            deliver_set_paused(part, want);
        }
    }
}


static int
deliver_has_state(const struct deliver_partition *part,
                  enum outbound_state state)
{
    for (const struct outbound *ob = part->head; ob != NULL; ob = ob->next)
        if (ob->state == state)
            return 1;
    return 0;
}


/*
 * Pauses or resumes fetching. On resume it seeks to the offset after the
 * last one consumed, so records dropped from the fetch queue by the pause
 * are fetched again and none is skipped.
 */
static void
deliver_set_paused(struct deliver_partition *part, int paused)
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


static void
deliver_commit(struct deliver *d, int sync)
{
    deliver_commit_source(&d->sources[0], sync, 0);
    deliver_commit_source(&d->sources[1], sync, 0);
}


/*
 * Commits, per partition, the first offset whose message is not done,
 * with the done offsets after it as metadata. Partitions where neither
 * changed since the last commit are left out.
 */
static void
deliver_commit_source(struct deliver_source *src, int sync,
                      int only_revoking)
{
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_resp_err_t              err;
    char                             done[DELIVER_DONE_METADATA_MAX];

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
    /* Per-partition results of both kinds reach deliver_on_commit(). */
    if (list->cnt > 0 &&
        (err = rd_kafka_commit(src->rk, list, !sync)) !=
            RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < list->cnt; i++) {
            struct deliver_partition *part =
                deliver_find(src, list->elems[i].partition);

            if (part != NULL)
                part->committed = -1;
        }
        log_write(only_revoking ? LOG_LEVEL_INFO : LOG_LEVEL_WARN, NULL,
                  "commit-failed", "topic=%s partitions=%d reason=%s",
                  src->topic, list->cnt, rd_kafka_err2name(err));
    }
    rd_kafka_topic_partition_list_destroy(list);
}


/*
 * True while a message has an SES request in flight or its outcome record
 * is not yet acknowledged. A message SES accepted must not be dropped
 * before its record is written, or the next owner sends it again.
 */
static int
deliver_busy(const struct deliver *d, int only_revoking)
{
    for (int s = 0; s < 2; s++) {
        for (const struct deliver_partition *part = d->sources[s].parts;
             part != NULL; part = part->next) {
            if (only_revoking && !part->revoking)
                continue;
            for (const struct outbound *ob = part->head; ob != NULL;
                 ob = ob->next)
                if (ob->pending > 0 || ob->state == OUTBOUND_RECORDING ||
                    ob->state == OUTBOUND_DEAD_LETTERING)
                    return 1;
        }
    }
    return 0;
}


static int64_t
deliver_grace_ms(const struct deliver *d)
{
    return d->cfg->deliver_request_timeout_ms + 5000;
}


int64_t
deliver_backoff_ms(const struct deliver *d, int attempt)
{
    int64_t wait = d->cfg->deliver_retry_initial_ms;

    for (int i = 1; i < attempt && wait < d->cfg->deliver_retry_max_ms; i++)
        wait *= 2;
    if (wait > d->cfg->deliver_retry_max_ms)
        wait = d->cfg->deliver_retry_max_ms;

    /* Half fixed, half random, so retries of many workers spread out. */
    return wait / 2 + random() % (wait / 2 + 1);
}


void
deliver_stop_region(struct deliver *d, const struct outbound *ob,
                    const struct ses_outcome *outcome)
{
    char quoted[600];

    d->next_probe_ms = util_monotonic_ms() + d->cfg->deliver_retry_max_ms;
    log_error(outbound_id(ob), outcome->result == SES_LOCAL_FAULT
                                   ? "local-fault" : "region-down",
              "region=%s class=%s reason=%s attempt=%d retry_in_ms=%lld "
              "sending=%s", d->region, ses_result_name(outcome->result),
              log_quote(quoted, sizeof(quoted), outcome->reason),
              ob->attempt, (long long)d->cfg->deliver_retry_max_ms,
              d->region_stopped ? "still-stopped" : "stopped");
    d->region_stopped = 1;
}


void
deliver_resume_region(struct deliver *d)
{
    if (!d->region_stopped)
        return;
    d->region_stopped = 0;
    log_info(NULL, "sending-resumed", "region=%s", d->region);
}


void
deliver_drain(struct deliver *d, int64_t grace_ms)
{
    int64_t deadline = util_monotonic_ms() + grace_ms;

    d->stopping = 1;
    deliver_update_pauses(d);
    log_info(NULL, "draining", "region=%s in_flight=%zu "
             "in_progress=%zu grace_ms=%lld", d->region,
             ses_client_in_flight(d->ses), d->in_progress,
             (long long)grace_ms);

    while (deliver_busy(d, 0) && util_monotonic_ms() < deadline &&
           !d->fatal) {
        deliver_serve(d, 100);
        deliver_schedule(d);
        deliver_update_pauses(d);
    }
    if (deliver_busy(d, 0))
        log_warn(NULL, "drain-timed-out", "region=%s in_flight=%zu",
                 d->region, ses_client_in_flight(d->ses));
    log_info(NULL, "drained", "region=%s not_done=%zu reason=\"the next "
             "owner of their partitions sends them\"", d->region,
             d->in_progress);

    deliver_commit(d, 1);
    for (int s = 0; s < 2; s++) {
        rd_kafka_resp_err_t err = rd_kafka_consumer_close(d->sources[s].rk);

        if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
            log_warn(NULL, "close-failed", "topic=%s reason=%s",
                     d->sources[s].topic, rd_kafka_err2name(err));
    }
    if (rd_kafka_flush(d->producer, DELIVER_FLUSH_MS) !=
        RD_KAFKA_RESP_ERR_NO_ERROR)
        log_warn(NULL, "flush-timed-out", "region=%s records=%d",
                 d->region, rd_kafka_outq_len(d->producer));
}


void
deliver_free(struct deliver *d)
{
    if (d == NULL)
        return;

    /* Handles first: destroying them may still call back into d. */
    for (int s = 0; s < 2; s++)
        if (d->sources[s].rk != NULL)
            rd_kafka_destroy(d->sources[s].rk);
    if (d->producer != NULL)
        rd_kafka_destroy(d->producer);

    for (int s = 0; s < 2; s++) {
        struct deliver_source *src = &d->sources[s];

        while (src->parts != NULL) {
            struct deliver_partition *part = src->parts;

            src->parts = part->next;
            while (part->head != NULL)
                outbound_drop(part->head);
            deliver_free_partition(part);
        }
    }

    /* Reports that never came: nothing refers to these any more. */
    while (d->orphans != NULL) {
        struct outbound *ob = d->orphans;

        d->orphans = ob->next;
        outbound_free(ob);
    }
    ses_client_free(d->ses);
    dedup_free(d->delivered_ids);
    if (d->wake[0] != -1)
        close(d->wake[0]);
    if (d->wake[1] != -1)
        close(d->wake[1]);
    free(d);
}

#include "deliver.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "deliver_metrics.h"
#include "delivered.h"
#include "group.h"
#include "kafka.h"
#include "log.h"
#include "schedule.h"
#include "util.h"

/* Time between commits of the offsets done since the last one. */
#define DELIVER_COMMIT_INTERVAL_MS 1000

/* Records taken from one consumer in one loop turn. */
#define DELIVER_CONSUME_BATCH 256

/* Maximum wait at start for the end of ferry.control. */
#define DELIVER_CONTROL_WAIT_MS 10000

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
 *
 * With librdkafka's fetch.wait.max.ms of 500 ms, the worker had no
 * messages for 200 to 300 ms after most flow-control resumes, and sent
 * about 60 % as fast as with 50 ms (scripts/bench-deliver). The cost is
 * up to 20 fetch requests a second per consumer and broker while idle.
 */
static const char *const deliver_consumer_defaults[][2] = {
    { "session.timeout.ms", "30000" },
    { "heartbeat.interval.ms", "3000" },
    { "max.poll.interval.ms", "300000" },
    { "fetch.wait.max.ms", "50" },
};

/* Consumer settings the commit logic depends on; always forced. */
static const char *const deliver_consumer_forced[][2] = {
    { "enable.auto.commit", "false" },
    { "enable.auto.offset.store", "false" },
    { "auto.offset.reset", "earliest" },
    { "enable.partition.eof", "false" },
};

static rd_kafka_t *deliver_new_producer(struct deliver *d, char *err,
                                        size_t errlen);
static void deliver_plan_sources(struct deliver *d);
static int deliver_new_consumer(struct deliver *d,
                                struct deliver_source *src, char *err,
                                size_t errlen);
static void deliver_watch_queue(struct deliver *d, rd_kafka_queue_t *q);
static void deliver_on_log(const rd_kafka_t *rk, int level,
                           const char *facility, const char *message);
static void deliver_on_error(rd_kafka_t *rk, int err, const char *reason,
                             void *opaque);
static void deliver_on_ses(void *opaque, const struct ses_outcome *outcome);
static void deliver_on_delivery(rd_kafka_t *rk,
                                const rd_kafka_message_t *msg, void *opaque);
static void deliver_consume(struct deliver_source *src);
static void deliver_take(struct deliver_source *src,
                         const rd_kafka_message_t *msg);
static void deliver_commit_due(struct deliver *d);
static void deliver_serve(struct deliver *d, int timeout_ms);
static void deliver_drain_wake(struct deliver *d);


/* The region a worker sends to when --region is not given. */
static const char *
deliver_default_region(const struct config *cfg, int takeover)
{
    return takeover ? cfg->controller_secondary_region : cfg->deliver_region;
}


int
deliver_check(const struct config *cfg, const char *region, int takeover,
              char *err, size_t errlen)
{
    rd_kafka_conf_t *conf;

    if (takeover && config_region(cfg,
                                  cfg->controller_secondary_region) == NULL) {
        snprintf(err, errlen, "%s: key 'controller.secondary_region': "
                 "region '%s' is not listed under 'regions'", cfg->path,
                 cfg->controller_secondary_region);
        return -1;
    }
    if (region == NULL || region[0] == '\0')
        region = deliver_default_region(cfg, takeover);
    if (region == NULL || region[0] == '\0') {
        snprintf(err, errlen, "%s: key 'deliver.region' is missing; set it "
                 "or pass --region", cfg->path);
        return -1;
    }
    if (!takeover &&
        strcmp(region, cfg->controller_secondary_region) == 0) {
        snprintf(err, errlen, "%s: region '%s' is the secondary region (key "
                 "'controller.secondary_region') and has no topics of its "
                 "own; run ferry-deliver --takeover there", cfg->path,
                 region);
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
    if (takeover &&
        strcmp(region, cfg->controller_secondary_region) != 0) {
        snprintf(err, errlen, "%s: a takeover worker sends in the "
                 "secondary region '%s' (key 'controller.secondary_region'),"
                 " not in '%s'", cfg->path, cfg->controller_secondary_region,
                 region);
        return -1;
    }
    if (takeover && cfg->nregions < 2) {
        snprintf(err, errlen, "%s: a takeover worker needs a primary "
                 "region besides '%s' under 'regions'", cfg->path, region);
        return -1;
    }
    if ((conf = kafka_conf_new(cfg, err, errlen)) == NULL)
        return -1;
    rd_kafka_conf_destroy(conf);
    return 0;
}


struct deliver *
deliver_new(const struct config *cfg, const char *region, int takeover,
            const struct ses_credentials *creds, char *err, size_t errlen)
{
    struct deliver           *d = xcalloc(1, sizeof(*d));
    const struct region      *reg;
    struct ses_client_options opts;

    d->cfg = cfg;
    d->wake[0] = d->wake[1] = -1;
    if (region == NULL || region[0] == '\0')
        region = deliver_default_region(cfg, takeover);
    snprintf(d->region, sizeof(d->region), "%s", region);
    d->takeover = takeover;
    reg = config_region(cfg, d->region);
    if (gethostname(d->hostname, sizeof(d->hostname)) == -1)
        snprintf(d->hostname, sizeof(d->hostname), "localhost");
    d->hostname[sizeof(d->hostname) - 1] = '\0';
    d->delivered_ids = dedup_new(DELIVER_DEDUP_MAX);
    srandom((unsigned)(util_now_ms() ^ getpid()));

    if (pipe2(d->wake, O_NONBLOCK | O_CLOEXEC) == -1) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto fail;
    }

    opts = (struct ses_client_options){
        d->region, reg->ses_endpoint, creds, cfg->deliver_request_timeout_ms,
        cfg->deliver_max_in_flight, deliver_on_ses
    };
    if ((d->ses = ses_client_new(&opts, err, errlen)) == NULL)
        goto fail;
    pacing_init(&d->pacing, util_monotonic_ms());
    report_init(&d->report);
    account_init(&d->account, d);
    if ((d->producer = deliver_new_producer(d, err, errlen)) == NULL)
        goto fail;
    deliver_plan_sources(d);
    for (size_t i = 0; i < d->nsources; i++)
        if (deliver_new_consumer(d, &d->sources[i], err, errlen) == -1)
            goto fail;

    /* The failover states decide which multi-region topics are consumed. */
    if (follow_start(d, DELIVER_CONTROL_WAIT_MS, err, errlen) == -1)
        goto fail;
    for (size_t i = 0; i < d->nsources; i++) {
        if (follow_wants(&d->follow, &d->sources[i]) &&
            deliver_subscribe(&d->sources[i]) == -1) {
            snprintf(err, errlen, "cannot subscribe to %s",
                     d->sources[i].topic);
            goto fail;
        }
    }
    return d;

fail:
    deliver_free(d);
    return NULL;
}


/*
 * The idempotent producer of librdkafka 2.0.2 sends a new request for a
 * partition only while fewer than 5 of its records are unacknowledged
 * (rd_kafka_toppar_producer_serve). Its thread polls without waiting
 * while a batch is due but may not be sent yet. With librdkafka's
 * linger.ms of 5 ms, that thread took 15 to 65 % of a CPU at 300 to 460
 * outcome records a second (scripts/bench-deliver, one message in
 * flight). With 20 ms it took 2 %, because most batches then become due
 * only after the previous one was acknowledged.
 */
#define DELIVER_PRODUCER_LINGER_MS "20"


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
    if (kafka_conf_default(conf, d->cfg, "linger.ms",
                           DELIVER_PRODUCER_LINGER_MS, err, errlen) == -1) {
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
    /*
     * Created now, so that librdkafka fetches the topic's metadata before
     * the first record. Created with the first record, it delayed the
     * first records by about 500 ms in scripts/bench-deliver.
     */
    d->delivered_topic = rd_kafka_topic_new(rk, DELIVERED_TOPIC, NULL);
    if (d->delivered_topic == NULL) {
        snprintf(err, errlen, "cannot create the Kafka topic handle of "
                 "%s: %s", DELIVERED_TOPIC,
                 rd_kafka_err2str(rd_kafka_last_error()));
        rd_kafka_destroy(rk);
        return NULL;
    }
    q = rd_kafka_queue_get_main(rk);
    deliver_watch_queue(d, q);
    rd_kafka_queue_destroy(q);
    return rk;
}


/*
 * Names the topics and groups. A primary worker of R reads mail.R while R
 * is PRIMARY and mail.R.pinned always. A takeover worker reads mail.P of
 * every other region P while P is SECONDARY.
 */
static void
deliver_plan_sources(struct deliver *d)
{
    const struct config *cfg = d->cfg;

    d->sources = xcalloc(cfg->nregions + 1, sizeof(*d->sources));
    if (!d->takeover) {
        struct deliver_source *multi = &d->sources[0];
        struct deliver_source *pinned = &d->sources[1];

        snprintf(multi->topic, sizeof(multi->topic), "mail.%s", d->region);
        snprintf(multi->group, sizeof(multi->group), "ferry-deliver.%s",
                 d->region);
        multi->follows = 1;
        multi->consume_state = CONTROL_PRIMARY;
        snprintf(pinned->topic, sizeof(pinned->topic), "mail.%s.pinned",
                 d->region);
        snprintf(pinned->group, sizeof(pinned->group),
                 "ferry-deliver.%s.pinned", d->region);
        snprintf(multi->owner, sizeof(multi->owner), "%s", d->region);
        snprintf(pinned->owner, sizeof(pinned->owner), "%s", d->region);
        d->nsources = 2;
    } else {
        for (size_t i = 0; i < cfg->nregions; i++) {
            const char            *owner = cfg->regions[i].name;
            struct deliver_source *src = &d->sources[d->nsources];

            if (strcmp(owner, d->region) == 0)
                continue;
            snprintf(src->owner, sizeof(src->owner), "%s", owner);
            snprintf(src->topic, sizeof(src->topic), "mail.%s", owner);
            snprintf(src->group, sizeof(src->group), "ferry-takeover.%s",
                     owner);
            src->follows = 1;
            src->consume_state = CONTROL_SECONDARY;
            d->nsources++;
        }
    }
    for (size_t i = 0; i < d->nsources; i++) {
        d->sources[i].d = d;
        snprintf(d->sources[i].dead_topic, sizeof(d->sources[i].dead_topic),
                 "mail.%s.dead", d->sources[i].owner);
    }
}


/* The consumer of one source, in the source's group. */
static int
deliver_new_consumer(struct deliver *d, struct deliver_source *src,
                     char *err, size_t errlen)
{
    rd_kafka_conf_t                 *conf;
    rd_kafka_queue_t                *q;
    char                             errstr[512];

    if ((conf = kafka_conf_new(d->cfg, err, errlen)) == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(deliver_consumer_defaults) /
                           sizeof(*deliver_consumer_defaults); i++)
        if (kafka_conf_default(conf, d->cfg, deliver_consumer_defaults[i][0],
                               deliver_consumer_defaults[i][1], err,
                               errlen) == -1)
            goto fail;
    for (size_t i = 0; i < sizeof(deliver_consumer_forced) /
                           sizeof(*deliver_consumer_forced); i++)
        if (kafka_conf_set(conf, deliver_consumer_forced[i][0],
                           deliver_consumer_forced[i][1], err,
                           errlen) == -1)
            goto fail;
    if (kafka_conf_set(conf, "group.id", src->group, err, errlen) == -1)
        goto fail;
    rd_kafka_conf_set_opaque(conf, src);
    rd_kafka_conf_set_rebalance_cb(conf, group_on_rebalance);
    rd_kafka_conf_set_offset_commit_cb(conf, group_on_commit);
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

    return 0;

fail:
    rd_kafka_conf_destroy(conf);
    return -1;
}


int
deliver_subscribe(struct deliver_source *src)
{
    rd_kafka_topic_partition_list_t *topics;
    rd_kafka_resp_err_t              kerr;

    topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, src->topic,
                                      RD_KAFKA_PARTITION_UA);
    kerr = rd_kafka_subscribe(src->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_error(NULL, "subscribe-failed", "topic=%s group=%s reason=%s",
                  src->topic, src->group, rd_kafka_err2name(kerr));
        return -1;
    }
    src->subscribed = 1;
    log_info(NULL, "subscribed", "topic=%s group=%s", src->topic,
             src->group);
    return 0;
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


/* The SES client's done callback: a SendEmail or a GetAccount ended. */
static void
deliver_on_ses(void *opaque, const struct ses_outcome *outcome)
{
    if (*(enum deliver_job *)opaque == DELIVER_JOB_ACCOUNT)
        account_on_ses(opaque, outcome);
    else
        outbound_on_ses(opaque, outcome);
}


static void
deliver_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg,
                    void *opaque)
{
    /* Only ferry.health records go without an opaque. */
    if (msg->_private == NULL)
        report_on_produced(msg->err);
    else
        outbound_on_produced(msg->_private, msg->err);
}


int
deliver_run(struct deliver *d, volatile sig_atomic_t *stop)
{
    char   topics[1024];
    size_t used = 0;

    topics[0] = '\0';
    for (size_t i = 0; i < d->nsources && used < sizeof(topics); i++)
        used += (size_t)snprintf(topics + used, sizeof(topics) - used,
                                 "%s%s", i > 0 ? "," : "",
                                 d->sources[i].topic);
    log_info(NULL, "started", "region=%s role=%s topics=%s "
             "max_in_flight=%lld max_send_rate=%lld", d->region,
             d->takeover ? "takeover" : "primary", topics,
             (long long)d->cfg->deliver_max_in_flight,
             (long long)d->cfg->deliver_max_send_rate);

    while (!*stop && !d->fatal) {
        deliver_metrics_status(d);
        deliver_serve(d, schedule_wait_ms(d));
        schedule_start_due(d);
        schedule_update_pauses(d);
        report_produce_due(d, 0);
        deliver_commit_due(d);
    }
    return d->fatal ? -1 : 0;
}


/*
 * Commits every DELIVER_COMMIT_INTERVAL_MS, and at once when the last
 * message in progress is done, so the group's lag reaches 0 when the
 * topic is drained instead of up to an interval later.
 */
static void
deliver_commit_due(struct deliver *d)
{
    int idle = d->in_progress == 0;

    if (util_monotonic_ms() >= d->next_commit_ms ||
        (idle && !d->committed_idle)) {
        group_commit(d, 0);
        d->next_commit_ms = util_monotonic_ms() + DELIVER_COMMIT_INTERVAL_MS;
        d->committed_idle = idle;
    }
    if (!idle)
        d->committed_idle = 0;
}


/* Waits for events, then serves SES, the producer and the consumers. */
static void
deliver_serve(struct deliver *d, int timeout_ms)
{
    if (ses_client_run(d->ses, d->wake[0], timeout_ms) == -1)
        log_error(NULL, "http-failed", "region=%s reason=\"libcurl multi "
                  "interface failed\"", d->region);
    deliver_drain_wake(d);
    rd_kafka_poll(d->producer, 0);
    follow_poll(d);
    for (size_t i = 0; i < d->nsources; i++)
        deliver_consume(&d->sources[i]);
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
    struct deliver_partition *part = group_find(src, msg->partition);

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


void
deliver_drain(struct deliver *d, int64_t grace_ms)
{
    int64_t deadline = util_monotonic_ms() + grace_ms;

    d->stopping = 1;
    schedule_update_pauses(d);
    log_info(NULL, "draining", "region=%s in_flight=%zu "
             "in_progress=%zu grace_ms=%lld", d->region,
             ses_client_in_flight(d->ses), d->in_progress,
             (long long)grace_ms);

    while (schedule_busy(d, 0) && util_monotonic_ms() < deadline &&
           !d->fatal) {
        deliver_serve(d, 100);
        schedule_start_due(d);
        schedule_update_pauses(d);
    }
    if (schedule_busy(d, 0))
        log_warn(NULL, "drain-timed-out", "region=%s in_flight=%zu",
                 d->region, ses_client_in_flight(d->ses));
    log_info(NULL, "drained", "region=%s not_done=%zu reason=\"the next "
             "owner of their partitions sends them\"", d->region,
             d->in_progress);

    group_commit(d, 1);
    report_produce_due(d, 1);
    for (size_t s = 0; s < d->nsources; s++) {
        rd_kafka_resp_err_t err = rd_kafka_consumer_close(d->sources[s].rk);

        if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
            log_warn(NULL, "close-failed", "topic=%s reason=%s",
                     d->sources[s].topic, rd_kafka_err2name(err));
    }
    follow_fini(&d->follow);
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
    follow_fini(&d->follow);
    for (size_t s = 0; s < d->nsources; s++)
        if (d->sources[s].rk != NULL)
            rd_kafka_destroy(d->sources[s].rk);
    if (d->delivered_topic != NULL)
        rd_kafka_topic_destroy(d->delivered_topic);
    if (d->producer != NULL)
        rd_kafka_destroy(d->producer);

    for (size_t s = 0; s < d->nsources; s++) {
        struct deliver_source *src = &d->sources[s];

        while (src->parts != NULL) {
            struct deliver_partition *part = src->parts;

            src->parts = part->next;
            while (part->head != NULL)
                outbound_drop(part->head);
            group_free_partition(part);
        }
    }

    /* Reports that never came: nothing refers to these any more. */
    while (d->orphans != NULL) {
        struct outbound *ob = d->orphans;

        d->orphans = ob->next;
        outbound_free(ob);
    }
    free(d->sources);
    ses_client_free(d->ses);
    dedup_free(d->delivered_ids);
    if (d->wake[0] != -1)
        close(d->wake[0]);
    if (d->wake[1] != -1)
        close(d->wake[1]);
    free(d);
}

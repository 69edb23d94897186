#include "ingress_kafka.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "kafka.h"
#include "log.h"
#include "mailbox.h"
#include "util.h"

/* Maximum wait of the report thread in one poll. */
#define INGRESS_KAFKA_POLL_MS        100

/* Interval of ingress_kafka_flush()'s checks of the queue. */
#define INGRESS_KAFKA_FLUSH_STEP_MS  5

/* Batch wait (linger.ms) unless kafka.properties sets one. */
#define INGRESS_KAFKA_LINGER_MS      "2"

/* Sticky partition window when sticky.partitioning.linger.ms is 0. */
#define INGRESS_KAFKA_STICKY_MS      10

/* Maximum wait for the reports of purged messages when destroying. */
#define INGRESS_KAFKA_PURGE_WAIT_MS  2000

/*
 * A message in flight. Every field below item is guarded by the lock of
 * its ingress_kafka.
 */
struct ingress_kafka_pending {
    TAILQ_ENTRY(ingress_kafka_pending) entry;
    struct ingress_kafka              *ik;
    struct mailbox_item                item;        /* the outcome, posted */
    struct mailbox                    *mailbox;     /* of the caller's loop */
    char                               id[ENVELOPE_ID_LEN + 1];
    char                              *topic;
    int64_t                            started_ms;
    void                             (*done)(void *arg,
                                             rd_kafka_resp_err_t err);
    void                              *arg;
    bool                               detached;
    enum ingress_kafka_detach_reason   reason;
    uint32_t                           chunk_count;
    uint32_t                           queued;      /* records produced */
    uint32_t                           reported;    /* reports received */
    uint32_t                           acked;       /* successful reports */
    bool                               sealed;      /* no more records */
    rd_kafka_resp_err_t                err;         /* first failure */
    bool                               posted;      /* item waits to run */
    rd_kafka_resp_err_t                outcome;     /* what item reports */
    int32_t                            partition;
    int64_t                            first_offset;
    int32_t                            chosen;      /* -1 until the first
                                                       record is placed */
};

TAILQ_HEAD(ingress_kafka_pending_list, ingress_kafka_pending);

struct ingress_kafka {
    const struct config               *cfg;
    /*
     * The producer. Loops produce with the read lock held; the report
     * thread, the only one that replaces it, holds the write lock then.
     */
    pthread_rwlock_t                   rk_lock;
    rd_kafka_t                        *rk;
    pthread_t                          reporter;
    bool                               reporter_started;
    bool                               stopping;    /* atomic */
    /* Guards the pending messages and the fields below. */
    pthread_mutex_t                    lock;
    struct ingress_kafka_pending_list  pending;
    bool                               fatal;
    bool                               broken;
    uint64_t                           late_acks;
    uint64_t                           restarts;
    /*
     * The sticky partition choice. librdkafka calls the partitioner from
     * the producing loops and, for records produced before the topic's
     * metadata arrived, from its own threads, hence its own lock.
     */
    pthread_mutex_t                    sticky_lock;
    uint32_t                           sticky_seed;
    int64_t                            sticky_until_ms;
    int64_t                            sticky_ms;
};

static rd_kafka_conf_t *ingress_kafka_conf_new(const struct config *cfg,
                                               char *err, size_t errlen);
static int ingress_kafka_start(struct ingress_kafka *ik, char *err,
                               size_t errlen);
static void ingress_kafka_set_partitioner(struct ingress_kafka *ik,
                                          rd_kafka_conf_t *conf);
static void ingress_kafka_stop(struct ingress_kafka *ik);
static void ingress_kafka_restart(struct ingress_kafka *ik);
static void *ingress_kafka_report_main(void *arg);
static void ingress_kafka_on_outcome(struct mailbox_item *item);
static void ingress_kafka_on_delivery(rd_kafka_t *rk,
                                      const rd_kafka_message_t *m,
                                      void *opaque);
static void ingress_kafka_on_error(rd_kafka_t *rk, int err,
                                   const char *reason, void *opaque);
static int32_t ingress_kafka_partition(const rd_kafka_topic_t *rkt,
                                       const void *key, size_t keylen,
                                       int32_t partition_count,
                                       void *rkt_opaque, void *msg_opaque);
static void ingress_kafka_notify(struct ingress_kafka_pending *p,
                                 rd_kafka_resp_err_t err);
static void ingress_kafka_release_if_done(struct ingress_kafka *ik,
                                          struct ingress_kafka_pending *p);
static void ingress_kafka_release(struct ingress_kafka *ik,
                                  struct ingress_kafka_pending *p);
static void ingress_kafka_log_outcome(struct ingress_kafka *ik,
                                      struct ingress_kafka_pending *p);


/*
 * Builds the producer configuration: the operator's properties, a shorter
 * batch wait unless they set one, then the settings that the 250 reply
 * depends on, which always win.
 */
static rd_kafka_conf_t *
ingress_kafka_conf_new(const struct config *cfg, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf;
    char             timeout[32];
    int64_t          margin;

    if ((conf = kafka_conf_new(cfg, err, errlen)) == NULL)
        return NULL;

    /*
     * librdkafka retries a message until message.timeout.ms, and the
     * idempotent producer keeps those retries free of duplicates. The
     * ingress never produces a message again itself. After a failed or
     * late report the client gets 451 and retries the whole message,
     * because the record may still have been written. The timeout ends a
     * tenth of the ack deadline (at most 1 s) before it, so a message that
     * never left the queue fails through its report. A request already
     * sent to a broker that hangs is ended by the ack timer instead.
     */
    margin = cfg->ingress_ack_timeout_ms / 10;
    if (margin > 1000)
        margin = 1000;
    snprintf(timeout, sizeof(timeout), "%lld",
             (long long)(cfg->ingress_ack_timeout_ms - margin));

    /*
     * Each session waits for its record's acknowledgement before its next
     * message, so the batch wait adds to every reply. 2 ms instead of
     * librdkafka's 5 gave about a fifth more messages per second at 50
     * sessions of smtp-source against the local broker.
     */
    if (kafka_conf_default(conf, cfg, "linger.ms", INGRESS_KAFKA_LINGER_MS,
                           err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }

    if (kafka_conf_set(conf, "enable.idempotence", "true", err, errlen) ||
        kafka_conf_set(conf, "acks", "all", err, errlen) ||
        kafka_conf_set(conf, "message.timeout.ms", timeout, err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}


int64_t
ingress_kafka_record_max(const struct config *cfg)
{
    return cfg->ingress_chunk_size + INGRESS_KAFKA_RECORD_OVERHEAD;
}


/* Reads an integer librdkafka property of conf, or returns -1. */
static int64_t
ingress_kafka_conf_int(rd_kafka_conf_t *conf, const char *name)
{
    char   value[64];
    size_t size = sizeof(value);

    if (rd_kafka_conf_get(conf, name, value, &size) != RD_KAFKA_CONF_OK)
        return -1;
    return strtoll(value, NULL, 10);
}


/*
 * Checks that librdkafka accepts the configuration and that the largest
 * record the ingress writes fits its producer limit and its fetch
 * response limit, which the delivery workers share through
 * kafka.properties.
 */
int
ingress_kafka_check(const struct config *cfg, char *err, size_t errlen)
{
    static const char *const limits[] = {
        "message.max.bytes", "receive.message.max.bytes"
    };
    rd_kafka_conf_t *conf = ingress_kafka_conf_new(cfg, err, errlen);
    int64_t          record = ingress_kafka_record_max(cfg);
    int              rc = 0;

    if (conf == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(limits) / sizeof(*limits); i++) {
        int64_t limit = ingress_kafka_conf_int(conf, limits[i]);

        if (limit >= 0 && limit < record) {
            snprintf(err, errlen, "%s: key 'ingress.chunk_size': records "
                     "of up to %lld bytes (chunk_size %lld plus %d for the "
                     "envelope) exceed the Kafka property %s of %lld; "
                     "lower ingress.chunk_size or raise %s",
                     cfg->path, (long long)record,
                     (long long)cfg->ingress_chunk_size,
                     INGRESS_KAFKA_RECORD_OVERHEAD, limits[i],
                     (long long)limit, limits[i]);
            rc = -1;
            break;
        }
    }
    rd_kafka_conf_destroy(conf);
    return rc;
}


struct ingress_kafka *
ingress_kafka_new(const struct config *cfg, char *err, size_t errlen)
{
    struct ingress_kafka *ik = xcalloc(1, sizeof(*ik));
    int                   rc;

    ik->cfg = cfg;
    TAILQ_INIT(&ik->pending);
    pthread_rwlock_init(&ik->rk_lock, NULL);
    pthread_mutex_init(&ik->lock, NULL);
    pthread_mutex_init(&ik->sticky_lock, NULL);
    ik->sticky_seed = (uint32_t)random();

    if (ingress_kafka_start(ik, err, errlen) == -1)
        goto fail;

    rc = util_thread_start(&ik->reporter, ingress_kafka_report_main, ik);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the Kafka report thread: %s",
                 strerror(rc));
        goto fail;
    }
    ik->reporter_started = true;
    return ik;

fail:
    ingress_kafka_free(ik);
    return NULL;
}


/*
 * Stops the report thread and the producer. The loops have stopped, so
 * the outcomes posted to them are never run: every message left is freed
 * here.
 */
void
ingress_kafka_free(struct ingress_kafka *ik)
{
    struct ingress_kafka_pending *p;

    if (ik == NULL)
        return;

    if (ik->reporter_started) {
        __atomic_store_n(&ik->stopping, true, __ATOMIC_RELEASE);
        pthread_join(ik->reporter, NULL);
    }
    ingress_kafka_stop(ik);
    while ((p = TAILQ_FIRST(&ik->pending)) != NULL)
        ingress_kafka_release(ik, p);
    pthread_mutex_destroy(&ik->sticky_lock);
    pthread_mutex_destroy(&ik->lock);
    pthread_rwlock_destroy(&ik->rk_lock);
    free(ik);
}


/*
 * Installs the sticky partitioner on every topic, with the window of
 * librdkafka's own sticky.partitioning.linger.ms, which the operator may
 * set in kafka.properties.
 */
static void
ingress_kafka_set_partitioner(struct ingress_kafka *ik, rd_kafka_conf_t *conf)
{
    rd_kafka_topic_conf_t *defaults = rd_kafka_conf_get_default_topic_conf(conf);
    rd_kafka_topic_conf_t *topic_conf;

    topic_conf = defaults != NULL ? rd_kafka_topic_conf_dup(defaults)
                                  : rd_kafka_topic_conf_new();
    ik->sticky_ms = ingress_kafka_conf_int(conf,
                                           "sticky.partitioning.linger.ms");
    if (ik->sticky_ms < 1)
        ik->sticky_ms = INGRESS_KAFKA_STICKY_MS;
    rd_kafka_topic_conf_set_partitioner_cb(topic_conf,
                                           ingress_kafka_partition);
    rd_kafka_topic_conf_set_opaque(topic_conf, ik);
    rd_kafka_conf_set_default_topic_conf(conf, topic_conf);
}


/*
 * Chooses the partition of a record. Every record of a message goes to
 * the partition of its first record, so the chunks keep their order.
 * First records go to one partition per window of sticky_ms, so each
 * produce request carries one large batch instead of a small one per
 * partition: with the envelope id hashed over 3 partitions, 50 sessions
 * cost the broker about twice the CPU per message (measured with
 * smtp-source against the local broker). Runs on librdkafka's threads too.
 */
static int32_t
ingress_kafka_partition(const rd_kafka_topic_t *rkt, const void *key,
                        size_t keylen, int32_t partition_count,
                        void *rkt_opaque, void *msg_opaque)
{
    struct ingress_kafka         *ik = rkt_opaque;
    struct ingress_kafka_pending *p = msg_opaque;
    int64_t                       now = util_monotonic_ms();
    int32_t                       chosen;

    pthread_mutex_lock(&ik->sticky_lock);
    if (p != NULL && p->chosen >= 0 && p->chosen < partition_count) {
        chosen = p->chosen;
        pthread_mutex_unlock(&ik->sticky_lock);
        return chosen;
    }
    if (now >= ik->sticky_until_ms) {
        ik->sticky_seed = (uint32_t)random();
        ik->sticky_until_ms = now + ik->sticky_ms;
    }

    /* The window's partition, or the next one that has a leader. */
    chosen = (int32_t)(ik->sticky_seed % (uint32_t)partition_count);
    for (int32_t i = 0; i < partition_count; i++) {
        int32_t candidate = (chosen + i) % partition_count;

        if (rd_kafka_topic_partition_available(rkt, candidate)) {
            chosen = candidate;
            break;
        }
    }
    if (p != NULL)
        p->chosen = chosen;
    pthread_mutex_unlock(&ik->sticky_lock);
    return chosen;
}


/* Creates the producer, whose reports the report thread serves. */
static int
ingress_kafka_start(struct ingress_kafka *ik, char *err, size_t errlen)
{
    rd_kafka_conf_t  *conf;
    rd_kafka_t       *rk;
    char              why[512];

    if ((conf = ingress_kafka_conf_new(ik->cfg, err, errlen)) == NULL)
        return -1;
    rd_kafka_conf_set_opaque(conf, ik);
    ingress_kafka_set_partitioner(ik, conf);
    rd_kafka_conf_set_dr_msg_cb(conf, ingress_kafka_on_delivery);
    rd_kafka_conf_set_error_cb(conf, ingress_kafka_on_error);
    rd_kafka_conf_set_log_cb(conf, ingress_kafka_log);

    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (rk == NULL) {
        /* rd_kafka_new() takes conf only when it succeeds. */
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "cannot create the Kafka producer: %s", why);
        return -1;
    }

    pthread_rwlock_wrlock(&ik->rk_lock);
    ik->rk = rk;
    pthread_rwlock_unlock(&ik->rk_lock);
    pthread_mutex_lock(&ik->lock);
    ik->fatal = false;
    pthread_mutex_unlock(&ik->lock);
    return 0;
}


/*
 * Destroys the producer, on the report thread or once it has stopped.
 * Queued and in-flight messages are purged, and their reports (failures)
 * are served here. Messages that never got a report end with
 * RD_KAFKA_RESP_ERR__DESTROY, since librdkafka no longer refers to them.
 */
static void
ingress_kafka_stop(struct ingress_kafka *ik)
{
    struct ingress_kafka_pending *p, *next;
    rd_kafka_t                   *rk = ik->rk;

    if (rk == NULL)
        return;

    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(rk, INGRESS_KAFKA_PURGE_WAIT_MS);
    rd_kafka_poll(rk, 0);

    /* Loops still producing wait for the lock, then find no producer. */
    pthread_rwlock_wrlock(&ik->rk_lock);
    ik->rk = NULL;
    pthread_rwlock_unlock(&ik->rk_lock);
    rd_kafka_destroy(rk);

    pthread_mutex_lock(&ik->lock);
    for (p = TAILQ_FIRST(&ik->pending); p != NULL; p = next) {
        next = TAILQ_NEXT(p, entry);
        if (p->reported == p->queued)
            continue;
        log_warn(p->id, "produce-abandoned", "topic=%s chunks=%u reported=%u",
                 p->topic, p->chunk_count, p->reported);
        p->reported = p->queued;
        p->sealed = true;
        ingress_kafka_notify(p, RD_KAFKA_RESP_ERR__DESTROY);
        ingress_kafka_release_if_done(ik, p);
    }
    pthread_mutex_unlock(&ik->lock);
}


/*
 * Replaces a producer that raised a fatal error. Such a producer fails
 * every later message, so waiting clients get their 451 at once. Their
 * records may still exist, so a client's retry can add a duplicate.
 */
static void
ingress_kafka_restart(struct ingress_kafka *ik)
{
    struct ingress_kafka_pending *p;
    uint64_t                      restarts;
    char                          reason[512];
    char                          quoted[600];
    char                          err[512];
    rd_kafka_resp_err_t           code;

    code = rd_kafka_fatal_error(ik->rk, reason, sizeof(reason));
    log_error(NULL, "producer-fatal", "error=%s reason=%s",
              rd_kafka_err2name(code),
              log_quote(quoted, sizeof(quoted), reason));

    /* Waiting callers get their 451 now; later reports are only logged. */
    pthread_mutex_lock(&ik->lock);
    TAILQ_FOREACH(p, &ik->pending, entry) {
        if (p->done == NULL || p->posted)
            continue;
        ingress_kafka_notify(p, RD_KAFKA_RESP_ERR__FATAL);
        p->detached = true;
        p->reason = INGRESS_KAFKA_REPLIED;
    }
    pthread_mutex_unlock(&ik->lock);

    ingress_kafka_stop(ik);
    if (ingress_kafka_start(ik, err, sizeof(err)) == -1) {
        log_error(NULL, "producer-restart-failed", "error=%s",
                  log_quote(quoted, sizeof(quoted), err));
        pthread_mutex_lock(&ik->lock);
        ik->broken = true;
        pthread_mutex_unlock(&ik->lock);
        return;
    }
    pthread_mutex_lock(&ik->lock);
    restarts = ++ik->restarts;
    pthread_mutex_unlock(&ik->lock);
    log_warn(NULL, "producer-restarted", "restarts=%llu",
             (unsigned long long)restarts);
}


/*
 * Serves delivery reports and errors until the ingress stops, and
 * replaces the producer after a fatal error. After a failed replacement
 * it only waits for the end, and ingress_kafka_broken() returns true.
 */
static void *
ingress_kafka_report_main(void *arg)
{
    struct ingress_kafka *ik = arg;
    struct timespec       pause = { 0, INGRESS_KAFKA_POLL_MS * 1000000L };
    bool                  fatal;

    while (!__atomic_load_n(&ik->stopping, __ATOMIC_ACQUIRE)) {
        if (ik->rk == NULL) {
            nanosleep(&pause, NULL);
            continue;
        }
        rd_kafka_poll(ik->rk, INGRESS_KAFKA_POLL_MS);
        pthread_mutex_lock(&ik->lock);
        fatal = ik->fatal;
        pthread_mutex_unlock(&ik->lock);
        if (fatal)
            ingress_kafka_restart(ik);
    }
    return NULL;
}


/*
 * Counts one record's report against its message. The message fails with
 * its first failed record and succeeds when every chunk is acknowledged.
 */
static void
ingress_kafka_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                          void *opaque)
{
    struct ingress_kafka         *ik = opaque;
    struct ingress_kafka_pending *p = m->_private;
    int64_t                       latency = util_monotonic_ms() - p->started_ms;

    pthread_mutex_lock(&ik->lock);
    p->reported++;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_warn(p->id, "produce-failed", "topic=%s error=%s chunks=%u "
                 "latency_ms=%lld", p->topic, rd_kafka_err2name(m->err),
                 p->chunk_count, (long long)latency);
        if (p->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            p->err = m->err;
            ingress_kafka_log_outcome(ik, p);
            ingress_kafka_notify(p, m->err);
        }
    } else {
        if (p->acked++ == 0) {
            p->partition = m->partition;
            p->first_offset = m->offset;
        }
        if (p->acked == p->chunk_count) {
            log_info(p->id, "produced", "topic=%s partition=%d offset=%lld "
                     "chunks=%u latency_ms=%lld", p->topic,
                     (int)p->partition, (long long)p->first_offset,
                     p->chunk_count, (long long)latency);
            ingress_kafka_log_outcome(ik, p);
            ingress_kafka_notify(p, RD_KAFKA_RESP_ERR_NO_ERROR);
        }
    }

    ingress_kafka_release_if_done(ik, p);
    pthread_mutex_unlock(&ik->lock);
}


/* Logs the outcome of a message whose caller stopped waiting for it. */
static void
ingress_kafka_log_outcome(struct ingress_kafka *ik,
                          struct ingress_kafka_pending *p)
{
    bool ok = p->err == RD_KAFKA_RESP_ERR_NO_ERROR;

    if (!p->detached)
        return;
    if (p->reason == INGRESS_KAFKA_REPLIED && ok) {
        ik->late_acks++;
        log_warn(p->id, "ack-after-reply",
                 "topic=%s partition=%d offset=%lld chunks=%u count=%llu",
                 p->topic, (int)p->partition, (long long)p->first_offset,
                 p->chunk_count, (unsigned long long)ik->late_acks);
    } else if (p->reason == INGRESS_KAFKA_CLIENT_GONE) {
        log_info(p->id, "reply-undeliverable", "outcome=%s",
                 ok ? "produced" : "failed");
    }
}


/*
 * Posts the outcome to the caller's loop, if the caller still waits and
 * has no outcome coming already. Called with the lock held.
 */
static void
ingress_kafka_notify(struct ingress_kafka_pending *p, rd_kafka_resp_err_t err)
{
    if (p->done == NULL || p->posted)
        return;
    p->posted = true;
    p->outcome = err;
    mailbox_post(p->mailbox, &p->item);
}


/*
 * Runs on the caller's loop: calls the callback once, unless the caller
 * detached meanwhile, and frees the message if nothing else refers to it.
 */
static void
ingress_kafka_on_outcome(struct mailbox_item *item)
{
    struct ingress_kafka_pending *p =
        MAILBOX_OWNER(item, struct ingress_kafka_pending, item);
    struct ingress_kafka         *ik = p->ik;
    void                        (*done)(void *, rd_kafka_resp_err_t);
    void                         *arg;
    rd_kafka_resp_err_t           err;

    pthread_mutex_lock(&ik->lock);
    p->posted = false;
    done = p->done;
    arg = p->arg;
    err = p->outcome;
    p->done = NULL;
    p->arg = NULL;
    ingress_kafka_release_if_done(ik, p);
    pthread_mutex_unlock(&ik->lock);

    if (done != NULL)
        done(arg, err);
}


/*
 * Frees p once no record, caller or posted outcome refers to it. Called
 * with the lock held.
 */
static void
ingress_kafka_release_if_done(struct ingress_kafka *ik,
                              struct ingress_kafka_pending *p)
{
    if (p->sealed && p->reported == p->queued && !p->posted &&
        p->done == NULL)
        ingress_kafka_release(ik, p);
}


static void
ingress_kafka_release(struct ingress_kafka *ik,
                      struct ingress_kafka_pending *p)
{
    TAILQ_REMOVE(&ik->pending, p, entry);
    free(p->topic);
    free(p);
}


static void
ingress_kafka_on_error(rd_kafka_t *rk, int err, const char *reason,
                       void *opaque)
{
    struct ingress_kafka *ik = opaque;
    char                  quoted[600];

    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        /* Acted on after rd_kafka_poll() returns, not inside it. */
        pthread_mutex_lock(&ik->lock);
        ik->fatal = true;
        pthread_mutex_unlock(&ik->lock);
        return;
    }
    log_warn(NULL, "kafka-error", "error=%s reason=%s",
             rd_kafka_err2name((rd_kafka_resp_err_t)err),
             log_quote(quoted, sizeof(quoted), reason));
}


/* Runs on librdkafka's threads; log_write() writes each line at once. */
void
ingress_kafka_log(const rd_kafka_t *rk, int level, const char *facility,
                     const char *buf)
{
    enum log_level lvl;
    char           quoted[1024];

    /* level is a syslog level: 3 error, 4 warning, 5 notice, 6 info. */
    if (level <= 3)
        lvl = LOG_LEVEL_ERROR;
    else if (level == 4)
        lvl = LOG_LEVEL_WARN;
    else if (level == 5)
        lvl = LOG_LEVEL_INFO;
    else
        lvl = LOG_LEVEL_DEBUG;
    if (!log_enabled(lvl))
        return;
    log_write(lvl, NULL, "kafka-log", "facility=%s message=%s", facility,
              log_quote(quoted, sizeof(quoted), buf));
}


struct ingress_kafka_pending *
ingress_kafka_begin(struct ingress_kafka *ik, struct mailbox *mailbox,
                    const char *id, const char *topic, uint32_t chunk_count,
                    void (*done)(void *arg, rd_kafka_resp_err_t err),
                    void *arg)
{
    struct ingress_kafka_pending *p = xcalloc(1, sizeof(*p));

    p->ik = ik;
    p->item.run = ingress_kafka_on_outcome;
    p->mailbox = mailbox;
    snprintf(p->id, sizeof(p->id), "%s", id);
    p->topic = xstrdup(topic);
    p->started_ms = util_monotonic_ms();
    p->done = done;
    p->arg = arg;
    p->chunk_count = chunk_count;
    p->err = RD_KAFKA_RESP_ERR_NO_ERROR;
    p->partition = -1;
    p->first_offset = -1;
    p->chosen = -1;
    pthread_mutex_lock(&ik->lock);
    TAILQ_INSERT_TAIL(&ik->pending, p, entry);
    pthread_mutex_unlock(&ik->lock);
    return p;
}


int
ingress_kafka_produce(struct ingress_kafka *ik,
                      struct ingress_kafka_pending *p,
                      const struct envelope *env, rd_kafka_resp_err_t *errp)
{
    size_t              len;
    unsigned char      *value = envelope_encode(env, &len);
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__STATE;

    /*
     * The read lock covers the count and its correction, so a producer
     * being destroyed reads the count from before this record or after it.
     */
    pthread_rwlock_rdlock(&ik->rk_lock);
    if (ik->rk != NULL) {
        /* Counted first: the report may come before producev() returns. */
        pthread_mutex_lock(&ik->lock);
        if (++p->queued == p->chunk_count)
            p->sealed = true;
        pthread_mutex_unlock(&ik->lock);

        err = rd_kafka_producev(ik->rk,
                                RD_KAFKA_V_TOPIC(p->topic),
                                RD_KAFKA_V_KEY(p->id, ENVELOPE_ID_LEN),
                                RD_KAFKA_V_VALUE(value, len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                                RD_KAFKA_V_OPAQUE(p),
                                RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            pthread_mutex_lock(&ik->lock);
            p->queued--;
            pthread_mutex_unlock(&ik->lock);
        }
    }
    pthread_rwlock_unlock(&ik->rk_lock);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;     /* librdkafka frees value after the report */

    /* On failure the value stays ours despite RD_KAFKA_MSG_F_FREE. */
    log_warn(p->id, "produce-failed", "topic=%s error=%s chunk=%u "
             "chunks=%u", p->topic, rd_kafka_err2name(err),
             env->chunk_index, p->chunk_count);
    free(value);
    *errp = err;
    return -1;
}


void
ingress_kafka_detach(struct ingress_kafka *ik, struct ingress_kafka_pending *p,
                     enum ingress_kafka_detach_reason reason)
{
    pthread_mutex_lock(&ik->lock);
    p->done = NULL;
    p->arg = NULL;
    p->detached = true;
    p->reason = reason;
    p->sealed = true;
    ingress_kafka_release_if_done(ik, p);
    pthread_mutex_unlock(&ik->lock);
}


/*
 * Waits until librdkafka has no record left to send or acknowledge and
 * no report left for the report thread to serve, or until timeout_ms.
 */
int
ingress_kafka_flush(struct ingress_kafka *ik, int timeout_ms)
{
    struct timespec step = { 0, INGRESS_KAFKA_FLUSH_STEP_MS * 1000000L };
    int64_t         deadline = util_monotonic_ms() + timeout_ms;
    int             left = 0;

    for (;;) {
        pthread_rwlock_rdlock(&ik->rk_lock);
        left = ik->rk != NULL ? rd_kafka_outq_len(ik->rk) : 0;
        pthread_rwlock_unlock(&ik->rk_lock);
        if (left == 0 || util_monotonic_ms() >= deadline)
            return left;
        nanosleep(&step, NULL);
    }
}


bool
ingress_kafka_broken(struct ingress_kafka *ik)
{
    bool broken;

    pthread_mutex_lock(&ik->lock);
    broken = ik->broken;
    pthread_mutex_unlock(&ik->lock);
    return broken;
}


bool
ingress_kafka_usable(struct ingress_kafka *ik)
{
    bool usable;

    pthread_rwlock_rdlock(&ik->rk_lock);
    usable = ik->rk != NULL;
    pthread_rwlock_unlock(&ik->rk_lock);
    pthread_mutex_lock(&ik->lock);
    usable = usable && !ik->fatal && !ik->broken;
    pthread_mutex_unlock(&ik->lock);
    return usable;
}


uint64_t
ingress_kafka_late_acks(struct ingress_kafka *ik)
{
    uint64_t n;

    pthread_mutex_lock(&ik->lock);
    n = ik->late_acks;
    pthread_mutex_unlock(&ik->lock);
    return n;
}

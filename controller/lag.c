#include "lag.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka.h"
#include "kafka_group.h"
#include "log.h"
#include "offsets.h"
#include "util.h"

/* Timeout of each broker request of a pass. */
#define LAG_TIMEOUT_MS      5000

/* How long reading the oldest uncommitted records may take. */
#define LAG_READ_TIMEOUT_MS 3000

struct lag_monitor {
    const struct config *cfg;
    rd_kafka_t          *rk;
    pthread_t            thread;
    pthread_mutex_t      lock;          /* guards what follows */
    pthread_cond_t       wake;
    bool                 stop;
    struct lag_row      *rows;
    size_t               nrows;
    bool                 connected;
    char                 why[512];

    /* Thread-only: timestamps of the oldest records, kept across passes. */
    struct lag_row      *known;
    int64_t             *known_ms;
    size_t               nknown;

    struct metric       *lag_messages;
    struct metric       *lag_seconds;
    struct metric       *members;
};

static void *lag_thread(void *arg);
static int lag_pass(struct lag_monitor *m, struct lag_row **rows,
                    size_t *nrows, char *err, size_t errlen);
static void lag_add_group(struct lag_monitor *m,
                          const struct rd_kafka_metadata *md,
                          const char *group, const char *topic,
                          struct lag_row **rows, size_t *nrows);
static void lag_read_ages(struct lag_monitor *m, struct lag_row *rows,
                          size_t nrows);
static void lag_publish(struct lag_monitor *m, struct lag_row *rows,
                        size_t nrows, bool connected, const char *why);


struct lag_monitor *
lag_start(const struct config *cfg, struct metrics *reg, char *err,
          size_t errlen)
{
    struct lag_monitor *m = xcalloc(1, sizeof(*m));
    rd_kafka_conf_t    *conf = kafka_conf_new(cfg, err, errlen);
    char                group[64], why[512];

    m->cfg = cfg;
    snprintf(m->why, sizeof(m->why), "no lag pass yet");
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->wake, NULL);
    m->lag_messages = metrics_gauge(
        reg, "ferry_consumer_group_lag_messages",
        "End offset minus committed offset, from the brokers; a group that "
        "never committed counts from the earliest retained offset.",
        "group,topic,partition");
    m->lag_seconds = metrics_gauge(
        reg, "ferry_consumer_group_lag_seconds",
        "Age of the oldest message not yet committed, 0 when there is none.",
        "group,topic,partition");
    m->members = metrics_gauge(reg, "ferry_consumer_group_members",
                               "Members of the group.", "group");

    /* Only assigned, never subscribed, so the group id joins nothing. */
    snprintf(group, sizeof(group), "ferry-controller.lag.%ld",
             (long)getpid());
    if (conf == NULL ||
        kafka_conf_set(conf, "group.id", group, err, errlen) == -1 ||
        kafka_conf_set(conf, "enable.auto.commit", "false", err,
                       errlen) == -1 ||
        kafka_conf_set(conf, "enable.auto.offset.store", "false", err,
                       errlen) == -1)
        goto fail;
    if ((m->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why))) ==
        NULL) {
        snprintf(err, errlen, "creating the lag client failed: %s", why);
        goto fail;
    }
    conf = NULL;
    rd_kafka_poll_set_consumer(m->rk);
    if (pthread_create(&m->thread, NULL, lag_thread, m) != 0) {
        snprintf(err, errlen, "starting the lag thread failed");
        goto fail;
    }
    return m;

fail:
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    if (m->rk != NULL)
        rd_kafka_destroy(m->rk);
    pthread_cond_destroy(&m->wake);
    pthread_mutex_destroy(&m->lock);
    free(m);
    return NULL;
}


void
lag_stop(struct lag_monitor *m)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    m->stop = true;
    pthread_cond_signal(&m->wake);
    pthread_mutex_unlock(&m->lock);
    pthread_join(m->thread, NULL);
    rd_kafka_consumer_close(m->rk);
    rd_kafka_destroy(m->rk);
    pthread_cond_destroy(&m->wake);
    pthread_mutex_destroy(&m->lock);
    free(m->rows);
    free(m->known);
    free(m->known_ms);
    free(m);
}


size_t
lag_snapshot(struct lag_monitor *m, struct lag_row **rows, bool *connected,
             char *why, size_t whylen)
{
    size_t n;

    *rows = NULL;
    *connected = false;
    if (m == NULL) {
        snprintf(why, whylen, "the lag monitor is not running");
        return 0;
    }
    pthread_mutex_lock(&m->lock);
    n = m->nrows;
    if (n > 0) {
        *rows = xmalloc(n * sizeof(**rows));
        memcpy(*rows, m->rows, n * sizeof(**rows));
    }
    *connected = m->connected;
    snprintf(why, whylen, "%s", m->why);
    pthread_mutex_unlock(&m->lock);
    return n;
}


static void *
lag_thread(void *arg)
{
    struct lag_monitor *m = arg;
    bool                was_connected = true;

    for (;;) {
        struct lag_row *rows = NULL;
        size_t          nrows = 0;
        char            err[512] = "";
        struct timespec until;
        bool            ok;

        ok = lag_pass(m, &rows, &nrows, err, sizeof(err)) == 0;
        if (ok != was_connected) {
            if (ok)
                log_info(NULL, "lag-recovered", "groups_partitions=%zu",
                         nrows);
            else
                log_warn(NULL, "lag-failed", "error=\"%s\"", err);
        }
        was_connected = ok;
        lag_publish(m, rows, nrows, ok, err);

        /* Sleep until the next pass, or until lag_stop(). */
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += LAG_INTERVAL_MS / 1000;
        pthread_mutex_lock(&m->lock);
        while (!m->stop &&
               pthread_cond_timedwait(&m->wake, &m->lock, &until) == 0)
            continue;
        if (m->stop) {
            pthread_mutex_unlock(&m->lock);
            return NULL;
        }
        pthread_mutex_unlock(&m->lock);
    }
}


/* Collects every row; fails only when the metadata request fails. */
static int
lag_pass(struct lag_monitor *m, struct lag_row **rows, size_t *nrows,
         char *err, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t             kerr;

    kerr = rd_kafka_metadata(m->rk, 1, NULL, &md, LAG_TIMEOUT_MS);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "metadata request failed: %s",
                 rd_kafka_err2str(kerr));
        return -1;
    }
    for (size_t i = 0; i < m->cfg->nregions; i++) {
        const char *region = m->cfg->regions[i].name;
        char        group[160], topic[160];

        snprintf(group, sizeof(group), "ferry-deliver.%s", region);
        snprintf(topic, sizeof(topic), "mail.%s", region);
        lag_add_group(m, md, group, topic, rows, nrows);
        snprintf(group, sizeof(group), "ferry-deliver.%s.pinned", region);
        snprintf(topic, sizeof(topic), "mail.%s.pinned", region);
        lag_add_group(m, md, group, topic, rows, nrows);
        snprintf(group, sizeof(group), "ferry-takeover.%s", region);
        snprintf(topic, sizeof(topic), "mail.%s", region);
        lag_add_group(m, md, group, topic, rows, nrows);
    }
    rd_kafka_metadata_destroy(md);
    lag_read_ages(m, *rows, *nrows);
    return 0;
}


/*
 * Adds a row per partition of topic for group, when the topic exists. A
 * group whose offsets cannot be read is logged and left out of the pass.
 */
static void
lag_add_group(struct lag_monitor *m, const struct rd_kafka_metadata *md,
              const char *group, const char *topic, struct lag_row **rows,
              size_t *nrows)
{
    const struct rd_kafka_metadata_topic *t = NULL;
    rd_kafka_topic_partition_list_t      *committed;
    size_t                                members = 0, first = *nrows;
    char                                  err[512];

    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, topic) == 0 &&
            md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
            t = &md->topics[i];
    if (t == NULL)
        return;
    if (offsets_group_members(m->rk, group, &members, err, sizeof(err)) ==
            -1 ||
        (committed = kafka_group_committed(m->rk, group, LAG_TIMEOUT_MS, 2,
                                           err, sizeof(err))) == NULL) {
        log_warn(NULL, "lag-group-failed", "group=%s error=\"%s\"", group,
                 err);
        return;
    }

    *rows = xrealloc(*rows, (*nrows + (size_t)t->partition_cnt) *
                                sizeof(**rows));
    for (int p = 0; p < t->partition_cnt; p++) {
        const rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find(committed, topic, p);
        struct lag_row *row = &(*rows)[*nrows];
        int64_t         low;

        memset(row, 0, sizeof(*row));
        snprintf(row->group, sizeof(row->group), "%s", group);
        snprintf(row->topic, sizeof(row->topic), "%s", topic);
        row->partition = p;
        row->members = members;
        row->committed = tp != NULL && tp->offset >= 0
                             ? tp->offset
                             : KAFKA_GROUP_NO_OFFSET;
        if (kafka_group_watermarks(m->rk, topic, p, LAG_TIMEOUT_MS, &low,
                                   &row->end, err, sizeof(err)) == -1) {
            log_warn(NULL, "lag-group-failed", "group=%s error=\"%s\"",
                     group, err);
            *nrows = first;
            break;
        }

        row->lag = kafka_group_lag(row->committed, low, row->end);
        row->oldest = kafka_group_oldest_offset(row->committed, low);
        (*nrows)++;
    }
    rd_kafka_topic_partition_list_destroy(committed);
}


/*
 * Sets the age of each lagging row from the timestamp of its oldest
 * record. Timestamps already read are reused, because the oldest record
 * of a partition that is not moving stays the same. Partitions read now
 * get the timestamp in the offset field of wanted, flagged by opaque.
 */
static void
lag_read_ages(struct lag_monitor *m, struct lag_row *rows, size_t nrows)
{
    rd_kafka_topic_partition_list_t *wanted;
    int64_t                         *found = xcalloc(nrows + 1,
                                                     sizeof(*found));
    int64_t                          deadline, now;
    size_t                           missing = 0;

    wanted = rd_kafka_topic_partition_list_new((int)nrows + 1);
    for (size_t i = 0; i < nrows; i++) {
        int64_t offset = rows[i].oldest;

        found[i] = -1;
        if (rows[i].lag == 0)
            continue;
        for (size_t k = 0; k < m->nknown; k++)
            if (strcmp(m->known[k].topic, rows[i].topic) == 0 &&
                m->known[k].partition == rows[i].partition &&
                m->known[k].oldest == offset)
                found[i] = m->known_ms[k];
        if (found[i] >= 0 ||
            rd_kafka_topic_partition_list_find(wanted, rows[i].topic,
                                               rows[i].partition) != NULL)
            continue;
        rd_kafka_topic_partition_list_add(wanted, rows[i].topic,
                                          rows[i].partition)
            ->offset = offset;
        missing++;
    }

    /* One assignment reads the first record of every partition needed. */
    if (missing > 0 && rd_kafka_assign(m->rk, wanted) == 0) {
        deadline = util_monotonic_ms() + LAG_READ_TIMEOUT_MS;
        while (missing > 0 && util_monotonic_ms() < deadline) {
            rd_kafka_message_t *msg = rd_kafka_consumer_poll(m->rk, 200);
            rd_kafka_topic_partition_t *tp;

            if (msg == NULL)
                continue;
            if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                (tp = rd_kafka_topic_partition_list_find(
                     wanted, rd_kafka_topic_name(msg->rkt),
                     msg->partition)) != NULL &&
                tp->opaque == NULL) {
                tp->opaque = (void *)1;
                tp->offset = rd_kafka_message_timestamp(msg, NULL);
                missing--;
            }
            rd_kafka_message_destroy(msg);
        }
        rd_kafka_assign(m->rk, NULL);
    }

    /* Ages, and what the next pass may reuse. */
    free(m->known);
    free(m->known_ms);
    m->known = xcalloc(nrows + 1, sizeof(*m->known));
    m->known_ms = xcalloc(nrows + 1, sizeof(*m->known_ms));
    m->nknown = 0;
    now = util_now_ms();
    for (size_t i = 0; i < nrows; i++) {
        rd_kafka_topic_partition_t *tp;

        rows[i].age_seconds = 0;
        if (rows[i].lag == 0)
            continue;
        if (found[i] < 0 &&
            (tp = rd_kafka_topic_partition_list_find(
                 wanted, rows[i].topic, rows[i].partition)) != NULL &&
            tp->opaque != NULL)
            found[i] = tp->offset;
        if (found[i] < 0)
            continue;
        if (found[i] < now)
            rows[i].age_seconds = (double)(now - found[i]) / 1000.0;
        m->known[m->nknown] = rows[i];
        m->known_ms[m->nknown++] = found[i];
    }
    rd_kafka_topic_partition_list_destroy(wanted);
    free(found);
}


/* Stores the pass for lag_snapshot() and sets the gauges. */
static void
lag_publish(struct lag_monitor *m, struct lag_row *rows, size_t nrows,
            bool connected, const char *why)
{
    char partition[16];

    pthread_mutex_lock(&m->lock);
    m->connected = connected;
    snprintf(m->why, sizeof(m->why), "%s", connected ? "" : why);
    if (connected) {
        free(m->rows);
        m->rows = rows;
        m->nrows = nrows;
        rows = NULL;
    }
    pthread_mutex_unlock(&m->lock);
    if (!connected) {
        free(rows);
        return;         /* the last values stay until Kafka is reachable */
    }

    metric_sweep_begin(m->lag_messages);
    metric_sweep_begin(m->lag_seconds);
    metric_sweep_begin(m->members);
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->nrows; i++) {
        const struct lag_row *row = &m->rows[i];

        snprintf(partition, sizeof(partition), "%d", (int)row->partition);
        metric_set(m->lag_messages, (double)row->lag, row->group, row->topic,
                   partition);
        metric_set(m->lag_seconds, row->age_seconds, row->group, row->topic,
                   partition);
        metric_set(m->members, (double)row->members, row->group);
    }
    pthread_mutex_unlock(&m->lock);
    metric_sweep_end(m->lag_messages);
    metric_sweep_end(m->lag_seconds);
    metric_sweep_end(m->members);
}

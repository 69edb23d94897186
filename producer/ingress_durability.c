#include "ingress_durability.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ingress_kafka.h"
#include "kafka.h"
#include "log.h"
#include "util.h"

struct ingress_durability_report {
    char   *buf;
    size_t  size;
    size_t  len;
    int     problems;
    int64_t record_max;     /* smallest max.message.bytes, -1 unknown */
};

static void ingress_durability_add(struct ingress_durability_report *r,
                                   const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void ingress_durability_check_replicas(
    struct ingress_durability_report *r, const struct rd_kafka_metadata *md,
    const char *topic, bool *exists);
static void ingress_durability_check_configs(
    struct ingress_durability_report *r, rd_kafka_t *rk, char **topics,
    size_t ntopics, int timeout_ms);
static void ingress_durability_check_entries(
    struct ingress_durability_report *r, const rd_kafka_ConfigResource_t *res);


/* Appends one problem, separated from the previous one by "; ". */
static void
ingress_durability_add(struct ingress_durability_report *r, const char *fmt,
                       ...)
{
    va_list ap;
    int     n;

    r->problems++;
    if (r->len + 3 >= r->size)
        return;
    if (r->len > 0) {
        memcpy(r->buf + r->len, "; ", 3);
        r->len += 2;
    }
    va_start(ap, fmt);
    n = vsnprintf(r->buf + r->len, r->size - r->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        r->len += (size_t)n;
    if (r->len >= r->size)
        r->len = r->size - 1;
}


/* Checks that topic exists and that each partition has enough replicas. */
static void
ingress_durability_check_replicas(struct ingress_durability_report *r,
                                  const struct rd_kafka_metadata *md,
                                  const char *topic, bool *exists)
{
    *exists = false;
    for (int i = 0; i < md->topic_cnt; i++) {
        const struct rd_kafka_metadata_topic *t = &md->topics[i];
        int                                   replicas = -1;

        if (strcmp(t->topic, topic) != 0)
            continue;
        if (t->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            ingress_durability_add(r, "topic %s: %s", topic,
                                   rd_kafka_err2str(t->err));
            return;
        }
        *exists = true;
        for (int p = 0; p < t->partition_cnt; p++)
            if (replicas == -1 || t->partitions[p].replica_cnt < replicas)
                replicas = t->partitions[p].replica_cnt;
        if (replicas < INGRESS_DURABILITY_MIN_REPLICAS)
            ingress_durability_add(r, "topic %s: replication factor %d, "
                                   "needs at least %d", topic, replicas,
                                   INGRESS_DURABILITY_MIN_REPLICAS);
        return;
    }
    ingress_durability_add(r, "topic %s does not exist", topic);
}


static void
ingress_durability_check_entries(struct ingress_durability_report *r,
                                 const rd_kafka_ConfigResource_t *res)
{
    const char                    *topic = rd_kafka_ConfigResource_name(res);
    const rd_kafka_ConfigEntry_t **entries;
    size_t                         n;
    int                            min_isr = -1;
    const char                    *unclean = NULL;

    entries = rd_kafka_ConfigResource_configs(res, &n);
    for (size_t i = 0; i < n; i++) {
        const char *name = rd_kafka_ConfigEntry_name(entries[i]);
        const char *value = rd_kafka_ConfigEntry_value(entries[i]);

        if (value == NULL)
            continue;
        if (strcmp(name, "min.insync.replicas") == 0)
            min_isr = atoi(value);
        else if (strcmp(name, "max.message.bytes") == 0 &&
                 (r->record_max < 0 || atoll(value) < r->record_max))
            r->record_max = atoll(value);
        else if (strcmp(name, "unclean.leader.election.enable") == 0)
            unclean = value;
    }

    if (min_isr < INGRESS_DURABILITY_MIN_ISR)
        ingress_durability_add(r, "topic %s: min.insync.replicas %d, needs "
                               "at least %d", topic, min_isr,
                               INGRESS_DURABILITY_MIN_ISR);
    if (unclean == NULL || strcmp(unclean, "false") != 0)
        ingress_durability_add(r, "topic %s: unclean.leader.election.enable "
                               "is %s, needs false", topic,
                               unclean != NULL ? unclean : "unknown");
}


/* Reads the topic configurations with DescribeConfigs. */
static void
ingress_durability_check_configs(struct ingress_durability_report *r,
                                 rd_kafka_t *rk, char **topics,
                                 size_t ntopics, int timeout_ms)
{
    rd_kafka_ConfigResource_t              **res;
    rd_kafka_AdminOptions_t                 *options;
    rd_kafka_queue_t                        *queue;
    rd_kafka_event_t                        *ev;
    const rd_kafka_DescribeConfigs_result_t *result;
    const rd_kafka_ConfigResource_t        **described;
    size_t                                   n;
    char                                     why[256];

    if (ntopics == 0)
        return;

    res = xcalloc(ntopics, sizeof(*res));
    for (size_t i = 0; i < ntopics; i++)
        res[i] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC,
                                             topics[i]);
    options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, why,
                                              sizeof(why));
    queue = rd_kafka_queue_new(rk);

    rd_kafka_DescribeConfigs(rk, res, ntopics, options, queue);
    ev = rd_kafka_queue_poll(queue, timeout_ms + 1000);
    if (ev == NULL) {
        ingress_durability_add(r, "DescribeConfigs timed out after %d ms",
                               timeout_ms);
    } else if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ingress_durability_add(r, "DescribeConfigs failed: %s",
                               rd_kafka_event_error_string(ev));
    } else {
        result = rd_kafka_event_DescribeConfigs_result(ev);
        described = rd_kafka_DescribeConfigs_result_resources(result, &n);
        for (size_t i = 0; i < n; i++) {
            if (rd_kafka_ConfigResource_error(described[i]) !=
                RD_KAFKA_RESP_ERR_NO_ERROR)
                ingress_durability_add(
                    r, "topic %s: DescribeConfigs failed: %s",
                    rd_kafka_ConfigResource_name(described[i]),
                    rd_kafka_ConfigResource_error_string(described[i]));
            else
                ingress_durability_check_entries(r, described[i]);
        }
    }

    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(queue);
    rd_kafka_AdminOptions_destroy(options);
    rd_kafka_ConfigResource_destroy_array(res, ntopics);
    free(res);
}


int
ingress_durability_check(const struct config *cfg, int timeout_ms,
                         int64_t *record_max, char *err, size_t errlen)
{
    struct ingress_durability_report report = { err, errlen, 0, 0, -1 };
    const struct rd_kafka_metadata  *md = NULL;
    rd_kafka_conf_t                 *conf;
    rd_kafka_t                      *rk = NULL;
    rd_kafka_resp_err_t              code;
    char                           **topics;
    char                           **present;
    size_t                           ntopics = 0, npresent = 0;
    char                             why[512];
    bool                             exists;

    err[0] = '\0';
    topics = xcalloc(2 * cfg->ningress_regions, sizeof(*topics));
    present = xcalloc(2 * cfg->ningress_regions, sizeof(*present));
    for (size_t i = 0; i < cfg->ningress_regions; i++) {
        snprintf(why, sizeof(why), "mail.%s", cfg->ingress_regions[i]);
        topics[ntopics++] = xstrdup(why);
        snprintf(why, sizeof(why), "mail.%s.pinned", cfg->ingress_regions[i]);
        topics[ntopics++] = xstrdup(why);
    }

    if ((conf = kafka_conf_new(cfg, err, errlen)) == NULL) {
        report.problems++;
        goto out;
    }
    rd_kafka_conf_set_log_cb(conf, ingress_kafka_log);
    if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why))) ==
        NULL) {
        rd_kafka_conf_destroy(conf);
        ingress_durability_add(&report, "cannot create a Kafka client: %s",
                               why);
        goto out;
    }

    code = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    if (code != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ingress_durability_add(&report, "cannot read topic metadata from "
                               "%s: %s", cfg->bootstrap_servers,
                               rd_kafka_err2str(code));
        goto out;
    }
    for (size_t i = 0; i < ntopics; i++) {
        ingress_durability_check_replicas(&report, md, topics[i], &exists);
        if (exists)
            present[npresent++] = topics[i];
    }
    ingress_durability_check_configs(&report, rk, present, npresent,
                                     timeout_ms);

out:
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    if (rk != NULL)
        rd_kafka_destroy(rk);
    for (size_t i = 0; i < ntopics; i++)
        free(topics[i]);
    free(topics);
    free(present);
    *record_max = report.record_max;
    return report.problems == 0 ? 0 : -1;
}


struct ingress_durability_monitor {
    const struct config         *cfg;
    int                          timeout_ms;
    ingress_durability_check_fn  check;
    pthread_t                    thread;
    pthread_mutex_t              lock;
    pthread_cond_t               wake;
    bool                         stopping;      /* under lock */
    bool                         failing;       /* last run failed */
    atomic_bool                  safe;
    atomic_uint_fast64_t         runs;
};


/* Runs the check once and logs when its outcome changed. */
static void
ingress_durability_monitor_run(struct ingress_durability_monitor *m)
{
    char    err[2048];
    char    quoted[2200];
    int64_t topic_max = -1;
    int64_t record_max = ingress_kafka_record_max(m->cfg);
    bool    strict = m->cfg->ingress_durability == DURABILITY_STRICT;
    int     rc;

    rc = m->check(m->cfg, m->timeout_ms, &topic_max, err, sizeof(err));
    if (rc == 0 && topic_max >= 0 && topic_max < record_max) {
        snprintf(err, sizeof(err), "max.message.bytes %lld of a mail topic "
                 "is below the largest record, %lld bytes",
                 (long long)topic_max, (long long)record_max);
        rc = -1;
    }

    if (rc == 0) {
        if (m->failing)
            log_info(NULL, "durability-restored", "check=periodic mode=%s "
                     "action=%s",
                     strict ? "strict" : "relaxed",
                     strict ? "accept-sessions" : "none");
        m->failing = false;
        atomic_store(&m->safe, true);
        atomic_fetch_add(&m->runs, 1);
        return;
    }

    /* One line per change, not per run, so a long outage logs once. */
    if (!m->failing) {
        log_quote(quoted, sizeof(quoted), err);
        if (strict)
            log_error(NULL, "durability-failed", "check=periodic problems=%s "
                      "action=refuse-sessions reply=\"421 4.3.0\"", quoted);
        else
            log_warn(NULL, "durability-weak", "check=periodic problems=%s "
                     "action=continue reason=\"ingress.durability is "
                     "relaxed\"", quoted);
    }
    m->failing = true;
    atomic_store(&m->safe, !strict);
    atomic_fetch_add(&m->runs, 1);
}


static void *
ingress_durability_monitor_main(void *arg)
{
    struct ingress_durability_monitor *m = arg;
    struct timespec                    until;
    bool                               stopping;

    for (;;) {
        pthread_mutex_lock(&m->lock);
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += m->cfg->ingress_durability_check_interval;
        while (!m->stopping &&
               pthread_cond_timedwait(&m->wake, &m->lock, &until) == 0)
            continue;
        stopping = m->stopping;
        pthread_mutex_unlock(&m->lock);
        if (stopping)
            return NULL;
        ingress_durability_monitor_run(m);
    }
}


struct ingress_durability_monitor *
ingress_durability_monitor_start(const struct config *cfg, int timeout_ms,
                                 ingress_durability_check_fn check)
{
    struct ingress_durability_monitor *m;
    pthread_condattr_t                 attr;

    if (cfg->ingress_durability_check_interval == 0)
        return NULL;

    m = xcalloc(1, sizeof(*m));
    m->cfg = cfg;
    m->timeout_ms = timeout_ms;
    m->check = check;
    atomic_init(&m->safe, true);
    atomic_init(&m->runs, 0);
    pthread_mutex_init(&m->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&m->wake, &attr);
    pthread_condattr_destroy(&attr);

    if (pthread_create(&m->thread, NULL, ingress_durability_monitor_main,
                       m) != 0) {
        pthread_cond_destroy(&m->wake);
        pthread_mutex_destroy(&m->lock);
        free(m);
        return NULL;
    }
    return m;
}


void
ingress_durability_monitor_stop(struct ingress_durability_monitor *m)
{
    if (m == NULL)
        return;

    pthread_mutex_lock(&m->lock);
    m->stopping = true;
    pthread_cond_signal(&m->wake);
    pthread_mutex_unlock(&m->lock);
    pthread_join(m->thread, NULL);
    pthread_cond_destroy(&m->wake);
    pthread_mutex_destroy(&m->lock);
    free(m);
}


bool
ingress_durability_monitor_safe(const struct ingress_durability_monitor *m)
{
    return m == NULL || atomic_load(&m->safe);
}


uint64_t
ingress_durability_monitor_runs(const struct ingress_durability_monitor *m)
{
    return m == NULL ? 0 : atomic_load(&m->runs);
}

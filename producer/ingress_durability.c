#include "ingress_durability.h"

#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingress_kafka.h"
#include "kafka.h"
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

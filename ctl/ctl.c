#include "ctl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka.h"
#include "util.h"

volatile sig_atomic_t ctl_interrupted;

static rd_kafka_conf_t *ctl_conf_new(const struct ctl *ctl, char *err,
                                     size_t errlen);
static void ctl_on_kafka_log(const rd_kafka_t *rk, int level,
                             const char *facility, const char *message);


void
ctl_usage_error(const char *command, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "ferryctl%s%s: ", command != NULL ? " " : "",
            command != NULL ? command : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (command != NULL)
        fprintf(stderr, "; see 'ferryctl %s --help'\n", command);
    else
        fprintf(stderr, "; see 'ferryctl --help'\n");
    exit(CTL_EXIT_USAGE);
}


void
ctl_error(const char *command, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "ferryctl %s: ", command);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}


int
ctl_init(struct ctl *ctl, const char *command, const char *config_path,
         const char *bootstrap, char *err, size_t errlen)
{
    memset(ctl, 0, sizeof(*ctl));
    ctl->command = command;
    if (config_path != NULL) {
        ctl->cfg = config_load(config_path, err, errlen);
        if (ctl->cfg == NULL)
            return -1;
    }
    if (bootstrap != NULL)
        ctl->bootstrap = xstrdup(bootstrap);
    else if (ctl->cfg != NULL)
        ctl->bootstrap = xstrdup(ctl->cfg->bootstrap_servers);
    else {
        snprintf(err, errlen, "no broker given: use -c FILE or "
                 "--bootstrap HOST:PORT");
        return -1;
    }
    return 0;
}


void
ctl_fini(struct ctl *ctl)
{
    config_free(ctl->cfg);
    free(ctl->bootstrap);
    memset(ctl, 0, sizeof(*ctl));
}


rd_kafka_t *
ctl_consumer_new(const struct ctl *ctl, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = ctl_conf_new(ctl, err, errlen);
    char             group[64];

    if (conf == NULL)
        return NULL;
    snprintf(group, sizeof(group), "ferryctl.%s.%ld", ctl->command,
             (long)getpid());
    return kafka_reader_new(conf, group, err, errlen);
}


rd_kafka_t *
ctl_producer_new(const struct ctl *ctl,
                 void (*on_delivery)(rd_kafka_t *, const rd_kafka_message_t *,
                                     void *),
                 char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = ctl_conf_new(ctl, err, errlen);
    rd_kafka_t      *rk;
    char             why[512];

    if (conf == NULL)
        return NULL;
    if (kafka_conf_set(conf, "enable.idempotence", "true", err,
                       errlen) == -1 ||
        kafka_conf_set(conf, "acks", "all", err, errlen) == -1) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "cannot create the Kafka producer: %s", why);
        return NULL;
    }
    return rk;
}


int
ctl_topic_partitions(rd_kafka_t *rk, const char *topic, int *count,
                     char *err, size_t errlen)
{
    rd_kafka_topic_t            *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t          kerr;
    int                          rc = -1;

    kerr = rd_kafka_metadata(rk, 0, rkt, &md, CTL_REQUEST_TIMEOUT_MS);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "metadata for topic %s: %s", topic,
                 rd_kafka_err2str(kerr));
        goto out;
    }
    if (md->topic_cnt != 1 ||
        md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        snprintf(err, errlen, "topic %s does not exist", topic);
        rc = -2;
        goto out;
    }
    if (md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "topic %s: %s", topic,
                 rd_kafka_err2str(md->topics[0].err));
        goto out;
    }
    *count = md->topics[0].partition_cnt;
    rc = 0;

out:
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}


char **
ctl_regions(const struct ctl *ctl, rd_kafka_t *rk, size_t *count, char *err,
            size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t             kerr;
    char                          **regions;

    *count = 0;
    if (ctl->cfg != NULL) {
        regions = xcalloc(ctl->cfg->nregions + 1, sizeof(*regions));
        for (size_t i = 0; i < ctl->cfg->nregions; i++)
            regions[(*count)++] = xstrdup(ctl->cfg->regions[i].name);
        return regions;
    }

    kerr = rd_kafka_metadata(rk, 1, NULL, &md, CTL_REQUEST_TIMEOUT_MS);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "listing topics: %s", rd_kafka_err2str(kerr));
        return NULL;
    }
    regions = xcalloc((size_t)md->topic_cnt + 1, sizeof(*regions));
    for (int i = 0; i < md->topic_cnt; i++) {
        const char *name = md->topics[i].topic;

        /* Region names hold no dot; mail.R.pinned and mail.R.dead do. */
        if (strncmp(name, "mail.", 5) == 0 && name[5] != '\0' &&
            strchr(name + 5, '.') == NULL)
            regions[(*count)++] = xstrdup(name + 5);
    }
    rd_kafka_metadata_destroy(md);
    return regions;
}


void
ctl_regions_free(char **regions, size_t count)
{
    if (regions == NULL)
        return;
    for (size_t i = 0; i < count; i++)
        free(regions[i]);
    free(regions);
}


static rd_kafka_conf_t *
ctl_conf_new(const struct ctl *ctl, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf;

    if (ctl->cfg != NULL) {
        conf = kafka_conf_new(ctl->cfg, err, errlen);
        if (conf == NULL)
            return NULL;
    } else {
        conf = rd_kafka_conf_new();
    }
    if (kafka_conf_set(conf, "bootstrap.servers", ctl->bootstrap, err,
                       errlen) == -1) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, ctl_on_kafka_log);
    return conf;
}


/*
 * Drops librdkafka's own log lines, which repeat every failed connection
 * attempt; ferryctl reports the failure of the request instead. Set
 * FERRYCTL_DEBUG to see them.
 */
static void
ctl_on_kafka_log(const rd_kafka_t *rk, int level, const char *facility,
                 const char *message)
{
    if (getenv("FERRYCTL_DEBUG") != NULL)
        fprintf(stderr, "ferryctl: librdkafka %s: %s\n", facility, message);
}

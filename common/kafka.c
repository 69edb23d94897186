#include "kafka.h"

#include <stdio.h>
#include <string.h>


rd_kafka_conf_t *
kafka_conf_new(const struct config *cfg, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char             why[256];

    if (rd_kafka_conf_set(conf, "bootstrap.servers", cfg->bootstrap_servers,
                          why, sizeof(why)) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "%s: key 'kafka.bootstrap_servers': %s",
                 cfg->path, why);
        goto fail;
    }

    for (size_t i = 0; i < cfg->nkafka_properties; i++) {
        const struct kafka_property *p = &cfg->kafka_properties[i];

        if (rd_kafka_conf_set(conf, p->name, p->value, why, sizeof(why)) !=
            RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "%s: key 'kafka.properties.%s': %s",
                     cfg->path, p->name, why);
            goto fail;
        }
    }
    return conf;

fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}


/* Property names librdkafka takes as aliases of each other. */
static const char *const kafka_aliases[][2] = {
    { "linger.ms", "queue.buffering.max.ms" },
};


static bool
kafka_property_given(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nkafka_properties; i++)
        if (strcmp(cfg->kafka_properties[i].name, name) == 0)
            return true;
    return false;
}


int
kafka_conf_default(rd_kafka_conf_t *conf, const struct config *cfg,
                   const char *name, const char *value, char *err,
                   size_t errlen)
{
    if (kafka_property_given(cfg, name))
        return 0;
    for (size_t i = 0; i < sizeof(kafka_aliases) / sizeof(*kafka_aliases);
         i++) {
        const char *other = NULL;

        if (strcmp(kafka_aliases[i][0], name) == 0)
            other = kafka_aliases[i][1];
        else if (strcmp(kafka_aliases[i][1], name) == 0)
            other = kafka_aliases[i][0];
        if (other != NULL && kafka_property_given(cfg, other))
            return 0;
    }
    return kafka_conf_set(conf, name, value, err, errlen);
}


int
kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value,
               char *err, size_t errlen)
{
    char why[256];

    if (rd_kafka_conf_set(conf, name, value, why, sizeof(why)) !=
        RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "librdkafka property '%s=%s': %s", name, value,
                 why);
        return -1;
    }
    return 0;
}


rd_kafka_t *
kafka_reader_new(rd_kafka_conf_t *conf, const char *group, char *err,
                 size_t errlen)
{
    rd_kafka_t *rk;
    char        why[256];

    if (kafka_conf_set(conf, "group.id", group, err, errlen) == -1 ||
        kafka_conf_set(conf, "enable.auto.commit", "false", err,
                       errlen) == -1 ||
        kafka_conf_set(conf, "enable.auto.offset.store", "false", err,
                       errlen) == -1 ||
        kafka_conf_set(conf, "enable.partition.eof", "true", err,
                       errlen) == -1) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }

    /* On success rd_kafka_new() owns conf. */
    if ((rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why,
                           sizeof(why))) == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "cannot create the Kafka consumer: %s", why);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

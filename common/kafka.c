#include "kafka.h"

#include <stdio.h>


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

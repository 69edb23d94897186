/*
 * kafka: librdkafka configuration shared by the daemons.
 */
#ifndef FERRY_KAFKA_H
#define FERRY_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/*
 * Returns a configuration with bootstrap.servers and every property of
 * kafka.properties applied, in that order. The caller then sets the
 * properties its role requires. Returns NULL and fills err when librdkafka
 * rejects a property; the message names the key and the file.
 */
rd_kafka_conf_t *kafka_conf_new(const struct config *cfg, char *err,
                                size_t errlen);

/*
 * Sets name to value unless kafka.properties in cfg sets it, under its
 * own name or librdkafka's other name for it. Fills err on failure.
 */
int kafka_conf_default(rd_kafka_conf_t *conf, const struct config *cfg,
                       const char *name, const char *value, char *err,
                       size_t errlen);

/*
 * Sets one property the caller's role depends on; fills err on failure.
 */
int kafka_conf_set(rd_kafka_conf_t *conf, const char *name,
                   const char *value, char *err, size_t errlen);

/*
 * Creates a consumer that is only ever assign()ed and never commits, for
 * reading partitions from offsets of the caller's choice. The end of a
 * partition arrives as an RD_KAFKA_RESP_ERR__PARTITION_EOF message.
 *
 * librdkafka 2.0.2 needs a group.id for rd_kafka_consumer_poll(), so the
 * consumer is given group, which should name the process. Nothing is
 * committed for it, so the broker never records the group. Takes
 * ownership of conf, also on failure, when it returns NULL and fills err.
 */
rd_kafka_t *kafka_reader_new(rd_kafka_conf_t *conf, const char *group,
                             char *err, size_t errlen);

#endif

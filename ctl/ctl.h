/*
 * ctl: what every ferryctl subcommand shares: the command line's common
 * options, the configuration, and Kafka clients built from it.
 *
 * Exit codes: 0 success, 1 a runtime failure (broker unreachable, topic
 * missing), 2 "not found" for trace, 64 a usage error (EX_USAGE).
 */
#ifndef FERRY_CTL_H
#define FERRY_CTL_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define CTL_EXIT_OK        0
#define CTL_EXIT_FAILURE   1
#define CTL_EXIT_NOT_FOUND 2
#define CTL_EXIT_USAGE     64

/* Milliseconds a single broker request may take before ferryctl fails. */
#define CTL_REQUEST_TIMEOUT_MS 10000

/* Long-option values shared by the subcommands' option tables. */
enum ctl_option {
    CTL_OPT_BOOTSTRAP = 1000,
    CTL_OPT_HELP,
    CTL_OPT_JSON,
    CTL_OPT_WATCH,
    CTL_OPT_GROUP,
    CTL_OPT_TOPIC,
    CTL_OPT_FROM,
    CTL_OPT_TO,
    CTL_OPT_EXECUTE,
    CTL_OPT_TO_TOPIC,
    CTL_OPT_PARTITIONS,
    CTL_OPT_INCLUDE_DELIVERED,
    CTL_OPT_SINCE,
    CTL_OPT_REGION,
    CTL_OPT_REASON,
    CTL_OPT_RESOLVER
};

struct ctl {
    const char    *command;         /* "lag", "replay", ... */
    struct config *cfg;             /* NULL without -c */
    char          *bootstrap;       /* --bootstrap, else the config's */
};

/* Set by SIGINT and SIGTERM; long loops check it. */
extern volatile sig_atomic_t ctl_interrupted;

/*
 * Prints "ferryctl COMMAND: MESSAGE" and a pointer to --help on one line
 * to stderr, then exits with CTL_EXIT_USAGE.
 */
void ctl_usage_error(const char *command, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/* Prints "ferryctl COMMAND: MESSAGE" to stderr. */
void ctl_error(const char *command, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Loads config_path (may be NULL) and settles the bootstrap servers, with
 * --bootstrap taking precedence. Returns -1 and fills err when the file
 * is invalid or neither names a broker.
 */
int ctl_init(struct ctl *ctl, const char *command, const char *config_path,
             const char *bootstrap, char *err, size_t errlen);
void ctl_fini(struct ctl *ctl);

/*
 * Creates a consumer that is only ever assign()ed, with auto commit and
 * offset store off. librdkafka 2.0.2 needs a group.id for assign() and
 * rd_kafka_consumer_poll(); ferryctl sets a private one per process and
 * never subscribes or commits, so the broker never records that group.
 */
rd_kafka_t *ctl_consumer_new(const struct ctl *ctl, char *err,
                             size_t errlen);

/*
 * Creates an idempotent producer with acks=all that calls on_delivery
 * for each record's delivery report from rd_kafka_poll().
 */
rd_kafka_t *ctl_producer_new(const struct ctl *ctl,
                             void (*on_delivery)(rd_kafka_t *,
                                                 const rd_kafka_message_t *,
                                                 void *),
                             char *err, size_t errlen);

/*
 * Writes the partition count of topic into *count. Returns -2 when the
 * topic does not exist, and -1 when metadata did not come; both fill err.
 */
int ctl_topic_partitions(rd_kafka_t *rk, const char *topic, int *count,
                         char *err, size_t errlen);

/*
 * Returns the regions to look at: those of the configuration, or without
 * one, every R with a topic mail.R on the broker. The caller frees the
 * array and its strings with ctl_regions_free().
 */
char **ctl_regions(const struct ctl *ctl, rd_kafka_t *rk, size_t *count,
                   char *err, size_t errlen);
void ctl_regions_free(char **regions, size_t count);

#endif

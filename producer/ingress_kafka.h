/*
 * ingress_kafka: the idempotent producer of the ingress, served by the
 * libevent loop.
 *
 * Every produce gets a pending object that librdkafka carries as the
 * message opaque until the delivery report. It is freed only there, or
 * when the producer is destroyed, and never by the caller. A session that
 * stops waiting (ack deadline, client gone, shutdown) detaches from it
 * with ingress_kafka_detach(); the report then only logs the late outcome.
 *
 * When the producer raises a fatal error, every waiting caller gets
 * RD_KAFKA_RESP_ERR__FATAL through its callback, and the producer is
 * destroyed and created again. If that fails, the event loop is stopped
 * and ingress_kafka_broken() returns true, so the process can exit for
 * its supervisor to restart it.
 */
#ifndef FERRY_INGRESS_KAFKA_H
#define FERRY_INGRESS_KAFKA_H

#include <event2/event.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "envelope.h"

enum ingress_kafka_detach_reason {
    INGRESS_KAFKA_REPLIED,      /* the client already got a 4xx reply */
    INGRESS_KAFKA_CLIENT_GONE   /* the client left before any reply */
};

struct ingress_kafka;
struct ingress_kafka_pending;

/* Checks the producer configuration without connecting. */
int ingress_kafka_check(const struct config *cfg, char *err, size_t errlen);

struct ingress_kafka *ingress_kafka_new(const struct config *cfg,
                                        struct event_base *base, char *err,
                                        size_t errlen);

/* Purges the messages still queued, logs their reports, and destroys. */
void ingress_kafka_free(struct ingress_kafka *ik);

/*
 * Produces env to topic, keyed by the envelope id. env is encoded before
 * this returns. done(arg, err) is called once from the event loop with
 * the delivery report, unless the caller detaches first. Returns NULL and
 * sets *errp when librdkafka refused the message at once.
 */
struct ingress_kafka_pending *
ingress_kafka_produce(struct ingress_kafka *ik, const char *topic,
                      const struct envelope *env,
                      void (*done)(void *arg, rd_kafka_resp_err_t err),
                      void *arg, rd_kafka_resp_err_t *errp);

/* Cancels the callback of p. Its report is then only logged. */
void ingress_kafka_detach(struct ingress_kafka_pending *p,
                          enum ingress_kafka_detach_reason reason);

/*
 * Waits up to timeout_ms for outstanding delivery reports and returns
 * how many are still outstanding. Blocks the caller.
 */
int ingress_kafka_flush(struct ingress_kafka *ik, int timeout_ms);

bool ingress_kafka_broken(const struct ingress_kafka *ik);

/* Writes a librdkafka log message as an event=kafka-log line (log_cb). */
void ingress_kafka_log(const rd_kafka_t *rk, int level, const char *facility,
                       const char *buf);

/* Counts acknowledgements that arrived after the client got a 4xx. */
uint64_t ingress_kafka_late_acks(const struct ingress_kafka *ik);

#endif

/*
 * ingress_kafka: the idempotent producer of the ingress, one per process,
 * shared by its event loops.
 *
 * Every message gets a pending object that librdkafka carries as the
 * opaque of each of its records (chunks) until their delivery reports.
 * A thread of its own serves the reports and posts each message's outcome
 * to the mailbox of the loop that started it, which calls the message's
 * callback. The object is freed once every queued record has its report
 * and the outcome has run, or when the producer is destroyed, and never
 * by the caller. A session that stops waiting (ack deadline, client gone,
 * shutdown, a chunk that could not be queued) detaches from it with
 * ingress_kafka_detach(). The reports then only log the late outcome.
 * Each message is used from the loop that started it only.
 *
 * When the producer raises a fatal error, every waiting caller gets
 * RD_KAFKA_RESP_ERR__FATAL through its callback, and the producer is
 * destroyed and created again. If that fails, ingress_kafka_broken()
 * returns true, so the process can exit for its supervisor to restart it.
 */
#ifndef FERRY_INGRESS_KAFKA_H
#define FERRY_INGRESS_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "envelope.h"
#include "mailbox.h"

enum ingress_kafka_detach_reason {
    INGRESS_KAFKA_REPLIED,      /* the client already got a 4xx reply */
    INGRESS_KAFKA_CLIENT_GONE   /* the client left before any reply */
};

struct ingress_kafka;
struct ingress_kafka_pending;

/*
 * Upper bound of a record's bytes besides its chunk of the message: the
 * envelope fields (up to 50 recipients of 254 octets each), the Received
 * header of chunk 0, the key and Kafka's record framing.
 */
#define INGRESS_KAFKA_RECORD_OVERHEAD (32 * 1024)

/* Returns the largest record value the ingress writes, in bytes. */
int64_t ingress_kafka_record_max(const struct config *cfg);

/*
 * Checks the producer configuration without connecting, and that the
 * largest record fits the producer's and fetchers' size limits.
 */
int ingress_kafka_check(const struct config *cfg, char *err, size_t errlen);

/* Creates the producer and starts the thread that serves its reports. */
struct ingress_kafka *ingress_kafka_new(const struct config *cfg, char *err,
                                        size_t errlen);

/*
 * Purges the messages still queued, logs their reports, and destroys.
 * The loops must have stopped.
 */
void ingress_kafka_free(struct ingress_kafka *ik);

/*
 * Starts a message of chunk_count records keyed by id, written to topic.
 * done(arg, err) is called once from the loop of mailbox: with the first
 * failed report, or with RD_KAFKA_RESP_ERR_NO_ERROR once every chunk has
 * been acknowledged, unless the caller detaches first.
 */
struct ingress_kafka_pending *
ingress_kafka_begin(struct ingress_kafka *ik, struct mailbox *mailbox,
                    const char *id, const char *topic, uint32_t chunk_count,
                    void (*done)(void *arg, rd_kafka_resp_err_t err),
                    void *arg);

/*
 * Queues the next chunk of p's message; env is encoded before this
 * returns. Returns -1 and sets *errp when librdkafka refused the record
 * at once. The caller then detaches, which ends the message.
 */
int ingress_kafka_produce(struct ingress_kafka *ik,
                          struct ingress_kafka_pending *p,
                          const struct envelope *env,
                          rd_kafka_resp_err_t *errp);

/*
 * Cancels the callback of p and queues no more chunks for it. Its reports
 * are then only logged; p may be freed at once, so the caller forgets it.
 */
void ingress_kafka_detach(struct ingress_kafka *ik,
                          struct ingress_kafka_pending *p,
                          enum ingress_kafka_detach_reason reason);

/*
 * Waits up to timeout_ms for outstanding delivery reports and returns
 * how many are still outstanding. Blocks the caller; the report thread
 * serves the reports meanwhile.
 */
int ingress_kafka_flush(struct ingress_kafka *ik, int timeout_ms);

bool ingress_kafka_broken(struct ingress_kafka *ik);

/* Returns true while a producer exists and has raised no fatal error. */
bool ingress_kafka_usable(struct ingress_kafka *ik);

/* Writes a librdkafka log message as an event=kafka-log line (log_cb). */
void ingress_kafka_log(const rd_kafka_t *rk, int level, const char *facility,
                       const char *buf);

/* Counts acknowledgements that arrived after the client got a 4xx. */
uint64_t ingress_kafka_late_acks(struct ingress_kafka *ik);

#endif

/*
 * outbound: one message on its way from its Kafka records to SES and to
 * the record of its outcome (ferry.delivered or mail.R.dead).
 *
 * A message is one record, or all chunks of one envelope, which the
 * ingress writes in order to one partition, possibly interleaved with
 * records of other messages. Its state only
 * moves forward, except from SENDING back to BACKOFF when SES returns a
 * retryable error. It is done, and its offsets may be committed, only after the
 * outcome record was acknowledged by Kafka.
 */
#ifndef FERRY_OUTBOUND_H
#define FERRY_OUTBOUND_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"
#include "ses.h"

struct deliver;
struct deliver_partition;

/*
 * Kind of the object an SES request's opaque points to. It is the first
 * member of each such struct, so the done callback can tell them apart.
 */
enum deliver_job {
    DELIVER_JOB_SEND,           /* struct outbound */
    DELIVER_JOB_ACCOUNT         /* struct account */
};

enum outbound_state {
    OUTBOUND_COLLECTING,        /* waiting for more chunks */
    OUTBOUND_READY,             /* waiting for a free SES slot */
    OUTBOUND_SENDING,           /* SendEmail in flight */
    OUTBOUND_BACKOFF,           /* waiting until next_attempt_ms */
    OUTBOUND_RECORDING,         /* producing the ferry.delivered record */
    OUTBOUND_DEAD_LETTERING,    /* producing the mail.R.dead records */
    OUTBOUND_DONE
};

/* One consumed record of a message, kept for dead-lettering. */
struct outbound_record {
    struct outbound *ob;
    int64_t          offset;
    unsigned char   *key;
    size_t           key_len;
    unsigned char   *value;
    size_t           value_len;
    int              dead_lettered;     /* its dead copy is acknowledged */
};

struct outbound {
    enum deliver_job          job;              /* DELIVER_JOB_SEND */
    struct deliver           *d;
    struct deliver_partition *part;             /* NULL once dropped */
    struct outbound          *next;             /* by offset, or orphans */
    enum outbound_state       state;
    struct envelope          *env;              /* NULL: undecodable */
    struct outbound_record   *records;
    size_t                    nrecords;
    int64_t                   first_timestamp;  /* of the first record,
                                                   ms, or -1 */
    int                       attempt;          /* SendEmail attempts */
    int                       produce_attempt;  /* outcome record tries */
    int                       produce_failed;
    int64_t                   next_attempt_ms;  /* monotonic clock */
    int                       pending;          /* SES requests and
                                                   produce reports out */
    struct outbound_record    dsn;              /* notification to the
                                                   sender; value NULL:
                                                   none */
    char                      error_code[128];
    char                      reason[512];
    char                      ses_message_id[256];
};

/*
 * Takes one consumed record of part: starts a message, adds a chunk to the
 * one being collected, or dead-letters what can never be sent.
 */
void outbound_consume(struct deliver_partition *part,
                      const rd_kafka_message_t *msg);

/*
 * Starts SendEmail for ob; the caller checked that a slot is free.
 * A message SES could never take is dead-lettered instead.
 */
void outbound_send(struct outbound *ob);

/* The SES client's done callback; opaque is the message. */
void outbound_on_ses(void *opaque, const struct ses_outcome *outcome);

/* Handles a delivery report; opaque of the produced record is rec. */
void outbound_on_produced(struct outbound_record *rec,
                          rd_kafka_resp_err_t err);

/* Produces the outcome records again after a failed delivery report. */
void outbound_retry_produce(struct outbound *ob);

/*
 * Forgets ob because its partition was revoked: cancels its SES request
 * and frees it, or parks it until its delivery reports came back.
 */
void outbound_drop(struct outbound *ob);

void outbound_free(struct outbound *ob);

const char *outbound_id(const struct outbound *ob);

#endif

#include "outbound.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliver.h"
#include "deliver_metrics.h"
#include "delivered.h"
#include "dsn.h"
#include "log.h"
#include "schedule.h"
#include "util.h"


/*
 * Margin on top of ingress.ack_timeout_ms before an incomplete chunked
 * message counts as abandoned. It covers clock differences between the
 * ingress nodes that set the record timestamps.
 */
#define OUTBOUND_CHUNK_SLACK_MS 60000

static struct outbound *outbound_new(struct deliver_partition *part);
static void outbound_add_record(struct outbound *ob,
                                const rd_kafka_message_t *msg);
static void outbound_link(struct deliver_partition *part,
                          struct outbound *ob);
static void outbound_unlink(struct outbound *ob);
static struct outbound *outbound_collecting(struct deliver_partition *part,
                                            const char *id);
static void outbound_abandon_chunks(struct deliver_partition *part,
                                    const rd_kafka_message_t *msg);
static void outbound_add_chunk(struct outbound *ob, struct envelope *env);
static int outbound_check_message(struct outbound *ob);
static void outbound_dead_letter(struct outbound *ob, const char *code,
                                 const char *reason);
static int outbound_produce_dead(struct outbound *ob,
                                 struct outbound_record *rec);
static void outbound_prepare_dsn(struct outbound *ob, const char *code,
                                 const char *reason);
static int outbound_produce_dsn(struct outbound *ob);
static void outbound_record_delivery(struct outbound *ob);
static void outbound_produce_failed(struct outbound *ob, const char *topic,
                                    const char *why);
static void outbound_settle(struct outbound *ob);
static void outbound_finish(struct outbound *ob);
static void outbound_complete(struct outbound *ob);
static void outbound_ready(struct outbound *ob);
static int outbound_skip_delivered(struct outbound *ob);
static void outbound_backoff(struct outbound *ob,
                             const struct ses_outcome *outcome);
static const char *outbound_topic(const struct outbound *ob);
static int32_t outbound_partition(const struct outbound *ob);
static const char *outbound_dead_topic(const struct outbound *ob);


const char *
outbound_id(const struct outbound *ob)
{
    return ob->env != NULL ? ob->env->id : NULL;
}


static const char *
outbound_topic(const struct outbound *ob)
{
    return ob->part != NULL ? ob->part->src->topic : "-";
}


/* The dead topic of the region whose mail ob is. */
static const char *
outbound_dead_topic(const struct outbound *ob)
{
    return ob->part != NULL ? ob->part->src->dead_topic : "-";
}


static int32_t
outbound_partition(const struct outbound *ob)
{
    return ob->part != NULL ? ob->part->partition : -1;
}


static struct outbound *
outbound_new(struct deliver_partition *part)
{
    struct outbound *ob = xcalloc(1, sizeof(*ob));

    ob->job = DELIVER_JOB_SEND;
    ob->d = part->src->d;
    ob->part = part;
    ob->state = OUTBOUND_COLLECTING;
    ob->first_timestamp = -1;
    outbound_link(part, ob);
    ob->d->in_progress++;
    return ob;
}


static void
outbound_add_record(struct outbound *ob, const rd_kafka_message_t *msg)
{
    struct outbound_record *rec;

    ob->records = xrealloc(ob->records,
                           (ob->nrecords + 1) * sizeof(*ob->records));
    if (ob->nrecords == 0)
        ob->first_timestamp = rd_kafka_message_timestamp(msg, NULL);
    rec = &ob->records[ob->nrecords++];
    memset(rec, 0, sizeof(*rec));
    rec->ob = ob;
    rec->offset = msg->offset;
    rec->key_len = msg->key_len;
    rec->key = xmalloc(msg->key_len);
    if (msg->key_len > 0)
        memcpy(rec->key, msg->key, msg->key_len);
    rec->value_len = msg->len;
    rec->value = xmalloc(msg->len);
    if (msg->len > 0)
        memcpy(rec->value, msg->payload, msg->len);

    /* The array moved: point every record back at its message again. */
    for (size_t i = 0; i < ob->nrecords; i++)
        ob->records[i].ob = ob;
}


static void
outbound_link(struct deliver_partition *part, struct outbound *ob)
{
    ob->next = NULL;
    if (part->tail != NULL)
        part->tail->next = ob;
    else
        part->head = ob;
    part->tail = ob;
}


static void
outbound_unlink(struct outbound *ob)
{
    struct deliver_partition *part = ob->part;
    struct outbound         **pp, *prev = NULL;

    for (pp = &part->head; *pp != NULL; prev = *pp, pp = &(*pp)->next) {
        if (*pp == ob) {
            *pp = ob->next;
            if (part->tail == ob)
                part->tail = prev;
            break;
        }
    }
    ob->next = NULL;
}


/* Returns the message of the partition still collecting chunks of id. */
static struct outbound *
outbound_collecting(struct deliver_partition *part, const char *id)
{
    for (struct outbound *ob = part->head; ob != NULL; ob = ob->next)
        if (ob->state == OUTBOUND_COLLECTING &&
            strcmp(ob->env->id, id) == 0)
            return ob;
    return NULL;
}


void
outbound_consume(struct deliver_partition *part,
                 const rd_kafka_message_t *msg)
{
    struct outbound *open = NULL;
    struct outbound *ob;
    struct envelope *env;
    char             err[256];
    char             reason[512];

    env = envelope_decode(msg->payload, msg->len, err, sizeof(err));
    if (env != NULL && env->chunk_count > 1)
        open = outbound_collecting(part, env->id);

    /* The next chunk of a message being collected. */
    if (open != NULL && env->chunk_count == open->env->chunk_count &&
        env->chunk_index == open->nrecords) {
        outbound_add_record(open, msg);
        outbound_add_chunk(open, env);
        if (open->nrecords == open->env->chunk_count &&
            outbound_check_message(open) == 0)
            outbound_ready(open);
        outbound_abandon_chunks(part, msg);
        return;
    }
    if (open != NULL) {
        snprintf(reason, sizeof(reason), "chunk %u of %u at offset %lld "
                 "does not follow chunk %zu", env->chunk_index,
                 env->chunk_count, (long long)msg->offset,
                 open->nrecords - 1);
        outbound_dead_letter(open, "IncompleteChunks", reason);
    }

    ob = outbound_new(part);
    outbound_add_record(ob, msg);
    if (env == NULL) {
        log_quote(reason, sizeof(reason), err);
        log_error(NULL, "undecodable", "topic=%s partition=%d offset=%lld "
                  "reason=%s", part->src->topic, (int)part->partition,
                  (long long)msg->offset, reason);
        outbound_dead_letter(ob, "Undecodable", err);
        outbound_abandon_chunks(part, msg);
        return;
    }
    ob->env = env;
    if (env->chunk_index != 0) {
        snprintf(reason, sizeof(reason), "chunk %u of %u without the "
                 "chunks before it", env->chunk_index, env->chunk_count);
        outbound_dead_letter(ob, "IncompleteChunks", reason);
    } else if (env->chunk_count == 1 && outbound_check_message(ob) == 0) {
        outbound_ready(ob);
    }
    outbound_abandon_chunks(part, msg);
}


/*
 * Dead-letters the messages of part whose missing chunks can no longer
 * come. The ingress replies 250 only when every chunk was acknowledged
 * within ingress.ack_timeout_ms, and replies 451 otherwise, so the client
 * sends the message again. A record of the same partition written more
 * than that timeout, plus OUTBOUND_CHUNK_SLACK_MS for clock differences
 * between ingress nodes, after a message's first chunk shows that the
 * ingress gave up on it. Chunks of different messages may interleave.
 */
static void
outbound_abandon_chunks(struct deliver_partition *part,
                        const rd_kafka_message_t *msg)
{
    int64_t now_ts = rd_kafka_message_timestamp(msg, NULL);
    int64_t limit = part->src->d->cfg->ingress_ack_timeout_ms +
                    OUTBOUND_CHUNK_SLACK_MS;
    char    reason[256];

    if (now_ts < 0)
        return;
    for (struct outbound *ob = part->head, *next; ob != NULL; ob = next) {
        next = ob->next;
        if (ob->state != OUTBOUND_COLLECTING || ob->first_timestamp < 0 ||
            now_ts - ob->first_timestamp <= limit)
            continue;
        snprintf(reason, sizeof(reason), "got %zu of %u chunks, and none "
                 "more within %lld ms", ob->nrecords, ob->env->chunk_count,
                 (long long)limit);
        outbound_dead_letter(ob, "IncompleteChunks", reason);
    }
}


/* Appends the bytes of one more chunk to the message; frees env. */
static void
outbound_add_chunk(struct outbound *ob, struct envelope *env)
{
    struct envelope *head = ob->env;

    head->message = xrealloc(head->message,
                             head->message_len + env->message_len);
    memcpy(head->message + head->message_len, env->message,
           env->message_len);
    head->message_len += env->message_len;
    envelope_free(env);
}


/*
 * Compares the whole message with the size and SHA-256 the ingress wrote,
 * so a lost or doubled chunk is never sent. Dead-letters it on mismatch.
 */
static int
outbound_check_message(struct outbound *ob)
{
    struct envelope *env = ob->env;
    unsigned char    digest[SHA256_DIGEST_LENGTH];
    char             reason[256];

    if (env->message_len != env->size) {
        snprintf(reason, sizeof(reason), "message has %zu bytes, the "
                 "envelope says %llu", env->message_len,
                 (unsigned long long)env->size);
        outbound_dead_letter(ob, "SizeMismatch", reason);
        return -1;
    }
    SHA256(env->message, env->message_len, digest);
    if (memcmp(digest, env->sha256, sizeof(digest)) != 0) {
        outbound_dead_letter(ob, "ChecksumMismatch", "SHA-256 of the "
                             "message differs from the envelope's");
        return -1;
    }
    return 0;
}


void
outbound_send(struct outbound *ob)
{
    struct deliver  *d = ob->d;
    struct envelope *env = ob->env;
    struct ses_email email = {
        env->id, env->sender, env->recipients, env->nrecipients,
        env->message, env->message_len
    };
    char             err[256];
    char             reason[320];

    /* Delivered by this process after the message became ready. */
    if (outbound_skip_delivered(ob))
        return;
    if (ses_email_fits(env->message_len) == -1) {
        snprintf(reason, sizeof(reason), "message of %zu bytes is larger "
                 "than SES's limit of %d bytes after base64",
                 env->message_len, SES_MAX_BASE64_BYTES);
        outbound_prepare_dsn(ob, "MessageTooLarge", reason);
        outbound_dead_letter(ob, "MessageTooLarge", reason);
        return;
    }
    if (ses_client_send_email(d->ses, &email, ob, err, sizeof(err)) == -1) {
        snprintf(reason, sizeof(reason), "request not sent: %s", err);
        outbound_dead_letter(ob, "InvalidRequest", reason);
        return;
    }
    pacing_take(&d->pacing, env->nrecipients, util_monotonic_ms());
    ob->attempt++;
    ob->pending++;
    ob->state = OUTBOUND_SENDING;
}


void
outbound_on_ses(void *opaque, const struct ses_outcome *outcome)
{
    struct outbound *ob = opaque;
    struct deliver  *d = ob->d;
    char             quoted[600];

    ob->pending--;
    report_count(&d->report, outcome->result);
    deliver_metrics_ses(d->region, outcome);
    if (outcome->result == SES_OK)
        dedup_add(d->delivered_ids, ob->env->id, outcome->message_id);
    if (ob->part == NULL) {
        /*
         * Revoked while in flight: the new owner sends it again, unless
         * that is this process, which then writes only ferry.delivered.
         */
        if (outcome->result == SES_OK)
            log_warn(outbound_id(ob), "delivered-after-revoke",
                     "region=%s ses_message_id=%s", d->region,
                     outcome->message_id);
        outbound_drop(ob);
        return;
    }

    switch (outcome->result) {
    case SES_OK:
        snprintf(ob->ses_message_id, sizeof(ob->ses_message_id), "%s",
                 outcome->message_id);
        schedule_resume_region(d);
        schedule_pace_success(d);
        outbound_record_delivery(ob);
        break;

    case SES_THROTTLED:
        schedule_resume_region(d);
        schedule_pace_throttle(d);
        outbound_backoff(ob, outcome);
        break;

    case SES_RETRY:
        outbound_backoff(ob, outcome);
        break;

    case SES_REGION_DOWN:
    case SES_LOCAL_FAULT:
        ob->state = OUTBOUND_BACKOFF;
        schedule_stop_region(d, ob, outcome);
        ob->next_attempt_ms = d->next_probe_ms;
        break;

    case SES_REJECTED:
        schedule_resume_region(d);
        snprintf(ob->error_code, sizeof(ob->error_code), "%s",
                 outcome->error_type[0] ? outcome->error_type
                                        : "MessageRejected");
        log_quote(quoted, sizeof(quoted), outcome->reason);
        log_info(outbound_id(ob), "rejected", "region=%s reason=%s "
                 "attempt=%d", d->region, quoted, ob->attempt);
        outbound_prepare_dsn(ob, ob->error_code, outcome->reason);
        outbound_dead_letter(ob, ob->error_code, outcome->reason);
        break;
    }
}


/* Schedules the next attempt after a throttle or a transient failure. */
static void
outbound_backoff(struct outbound *ob, const struct ses_outcome *outcome)
{
    struct deliver *d = ob->d;
    int64_t         wait = schedule_backoff_ms(d, ob->attempt);
    char            quoted[600];

    ob->state = OUTBOUND_BACKOFF;
    ob->next_attempt_ms = util_monotonic_ms() + wait;

    /* Throttling is per account: hold back every send, not this one. */
    if (outcome->result == SES_THROTTLED &&
        d->hold_until_ms < ob->next_attempt_ms)
        d->hold_until_ms = util_monotonic_ms() + wait / 2;

    log_quote(quoted, sizeof(quoted), outcome->reason);
    log_info(outbound_id(ob), "retried", "region=%s class=%s reason=%s "
             "attempt=%d backoff_ms=%lld topic=%s partition=%d offset=%lld",
             d->region, ses_result_name(outcome->result), quoted,
             ob->attempt, (long long)wait, outbound_topic(ob),
             (int)outbound_partition(ob), (long long)ob->records[0].offset);
}


/* Produces the ferry.delivered record; done once it is acknowledged. */
static void
outbound_record_delivery(struct outbound *ob)
{
    struct deliver     *d = ob->d;
    struct delivered    rec;
    unsigned char      *buf;
    size_t              len;
    rd_kafka_resp_err_t err;

    ob->state = OUTBOUND_RECORDING;
    memset(&rec, 0, sizeof(rec));
    snprintf(rec.envelope_id, sizeof(rec.envelope_id), "%s", ob->env->id);
    snprintf(rec.source_topic, sizeof(rec.source_topic), "%s",
             outbound_topic(ob));
    rec.source_partition = outbound_partition(ob);
    rec.source_offset = ob->records[0].offset;
    snprintf(rec.region, sizeof(rec.region), "%s", d->region);
    snprintf(rec.ses_message_id, sizeof(rec.ses_message_id), "%s",
             ob->ses_message_id);
    rec.delivered_at_ms = util_now_ms();
    buf = delivered_encode(&rec, &len);

    /* librdkafka frees buf once it took the record (RD_KAFKA_MSG_F_FREE). */
    err = rd_kafka_producev(d->producer,
                            RD_KAFKA_V_RKT(d->delivered_topic),
                            RD_KAFKA_V_KEY(ob->env->id,
                                           strlen(ob->env->id)),
                            RD_KAFKA_V_VALUE(buf, len),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                            RD_KAFKA_V_OPAQUE(&ob->records[0]),
                            RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        free(buf);
        outbound_produce_failed(ob, DELIVERED_TOPIC,
                                rd_kafka_err2str(err));
        return;
    }
    ob->pending++;
}


/*
 * Sends every record of ob that is not yet acknowledged there to
 * mail.R.dead, as it was consumed, with the reason in headers.
 */
static void
outbound_dead_letter(struct outbound *ob, const char *code,
                     const char *reason)
{
    /* A retry passes the message's own fields back in. */
    if (code != ob->error_code)
        snprintf(ob->error_code, sizeof(ob->error_code), "%s", code);
    if (reason != ob->reason)
        snprintf(ob->reason, sizeof(ob->reason), "%s", reason);
    ob->state = OUTBOUND_DEAD_LETTERING;
    ob->produce_failed = 0;

    for (size_t i = 0; i < ob->nrecords; i++) {
        if (ob->records[i].dead_lettered)
            continue;
        if (outbound_produce_dead(ob, &ob->records[i]) == -1)
            return;
    }
    if (ob->dsn.value != NULL && !ob->dsn.dead_lettered &&
        outbound_produce_dsn(ob) == -1)
        return;
    if (ob->pending == 0)
        outbound_settle(ob);
}


/*
 * Builds the delivery status notification for a message SES rejected,
 * when deliver.dsn_from is set and the sender should get one. It is
 * produced with the dead-letter records and kept for their retries.
 */
static void
outbound_prepare_dsn(struct outbound *ob, const char *code,
                     const char *reason)
{
    struct deliver   *d = ob->d;
    struct dsn_report r;
    struct envelope  *env;
    char              id[ENVELOPE_ID_LEN + 1];

    if (ob->dsn.value != NULL || ob->env == NULL ||
        !dsn_wanted(ob->env, d->cfg->deliver_dsn_from))
        return;
    envelope_id_new(id);
    r = (struct dsn_report){
        ob->env, d->cfg->deliver_dsn_from, d->hostname, d->region, code,
        reason, id, util_now_ms()
    };
    env = dsn_envelope(&r);
    ob->dsn.ob = ob;
    ob->dsn.offset = -1;
    ob->dsn.key = (unsigned char *)xstrdup(id);
    ob->dsn.key_len = strlen(id);
    ob->dsn.value = envelope_encode(env, &ob->dsn.value_len);
    envelope_free(env);
}


/* Produces the notification to the topic the rejected message came from. */
static int
outbound_produce_dsn(struct outbound *ob)
{
    rd_kafka_resp_err_t err;

    err = rd_kafka_producev(ob->d->producer,
                            RD_KAFKA_V_TOPIC(outbound_topic(ob)),
                            RD_KAFKA_V_KEY(ob->dsn.key, ob->dsn.key_len),
                            RD_KAFKA_V_VALUE(ob->dsn.value,
                                             ob->dsn.value_len),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_OPAQUE(&ob->dsn), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        outbound_produce_failed(ob, outbound_topic(ob),
                                rd_kafka_err2str(err));
        return -1;
    }
    ob->pending++;
    return 0;
}


static int
outbound_produce_dead(struct outbound *ob, struct outbound_record *rec)
{
    struct deliver     *d = ob->d;
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(5);
    char                partition[16], offset[24];
    rd_kafka_resp_err_t err;

    snprintf(partition, sizeof(partition), "%d",
             (int)outbound_partition(ob));
    snprintf(offset, sizeof(offset), "%lld", (long long)rec->offset);
    rd_kafka_header_add(hdrs, "ferry-error-code", -1, ob->error_code, -1);
    rd_kafka_header_add(hdrs, "ferry-error-message", -1, ob->reason, -1);
    rd_kafka_header_add(hdrs, "ferry-source-topic", -1, outbound_topic(ob),
                        -1);
    rd_kafka_header_add(hdrs, "ferry-source-partition", -1, partition, -1);
    rd_kafka_header_add(hdrs, "ferry-source-offset", -1, offset, -1);

    /* On success librdkafka owns hdrs; the value is copied. */
    err = rd_kafka_producev(d->producer,
                            RD_KAFKA_V_TOPIC(outbound_dead_topic(ob)),
                            RD_KAFKA_V_KEY(rec->key, rec->key_len),
                            RD_KAFKA_V_VALUE(rec->value, rec->value_len),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_HEADERS(hdrs),
                            RD_KAFKA_V_OPAQUE(rec), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(hdrs);
        outbound_produce_failed(ob, outbound_dead_topic(ob),
                                rd_kafka_err2str(err));
        return -1;
    }
    ob->pending++;
    return 0;
}


void
outbound_on_produced(struct outbound_record *rec, rd_kafka_resp_err_t err)
{
    struct outbound *ob = rec->ob;

    ob->pending--;
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR && ob->state == OUTBOUND_RECORDING)
        dedup_mark_recorded(ob->d->delivered_ids, ob->env->id);
    if (ob->part == NULL) {
        outbound_drop(ob);
        return;
    }

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        outbound_produce_failed(ob, ob->state == OUTBOUND_RECORDING
                                        ? DELIVERED_TOPIC
                                        : outbound_dead_topic(ob),
                                rd_kafka_err2str(err));
        return;
    }
    if (ob->state == OUTBOUND_DEAD_LETTERING)
        rec->dead_lettered = 1;
    outbound_settle(ob);
}


/*
 * Logs a failed produce. The outcome records are produced again once no
 * report is outstanding; the message itself is never sent to SES again.
 */
static void
outbound_produce_failed(struct outbound *ob, const char *topic,
                        const char *why)
{
    char quoted[300];

    ob->produce_failed = 1;
    log_warn(outbound_id(ob), "produce-failed", "topic=%s reason=%s "
             "attempt=%d", topic, log_quote(quoted, sizeof(quoted), why),
             ob->produce_attempt + 1);
    outbound_settle(ob);
}


/*
 * Finishes ob when its last delivery report came back well, or schedules
 * the outcome records again when one of them failed.
 */
static void
outbound_settle(struct outbound *ob)
{
    if (ob->pending > 0)
        return;
    if (!ob->produce_failed) {
        outbound_finish(ob);
        return;
    }
    ob->produce_attempt++;
    ob->next_attempt_ms = util_monotonic_ms() +
                          schedule_backoff_ms(ob->d, ob->produce_attempt);
}


void
outbound_retry_produce(struct outbound *ob)
{
    ob->produce_failed = 0;
    if (ob->state == OUTBOUND_RECORDING)
        outbound_record_delivery(ob);
    else
        outbound_dead_letter(ob, ob->error_code, ob->reason);
}


/* The outcome is recorded: the offsets may be committed now. */
static void
outbound_finish(struct outbound *ob)
{
    struct deliver_partition *part = ob->part;
    char                      quoted[600];

    /*
     * attempts=0: SES accepted the message from this process earlier, and
     * only its record was written now (see outbound_skip_delivered).
     */
    if (ob->state == OUTBOUND_RECORDING) {
        log_info(outbound_id(ob), "delivered", "region=%s "
                 "ses_message_id=%s topic=%s partition=%d offset=%lld "
                 "attempts=%d", ob->d->region, ob->ses_message_id,
                 part->src->topic, (int)part->partition,
                 (long long)ob->records[0].offset, ob->attempt);
    } else {
        deliver_metrics_dead_lettered(ob->d->region);
        log_info(outbound_id(ob), "dead-lettered", "code=%s reason=%s "
                 "topic=%s partition=%d offset=%lld records=%zu dead=%s "
                 "dsn=%s", ob->error_code, log_quote(quoted, sizeof(quoted),
                                                     ob->reason),
                 part->src->topic, (int)part->partition,
                 (long long)ob->records[0].offset, ob->nrecords,
                 outbound_dead_topic(ob),
                 ob->dsn.key != NULL ? (const char *)ob->dsn.key : "-");
    }
    outbound_complete(ob);
}


/*
 * Marks the offsets of ob done and frees it. Each record is marked on its
 * own, because records of other messages may lie between two chunks of
 * ob, and those must hold back the commit until they are done themselves.
 */
static void
outbound_complete(struct outbound *ob)
{
    struct deliver_partition *part = ob->part;

    ob->state = OUTBOUND_DONE;
    for (size_t i = 0; i < ob->nrecords; i++)
        window_mark_done(&part->window, ob->records[i].offset,
                         ob->records[i].offset);
    outbound_unlink(ob);
    ob->d->in_progress--;
    outbound_free(ob);
}


/* Makes a whole, checked message wait for SES, unless it was delivered. */
static void
outbound_ready(struct outbound *ob)
{
    if (!outbound_skip_delivered(ob))
        ob->state = OUTBOUND_READY;
}


/*
 * Finishes ob without a send when this process delivered its envelope
 * before, which happens when a rebalance hands a partition back after an
 * offset commit was lost. When the ferry.delivered record of that
 * delivery was never acknowledged, only the record is written again.
 * Returns 1 when ob was taken over, and ob may then be freed.
 */
static int
outbound_skip_delivered(struct outbound *ob)
{
    const struct dedup_entry *e = dedup_find(ob->d->delivered_ids,
                                             ob->env->id);

    if (e == NULL)
        return 0;
    log_info(outbound_id(ob), "skipped-delivered", "region=%s topic=%s "
             "partition=%d offset=%lld recorded=%s", ob->d->region,
             outbound_topic(ob), (int)outbound_partition(ob),
             (long long)ob->records[0].offset, e->recorded ? "yes" : "no");
    if (e->recorded) {
        outbound_complete(ob);
        return 1;
    }
    snprintf(ob->ses_message_id, sizeof(ob->ses_message_id), "%s",
             e->ses_message_id);
    outbound_record_delivery(ob);
    return 1;
}


void
outbound_drop(struct outbound *ob)
{
    struct deliver   *d = ob->d;
    struct outbound **pp;

    if (ob->part != NULL) {
        if (ob->state == OUTBOUND_SENDING) {
            ses_client_cancel(d->ses, ob);
            ob->pending--;
        }
        outbound_unlink(ob);
        ob->part = NULL;
        d->in_progress--;
        if (ob->pending > 0) {
            ob->next = d->orphans;
            d->orphans = ob;
            return;
        }
        outbound_free(ob);
        return;
    }

    /* An orphan whose last report came back. */
    if (ob->pending > 0)
        return;
    for (pp = &d->orphans; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == ob) {
            *pp = ob->next;
            break;
        }
    }
    outbound_free(ob);
}


void
outbound_free(struct outbound *ob)
{
    if (ob == NULL)
        return;
    for (size_t i = 0; i < ob->nrecords; i++) {
        free(ob->records[i].key);
        free(ob->records[i].value);
    }
    free(ob->records);
    free(ob->dsn.key);
    free(ob->dsn.value);
    envelope_free(ob->env);
    free(ob);
}

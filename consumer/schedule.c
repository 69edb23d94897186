#include "schedule.h"

#include <stdlib.h>

#include "deliver.h"
#include "group.h"
#include "log.h"
#include "util.h"

/* Maximum wait in one loop turn, so every handle is polled often. */
#define SCHEDULE_MAX_WAIT_MS 200

static struct outbound *schedule_oldest_waiting(struct deliver *d);
static int schedule_has_state(const struct deliver_partition *part,
                              enum outbound_state state);


/*
 * Starts what is due: outcome records to produce again, then SendEmail
 * for waiting messages while slots are free and the region may be used.
 */
void
schedule_start_due(struct deliver *d)
{
    int64_t          now = util_monotonic_ms();
    size_t           max = (size_t)d->cfg->deliver_max_in_flight;
    struct outbound *probe;

    schedule_retry_produces(d, 0);
    if (d->stopping)
        return;
    account_start_due(&d->account);

    /* While stopped, one message at a time tests whether SES is back. */
    if (d->region_stopped) {
        if (now < d->next_probe_ms || ses_client_in_flight(d->ses) > 0 ||
            pacing_wait_ms(&d->pacing, now) > 0)
            return;
        if ((probe = schedule_oldest_waiting(d)) != NULL) {
            d->next_probe_ms = now + d->cfg->deliver_retry_max_ms;
            outbound_send(probe);
        } else if (account_probe(&d->account) == 0) {
            d->next_probe_ms = now + d->cfg->deliver_retry_max_ms;
        }
        return;
    }
    if (now < d->hold_until_ms)
        return;

    for (size_t s = 0; s < d->nsources; s++) {
        struct deliver_source *src = &d->sources[s];

        for (struct deliver_partition *part = src->parts; part != NULL;
             part = part->next) {
            for (struct outbound *ob = part->head, *next; ob != NULL;
                 ob = next) {
                next = ob->next;
                if (ses_client_in_flight(d->ses) >= max)
                    return;
                if (ob->state != OUTBOUND_READY &&
                    (ob->state != OUTBOUND_BACKOFF ||
                     now < ob->next_attempt_ms))
                    continue;
                if (pacing_wait_ms(&d->pacing, now) > 0)
                    return;
                outbound_send(ob);
            }
        }

        /* Rotate the partitions so none is always served first. */
        if (src->parts != NULL && src->parts->next != NULL) {
            struct deliver_partition *first = src->parts, *last = first;

            while (last->next != NULL)
                last = last->next;
            src->parts = first->next;
            first->next = NULL;
            last->next = first;
        }
    }
}


/*
 * Produces again the outcome records whose delivery report failed, once
 * their backoff passed, or at once when the partition is being revoked.
 */
void
schedule_retry_produces(struct deliver *d, int only_revoking)
{
    int64_t now = util_monotonic_ms();

    for (size_t s = 0; s < d->nsources; s++) {
        for (struct deliver_partition *part = d->sources[s].parts;
             part != NULL; part = part->next) {
            if (only_revoking && !part->revoking)
                continue;
            for (struct outbound *ob = part->head, *next; ob != NULL;
                 ob = next) {
                next = ob->next;
                if ((ob->state == OUTBOUND_RECORDING ||
                     ob->state == OUTBOUND_DEAD_LETTERING) &&
                    ob->produce_failed && ob->pending == 0 &&
                    (part->revoking || now >= ob->next_attempt_ms))
                    outbound_retry_produce(ob);
            }
        }
    }
}


/* Returns the message waiting longest for SES, or NULL. */
static struct outbound *
schedule_oldest_waiting(struct deliver *d)
{
    struct outbound *best = NULL;

    for (size_t s = 0; s < d->nsources; s++) {
        for (struct deliver_partition *part = d->sources[s].parts;
             part != NULL; part = part->next) {
            for (struct outbound *ob = part->head; ob != NULL;
                 ob = ob->next) {
                if ((ob->state == OUTBOUND_READY ||
                     ob->state == OUTBOUND_BACKOFF) && !part->revoking &&
                    ob->env != NULL &&
                    (best == NULL ||
                     ob->env->received_at_ms < best->env->received_at_ms))
                    best = ob;
                if (ob->state == OUTBOUND_READY ||
                    ob->state == OUTBOUND_BACKOFF)
                    break;      /* later ones in the partition are newer */
            }
        }
    }
    return best;
}


/* Returns how long the loop may wait before something is due. */
int
schedule_wait_ms(struct deliver *d)
{
    int64_t now = util_monotonic_ms();
    int64_t due = now + SCHEDULE_MAX_WAIT_MS;
    int64_t paced = now + pacing_wait_ms(&d->pacing, now);
    int     slot_free = ses_client_in_flight(d->ses) <
                        (size_t)d->cfg->deliver_max_in_flight;
    int     can_send = slot_free && !d->region_stopped && !d->stopping;

    if (d->next_commit_ms < due)
        due = d->next_commit_ms;
    if (report_due_ms(d) < due)
        due = report_due_ms(d);
    if (slot_free && !d->stopping && account_due_ms(&d->account) < due)
        due = account_due_ms(&d->account);
    if (d->region_stopped && !d->stopping &&
        ses_client_in_flight(d->ses) == 0 && d->next_probe_ms < due)
        due = d->next_probe_ms;
    for (size_t s = 0; s < d->nsources; s++) {
        for (struct deliver_partition *part = d->sources[s].parts;
             part != NULL; part = part->next) {
            for (struct outbound *ob = part->head; ob != NULL;
                 ob = ob->next) {
                int64_t at = -1;

                if ((ob->state == OUTBOUND_READY ||
                     ob->state == OUTBOUND_BACKOFF) && can_send) {
                    at = ob->state == OUTBOUND_READY ? now
                                                     : ob->next_attempt_ms;
                    if (at < d->hold_until_ms)
                        at = d->hold_until_ms;
                    if (at < paced)
                        at = paced;
                } else if (ob->produce_failed && ob->pending == 0) {
                    at = ob->next_attempt_ms;
                }
                if (at >= 0 && at < due)
                    due = at;
            }
        }
    }
    return due <= now ? 0 : (int)(due - now);
}


/*
 * Pauses a partition while one of its messages waits for a retry, while
 * the region is stopped, during shutdown, or while the worker has too
 * many messages in progress. A partition still collecting chunks is never
 * paused for the last reason, because its next records are what it waits
 * for.
 *
 * Fetching resumes while max_in_flight messages still wait behind the
 * ones in flight, so the sends go on while the fetch restarts. A pause
 * drops what librdkafka had fetched ahead, so the marks are far apart.
 */
void
schedule_update_pauses(struct deliver *d)
{
    size_t slots = (size_t)d->cfg->deliver_max_in_flight;

    if (!d->flow_paused && d->in_progress >= 4 * slots)
        d->flow_paused = 1;
    else if (d->flow_paused && d->in_progress <= 2 * slots)
        d->flow_paused = 0;

    for (size_t s = 0; s < d->nsources; s++) {
        for (struct deliver_partition *part = d->sources[s].parts;
             part != NULL; part = part->next) {
            int collecting = schedule_has_state(part, OUTBOUND_COLLECTING);
            int want = d->stopping || d->region_stopped ||
                       part->revoking ||
                       schedule_has_state(part, OUTBOUND_BACKOFF) ||
                       (d->flow_paused && !collecting);

            group_set_paused(part, want);
        }
    }
}


static int
schedule_has_state(const struct deliver_partition *part,
                   enum outbound_state state)
{
    for (const struct outbound *ob = part->head; ob != NULL; ob = ob->next)
        if (ob->state == state)
            return 1;
    return 0;
}


/*
 * True while a message has an SES request in flight or its outcome record
 * is not yet acknowledged. A message SES accepted must not be dropped
 * before its record is written, or the next owner sends it again.
 */
int
schedule_busy(const struct deliver *d, int only_revoking)
{
    for (size_t s = 0; s < d->nsources; s++) {
        for (const struct deliver_partition *part = d->sources[s].parts;
             part != NULL; part = part->next) {
            if (only_revoking && !part->revoking)
                continue;
            for (const struct outbound *ob = part->head; ob != NULL;
                 ob = ob->next)
                if (ob->pending > 0 || ob->state == OUTBOUND_RECORDING ||
                    ob->state == OUTBOUND_DEAD_LETTERING)
                    return 1;
        }
    }
    return 0;
}


int64_t
schedule_backoff_ms(const struct deliver *d, int attempt)
{
    int64_t wait = d->cfg->deliver_retry_initial_ms;

    for (int i = 1; i < attempt && wait < d->cfg->deliver_retry_max_ms; i++)
        wait *= 2;
    if (wait > d->cfg->deliver_retry_max_ms)
        wait = d->cfg->deliver_retry_max_ms;

    /* Half fixed, half random, so retries of many workers spread out. */
    return wait / 2 + random() % (wait / 2 + 1);
}


void
schedule_pace_success(struct deliver *d)
{
    struct pacing *p = &d->pacing;

    if (!pacing_on_success(p, util_monotonic_ms()))
        return;
    if (p->rate >= p->account_rate)
        log_info(NULL, "send-rate-restored", "region=%s send_rate=%.2f",
                 d->region, p->rate);
    else
        log_debug(NULL, "send-rate-raised", "region=%s send_rate=%.2f "
                  "max_send_rate=%.2f", d->region, p->rate,
                  p->account_rate);
}


void
schedule_pace_throttle(struct deliver *d)
{
    struct pacing *p = &d->pacing;

    if (pacing_on_throttle(p, util_monotonic_ms()))
        log_info(NULL, "send-rate-lowered", "region=%s send_rate=%.2f "
                 "max_send_rate=%.2f reason=\"SES throttled a send\"",
                 d->region, p->rate, p->account_rate);
}


void
schedule_stop_region(struct deliver *d, const struct outbound *ob,
                     const struct ses_outcome *outcome)
{
    char quoted[600];

    d->next_probe_ms = util_monotonic_ms() + d->cfg->deliver_retry_max_ms;
    log_error(outbound_id(ob), outcome->result == SES_LOCAL_FAULT
                                   ? "local-fault" : "region-down",
              "region=%s class=%s reason=%s attempt=%d retry_in_ms=%lld "
              "sending=%s", d->region, ses_result_name(outcome->result),
              log_quote(quoted, sizeof(quoted), outcome->reason),
              ob->attempt, (long long)d->cfg->deliver_retry_max_ms,
              d->region_stopped ? "still-stopped" : "stopped");
    d->region_stopped = 1;
    d->stop_result = outcome->result;
}


void
schedule_resume_region(struct deliver *d)
{
    if (!d->region_stopped)
        return;
    d->region_stopped = 0;
    log_info(NULL, "sending-resumed", "region=%s", d->region);
}

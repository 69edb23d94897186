/*
 * schedule: what a worker does next with the messages it holds. It starts
 * SendEmail requests while slots are free, delays sends after
 * throttling, paces them to the account's send rate, probes one message at a time while the region is stopped,
 * produces failed outcome records again, computes how long the loop may
 * wait, and pauses partitions that must not fetch more.
 */
#ifndef FERRY_SCHEDULE_H
#define FERRY_SCHEDULE_H

#include <stdint.h>

struct deliver;
struct outbound;
struct ses_outcome;

/* Starts due outcome records and, while slots are free, SendEmail. */
void schedule_start_due(struct deliver *d);

/*
 * Produces again the outcome records whose delivery report failed, once
 * their backoff passed, or at once for partitions being revoked.
 */
void schedule_retry_produces(struct deliver *d, int only_revoking);

/* Returns how long the loop may wait, in milliseconds. */
int schedule_wait_ms(struct deliver *d);

/* Pauses or resumes each partition's fetching as its messages require. */
void schedule_update_pauses(struct deliver *d);

/*
 * True while a message, of revoking partitions only when only_revoking is
 * set, has an SES request in flight or an outcome record not acknowledged.
 */
int schedule_busy(const struct deliver *d, int only_revoking);

/* Returns the wait before attempt number attempt + 1, jitter included. */
int64_t schedule_backoff_ms(const struct deliver *d, int attempt);

/* Lets the send rate climb after SES accepted a message. */
void schedule_pace_success(struct deliver *d);

/* Lowers the send rate after SES throttled a message; logs it. */
void schedule_pace_throttle(struct deliver *d);

/* Stops all sending after a region-wide or local fault; logs it. */
void schedule_stop_region(struct deliver *d, const struct outbound *ob,
                          const struct ses_outcome *outcome);

/* Lets sending start again after a response showing that SES works. */
void schedule_resume_region(struct deliver *d);

#endif

/*
 * pacing: the send rate of one region's worker, so it stays under the SES
 * account's MaxSendRate instead of learning it from throttling.
 *
 * A token bucket refills at the current rate, in recipients per second,
 * and contains at most one second of it (at least one token). A send may
 * start while one token is left and then takes one token per recipient,
 * so the bucket can go below zero; SES's own limit works the same way.
 *
 * The rate starts at the account rate. When SES throttles anyway, for
 * example because other senders share the account, the rate is halved,
 * down to PACING_MIN_RATE, at most once per PACING_INTERVAL_MS. Each
 * further interval without throttling adds a tenth of the account rate,
 * up to the account rate (additive increase, multiplicative decrease).
 */
#ifndef FERRY_PACING_H
#define FERRY_PACING_H

#include <stddef.h>
#include <stdint.h>

/* Lowest rate after decreases, unless the account rate is lower. */
#define PACING_MIN_RATE 1.0

/* Time between two changes of the rate, in milliseconds. */
#define PACING_INTERVAL_MS 1000

/* Additive increase per interval, as a fraction of the account rate. */
#define PACING_STEP_FRACTION 0.1

/* Rate used until the account rate is known; a cautious guess. */
#define PACING_UNKNOWN_RATE 1.0

struct pacing {
    double  account_rate;   /* recipients per second; 0 while unknown */
    double  rate;           /* current rate, at most account_rate */
    double  tokens;
    int64_t refilled_ms;    /* monotonic clock */
    int64_t changed_ms;     /* last decrease or increase of the rate */
    int64_t decreased_ms;   /* last decrease, when decreased is set */
    int     decreased;
};

void pacing_init(struct pacing *p, int64_t now_ms);

/*
 * Sets the account rate. The first one is also the current rate. A later
 * one lowers the current rate when that is higher, and otherwise the
 * current rate climbs to it. A rate of 0 or less is ignored.
 */
void pacing_set_account_rate(struct pacing *p, double rate, int64_t now_ms);

/* Returns the milliseconds until a send may start, 0 when it may now. */
int64_t pacing_wait_ms(struct pacing *p, int64_t now_ms);

/* Takes the tokens of a send to recipients recipients (at least 1). */
void pacing_take(struct pacing *p, size_t recipients, int64_t now_ms);

/* Halves the rate after a throttle. Returns 1 when it changed. */
int pacing_on_throttle(struct pacing *p, int64_t now_ms);

/* Raises the rate by one step once an interval passed. Returns 1 when
 * it changed. */
int pacing_on_success(struct pacing *p, int64_t now_ms);

/*
 * Reads SendQuota.MaxSendRate from a GetAccount response body into *rate.
 * Returns -1 when the body is not JSON or has no positive MaxSendRate.
 */
int pacing_parse_account(const char *body, double *rate);

#endif

/*
 * account: the SES account's send rate, which paces the worker. It comes
 * from deliver.max_send_rate when set, else from SendQuota.MaxSendRate
 * of GetAccount, read at start and every ACCOUNT_REFRESH_MS.
 */
#ifndef FERRY_ACCOUNT_H
#define FERRY_ACCOUNT_H

#include <stdint.h>

#include "outbound.h"

/* Time between two GetAccount requests that succeeded. */
#define ACCOUNT_REFRESH_MS (5 * 60 * 1000)

/* Time before a failed GetAccount is tried again. */
#define ACCOUNT_RETRY_MS 10000

struct deliver;
struct ses_outcome;

struct account {
    enum deliver_job job;           /* DELIVER_JOB_ACCOUNT; first member */
    struct deliver  *d;
    int              fixed;         /* deliver.max_send_rate is set */
    int              in_flight;
    int              probing;       /* the request in flight tests
                                       whether a stopped region is back */
    int64_t          next_ms;       /* next GetAccount, monotonic clock */
};

void account_init(struct account *a, struct deliver *d);

/* Starts GetAccount when one is due and an SES slot is free. */
void account_start_due(struct account *a);

/*
 * Starts a GetAccount that tests whether SES of a stopped region is back,
 * for a worker that has no message waiting to test it with. A success
 * with sending enabled resumes sending. Returns -1 when none could be
 * started.
 */
int account_probe(struct account *a);

/* Returns when the next GetAccount is due, or INT64_MAX for never. */
int64_t account_due_ms(const struct account *a);

/* Handles the GetAccount response; opaque of the request is a. */
void account_on_ses(struct account *a, const struct ses_outcome *outcome);

#endif

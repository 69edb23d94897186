/*
 * verdict: a region's SES health from each of the controller's two
 * sources, without I/O.
 *
 * Probes: the controller's own GetAccount calls. SES is down when it
 * reports SendingEnabled false or an account-wide stop, or when every
 * call has failed with a 5xx, a timeout or a reset for at least
 * failure_ms. Throttling, bad credentials and clock skew are not
 * signs of SES being down.
 *
 * Workers: the ferry.health records of the region whose interval ended
 * within the window. SES is down when a record counts region_down, when a
 * worker's newest record has stop_class "region_down", or when transient
 * failures are at least failure_percent of delivered plus transient. It
 * is up when messages were delivered and it is not down. Throttled,
 * rejected and local_fault counts are never failures.
 */
#ifndef FERRY_VERDICT_H
#define FERRY_VERDICT_H

#include <stdint.h>

#include "failover.h"
#include "health.h"

enum verdict_probe_outcome {
    VERDICT_PROBE_ENABLED,          /* 200, SendingEnabled true */
    VERDICT_PROBE_DISABLED,         /* 200 with SendingEnabled false, or
                                       an account-wide stop */
    VERDICT_PROBE_FAILED,           /* 5xx, timeout, reset, refused */
    VERDICT_PROBE_NO_EVIDENCE       /* throttled, credentials, clock */
};

struct verdict_probes {
    enum verdict_probe_outcome last;
    int64_t                    last_ms;         /* -1 before the first */
    int64_t                    failing_since_ms; /* -1 when not failing */
};

#define VERDICT_MAX_RECORDS 512

struct verdict_workers {
    struct health records[VERDICT_MAX_RECORDS];
    size_t        nrecords;
};

void verdict_probes_init(struct verdict_probes *p);
void verdict_probes_note(struct verdict_probes *p,
                         enum verdict_probe_outcome outcome, int64_t now_ms);
enum failover_health verdict_probes_health(const struct verdict_probes *p,
                                           int64_t now_ms,
                                           int64_t failure_ms);

/*
 * Keeps h until its interval ends more than window_ms before now. When
 * the table is full the record whose interval ended first is replaced.
 */
void verdict_workers_add(struct verdict_workers *w, const struct health *h);
enum failover_health verdict_workers_health(struct verdict_workers *w,
                                            int64_t now_ms,
                                            int64_t window_ms,
                                            int64_t failure_percent);

#endif

/*
 * report: counts the worker's SendEmail outcomes by class and produces
 * them to ferry.health every deliver.health_interval_ms, keyed by region,
 * for the failover controller (proto/health.proto describes how it reads
 * them). It also warns while the SES client corrects the signing clock.
 */
#ifndef FERRY_REPORT_H
#define FERRY_REPORT_H

#include <stdint.h>

#include "ses.h"

/* Time between two clock-skew warnings while the skew lasts. */
#define REPORT_CLOCK_WARN_EVERY_MS 60000

struct deliver;

struct report {
    uint64_t counts[SES_REJECTED + 1];  /* by enum ses_result */
    char     worker_id[128];
    int64_t  start_ms;                  /* wall clock */
    int64_t  start_mono_ms;
    int64_t  clock_warned_ms;           /* monotonic; 0 never */
};

void report_init(struct report *r);

/* Counts one SendEmail outcome. */
void report_count(struct report *r, enum ses_result result);

/* Returns when the next record is due, on the monotonic clock. */
int64_t report_due_ms(const struct deliver *d);

/*
 * Produces the record of the interval that ended and starts the next
 * one, when the interval is over or force is set.
 */
void report_produce_due(struct deliver *d, int force);

/* Handles the delivery report of a ferry.health record. */
void report_on_produced(int err);

#endif

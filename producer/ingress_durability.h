/*
 * ingress_durability: checks that the topics this node writes to keep an
 * acknowledged record when a broker fails.
 *
 * With acks=all a record is acknowledged once every in-sync replica has
 * it. It survives the loss of a broker only when the topic keeps at least
 * two in-sync replicas (min.insync.replicas >= 2, replication factor >= 3)
 * and a replica that fell out of sync can never become leader
 * (unclean.leader.election.enable=false). Otherwise a record that got a
 * 250 reply can be truncated away after a leader change.
 */
#ifndef FERRY_INGRESS_DURABILITY_H
#define FERRY_INGRESS_DURABILITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define INGRESS_DURABILITY_MIN_REPLICAS 3
#define INGRESS_DURABILITY_MIN_ISR      2

/*
 * Checks mail.R and mail.R.pinned of every region the node serves,
 * blocking for up to timeout_ms. Returns 0 when all pass. Otherwise
 * returns -1 and writes every problem found, or why the check could not
 * run, into err. Either way *record_max gets the smallest
 * max.message.bytes of those topics, or -1 when none could be read.
 */
int ingress_durability_check(const struct config *cfg, int timeout_ms,
                             int64_t *record_max, char *err,
                             size_t errlen);

/* The check's signature, so tests can replace it. */
typedef int (*ingress_durability_check_fn)(const struct config *cfg,
                                           int timeout_ms,
                                           int64_t *record_max, char *err,
                                           size_t errlen);

struct ingress_durability_monitor;

/*
 * Starts a thread that repeats check every ingress.durability_check_interval
 * seconds, so the event loop never blocks on the brokers. A run fails when
 * the check finds a problem or the smallest max.message.bytes is below
 * ingress_kafka_record_max(). Every change between passing and failing is
 * logged; with ingress.durability strict a failing run makes
 * ingress_durability_monitor_safe() return false until a run passes, and
 * with relaxed it is only logged. Returns NULL, and starts nothing, when
 * the interval is 0 or the thread cannot be created.
 */
struct ingress_durability_monitor *
ingress_durability_monitor_start(const struct config *cfg, int timeout_ms,
                                 ingress_durability_check_fn check);

/* Stops and joins the thread, waiting for a check in progress. */
void ingress_durability_monitor_stop(struct ingress_durability_monitor *m);

/*
 * Returns false while the latest check failed in strict mode. Safe to
 * call from any thread; NULL means no monitor, which counts as safe.
 */
bool ingress_durability_monitor_safe(
    const struct ingress_durability_monitor *m);

/* Returns how many checks have completed, each after its verdict is set. */
uint64_t ingress_durability_monitor_runs(
    const struct ingress_durability_monitor *m);

#endif

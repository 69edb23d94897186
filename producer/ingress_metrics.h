/*
 * ingress_metrics: the ferry_ingress_* families of docs/metrics.md and
 * the calls that update them. Before ingress_metrics_init() every call
 * does nothing, so unit tests of the session need no registry.
 */
#ifndef FERRY_INGRESS_METRICS_H
#define FERRY_INGRESS_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "metrics.h"

void ingress_metrics_init(struct metrics *reg);

/* Counts an SMTP connection opened (+1) or closed (-1). */
void ingress_metrics_session(int delta);

/* Counts a message after its final dot: "accepted", "rejected", "deferred". */
void ingress_metrics_message(const char *result);

/* Counts an accepted message of bytes, acknowledged seconds after its dot. */
void ingress_metrics_accepted(uint64_t bytes, double seconds);

void ingress_metrics_kafka_ready(bool ready);
void ingress_metrics_durability_ok(bool ok);

#endif

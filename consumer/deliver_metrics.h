/*
 * deliver_metrics: the ferry_deliver_* families of docs/metrics.md, and
 * the worker's liveness and readiness on its monitoring listener. Before
 * deliver_metrics_init() every call does nothing.
 */
#ifndef FERRY_DELIVER_METRICS_H
#define FERRY_DELIVER_METRICS_H

#include "httpd.h"
#include "metrics.h"
#include "ses.h"

struct deliver;

/* httpd may be NULL when the listener is off. */
void deliver_metrics_init(struct metrics *reg, struct httpd *httpd);

/* Counts a SendEmail outcome and its duration. */
void deliver_metrics_ses(const char *region, const struct ses_outcome *out);

void deliver_metrics_dead_lettered(const char *region);

/*
 * Sets the gauges, marks the loop alive and updates readiness, at most
 * once a second. Called from every turn of the worker's loop.
 */
void deliver_metrics_status(const struct deliver *d);

#endif

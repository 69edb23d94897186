/*
 * metrics: a registry of counters, gauges and histograms with fixed label
 * names, rendered in the Prometheus text exposition format 0.0.4.
 *
 * Every call is thread-safe: one mutex per registry guards its families
 * and series. Every update accepts a NULL family and does nothing, so
 * code that counts runs unchanged in a program or test without metrics.
 * Label values are passed as one const char * argument per label name,
 * in the order the names were registered.
 */
#ifndef FERRY_METRICS_H
#define FERRY_METRICS_H

#include <stddef.h>

#define METRICS_MAX_LABELS 4

struct metrics;
struct metric;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *reg);

/*
 * Register a family. labels is a comma-separated list of label names, ""
 * for none. A family without labels starts with one series at 0. An
 * invalid or duplicate name is a programming error and aborts.
 */
struct metric *metrics_counter(struct metrics *reg, const char *name,
                               const char *help, const char *labels);
struct metric *metrics_gauge(struct metrics *reg, const char *name,
                             const char *help, const char *labels);

/* buckets: upper bounds in increasing order, without +Inf. */
struct metric *metrics_histogram(struct metrics *reg, const char *name,
                                 const char *help, const char *labels,
                                 const double *buckets, size_t nbuckets);

/* Adds delta (a counter takes only delta >= 0) to the labelled series. */
void metric_add(struct metric *m, double delta, ...);

/* Sets the labelled series of a gauge to value. */
void metric_set(struct metric *m, double value, ...);

/* Counts value into the labelled series of a histogram. */
void metric_observe(struct metric *m, double value, ...);

/*
 * Marks the start of a pass that sets every series still current. After
 * metric_sweep_end(), the series the pass did not touch are gone, so a
 * partition or group that disappeared stops being exported.
 */
void metric_sweep_begin(struct metric *m);
void metric_sweep_end(struct metric *m);

/*
 * Registers ferry_build_info{daemon,version} and
 * process_start_time_seconds, both set from now.
 */
void metrics_add_process(struct metrics *reg, const char *daemon);

/* Returns the text format of every family; the caller frees it. */
char *metrics_render(struct metrics *reg, size_t *len);

/* The version ferry_build_info reports. */
const char *metrics_version(void);

#endif

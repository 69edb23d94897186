#include "ingress_metrics.h"

static struct metric *ingress_sessions;
static struct metric *ingress_sessions_active;
static struct metric *ingress_messages;
static struct metric *ingress_bytes;
static struct metric *ingress_accept_seconds;
static struct metric *ingress_kafka_ready_gauge;
static struct metric *ingress_durability_gauge;


void
ingress_metrics_init(struct metrics *reg)
{
    /* From 1 ms to 30 s: a local broker acknowledges in milliseconds. */
    static const double buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025,
                                       0.05,  0.1,    0.25,  0.5,  1,
                                       2.5,   5,      10,    30 };
    static const char *const results[] = { "accepted", "rejected",
                                           "deferred" };

    ingress_sessions = metrics_counter(reg, "ferry_ingress_sessions_total",
                                       "SMTP sessions opened.", "");
    ingress_sessions_active = metrics_gauge(
        reg, "ferry_ingress_sessions_active", "SMTP sessions open now.", "");
    ingress_messages = metrics_counter(
        reg, "ferry_ingress_messages_total",
        "Messages after their final dot, by reply: accepted (250), "
        "rejected (5xx), deferred (4xx).", "result");
    ingress_bytes = metrics_counter(reg, "ferry_ingress_message_bytes_total",
                                    "Bytes of accepted messages.", "");
    ingress_accept_seconds = metrics_histogram(
        reg, "ferry_ingress_accept_duration_seconds",
        "Final dot to 250, the time Kafka took to acknowledge.", "", buckets,
        sizeof(buckets) / sizeof(*buckets));
    ingress_kafka_ready_gauge = metrics_gauge(
        reg, "ferry_ingress_kafka_ready",
        "1 while the producer can write, 0 while it is being recreated.", "");
    ingress_durability_gauge = metrics_gauge(
        reg, "ferry_ingress_durability_ok",
        "1 when the last durability check passed or ingress.durability is "
        "relaxed.", "");

    for (size_t i = 0; i < sizeof(results) / sizeof(*results); i++)
        metric_add(ingress_messages, 0, results[i]);
}


void
ingress_metrics_session(int delta)
{
    if (delta > 0)
        metric_add(ingress_sessions, delta);
    metric_add(ingress_sessions_active, delta);
}


void
ingress_metrics_message(const char *result)
{
    metric_add(ingress_messages, 1, result);
}


void
ingress_metrics_accepted(uint64_t bytes, double seconds)
{
    metric_add(ingress_bytes, (double)bytes);
    metric_observe(ingress_accept_seconds, seconds);
}


void
ingress_metrics_kafka_ready(bool ready)
{
    metric_set(ingress_kafka_ready_gauge, ready ? 1 : 0);
}


void
ingress_metrics_durability_ok(bool ok)
{
    metric_set(ingress_durability_gauge, ok ? 1 : 0);
}

#include "deliver_metrics.h"

#include "deliver.h"
#include "util.h"

#define DELIVER_METRICS_STATUS_MS 1000

static struct httpd  *deliver_httpd;
static struct metric *deliver_ses_requests;
static struct metric *deliver_ses_seconds;
static struct metric *deliver_in_progress;
static struct metric *deliver_send_rate;
static struct metric *deliver_region_stopped;
static struct metric *deliver_dead_lettered;
static struct metric *deliver_clock_offset;
static struct metric *deliver_consuming;
static int64_t        deliver_next_status_ms;

static const char *deliver_outcome_name(enum ses_result result);


void
deliver_metrics_init(struct metrics *reg, struct httpd *httpd)
{
    /* From 10 ms to 30 s, the range of SendEmail round trips. */
    static const double buckets[] = { 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                      1,    2.5,   5,    10,  30 };

    deliver_httpd = httpd;
    deliver_ses_requests = metrics_counter(
        reg, "ferry_deliver_ses_requests_total",
        "SendEmail outcomes by class.", "region,outcome");
    deliver_ses_seconds = metrics_histogram(
        reg, "ferry_deliver_ses_request_duration_seconds",
        "SendEmail request to its outcome.", "region", buckets,
        sizeof(buckets) / sizeof(*buckets));
    deliver_in_progress = metrics_gauge(
        reg, "ferry_deliver_messages_in_progress",
        "Messages consumed and not yet done.", "");
    deliver_send_rate = metrics_gauge(
        reg, "ferry_deliver_send_rate_limit",
        "Recipients per second the pacing allows now.", "region");
    deliver_region_stopped = metrics_gauge(
        reg, "ferry_deliver_region_stopped",
        "1 while sending is stopped for a region-down or local fault.",
        "region");
    deliver_dead_lettered = metrics_counter(
        reg, "ferry_deliver_dead_lettered_total",
        "Messages written to the dead topic.", "region");
    deliver_clock_offset = metrics_gauge(
        reg, "ferry_deliver_clock_offset_seconds",
        "Local clock minus the SES Date header, estimated from the "
        "responses so far.", "region");
    deliver_consuming = metrics_gauge(
        reg, "ferry_deliver_consuming",
        "1 while the worker is subscribed to the topic.", "topic");
}


static const char *
deliver_outcome_name(enum ses_result result)
{
    switch (result) {
    case SES_OK: return "delivered";
    case SES_THROTTLED: return "throttled";
    case SES_RETRY: return "transient";
    case SES_REGION_DOWN: return "region_down";
    case SES_LOCAL_FAULT: return "local_fault";
    case SES_REJECTED: return "refused";
    }
    return "transient";
}


void
deliver_metrics_ses(const char *region, const struct ses_outcome *out)
{
    metric_add(deliver_ses_requests, 1, region,
               deliver_outcome_name(out->result));
    metric_observe(deliver_ses_seconds, out->seconds, region);
}


void
deliver_metrics_dead_lettered(const char *region)
{
    metric_add(deliver_dead_lettered, 1, region);
}


void
deliver_metrics_status(const struct deliver *d)
{
    int64_t now = util_monotonic_ms();
    int64_t offset_ms;
    int     subscribed = 0;

    if (now < deliver_next_status_ms)
        return;
    deliver_next_status_ms = now + DELIVER_METRICS_STATUS_MS;

    metric_set(deliver_in_progress, (double)d->in_progress);
    metric_set(deliver_send_rate, d->pacing.rate, d->region);
    metric_set(deliver_region_stopped, d->region_stopped ? 1 : 0, d->region);
    metric_add(deliver_dead_lettered, 0, d->region);

    /* Every outcome from the start, so rate() sees the first request. */
    for (int r = SES_OK; r <= SES_REJECTED; r++)
        metric_add(deliver_ses_requests, 0, d->region,
                   deliver_outcome_name((enum ses_result)r));
    if (ses_client_measured_offset_ms(d->ses, &offset_ms) == 0)
        metric_set(deliver_clock_offset, -(double)offset_ms / 1000.0,
                   d->region);
    for (size_t i = 0; i < d->nsources; i++) {
        metric_set(deliver_consuming, d->sources[i].subscribed ? 1 : 0,
                   d->sources[i].topic);
        subscribed += d->sources[i].subscribed != 0;
    }

    /*
     * Ready: not stopped by a fatal error, and subscribed to a topic. A
     * takeover worker subscribes only during a failover, so it is ready
     * while it waits for one.
     */
    httpd_set_alive(deliver_httpd);
    if (d->fatal)
        httpd_set_ready(deliver_httpd, "stopped by a fatal Kafka error");
    else if (d->stopping)
        httpd_set_ready(deliver_httpd, "shutting down");
    else if (subscribed == 0 && !d->takeover)
        httpd_set_ready(deliver_httpd, "subscribed to no topic");
    else
        httpd_set_ready(deliver_httpd, NULL);
}

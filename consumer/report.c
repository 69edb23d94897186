#include "report.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deliver.h"
#include "health.h"
#include "log.h"
#include "util.h"


void
report_init(struct report *r)
{
    char host[64];

    memset(r, 0, sizeof(*r));
    if (gethostname(host, sizeof(host)) == -1)
        snprintf(host, sizeof(host), "unknown");
    host[sizeof(host) - 1] = '\0';
    snprintf(r->worker_id, sizeof(r->worker_id), "%s:%ld", host,
             (long)getpid());
    r->start_ms = util_now_ms();
    r->start_mono_ms = util_monotonic_ms();
}


void
report_count(struct report *r, enum ses_result result)
{
    r->counts[result]++;
}


int64_t
report_due_ms(const struct deliver *d)
{
    return d->report.start_mono_ms + d->cfg->deliver_health_interval_ms;
}


static void report_check_clock(struct deliver *d, int64_t offset_ms,
                               int64_t now);


/* Warns at most once a minute while the signing clock is moved. */
static void
report_check_clock(struct deliver *d, int64_t offset_ms, int64_t now)
{
    struct report *r = &d->report;

    if (offset_ms == 0) {
        r->clock_warned_ms = 0;
        return;
    }
    if (r->clock_warned_ms != 0 &&
        now - r->clock_warned_ms < REPORT_CLOCK_WARN_EVERY_MS)
        return;
    r->clock_warned_ms = now;
    log_warn(NULL, "clock-skew", "region=%s offset_ms=%lld reason=\"local "
             "clock differs from SES's Date header; requests are signed "
             "with the corrected time, fix the host's time "
             "synchronization\"", d->region, (long long)offset_ms);
}


void
report_produce_due(struct deliver *d, int force)
{
    struct report      *r = &d->report;
    int64_t             now = util_monotonic_ms();
    struct health       h;
    unsigned char      *buf;
    size_t              len;
    rd_kafka_resp_err_t err;

    if (!force && now < report_due_ms(d))
        return;

    memset(&h, 0, sizeof(h));
    snprintf(h.region, sizeof(h.region), "%s", d->region);
    snprintf(h.worker_id, sizeof(h.worker_id), "%s", r->worker_id);
    h.interval_start_ms = r->start_ms;
    h.interval_ms = now - r->start_mono_ms;
    h.delivered = r->counts[SES_OK];
    h.throttled = r->counts[SES_THROTTLED];
    h.transient = r->counts[SES_RETRY];
    h.region_down = r->counts[SES_REGION_DOWN];
    h.local_fault = r->counts[SES_LOCAL_FAULT];
    h.rejected = r->counts[SES_REJECTED];
    h.clock_offset_ms = ses_client_clock_offset_ms(d->ses);
    h.clock_measured = ses_client_measured_offset_ms(
                           d->ses, &h.clock_measured_offset_ms) == 0;
    if (d->region_stopped)
        snprintf(h.stop_class, sizeof(h.stop_class), "%s",
                 ses_result_name(d->stop_result));
    h.send_rate = d->pacing.rate;
    h.max_send_rate = d->pacing.account_rate;
    report_check_clock(d, h.clock_offset_ms, now);

    /* The next interval starts now, whether or not this record arrives. */
    memset(r->counts, 0, sizeof(r->counts));
    r->start_ms = util_now_ms();
    r->start_mono_ms = now;

    log_debug(NULL, "health", "region=%s interval_ms=%lld delivered=%"
              PRIu64 " throttled=%" PRIu64 " transient=%" PRIu64
              " region_down=%" PRIu64 " local_fault=%" PRIu64
              " rejected=%" PRIu64 " clock_offset_ms=%lld "
              "clock_measured_offset_ms=%s%lld stop_class=%s",
              h.region, (long long)h.interval_ms, h.delivered, h.throttled,
              h.transient, h.region_down, h.local_fault, h.rejected,
              (long long)h.clock_offset_ms, h.clock_measured ? "" : "unknown:",
              (long long)h.clock_measured_offset_ms,
              h.stop_class[0] ? h.stop_class : "-");

    /* librdkafka frees buf once it took the record; no opaque marks it. */
    buf = health_encode(&h, &len);
    err = rd_kafka_producev(d->producer, RD_KAFKA_V_TOPIC(HEALTH_TOPIC),
                            RD_KAFKA_V_KEY(d->region, strlen(d->region)),
                            RD_KAFKA_V_VALUE(buf, len),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                            RD_KAFKA_V_OPAQUE(NULL), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        free(buf);
        report_on_produced(err);
    }
}


void
report_on_produced(int err)
{
    static int64_t last_ms;
    static long    failed;
    int64_t        now;

    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return;

    /* One line a minute at most, with the count of failures since. */
    failed++;
    now = util_monotonic_ms();
    if (last_ms != 0 && now - last_ms < 60000)
        return;
    log_warn(NULL, "health-produce-failed", "topic=%s reason=\"%s\" "
             "failed=%ld", HEALTH_TOPIC,
             rd_kafka_err2str((rd_kafka_resp_err_t)err), failed);
    last_ms = now;
    failed = 0;
}

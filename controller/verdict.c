#include "verdict.h"

#include <string.h>

static int64_t verdict_record_end(const struct health *h);


void
verdict_probes_init(struct verdict_probes *p)
{
    p->last = VERDICT_PROBE_NO_EVIDENCE;
    p->last_ms = -1;
    p->failing_since_ms = -1;
}


void
verdict_probes_note(struct verdict_probes *p,
                    enum verdict_probe_outcome outcome, int64_t now_ms)
{
    p->last = outcome;
    p->last_ms = now_ms;
    if (outcome == VERDICT_PROBE_FAILED) {
        if (p->failing_since_ms < 0)
            p->failing_since_ms = now_ms;
    } else if (outcome != VERDICT_PROBE_NO_EVIDENCE) {
        /* Only a response from SES ends a run of failures. */
        p->failing_since_ms = -1;
    }
}


enum failover_health
verdict_probes_health(const struct verdict_probes *p, int64_t now_ms,
                      int64_t failure_ms)
{
    if (p->failing_since_ms >= 0 && now_ms - p->failing_since_ms >= failure_ms)
        return FAILOVER_HEALTH_DOWN;

    switch (p->last) {
    case VERDICT_PROBE_ENABLED:
        return FAILOVER_HEALTH_UP;
    case VERDICT_PROBE_DISABLED:
        return FAILOVER_HEALTH_DOWN;
    case VERDICT_PROBE_FAILED:
    case VERDICT_PROBE_NO_EVIDENCE:
        break;
    }
    return FAILOVER_HEALTH_UNKNOWN;
}


static int64_t
verdict_record_end(const struct health *h)
{
    return h->interval_start_ms + h->interval_ms;
}


void
verdict_workers_add(struct verdict_workers *w, const struct health *h)
{
    size_t oldest = 0;

    if (w->nrecords < VERDICT_MAX_RECORDS) {
        w->records[w->nrecords++] = *h;
        return;
    }
    for (size_t i = 1; i < w->nrecords; i++)
        if (verdict_record_end(&w->records[i]) <
            verdict_record_end(&w->records[oldest]))
            oldest = i;
    w->records[oldest] = *h;
}


enum failover_health
verdict_workers_health(struct verdict_workers *w, int64_t now_ms,
                       int64_t window_ms, int64_t failure_percent)
{
    uint64_t delivered = 0, transient = 0, region_down = 0;
    size_t   kept = 0;
    int      stopped = 0;

    /* Drop records that ended before the window. */
    for (size_t i = 0; i < w->nrecords; i++)
        if (verdict_record_end(&w->records[i]) >= now_ms - window_ms)
            w->records[kept++] = w->records[i];
    w->nrecords = kept;

    for (size_t i = 0; i < w->nrecords; i++) {
        const struct health *h = &w->records[i];
        int                  newest = 1;

        delivered += h->delivered;
        transient += h->transient;
        region_down += h->region_down;

        /* stop_class counts only in a worker's newest record. */
        for (size_t j = 0; j < w->nrecords && newest; j++)
            if (j != i &&
                strcmp(w->records[j].worker_id, h->worker_id) == 0 &&
                verdict_record_end(&w->records[j]) > verdict_record_end(h))
                newest = 0;
        if (newest && strcmp(h->stop_class, "region_down") == 0)
            stopped = 1;
    }

    if (region_down > 0 || stopped)
        return FAILOVER_HEALTH_DOWN;
    if (transient > 0 &&
        transient * 100 >= (uint64_t)failure_percent * (delivered + transient))
        return FAILOVER_HEALTH_DOWN;
    if (delivered > 0)
        return FAILOVER_HEALTH_UP;
    return FAILOVER_HEALTH_UNKNOWN;
}

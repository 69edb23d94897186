#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka_group.h"
#include "util.h"

struct status_transition {
    char               region[64];
    enum control_state from;
    enum control_state to;
    uint64_t           epoch;
    int64_t            at_ms;
    char               reason[256];
};

/* An HTML page being written. */
struct status_page {
    char  *buf;
    size_t len;
    size_t cap;
};

static struct httpd             *status_httpd;
static struct lag_monitor       *status_lag;
static struct metric            *status_active;
static struct metric            *status_state;
static struct metric            *status_epoch;
static struct metric            *status_since;
static struct metric            *status_transitions;
static struct metric            *status_healthy;
static struct metric            *status_secondary_ready;
static struct status_transition  status_last[STATUS_TRANSITIONS];
static size_t                    status_nlast;     /* total recorded */

static void page_printf(struct status_page *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void page_text(struct status_page *p, const char *s);
static const char *page_time(int64_t ms, char *buf, size_t len);
static char *status_render(const struct status_view *view,
                           const struct lag_row *rows, size_t nrows,
                           bool connected, const char *why);


void
status_init(struct metrics *reg, struct httpd *httpd,
            struct lag_monitor *lag)
{
    status_httpd = httpd;
    status_lag = lag;
    status_active = metrics_gauge(reg, "ferry_controller_active",
                                  "1 on the replica that holds the lease.",
                                  "");
    status_state = metrics_gauge(
        reg, "ferry_failover_state",
        "1 for the region's current failover state, 0 for the others.",
        "region,state");
    status_epoch = metrics_gauge(reg, "ferry_failover_epoch",
                                 "Epoch of the region's control record.",
                                 "region");
    status_since = metrics_gauge(
        reg, "ferry_failover_state_since_seconds",
        "When the region entered its state, Unix time in seconds.",
        "region");
    status_transitions = metrics_counter(
        reg, "ferry_failover_transitions_total",
        "State changes this replica published.", "region,from,to");
    status_healthy = metrics_gauge(
        reg, "ferry_region_healthy",
        "1 when that source finds SES in the region up.", "region,source");
    status_secondary_ready = metrics_gauge(
        reg, "ferry_secondary_ready",
        "1 when the secondary region passed its last readiness check for "
        "every primary region.", "");
}


void
status_transition(const struct control *rec, enum control_state from)
{
    struct status_transition *t =
        &status_last[status_nlast % STATUS_TRANSITIONS];

    metric_add(status_transitions, 1, rec->region, control_state_name(from),
               control_state_name(rec->state));
    memset(t, 0, sizeof(*t));
    snprintf(t->region, sizeof(t->region), "%s", rec->region);
    snprintf(t->reason, sizeof(t->reason), "%s", rec->reason);
    t->from = from;
    t->to = rec->state;
    t->epoch = rec->epoch;
    t->at_ms = rec->since_ms > 0 ? rec->since_ms : util_now_ms();
    status_nlast++;
}


void
status_update(const struct status_view *view)
{
    static const enum control_state states[] = {
        CONTROL_PRIMARY, CONTROL_DRAINING_PRIMARY, CONTROL_SECONDARY,
        CONTROL_DRAINING_SECONDARY
    };
    struct lag_row *rows = NULL;
    size_t          nrows;
    bool            connected, all_ready = view->nregions > 0;
    char            why[512], reason[600], *html;

    metric_set(status_active, view->active ? 1 : 0);
    for (size_t i = 0; i < view->nregions; i++) {
        const struct status_region *r = &view->regions[i];
        const char                 *name = r->rec->region;

        for (size_t k = 0; k < sizeof(states) / sizeof(*states); k++)
            metric_set(status_state, r->rec->state == states[k] ? 1 : 0,
                       name, control_state_name(states[k]));
        metric_set(status_epoch, (double)r->rec->epoch, name);
        metric_set(status_since, (double)(r->rec->since_ms / 1000), name);
        metric_set(status_healthy, r->probes == FAILOVER_HEALTH_UP ? 1 : 0,
                   name, "probe");
        metric_set(status_healthy, r->workers == FAILOVER_HEALTH_UP ? 1 : 0,
                   name, "workers");
        all_ready = all_ready && r->secondary_ready;
    }
    metric_set(status_secondary_ready, all_ready ? 1 : 0);

    /* Ready while connected to Kafka, on the active and standby replica. */
    nrows = lag_snapshot(status_lag, &rows, &connected, why, sizeof(why));
    httpd_set_alive(status_httpd);
    if (connected) {
        httpd_set_ready(status_httpd, NULL);
    } else {
        snprintf(reason, sizeof(reason), "not connected to Kafka: %s", why);
        httpd_set_ready(status_httpd, reason);
    }
    if (status_httpd != NULL) {
        html = status_render(view, rows, nrows, connected, why);
        httpd_set_page(status_httpd, html);
        free(html);
    }
    free(rows);
}


static void
page_printf(struct status_page *p, const char *fmt, ...)
{
    va_list ap;
    int     n;

    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(p->buf + p->len, p->cap - p->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < p->cap - p->len) {
            p->len += (size_t)n;
            return;
        }
        p->cap = p->cap * 2 + (size_t)n + 1;
        p->buf = xrealloc(p->buf, p->cap);
    }
}


/* Writes s with the characters HTML gives a meaning escaped. */
static void
page_text(struct status_page *p, const char *s)
{
    for (; *s != '\0'; s++) {
        switch (*s) {
        case '<': page_printf(p, "&lt;"); break;
        case '>': page_printf(p, "&gt;"); break;
        case '&': page_printf(p, "&amp;"); break;
        case '"': page_printf(p, "&quot;"); break;
        case '\'': page_printf(p, "&#39;"); break;
        default: page_printf(p, "%c", *s); break;
        }
    }
}


static const char *
page_time(int64_t ms, char *buf, size_t len)
{
    time_t    secs = (time_t)(ms / 1000);
    struct tm tm;

    if (ms <= 0 || gmtime_r(&secs, &tm) == NULL)
        snprintf(buf, len, "-");
    else
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}


static char *
status_render(const struct status_view *view, const struct lag_row *rows,
              size_t nrows, bool connected, const char *why)
{
    struct status_page p = { xmalloc(8192), 0, 8192 };
    char               when[64];
    size_t             shown;

    p.buf[0] = '\0';
    page_printf(&p, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                "<meta http-equiv=\"refresh\" content=\"5\">"
                "<title>ferry-controller</title>"
                "<style>body{font-family:sans-serif}"
                "table{border-collapse:collapse}"
                "td,th{border:1px solid #999;padding:2px 6px}"
                "</style></head><body>\n<h1>ferry-controller ");
    page_text(&p, view->id);
    page_printf(&p, "</h1>\n<p>Role: <span id=\"role\">%s</span>. "
                "Secondary region: ", view->active ? "active" : "standby");
    page_text(&p, view->secondary);
    page_printf(&p, ". Page written %s.</p>\n",
                page_time(util_now_ms(), when, sizeof(when)));

    /* Regions. */
    page_printf(&p, "<h2>Regions</h2>\n<table id=\"regions\"><tr>"
                "<th>region</th><th>state</th><th>epoch</th><th>since</th>"
                "<th>hold</th><th>probes</th><th>workers</th>"
                "<th>secondary ready</th><th>reason</th></tr>\n");
    for (size_t i = 0; i < view->nregions; i++) {
        const struct status_region *r = &view->regions[i];

        page_printf(&p, "<tr data-region=\"");
        page_text(&p, r->rec->region);
        page_printf(&p, "\"><td>");
        page_text(&p, r->rec->region);
        page_printf(&p, "</td><td class=\"state\">%s</td><td class=\"epoch\">"
                    "%llu</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>"
                    "<td>%s</td><td>",
                    control_state_name(r->rec->state),
                    (unsigned long long)r->rec->epoch,
                    page_time(r->rec->since_ms, when, sizeof(when)),
                    r->rec->hold ? "yes" : "no",
                    failover_health_name(r->probes),
                    failover_health_name(r->workers),
                    r->secondary_ready ? "yes" : "no");
        page_text(&p, r->secondary_ready ? r->rec->reason : r->not_ready);
        page_printf(&p, "</td></tr>\n");
    }
    page_printf(&p, "</table>\n");

    /* Lag. */
    page_printf(&p, "<h2>Consumer lag</h2>\n");
    if (!connected) {
        page_printf(&p, "<p id=\"lag-error\">Kafka not reachable: ");
        page_text(&p, why);
        page_printf(&p, "</p>\n");
    }
    page_printf(&p, "<table id=\"lag\"><tr><th>group</th><th>members</th>"
                "<th>topic</th><th>partition</th><th>committed</th>"
                "<th>end</th><th>lag</th><th>lag seconds</th></tr>\n");
    for (size_t i = 0; i < nrows; i++) {
        const struct lag_row *row = &rows[i];

        page_printf(&p, "<tr data-group=\"");
        page_text(&p, row->group);
        page_printf(&p, "\" data-partition=\"%d\"><td>", (int)row->partition);
        page_text(&p, row->group);
        page_printf(&p, "</td><td>%zu</td><td>", row->members);
        page_text(&p, row->topic);
        page_printf(&p, "</td><td>%d</td>", (int)row->partition);
        if (row->committed == KAFKA_GROUP_NO_OFFSET)
            page_printf(&p, "<td>none</td>");
        else
            page_printf(&p, "<td>%lld</td>", (long long)row->committed);
        page_printf(&p, "<td>%lld</td><td class=\"lag\">%lld</td>"
                    "<td>%.1f</td></tr>\n", (long long)row->end,
                    (long long)row->lag, row->age_seconds);
    }
    page_printf(&p, "</table>\n");

    /* Transitions, newest first. */
    shown = status_nlast < STATUS_TRANSITIONS ? status_nlast
                                              : STATUS_TRANSITIONS;
    page_printf(&p, "<h2>Last transitions published by this replica</h2>\n"
                "<table id=\"transitions\"><tr><th>at</th><th>region</th>"
                "<th>from</th><th>to</th><th>epoch</th><th>reason</th>"
                "</tr>\n");
    for (size_t i = 0; i < shown; i++) {
        const struct status_transition *t =
            &status_last[(status_nlast - 1 - i) % STATUS_TRANSITIONS];

        page_printf(&p, "<tr><td>%s</td><td>",
                    page_time(t->at_ms, when, sizeof(when)));
        page_text(&p, t->region);
        page_printf(&p, "</td><td>%s</td><td>%s</td><td>%llu</td><td>",
                    control_state_name(t->from), control_state_name(t->to),
                    (unsigned long long)t->epoch);
        page_text(&p, t->reason);
        page_printf(&p, "</td></tr>\n");
    }
    page_printf(&p, "</table>\n</body></html>\n");
    return p.buf;
}

#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "version.h"        /* FERRY_VERSION, written by the Makefile */

enum metric_type {
    METRIC_COUNTER,
    METRIC_GAUGE,
    METRIC_HISTOGRAM
};

struct metric_series {
    char                 *values[METRICS_MAX_LABELS];
    double                value;        /* counter, gauge; histogram sum */
    uint64_t             *counts;       /* histogram: per bucket, +Inf last */
    uint64_t              count;        /* histogram observations */
    uint64_t              sweep;        /* the sweep that last set it */
    struct metric_series *next;
};

struct metric {
    struct metrics       *reg;
    enum metric_type      type;
    char                 *name;
    char                 *help;
    char                 *labels[METRICS_MAX_LABELS];
    size_t                nlabels;
    double               *buckets;
    size_t                nbuckets;
    uint64_t              sweep;
    struct metric_series *series;       /* in creation order */
    struct metric        *next;
};

struct metrics {
    pthread_mutex_t lock;
    struct metric  *first;
    struct metric  *last;
};

/* A growing output buffer. */
struct metrics_text {
    char  *buf;
    size_t len;
    size_t cap;
};

static struct metric *metrics_register(struct metrics *reg,
                                       enum metric_type type,
                                       const char *name, const char *help,
                                       const char *labels);
static bool metrics_valid_name(const char *name, bool label);
static struct metric_series *metric_series_get(struct metric *m, va_list ap);
static void metric_series_free(struct metric_series *s);
static void text_printf(struct metrics_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void text_escaped(struct metrics_text *t, const char *s, bool quote);
static void text_number(struct metrics_text *t, double v);
static void text_labels(struct metrics_text *t, const struct metric *m,
                        const struct metric_series *s, const char *le);
static void render_family(struct metrics_text *t, const struct metric *m);


struct metrics *
metrics_new(void)
{
    struct metrics *reg = xcalloc(1, sizeof(*reg));

    pthread_mutex_init(&reg->lock, NULL);
    return reg;
}


void
metrics_free(struct metrics *reg)
{
    struct metric *m, *next;

    if (reg == NULL)
        return;
    for (m = reg->first; m != NULL; m = next) {
        struct metric_series *s, *snext;

        next = m->next;
        for (s = m->series; s != NULL; s = snext) {
            snext = s->next;
            metric_series_free(s);
        }
        for (size_t i = 0; i < m->nlabels; i++)
            free(m->labels[i]);
        free(m->name);
        free(m->help);
        free(m->buckets);
        free(m);
    }
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}


struct metric *
metrics_counter(struct metrics *reg, const char *name, const char *help,
                const char *labels)
{
    return metrics_register(reg, METRIC_COUNTER, name, help, labels);
}


struct metric *
metrics_gauge(struct metrics *reg, const char *name, const char *help,
              const char *labels)
{
    return metrics_register(reg, METRIC_GAUGE, name, help, labels);
}


struct metric *
metrics_histogram(struct metrics *reg, const char *name, const char *help,
                  const char *labels, const double *buckets,
                  size_t nbuckets)
{
    struct metric *m;

    for (size_t i = 1; i < nbuckets; i++) {
        if (!(buckets[i] > buckets[i - 1])) {
            fprintf(stderr, "metrics: buckets of %s are not increasing\n",
                    name);
            abort();
        }
    }
    m = metrics_register(reg, METRIC_HISTOGRAM, name, help, labels);
    pthread_mutex_lock(&reg->lock);
    m->buckets = xmalloc((nbuckets + 1) * sizeof(*m->buckets));
    memcpy(m->buckets, buckets, nbuckets * sizeof(*buckets));
    m->nbuckets = nbuckets;
    if (m->series != NULL)
        m->series->counts = xcalloc(nbuckets + 1, sizeof(uint64_t));
    pthread_mutex_unlock(&reg->lock);
    return m;
}


static struct metric *
metrics_register(struct metrics *reg, enum metric_type type, const char *name,
                 const char *help, const char *labels)
{
    struct metric *m = xcalloc(1, sizeof(*m));
    char          *list = xstrdup(labels), *save = NULL, *label;

    m->reg = reg;
    m->type = type;
    m->name = xstrdup(name);
    m->help = xstrdup(help);
    for (label = strtok_r(list, ",", &save); label != NULL;
         label = strtok_r(NULL, ",", &save)) {
        if (m->nlabels == METRICS_MAX_LABELS ||
            !metrics_valid_name(label, true) || strcmp(label, "le") == 0) {
            fprintf(stderr, "metrics: invalid labels '%s' of %s\n", labels,
                    name);
            abort();
        }
        m->labels[m->nlabels++] = xstrdup(label);
    }
    free(list);
    if (!metrics_valid_name(name, false)) {
        fprintf(stderr, "metrics: invalid metric name '%s'\n", name);
        abort();
    }

    pthread_mutex_lock(&reg->lock);
    for (struct metric *o = reg->first; o != NULL; o = o->next) {
        if (strcmp(o->name, name) == 0) {
            fprintf(stderr, "metrics: %s registered twice\n", name);
            abort();
        }
    }
    if (reg->last != NULL)
        reg->last->next = m;
    else
        reg->first = m;
    reg->last = m;

    /* A family without labels has exactly one series, shown from start. */
    if (m->nlabels == 0)
        m->series = xcalloc(1, sizeof(*m->series));
    pthread_mutex_unlock(&reg->lock);
    return m;
}


/* Metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, labels the same without ':'. */
static bool
metrics_valid_name(const char *name, bool label)
{
    if (name[0] == '\0' || (name[0] >= '0' && name[0] <= '9'))
        return false;
    for (const char *p = name; *p != '\0'; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '_' ||
                  (!label && *p == ':');

        if (!ok)
            return false;
    }
    return true;
}


/* Finds or creates the series of the label values in ap; call locked. */
static struct metric_series *
metric_series_get(struct metric *m, va_list ap)
{
    const char           *values[METRICS_MAX_LABELS];
    struct metric_series *s, *last = NULL;

    for (size_t i = 0; i < m->nlabels; i++) {
        values[i] = va_arg(ap, const char *);
        if (values[i] == NULL)
            values[i] = "";
    }
    for (s = m->series; s != NULL; last = s, s = s->next) {
        size_t i;

        for (i = 0; i < m->nlabels; i++)
            if (strcmp(s->values[i], values[i]) != 0)
                break;
        if (i == m->nlabels)
            return s;
    }

    s = xcalloc(1, sizeof(*s));
    for (size_t i = 0; i < m->nlabels; i++)
        s->values[i] = xstrdup(values[i]);
    if (m->type == METRIC_HISTOGRAM)
        s->counts = xcalloc(m->nbuckets + 1, sizeof(uint64_t));
    if (last != NULL)
        last->next = s;
    else
        m->series = s;
    return s;
}


static void
metric_series_free(struct metric_series *s)
{
    for (size_t i = 0; i < METRICS_MAX_LABELS; i++)
        free(s->values[i]);
    free(s->counts);
    free(s);
}


void
metric_add(struct metric *m, double delta, ...)
{
    struct metric_series *s;
    va_list               ap;

    if (m == NULL || m->type == METRIC_HISTOGRAM ||
        (m->type == METRIC_COUNTER && !(delta >= 0)))
        return;
    pthread_mutex_lock(&m->reg->lock);
    va_start(ap, delta);
    s = metric_series_get(m, ap);
    va_end(ap);
    s->value += delta;
    s->sweep = m->sweep;
    pthread_mutex_unlock(&m->reg->lock);
}


void
metric_set(struct metric *m, double value, ...)
{
    struct metric_series *s;
    va_list               ap;

    if (m == NULL || m->type != METRIC_GAUGE)
        return;
    pthread_mutex_lock(&m->reg->lock);
    va_start(ap, value);
    s = metric_series_get(m, ap);
    va_end(ap);
    s->value = value;
    s->sweep = m->sweep;
    pthread_mutex_unlock(&m->reg->lock);
}


void
metric_observe(struct metric *m, double value, ...)
{
    struct metric_series *s;
    va_list               ap;
    size_t                b;

    if (m == NULL || m->type != METRIC_HISTOGRAM || isnan(value))
        return;
    pthread_mutex_lock(&m->reg->lock);
    va_start(ap, value);
    s = metric_series_get(m, ap);
    va_end(ap);
    for (b = 0; b < m->nbuckets; b++)
        if (value <= m->buckets[b])
            break;
    s->counts[b]++;
    s->count++;
    s->value += value;
    s->sweep = m->sweep;
    pthread_mutex_unlock(&m->reg->lock);
}


void
metric_sweep_begin(struct metric *m)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->reg->lock);
    m->sweep++;
    pthread_mutex_unlock(&m->reg->lock);
}


void
metric_sweep_end(struct metric *m)
{
    struct metric_series **link;

    if (m == NULL || m->nlabels == 0)
        return;
    pthread_mutex_lock(&m->reg->lock);
    link = &m->series;
    while (*link != NULL) {
        struct metric_series *s = *link;

        if (s->sweep != m->sweep) {
            *link = s->next;
            metric_series_free(s);
        } else {
            link = &s->next;
        }
    }
    pthread_mutex_unlock(&m->reg->lock);
}


const char *
metrics_version(void)
{
    return FERRY_VERSION;
}


void
metrics_add_process(struct metrics *reg, const char *daemon)
{
    struct metric *info, *start;

    info = metrics_gauge(reg, "ferry_build_info",
                         "Always 1, labelled with the daemon and its version.",
                         "daemon,version");
    start = metrics_gauge(reg, "process_start_time_seconds",
                          "Start time of the process since the Unix epoch "
                          "in seconds.", "");
    metric_set(info, 1, daemon, metrics_version());
    metric_set(start, (double)(util_now_ms() / 1000));
}


static void
text_printf(struct metrics_text *t, const char *fmt, ...)
{
    va_list ap;
    int     n;

    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        t->cap = t->cap * 2 + (size_t)n + 1;
        t->buf = xrealloc(t->buf, t->cap);
    }
}


/*
 * HELP text escapes backslash and newline; label values also escape the
 * double quote.
 */
static void
text_escaped(struct metrics_text *t, const char *s, bool quote)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\')
            text_printf(t, "\\\\");
        else if (*s == '\n')
            text_printf(t, "\\n");
        else if (*s == '"' && quote)
            text_printf(t, "\\\"");
        else
            text_printf(t, "%c", *s);
    }
}


/* Integers print without exponent or fraction, others round-trip. */
static void
text_number(struct metrics_text *t, double v)
{
    char buf[64];

    if (isnan(v)) {
        text_printf(t, "NaN");
    } else if (isinf(v)) {
        text_printf(t, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 1e15) {
        text_printf(t, "%.0f", v);
    } else {
        snprintf(buf, sizeof(buf), "%.15g", v);
        if (strtod(buf, NULL) != v)
            snprintf(buf, sizeof(buf), "%.17g", v);
        text_printf(t, "%s", buf);
    }
}


/* Writes {a="x",b="y"} with an le label last when le is not NULL. */
static void
text_labels(struct metrics_text *t, const struct metric *m,
            const struct metric_series *s, const char *le)
{
    if (m->nlabels == 0 && le == NULL)
        return;
    text_printf(t, "{");
    for (size_t i = 0; i < m->nlabels; i++) {
        text_printf(t, "%s%s=\"", i > 0 ? "," : "", m->labels[i]);
        text_escaped(t, s->values[i], true);
        text_printf(t, "\"");
    }
    if (le != NULL)
        text_printf(t, "%sle=\"%s\"", m->nlabels > 0 ? "," : "", le);
    text_printf(t, "}");
}


static void
render_family(struct metrics_text *t, const struct metric *m)
{
    static const char *const types[] = { "counter", "gauge", "histogram" };

    text_printf(t, "# HELP %s ", m->name);
    text_escaped(t, m->help, false);
    text_printf(t, "\n# TYPE %s %s\n", m->name, types[m->type]);
    for (const struct metric_series *s = m->series; s != NULL; s = s->next) {
        uint64_t cumulative = 0;
        char     le[64];

        if (m->type != METRIC_HISTOGRAM) {
            text_printf(t, "%s", m->name);
            text_labels(t, m, s, NULL);
            text_printf(t, " ");
            text_number(t, s->value);
            text_printf(t, "\n");
            continue;
        }
        for (size_t b = 0; b <= m->nbuckets; b++) {
            cumulative += s->counts[b];
            if (b < m->nbuckets)
                snprintf(le, sizeof(le), "%.15g", m->buckets[b]);
            else
                snprintf(le, sizeof(le), "+Inf");
            text_printf(t, "%s_bucket", m->name);
            text_labels(t, m, s, le);
            text_printf(t, " %llu\n", (unsigned long long)cumulative);
        }
        text_printf(t, "%s_sum", m->name);
        text_labels(t, m, s, NULL);
        text_printf(t, " ");
        text_number(t, s->value);
        text_printf(t, "\n%s_count", m->name);
        text_labels(t, m, s, NULL);
        text_printf(t, " %llu\n", (unsigned long long)s->count);
    }
}


char *
metrics_render(struct metrics *reg, size_t *len)
{
    struct metrics_text t = { xmalloc(4096), 0, 4096 };

    t.buf[0] = '\0';
    pthread_mutex_lock(&reg->lock);
    for (const struct metric *m = reg->first; m != NULL; m = m->next)
        render_family(&t, m);
    pthread_mutex_unlock(&reg->lock);
    if (len != NULL)
        *len = t.len;
    return t.buf;
}

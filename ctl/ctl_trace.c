#include "ctl_trace.h"

#include <ctype.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ctl.h"
#include "ctl_lag.h"
#include "ctl_scan.h"
#include "ctl_time.h"
#include "delivered.h"
#include "envelope.h"
#include "util.h"

#define TRACE_IDLE_TIMEOUT_MS 30000
#define TRACE_MAX_HITS        64

enum trace_state {
    TRACE_WAITING,          /* its group has not committed past it */
    TRACE_CONSUMED,         /* committed past, outcome not in the window */
    TRACE_DELIVERED,
    TRACE_DEAD_LETTERED
};

struct trace_hit {
    char             topic[256];
    int32_t          partition;
    int64_t          offset;
    int64_t          timestamp_ms;
    bool             dead;              /* found in mail.R.dead */
    char             error_code[128];
    char             error_message[512];
    char             source[352];       /* "topic [p] offset o" */
    char             group[300];        /* consuming group, mail.R only */
    int64_t          committed;         /* -1 when none */
    enum trace_state state;
};

struct trace {
    bool              by_envelope_id;
    char              wanted[1024];     /* envelope id or Message-ID */
    char              envelope_id[ENVELOPE_ID_LEN + 1];
    char              message_id[1024];
    struct trace_hit  hits[TRACE_MAX_HITS];
    size_t            nhits;
    struct delivered  delivered[TRACE_MAX_HITS];
    size_t            ndelivered;
};

static const char trace_usage[] =
    "usage: ferryctl trace [-c FILE | --bootstrap HOST:PORT] [--since TIME]\n"
    "                      [--json] ID\n"
    "\n"
    "Finds a message by envelope id, or by the value of its Message-ID\n"
    "header, in mail.R, mail.R.pinned and mail.R.dead of every region, and\n"
    "reports where it is: delivered (region, SES MessageId and time from\n"
    "ferry.delivered), dead-lettered (the reason from the record's headers),\n"
    "or waiting (its group's committed offset is not past it).\n"
    "\n"
    "  -c, --config FILE      Ferry YAML configuration (kafka.bootstrap_servers,\n"
    "                         regions)\n"
    "      --bootstrap HOST:PORT\n"
    "                         broker to connect to; overrides the configuration\n"
    "      --since TIME       oldest record timestamp to read, RFC 3339 or\n"
    "                         relative (default -24h)\n"
    "      --json             print JSON\n"
    "  -h, --help             show this help\n"
    "\n"
    "Exit codes: 0 found, 2 not found in the window, 1 failure, 64 usage.\n";

static int trace_scan_mail(struct trace *tr, const struct ctl *ctl,
                           rd_kafka_t *rk, int64_t since_ms, char *err,
                           size_t errlen);
static enum ctl_scan_verdict trace_on_mail(struct ctl_scan_range *range,
                                           const rd_kafka_message_t *msg,
                                           void *opaque);
static int trace_scan_delivered(struct trace *tr, rd_kafka_t *rk,
                                int64_t since_ms, char *err, size_t errlen);
static enum ctl_scan_verdict trace_on_delivered(
    struct ctl_scan_range *range, const rd_kafka_message_t *msg,
    void *opaque);
static int trace_settle(struct trace *tr, rd_kafka_t *rk, char *err,
                        size_t errlen);
static const char *trace_status(const struct trace *tr);
static const char *trace_state_name(enum trace_state state);
static void trace_print_text(const struct trace *tr);
static void trace_print_json(const struct trace *tr);
static struct ctl_scan_range *trace_add_range(struct ctl_scan_range **ranges,
                                              size_t *count,
                                              const char *topic,
                                              int32_t partition);


bool
ctl_trace_is_envelope_id(const char *text)
{
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

    if (strlen(text) != ENVELOPE_ID_LEN)
        return false;
    for (size_t i = 0; i < ENVELOPE_ID_LEN; i++)
        if (strchr(alphabet, text[i]) == NULL || text[i] == '\0')
            return false;
    return true;
}


int
ctl_trace_message_id(const unsigned char *message, size_t len, char *out,
                     size_t size)
{
    const char *p = (const char *)message, *end = p + len;
    char        value[1024];
    size_t      n = 0;

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol != NULL ? eol : end;
        size_t      line_len = (size_t)(line_end - p);

        if (line_len > 0 && p[line_len - 1] == '\r')
            line_len--;
        if (line_len == 0)
            return -1;                  /* end of the header section */

        if (line_len >= 11 && strncasecmp(p, "Message-ID:", 11) == 0) {
            const char *q = p + 11;

            /* The value, with any folded continuation lines. */
            for (;;) {
                for (; q < p + line_len && n + 1 < sizeof(value); q++)
                    value[n++] = *q;
                if (eol == NULL || eol + 1 >= end ||
                    (eol[1] != ' ' && eol[1] != '\t'))
                    break;
                p = eol + 1;
                eol = memchr(p, '\n', (size_t)(end - p));
                line_end = eol != NULL ? eol : end;
                line_len = (size_t)(line_end - p);
                if (line_len > 0 && p[line_len - 1] == '\r')
                    line_len--;
                q = p;
            }
            value[n] = '\0';
            ctl_trace_normalize_id(value, out, size);
            return out[0] != '\0' ? 0 : -1;
        }
        if (eol == NULL)
            break;
        p = eol + 1;
    }
    return -1;
}


void
ctl_trace_normalize_id(const char *value, char *out, size_t size)
{
    const char *start = value, *end = value + strlen(value);
    size_t      n;

    while (start < end && isspace((unsigned char)*start))
        start++;
    while (end > start && isspace((unsigned char)end[-1]))
        end--;
    if (start < end && *start == '<')
        start++;
    if (end > start && end[-1] == '>')
        end--;
    n = (size_t)(end - start);
    if (n >= size)
        n = size - 1;
    memcpy(out, start, n);
    out[n] = '\0';
}


int
ctl_trace_main(int argc, char **argv)
{
    static const struct option options[] = {
        { "config", required_argument, NULL, 'c' },
        { "bootstrap", required_argument, NULL, CTL_OPT_BOOTSTRAP },
        { "since", required_argument, NULL, CTL_OPT_SINCE },
        { "json", no_argument, NULL, CTL_OPT_JSON },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    struct ctl    ctl;
    struct trace *tr = xcalloc(1, sizeof(*tr));
    const char   *config_path = NULL, *bootstrap = NULL, *since = "-24h";
    bool          json = false;
    int64_t       since_ms;
    rd_kafka_t   *rk = NULL;
    char          err[1024];
    int           opt, rc = CTL_EXIT_FAILURE;

    memset(&ctl, 0, sizeof(ctl));
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":c:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; break;
        case CTL_OPT_BOOTSTRAP: bootstrap = optarg; break;
        case CTL_OPT_SINCE: since = optarg; break;
        case CTL_OPT_JSON: json = true; break;
        case 'h':
            fputs(trace_usage, stdout);
            free(tr);
            return CTL_EXIT_OK;
        case ':':
            ctl_usage_error("trace", "option '%s' needs a value",
                            argv[optind - 1]);
        default:
            ctl_usage_error("trace", "unknown option '%s'",
                            argv[optind - 1]);
        }
    }
    if (optind == argc)
        ctl_usage_error("trace", "missing the envelope id or Message-ID");
    if (optind + 1 < argc)
        ctl_usage_error("trace", "unexpected argument '%s'",
                        argv[optind + 1]);
    if (ctl_time_parse(since, util_now_ms(), &since_ms, err,
                       sizeof(err)) == -1)
        ctl_usage_error("trace", "%s", err);
    tr->by_envelope_id = ctl_trace_is_envelope_id(argv[optind]);
    if (tr->by_envelope_id)
        snprintf(tr->wanted, sizeof(tr->wanted), "%s", argv[optind]);
    else
        ctl_trace_normalize_id(argv[optind], tr->wanted, sizeof(tr->wanted));
    if (tr->wanted[0] == '\0')
        ctl_usage_error("trace", "empty Message-ID '%s'", argv[optind]);
    if (ctl_init(&ctl, "trace", config_path, bootstrap, err,
                 sizeof(err)) == -1)
        ctl_usage_error("trace", "%s", err);

    if ((rk = ctl_consumer_new(&ctl, err, sizeof(err))) == NULL ||
        trace_scan_mail(tr, &ctl, rk, since_ms, err, sizeof(err)) == -1) {
        ctl_error("trace", "%s", err);
        goto out;
    }
    if (tr->nhits == 0) {
        ctl_error("trace", "%s not found in the mail topics since %s",
                  tr->wanted, since);
        rc = CTL_EXIT_NOT_FOUND;
        goto out;
    }
    if (trace_scan_delivered(tr, rk, since_ms, err, sizeof(err)) == -1 ||
        trace_settle(tr, rk, err, sizeof(err)) == -1) {
        ctl_error("trace", "%s", err);
        goto out;
    }
    if (json)
        trace_print_json(tr);
    else
        trace_print_text(tr);
    rc = CTL_EXIT_OK;

out:
    if (rk != NULL) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    free(tr);
    ctl_fini(&ctl);
    return rc;
}


/* Reads mail.R, mail.R.pinned and mail.R.dead of every region. */
static int
trace_scan_mail(struct trace *tr, const struct ctl *ctl, rd_kafka_t *rk,
                int64_t since_ms, char *err, size_t errlen)
{
    static const char *const suffixes[] = { "", ".pinned", ".dead" };
    struct ctl_scan_range   *ranges = NULL;
    char                   **regions, **topics = NULL;
    size_t                   nregions, nranges = 0, ntopics = 0;
    int                      rc = -1;

    regions = ctl_regions(ctl, rk, &nregions, err, errlen);
    if (regions == NULL)
        return -1;
    topics = xcalloc(nregions * 3 + 1, sizeof(*topics));
    for (size_t i = 0; i < nregions; i++) {
        for (size_t j = 0; j < 3; j++) {
            int   count, found;
            char *topic;

            if (asprintf(&topic, "mail.%s%s", regions[i], suffixes[j]) == -1)
                abort();
            found = ctl_topic_partitions(rk, topic, &count, err, errlen);
            if (found == -1) {
                free(topic);
                goto out;
            }
            if (found == -2) {          /* a region without topics */
                free(topic);
                continue;
            }
            topics[ntopics++] = topic;
            for (int p = 0; p < count; p++)
                trace_add_range(&ranges, &nranges, topic, p);
        }
    }
    if (ctl_scan_seek_time(rk, ranges, nranges, since_ms, err,
                           errlen) == -1)
        goto out;
    rc = ctl_scan_run(rk, ranges, nranges, trace_on_mail, NULL, tr,
                      TRACE_IDLE_TIMEOUT_MS, err, errlen);

out:
    for (size_t i = 0; i < ntopics; i++)
        free(topics[i]);
    free(topics);
    free(ranges);
    ctl_regions_free(regions, nregions);
    return rc;
}


static enum ctl_scan_verdict
trace_on_mail(struct ctl_scan_range *range, const rd_kafka_message_t *msg,
              void *opaque)
{
    struct trace     *tr = opaque;
    struct trace_hit *hit;
    size_t            topic_len = strlen(range->topic);
    char              id[ENVELOPE_ID_LEN + 1] = "", mid[1024] = "";
    char              partition[32] = "", offset[32] = "";

    if (msg->key != NULL && msg->key_len == ENVELOPE_ID_LEN) {
        memcpy(id, msg->key, ENVELOPE_ID_LEN);
        id[ENVELOPE_ID_LEN] = '\0';
    }

    if (tr->by_envelope_id) {
        if (strcmp(id, tr->wanted) != 0)
            return CTL_SCAN_CONTINUE;
    } else {
        struct envelope *env;
        char             why[256];
        int              found;

        /*
         * Once the envelope id is known, later records match by key.
         * NOTE: a Message-ID sent twice gives two envelopes; both are
         * listed, and ferry.delivered is searched for the first only.
         */
        if (tr->envelope_id[0] == '\0' || strcmp(id, tr->envelope_id) != 0) {
            env = envelope_decode(msg->payload, msg->len, why, sizeof(why));
            if (env == NULL || env->chunk_index != 0) {
                envelope_free(env);
                return CTL_SCAN_CONTINUE;
            }
            found = ctl_trace_message_id(env->message, env->message_len,
                                         mid, sizeof(mid));
            envelope_free(env);
            if (found == -1 || strcmp(mid, tr->wanted) != 0)
                return CTL_SCAN_CONTINUE;
            snprintf(tr->message_id, sizeof(tr->message_id), "%s", mid);
        }
    }
    if (tr->envelope_id[0] == '\0')
        snprintf(tr->envelope_id, sizeof(tr->envelope_id), "%s", id);
    if (tr->nhits == TRACE_MAX_HITS)
        return CTL_SCAN_STOP_ALL;

    hit = &tr->hits[tr->nhits++];
    memset(hit, 0, sizeof(*hit));
    snprintf(hit->topic, sizeof(hit->topic), "%s", range->topic);
    hit->partition = msg->partition;
    hit->offset = msg->offset;
    hit->timestamp_ms = rd_kafka_message_timestamp(msg, NULL);
    hit->committed = -1;
    hit->dead = topic_len > 5 &&
                strcmp(range->topic + topic_len - 5, ".dead") == 0;
    if (hit->dead) {
        char source[256];

        /* Records that ferry-deliver did not write lack these headers. */
        if (ctl_scan_header(msg, "ferry-error-code", hit->error_code,
                            sizeof(hit->error_code)) == NULL)
            snprintf(hit->error_code, sizeof(hit->error_code),
                     "(no ferry-error-code header)");
        ctl_scan_header(msg, "ferry-error-message", hit->error_message,
                        sizeof(hit->error_message));
        if (ctl_scan_header(msg, "ferry-source-topic", source,
                            sizeof(source)) != NULL) {
            ctl_scan_header(msg, "ferry-source-partition", partition,
                            sizeof(partition));
            ctl_scan_header(msg, "ferry-source-offset", offset,
                            sizeof(offset));
            snprintf(hit->source, sizeof(hit->source), "%s [%s] offset %s",
                     source, partition, offset);
        }
        hit->state = TRACE_DEAD_LETTERED;
    } else {
        /* mail.R is read by ferry-deliver.R, mail.R.pinned likewise. */
        snprintf(hit->group, sizeof(hit->group), "ferry-deliver.%s",
                 range->topic + 5);
    }
    return CTL_SCAN_CONTINUE;
}


static int
trace_scan_delivered(struct trace *tr, rd_kafka_t *rk, int64_t since_ms,
                     char *err, size_t errlen)
{
    struct ctl_scan_range *ranges = NULL;
    size_t                 nranges = 0;
    int                    count, rc = -1;

    if (tr->envelope_id[0] == '\0')
        return 0;
    if (ctl_topic_partitions(rk, DELIVERED_TOPIC, &count, err,
                             errlen) != 0)
        return -1;
    for (int p = 0; p < count; p++)
        trace_add_range(&ranges, &nranges, DELIVERED_TOPIC, p);
    if (ctl_scan_seek_time(rk, ranges, nranges, since_ms, err, errlen) == 0)
        rc = ctl_scan_run(rk, ranges, nranges, trace_on_delivered, NULL, tr,
                          TRACE_IDLE_TIMEOUT_MS, err, errlen);
    free(ranges);
    return rc;
}


static enum ctl_scan_verdict
trace_on_delivered(struct ctl_scan_range *range,
                   const rd_kafka_message_t *msg, void *opaque)
{
    struct trace *tr = opaque;

    if (msg->key == NULL || msg->key_len != ENVELOPE_ID_LEN ||
        memcmp(msg->key, tr->envelope_id, ENVELOPE_ID_LEN) != 0 ||
        tr->ndelivered == TRACE_MAX_HITS)
        return CTL_SCAN_CONTINUE;
    if (delivered_decode(msg->payload, msg->len,
                         &tr->delivered[tr->ndelivered]) == 0)
        tr->ndelivered++;
    return CTL_SCAN_CONTINUE;
}


/* Decides the state of every hit in mail.R or mail.R.pinned. */
static int
trace_settle(struct trace *tr, rd_kafka_t *rk, char *err, size_t errlen)
{
    for (size_t i = 0; i < tr->nhits; i++) {
        struct trace_hit                 *hit = &tr->hits[i];
        rd_kafka_topic_partition_list_t  *committed;
        const rd_kafka_topic_partition_t *tp;

        if (hit->dead)
            continue;
        committed = ctl_lag_committed(rk, hit->group, err, errlen);
        if (committed == NULL)
            return -1;
        tp = rd_kafka_topic_partition_list_find(committed, hit->topic,
                                                hit->partition);
        if (tp != NULL && tp->offset >= 0)
            hit->committed = tp->offset;
        rd_kafka_topic_partition_list_destroy(committed);

        if (hit->committed <= hit->offset)
            hit->state = TRACE_WAITING;
        else
            hit->state = TRACE_CONSUMED;
        for (size_t j = 0; j < tr->ndelivered; j++) {
            const struct delivered *d = &tr->delivered[j];

            if (strcmp(d->source_topic, hit->topic) == 0 &&
                d->source_partition == hit->partition &&
                d->source_offset == hit->offset)
                hit->state = TRACE_DELIVERED;
        }
    }
    return 0;
}


static const char *
trace_status(const struct trace *tr)
{
    bool waiting = false, dead = false;

    if (tr->ndelivered > 0)
        return "delivered";
    for (size_t i = 0; i < tr->nhits; i++) {
        waiting |= tr->hits[i].state == TRACE_WAITING;
        dead |= tr->hits[i].state == TRACE_DEAD_LETTERED;
    }
    if (waiting)
        return "waiting";
    if (dead)
        return "dead-lettered";
    return "consumed";
}


static const char *
trace_state_name(enum trace_state state)
{
    switch (state) {
    case TRACE_WAITING: return "waiting";
    case TRACE_CONSUMED: return "consumed";
    case TRACE_DELIVERED: return "delivered";
    case TRACE_DEAD_LETTERED: return "dead-lettered";
    }
    return "unknown";
}


static void
trace_print_text(const struct trace *tr)
{
    char when[CTL_TIME_LEN];

    printf("envelope %s", tr->envelope_id);
    if (tr->message_id[0] != '\0')
        printf(" (Message-ID <%s>)", tr->message_id);
    printf("\n");
    for (size_t i = 0; i < tr->nhits; i++) {
        const struct trace_hit *hit = &tr->hits[i];

        printf("  %s [%d] offset %lld, %s: %s", hit->topic,
               (int)hit->partition, (long long)hit->offset,
               ctl_time_format(hit->timestamp_ms, when),
               trace_state_name(hit->state));
        if (hit->dead) {
            printf(", %s", hit->error_code);
            if (hit->error_message[0] != '\0')
                printf(": %s", hit->error_message);
            if (hit->source[0] != '\0')
                printf(" (from %s)", hit->source);
        } else if (hit->committed < 0)
            printf(", group %s has no committed offset", hit->group);
        else
            printf(", group %s committed offset %lld", hit->group,
                   (long long)hit->committed);
        if (hit->state == TRACE_WAITING && hit->committed >= 0)
            printf(" (%lld records ahead of it)",
                   (long long)(hit->offset - hit->committed));
        if (hit->state == TRACE_CONSUMED)
            printf(", but no ferry.delivered record in the window");
        printf("\n");
    }
    for (size_t i = 0; i < tr->ndelivered; i++) {
        const struct delivered *d = &tr->delivered[i];

        printf("  delivered in %s at %s, SES MessageId %s (from %s [%d] "
               "offset %lld)\n", d->region,
               ctl_time_format(d->delivered_at_ms, when), d->ses_message_id,
               d->source_topic, (int)d->source_partition,
               (long long)d->source_offset);
    }
    printf("status: %s\n", trace_status(tr));
}


static void
trace_print_json(const struct trace *tr)
{
    json_t *root = json_object(), *hits = json_array(),
           *delivered = json_array();
    char    when[CTL_TIME_LEN], *text;

    for (size_t i = 0; i < tr->nhits; i++) {
        const struct trace_hit *hit = &tr->hits[i];
        json_t                 *jh = json_object();

        json_object_set_new(jh, "topic", json_string(hit->topic));
        json_object_set_new(jh, "partition", json_integer(hit->partition));
        json_object_set_new(jh, "offset", json_integer(hit->offset));
        json_object_set_new(jh, "timestamp", json_string(ctl_time_format(
                                                 hit->timestamp_ms, when)));
        json_object_set_new(jh, "state",
                            json_string(trace_state_name(hit->state)));
        if (hit->dead) {
            json_object_set_new(jh, "error_code",
                                json_string(hit->error_code));
            json_object_set_new(jh, "error_message",
                                json_string(hit->error_message));
            json_object_set_new(jh, "source", json_string(hit->source));
        } else {
            json_object_set_new(jh, "group", json_string(hit->group));
            json_object_set_new(jh, "committed",
                                hit->committed < 0
                                    ? json_null()
                                    : json_integer(hit->committed));
        }
        json_array_append_new(hits, jh);
    }
    for (size_t i = 0; i < tr->ndelivered; i++) {
        const struct delivered *d = &tr->delivered[i];

        json_array_append_new(delivered, json_pack(
            "{s:s, s:s, s:s, s:s, s:i, s:I}", "region", d->region,
            "ses_message_id", d->ses_message_id, "delivered_at",
            ctl_time_format(d->delivered_at_ms, when), "source_topic",
            d->source_topic, "source_partition", (int)d->source_partition,
            "source_offset", (json_int_t)d->source_offset));
    }
    json_object_set_new(root, "envelope_id", json_string(tr->envelope_id));
    json_object_set_new(root, "message_id",
                        tr->message_id[0] != '\0'
                            ? json_string(tr->message_id)
                            : json_null());
    json_object_set_new(root, "status", json_string(trace_status(tr)));
    json_object_set_new(root, "locations", hits);
    json_object_set_new(root, "delivered", delivered);
    text = json_dumps(root, JSON_INDENT(2));
    puts(text);
    free(text);
    json_decref(root);
}


static struct ctl_scan_range *
trace_add_range(struct ctl_scan_range **ranges, size_t *count,
                const char *topic, int32_t partition)
{
    struct ctl_scan_range *r;

    *ranges = xrealloc(*ranges, (*count + 1) * sizeof(**ranges));
    r = &(*ranges)[(*count)++];
    memset(r, 0, sizeof(*r));
    r->topic = topic;
    r->partition = partition;
    return r;
}

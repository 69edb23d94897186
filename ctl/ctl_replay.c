#include "ctl_replay.h"

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "ctl_scan.h"
#include "ctl_table.h"
#include "ctl_time.h"
#include "delivered.h"
#include "util.h"


/*
 * ferry.delivered is read from --from minus this margin. A delivered
 * record is written after its message's CreateTime, so the margin only
 * has to cover clock differences between the ingress and worker hosts.
 */
#define REPLAY_DELIVERED_MARGIN_MS (15 * 60 * 1000)

/* A scan fails when the broker sends nothing for this long. */
#define REPLAY_IDLE_TIMEOUT_MS 30000

#define REPLAY_FLUSH_TIMEOUT_MS 60000

struct replay_partition {
    int32_t partition;
    int64_t start;
    int64_t end;
    int64_t in_window;
    int64_t skipped;            /* already in ferry.delivered */
    int64_t queued;             /* handed to the producer */
    int64_t replayed;           /* acknowledged by the brokers */
    int64_t failed;
    bool    reported;           /* its progress line is written */
};

struct replay {
    const char              *topic;
    const char              *to_topic;  /* --to-topic, or NULL */
    int64_t                  from_ms;
    int64_t                  to_ms;
    bool                     execute;
    bool                     json;
    rd_kafka_t              *producer;
    char                   **delivered; /* sorted envelope ids */
    size_t                   ndelivered;
    struct replay_partition *parts;
    size_t                   nparts;
    int64_t                  total;     /* offsets to read, for progress */
    bool                     tty;
    int64_t                  drawn_ms;  /* last progress bar update */
    char                     error[512];
};

static const char replay_usage[] =
    "usage: ferryctl replay [-c FILE | --bootstrap HOST:PORT] --topic T\n"
    "                       --from TIME --to TIME [--execute] [--to-topic T2]\n"
    "                       [--partitions 0,2] [--include-delivered] [--json]\n"
    "\n"
    "Re-publishes the records of topic T whose timestamps are in [--from, --to]\n"
    "to the delivery topic, with the same key, value and headers. Without\n"
    "--execute it only counts them (a dry run).\n"
    "\n"
    "  -c, --config FILE      Ferry YAML configuration (kafka.bootstrap_servers)\n"
    "      --bootstrap HOST:PORT\n"
    "                         broker to connect to; overrides the configuration\n"
    "      --topic T          topic to read, usually mail.R.dead\n"
    "      --from TIME        window start, RFC 3339 (2026-12-04T15:00:00Z) or\n"
    "                         relative to now (-2h, -30m)\n"
    "      --to TIME          window end, inclusive, in the same forms\n"
    "      --execute          produce the records; without it nothing is written\n"
    "      --to-topic T2      topic to produce to. The default for mail.R.dead\n"
    "                         is the ferry-source-topic header of each record,\n"
    "                         else mail.R; for mail.R or mail.R.pinned it is the\n"
    "                         topic itself\n"
    "      --partitions LIST  only these partitions of T, comma-separated\n"
    "      --include-delivered\n"
    "                         also replay envelopes that ferry.delivered already\n"
    "                         records as delivered\n"
    "      --json             print the summary as JSON\n"
    "  -h, --help             show this help\n"
    "\n"
    "Timestamps are the records' CreateTime, set by the producer that wrote\n"
    "them (ferry-ingress for mail.R, ferry-deliver for mail.R.dead). Each\n"
    "partition is read from the first record at or after --from up to the\n"
    "first record past --to or the end offset taken at start, whichever comes\n"
    "first, so records produced while replay runs are never replayed. The\n"
    "copies get new CreateTime timestamps. replay assigns partitions without\n"
    "joining a consumer group and never commits offsets.\n";

static void replay_parse_partitions(const char *text, int32_t **list,
                                    size_t *count);
static int replay_load_delivered(struct replay *rp, rd_kafka_t *rk,
                                 char *err, size_t errlen);
static enum ctl_scan_verdict replay_on_delivered(
    struct ctl_scan_range *range, const rd_kafka_message_t *msg,
    void *opaque);
static enum ctl_scan_verdict replay_on_record(struct ctl_scan_range *range,
                                              const rd_kafka_message_t *msg,
                                              void *opaque);
static int replay_produce(struct replay *rp, struct replay_partition *part,
                          const rd_kafka_message_t *msg);
static bool replay_is_delivered(const struct replay *rp,
                                const rd_kafka_message_t *msg);
static void replay_on_progress(const struct ctl_scan_range *ranges,
                               size_t count, void *opaque);
static void replay_on_delivery(rd_kafka_t *rk,
                               const rd_kafka_message_t *msg, void *opaque);
static void replay_print_summary(const struct replay *rp);
static int replay_compare_ids(const void *a, const void *b);


int
ctl_replay_target(const char *dead_topic, const char *source_header,
                  char *buf, size_t size)
{
    size_t len = strlen(dead_topic);
    size_t base;

    if (len <= 10 || strncmp(dead_topic, "mail.", 5) != 0 ||
        strcmp(dead_topic + len - 5, ".dead") != 0)
        return -1;
    base = len - 5;                     /* "mail.R" */

    if (source_header != NULL &&
        strncmp(source_header, dead_topic, base) == 0 &&
        (source_header[base] == '\0' ||
         strcmp(source_header + base, ".pinned") == 0)) {
        if (strlen(source_header) >= size)
            return -1;
        strcpy(buf, source_header);
        return 0;
    }
    if (base >= size)
        return -1;
    memcpy(buf, dead_topic, base);
    buf[base] = '\0';
    return 0;
}


int
ctl_replay_main(int argc, char **argv)
{
    static const struct option options[] = {
        { "config", required_argument, NULL, 'c' },
        { "bootstrap", required_argument, NULL, CTL_OPT_BOOTSTRAP },
        { "topic", required_argument, NULL, CTL_OPT_TOPIC },
        { "from", required_argument, NULL, CTL_OPT_FROM },
        { "to", required_argument, NULL, CTL_OPT_TO },
        { "execute", no_argument, NULL, CTL_OPT_EXECUTE },
        { "to-topic", required_argument, NULL, CTL_OPT_TO_TOPIC },
        { "partitions", required_argument, NULL, CTL_OPT_PARTITIONS },
        { "include-delivered", no_argument, NULL,
          CTL_OPT_INCLUDE_DELIVERED },
        { "json", no_argument, NULL, CTL_OPT_JSON },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    struct ctl             ctl;
    struct replay          rp;
    struct ctl_scan_range *ranges = NULL;
    const char            *config_path = NULL, *bootstrap = NULL;
    const char            *from = NULL, *to = NULL;
    int32_t               *only = NULL;
    size_t                 nonly = 0;
    bool                   include_delivered = false;
    rd_kafka_t            *rk = NULL;
    int64_t                now_ms = util_now_ms();
    char                   err[1024], target[300];
    int                    opt, count, rc = CTL_EXIT_FAILURE;

    memset(&rp, 0, sizeof(rp));
    memset(&ctl, 0, sizeof(ctl));
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":c:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; break;
        case CTL_OPT_BOOTSTRAP: bootstrap = optarg; break;
        case CTL_OPT_TOPIC: rp.topic = optarg; break;
        case CTL_OPT_FROM: from = optarg; break;
        case CTL_OPT_TO: to = optarg; break;
        case CTL_OPT_EXECUTE: rp.execute = true; break;
        case CTL_OPT_TO_TOPIC: rp.to_topic = optarg; break;
        case CTL_OPT_PARTITIONS:
            free(only);
            replay_parse_partitions(optarg, &only, &nonly);
            break;
        case CTL_OPT_INCLUDE_DELIVERED: include_delivered = true; break;
        case CTL_OPT_JSON: rp.json = true; break;
        case 'h': fputs(replay_usage, stdout); return CTL_EXIT_OK;
        case ':':
            ctl_usage_error("replay", "option '%s' needs a value",
                            argv[optind - 1]);
        default:
            ctl_usage_error("replay", "unknown option '%s'",
                            argv[optind - 1]);
        }
    }
    if (optind < argc)
        ctl_usage_error("replay", "unexpected argument '%s'", argv[optind]);
    if (rp.topic == NULL || from == NULL || to == NULL)
        ctl_usage_error("replay", "--topic, --from and --to are required");
    if (ctl_time_parse(from, now_ms, &rp.from_ms, err, sizeof(err)) == -1 ||
        ctl_time_parse(to, now_ms, &rp.to_ms, err, sizeof(err)) == -1)
        ctl_usage_error("replay", "%s", err);
    if (rp.from_ms > rp.to_ms)
        ctl_usage_error("replay", "--from %s is after --to %s", from, to);
    if (rp.execute && rp.to_topic == NULL &&
        ctl_replay_target(rp.topic, NULL, target, sizeof(target)) == -1 &&
        strncmp(rp.topic, "mail.", 5) != 0)
        ctl_usage_error("replay", "no delivery topic is known for '%s'; "
                        "name one with --to-topic", rp.topic);
    if (ctl_init(&ctl, "replay", config_path, bootstrap, err,
                 sizeof(err)) == -1)
        ctl_usage_error("replay", "%s", err);

    if ((rk = ctl_consumer_new(&ctl, err, sizeof(err))) == NULL)
        goto fail;
    if (ctl_topic_partitions(rk, rp.topic, &count, err, sizeof(err)) != 0)
        goto fail;

    /* The partitions to read, each checked against the topic. */
    if (nonly == 0) {
        rp.nparts = (size_t)count;
        rp.parts = xcalloc(rp.nparts + 1, sizeof(*rp.parts));
        for (int p = 0; p < count; p++)
            rp.parts[p].partition = p;
    } else {
        rp.nparts = nonly;
        rp.parts = xcalloc(rp.nparts, sizeof(*rp.parts));
        for (size_t i = 0; i < nonly; i++) {
            if (only[i] >= count)
                ctl_usage_error("replay", "topic %s has no partition %d "
                                "(it has %d)", rp.topic, (int)only[i],
                                count);
            rp.parts[i].partition = only[i];
        }
    }

    /* The delivery topic must exist, or every record would fail. */
    if (rp.execute) {
        const char *check = rp.to_topic;

        if (check == NULL &&
            ctl_replay_target(rp.topic, NULL, target, sizeof(target)) == 0)
            check = target;
        if (check == NULL)
            check = rp.topic;
        if (ctl_topic_partitions(rk, check, &count, err, sizeof(err)) != 0)
            goto fail;
    }

    if (!include_delivered &&
        replay_load_delivered(&rp, rk, err, sizeof(err)) == -1)
        goto fail;

    /* Start offsets by time; end offsets are the watermarks taken now. */
    ranges = xcalloc(rp.nparts + 1, sizeof(*ranges));
    for (size_t i = 0; i < rp.nparts; i++) {
        ranges[i].topic = rp.topic;
        ranges[i].partition = rp.parts[i].partition;
        ranges[i].opaque = &rp.parts[i];
    }
    if (ctl_scan_seek_time(rk, ranges, rp.nparts, rp.from_ms, err,
                           sizeof(err)) == -1)
        goto fail;
    for (size_t i = 0; i < rp.nparts; i++) {
        rp.parts[i].start = ranges[i].start;
        rp.parts[i].end = ranges[i].end;
        rp.total += ranges[i].end - ranges[i].start;
        if (!rp.json)
            fprintf(stderr, "ferryctl replay: %s [%d]: reading offsets %lld "
                    "to %lld\n", rp.topic, (int)ranges[i].partition,
                    (long long)ranges[i].start, (long long)ranges[i].end);
    }

    if (rp.execute &&
        (rp.producer = ctl_producer_new(&ctl, replay_on_delivery, err,
                                         sizeof(err))) == NULL)
        goto fail;
    rp.tty = isatty(STDERR_FILENO);
    if (ctl_scan_run(rk, ranges, rp.nparts, replay_on_record,
                     replay_on_progress, &rp, REPLAY_IDLE_TIMEOUT_MS, err,
                     sizeof(err)) == -1)
        goto fail;
    if (rp.error[0] != '\0') {
        snprintf(err, sizeof(err), "%s", rp.error);
        goto fail;
    }
    if (rp.tty && !rp.json) {
        /* Draws the finished bar, which the rate limit may have skipped. */
        rp.drawn_ms = INT64_MIN / 2;
        replay_on_progress(ranges, rp.nparts, &rp);
        fputc('\n', stderr);
    }

    if (rp.producer != NULL) {
        rd_kafka_flush(rp.producer, REPLAY_FLUSH_TIMEOUT_MS);
        if (rd_kafka_outq_len(rp.producer) > 0) {
            snprintf(err, sizeof(err), "%d records still unacknowledged "
                     "after %d s", rd_kafka_outq_len(rp.producer),
                     REPLAY_FLUSH_TIMEOUT_MS / 1000);
            replay_print_summary(&rp);
            goto fail;
        }
    }
    replay_print_summary(&rp);

    rc = CTL_EXIT_OK;
    for (size_t i = 0; i < rp.nparts; i++)
        if (rp.parts[i].failed > 0)
            rc = CTL_EXIT_FAILURE;
    if (rc != CTL_EXIT_OK)
        ctl_error("replay", "some records failed to produce; see the "
                  "summary, then run again for the same window");
    goto out;

fail:
    ctl_error("replay", "%s", err);
out:
    if (rp.producer != NULL)
        rd_kafka_destroy(rp.producer);
    if (rk != NULL) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    for (size_t i = 0; i < rp.ndelivered; i++)
        free(rp.delivered[i]);
    free(rp.delivered);
    free(rp.parts);
    free(ranges);
    free(only);
    ctl_fini(&ctl);
    return rc;
}


/* Parses "0,2,5" into a list; exits with a usage error on anything else. */
static void
replay_parse_partitions(const char *text, int32_t **list, size_t *count)
{
    const char *p = text;

    *list = xcalloc(strlen(text) + 1, sizeof(**list));
    *count = 0;
    for (;;) {
        char *end;
        long  value = strtol(p, &end, 10);

        if (end == p || value < 0 || value > 100000 ||
            (*end != ',' && *end != '\0') || *p == '-' || *p == '+' ||
            *p == ' ')
            ctl_usage_error("replay", "invalid --partitions '%s': expected "
                            "partition numbers such as 0,2", text);
        for (size_t i = 0; i < *count; i++)
            if ((*list)[i] == value)
                ctl_usage_error("replay", "invalid --partitions '%s': "
                                "partition %ld is named twice", text, value);
        (*list)[(*count)++] = (int32_t)value;
        if (*end == '\0')
            break;
        p = end + 1;
    }
}


/* Collects the envelope ids in ferry.delivered since --from less a margin. */
static int
replay_load_delivered(struct replay *rp, rd_kafka_t *rk, char *err,
                      size_t errlen)
{
    struct ctl_scan_range *ranges;
    size_t                 cap = 0;
    int                    count, rc = -1;

    if (ctl_topic_partitions(rk, DELIVERED_TOPIC, &count, err,
                             errlen) != 0)
        return -1;
    ranges = xcalloc((size_t)count + 1, sizeof(*ranges));
    for (int p = 0; p < count; p++) {
        ranges[p].topic = DELIVERED_TOPIC;
        ranges[p].partition = p;
        ranges[p].opaque = &cap;
    }
    if (ctl_scan_seek_time(rk, ranges, (size_t)count,
                           rp->from_ms - REPLAY_DELIVERED_MARGIN_MS, err,
                           errlen) == -1)
        goto out;
    if (ctl_scan_run(rk, ranges, (size_t)count, replay_on_delivered, NULL,
                     rp, REPLAY_IDLE_TIMEOUT_MS, err, errlen) == -1)
        goto out;
    qsort(rp->delivered, rp->ndelivered, sizeof(*rp->delivered),
          replay_compare_ids);
    rc = 0;

out:
    free(ranges);
    return rc;
}


static enum ctl_scan_verdict
replay_on_delivered(struct ctl_scan_range *range,
                    const rd_kafka_message_t *msg, void *opaque)
{
    struct replay *rp = opaque;
    size_t        *cap = range->opaque;

    if (msg->key == NULL || msg->key_len == 0)
        return CTL_SCAN_CONTINUE;
    if (rp->ndelivered == *cap) {
        *cap = *cap == 0 ? 256 : *cap * 2;
        rp->delivered = xrealloc(rp->delivered,
                                 *cap * sizeof(*rp->delivered));
    }
    rp->delivered[rp->ndelivered++] = xstrndup(msg->key, msg->key_len);
    return CTL_SCAN_CONTINUE;
}


static enum ctl_scan_verdict
replay_on_record(struct ctl_scan_range *range, const rd_kafka_message_t *msg,
                 void *opaque)
{
    struct replay           *rp = opaque;
    struct replay_partition *part = range->opaque;
    int64_t                  ts = rd_kafka_message_timestamp(msg, NULL);

    /* The first record past the window ends this partition. */
    if (ts > rp->to_ms)
        return CTL_SCAN_STOP_PARTITION;

    /* Timestamps need not grow with offsets; earlier ones are skipped. */
    if (ts < rp->from_ms)
        return CTL_SCAN_CONTINUE;

    part->in_window++;
    if (replay_is_delivered(rp, msg)) {
        part->skipped++;
        return CTL_SCAN_CONTINUE;
    }
    if (!rp->execute)
        return CTL_SCAN_CONTINUE;
    if (replay_produce(rp, part, msg) == -1)
        return CTL_SCAN_STOP_ALL;
    return CTL_SCAN_CONTINUE;
}


/* Produces one record; waits while the producer's queue is full. */
static int
replay_produce(struct replay *rp, struct replay_partition *part,
               const rd_kafka_message_t *msg)
{
    rd_kafka_headers_t *hdrs = NULL, *copy = NULL;
    char                source[300], target[300];
    const char         *topic = rp->to_topic;
    rd_kafka_resp_err_t kerr;

    if (topic == NULL) {
        const char *header = ctl_scan_header(msg, "ferry-source-topic",
                                             source, sizeof(source));

        if (ctl_replay_target(rp->topic, header, target,
                              sizeof(target)) == 0)
            topic = target;
        else
            topic = rp->topic;          /* mail.R or mail.R.pinned */
    }
    if (rd_kafka_message_headers(msg, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR)
        copy = rd_kafka_headers_copy(hdrs);

    for (;;) {
        /* On success the producer owns copy; key and value are copied. */
        kerr = rd_kafka_producev(
            rp->producer, RD_KAFKA_V_TOPIC(topic),
            RD_KAFKA_V_KEY(msg->key, msg->key_len),
            RD_KAFKA_V_VALUE(msg->payload, msg->len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(copy), RD_KAFKA_V_OPAQUE(part),
            RD_KAFKA_V_END);
        if (kerr != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        rd_kafka_poll(rp->producer, 100);
    }
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (copy != NULL)
            rd_kafka_headers_destroy(copy);
        snprintf(rp->error, sizeof(rp->error), "producing to %s: %s", topic,
                 rd_kafka_err2str(kerr));
        return -1;
    }
    part->queued++;
    rd_kafka_poll(rp->producer, 0);
    return 0;
}


static bool
replay_is_delivered(const struct replay *rp, const rd_kafka_message_t *msg)
{
    char  id[256];
    char *key = id;

    if (rp->ndelivered == 0 || msg->key == NULL || msg->key_len == 0 ||
        msg->key_len >= sizeof(id))
        return false;
    memcpy(id, msg->key, msg->key_len);
    id[msg->key_len] = '\0';
    return bsearch(&key, rp->delivered, rp->ndelivered,
                   sizeof(*rp->delivered), replay_compare_ids) != NULL;
}


/*
 * Draws a bar on a terminal, at most ten times a second, and otherwise
 * writes one line per partition as it finishes.
 */
static void
replay_on_progress(const struct ctl_scan_range *ranges, size_t count,
                   void *opaque)
{
    struct replay *rp = opaque;
    int64_t        read = 0, now = util_monotonic_ms();

    if (rp->producer != NULL)
        rd_kafka_poll(rp->producer, 0);
    if (rp->json)
        return;

    if (!rp->tty) {
        for (size_t i = 0; i < count; i++) {
            struct replay_partition *part = ranges[i].opaque;

            if (!ranges[i].done || part->reported)
                continue;
            part->reported = true;
            fprintf(stderr, "ferryctl replay: %s [%d]: done, %lld in the "
                    "window\n", rp->topic, (int)part->partition,
                    (long long)part->in_window);
        }
        return;
    }

    if (now - rp->drawn_ms < 100)
        return;
    rp->drawn_ms = now;
    for (size_t i = 0; i < count; i++)
        read += ranges[i].done ? ranges[i].end - ranges[i].start
                               : ranges[i].next - ranges[i].start;
    {
        int  width = 30, filled = rp->total > 0 ? (int)(read * width /
                                                        rp->total) : width;
        char bar[31];

        memset(bar, '#', (size_t)filled);
        memset(bar + filled, '.', (size_t)(width - filled));
        bar[width] = '\0';
        fprintf(stderr, "\r[%s] %lld/%lld offsets", bar, (long long)read,
                (long long)rp->total);
    }
}


static void
replay_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg,
                   void *opaque)
{
    struct replay_partition *part = msg->_private;

    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        part->replayed++;
    else {
        part->failed++;
        ctl_error("replay", "producing a record of partition %d failed: %s",
                  (int)part->partition, rd_kafka_err2str(msg->err));
    }
}


static void
replay_print_summary(const struct replay *rp)
{
    static const char *const headers[] = {
        "PARTITION", "START", "END", "IN-WINDOW", "SKIPPED-DELIVERED",
        "REPLAYED"
    };
    static const bool right[] = { true, true, true, true, true, true };
    struct ctl_table *t;
    int64_t           in_window = 0, skipped = 0, replayed = 0;
    char              from[CTL_TIME_LEN], to[CTL_TIME_LEN];

    if (rp->json) {
        json_t *root = json_object(), *parts = json_array();
        char   *text;

        for (size_t i = 0; i < rp->nparts; i++) {
            const struct replay_partition *p = &rp->parts[i];

            json_array_append_new(parts, json_pack(
                "{s:i, s:I, s:I, s:I, s:I, s:I, s:I}", "partition",
                (int)p->partition, "start", (json_int_t)p->start, "end",
                (json_int_t)p->end, "in_window", (json_int_t)p->in_window,
                "skipped_delivered", (json_int_t)p->skipped, "replayed",
                (json_int_t)p->replayed, "failed", (json_int_t)p->failed));
        }
        json_object_set_new(root, "topic", json_string(rp->topic));
        json_object_set_new(root, "from", json_string(ctl_time_format(
                                              rp->from_ms, from)));
        json_object_set_new(root, "to", json_string(ctl_time_format(
                                            rp->to_ms, to)));
        json_object_set_new(root, "execute", json_boolean(rp->execute));
        json_object_set_new(root, "partitions", parts);
        text = json_dumps(root, JSON_INDENT(2));
        puts(text);
        free(text);
        json_decref(root);
        return;
    }

    t = ctl_table_new(headers, right, 6);
    for (size_t i = 0; i < rp->nparts; i++) {
        const struct replay_partition *p = &rp->parts[i];

        ctl_table_row(t);
        ctl_table_cell(t, "%d", (int)p->partition);
        ctl_table_cell(t, "%lld", (long long)p->start);
        ctl_table_cell(t, "%lld", (long long)p->end);
        ctl_table_cell(t, "%lld", (long long)p->in_window);
        ctl_table_cell(t, "%lld", (long long)p->skipped);
        ctl_table_cell(t, "%lld", (long long)p->replayed);
        in_window += p->in_window;
        skipped += p->skipped;
        replayed += p->replayed;
    }
    ctl_table_row(t);
    ctl_table_cell(t, "total");
    ctl_table_cell(t, "%s", "");
    ctl_table_cell(t, "%s", "");
    ctl_table_cell(t, "%lld", (long long)in_window);
    ctl_table_cell(t, "%lld", (long long)skipped);
    ctl_table_cell(t, "%lld", (long long)replayed);

    printf("replay of %s, timestamps from %s to %s%s\n", rp->topic,
           ctl_time_format(rp->from_ms, from), ctl_time_format(rp->to_ms, to),
           rp->execute ? "" : " (dry run)");
    ctl_table_print(t, stdout);
    ctl_table_free(t);
    if (rp->execute)
        printf("replayed %lld records\n", (long long)replayed);
    else
        printf("dry run: would replay %lld records; add --execute to "
               "produce them\n", (long long)(in_window - skipped));
}


static int
replay_compare_ids(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

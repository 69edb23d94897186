#include "ctl_lag.h"

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "ctl_scan.h"
#include "ctl_table.h"
#include "ctl_time.h"
#include "kafka_group.h"
#include "util.h"

/* Milliseconds the age lookup may wait for the record at an offset. */
#define CTL_LAG_READ_TIMEOUT_MS 15000

/* Coordinator errors are retried LAG_ATTEMPTS times, LAG_RETRY_US apart. */
#define LAG_ATTEMPTS 20
#define LAG_RETRY_US 500000

struct lag_member {
    char *client_id;
    char *consumer_id;
    char *host;
};

struct lag_row {
    char    *topic;
    int32_t  partition;
    int64_t  committed;         /* CTL_LAG_NONE when never committed */
    int64_t  low;
    int64_t  end;
    int64_t  lag;
    int64_t  oldest_ms;         /* timestamp of the oldest unconsumed
                                   record, -1 when there is none */
    char    *member;            /* client id of the owner, or NULL */
};

struct lag_group {
    char              *name;
    char              *topic;       /* the Ferry topic of the name, or NULL */
    const char        *state;
    struct lag_member *members;
    size_t             nmembers;
    struct lag_row    *rows;
    size_t             nrows;
};

static const char lag_usage[] =
    "usage: ferryctl lag [-c FILE | --bootstrap HOST:PORT] [--group G ...]\n"
    "                    [--json] [--watch SECONDS]\n"
    "\n"
    "Shows consumer lag per group, topic and partition, computed from the\n"
    "brokers' watermarks and the groups' committed offsets.\n"
    "\n"
    "  -c, --config FILE      Ferry YAML configuration (kafka.bootstrap_servers,\n"
    "                         regions)\n"
    "      --bootstrap HOST:PORT\n"
    "                         broker to connect to; overrides the configuration\n"
    "      --group G          consumer group to show; repeatable. The default is\n"
    "                         ferry-deliver.R, ferry-deliver.R.pinned and\n"
    "                         ferry-takeover.R of every region R whose topic\n"
    "                         mail.R exists\n"
    "      --json             print JSON instead of tables\n"
    "      --watch SECONDS    print again every SECONDS seconds until interrupted\n"
    "  -h, --help             show this help\n"
    "\n"
    "Columns: committed offset (\"none\" when the group never committed the\n"
    "partition), end offset (high watermark), lag in messages (end minus\n"
    "committed, or end minus the low watermark when nothing was committed),\n"
    "lag in seconds (now minus the timestamp of the oldest record not yet\n"
    "consumed; 0 without lag) and the member that owns the partition.\n";

static void lag_add_default_groups(const struct ctl *ctl, rd_kafka_t *rk,
                                   struct lag_group **groups,
                                   size_t *ngroups);
static void lag_add_group(struct lag_group **groups, size_t *ngroups,
                          const char *name, const char *topic);
static char *lag_topic_of_group(const char *group);
static int lag_collect(rd_kafka_t *rk, struct lag_group *g, char *err,
                       size_t errlen);
static enum kafka_group_outcome lag_describe(
    rd_kafka_t *rk, struct lag_group *g,
    rd_kafka_topic_partition_list_t *assigned, char *err, size_t errlen);
static int lag_add_topic(rd_kafka_t *rk, struct lag_group *g,
                         const char *topic,
                         const rd_kafka_topic_partition_list_t *committed,
                         const rd_kafka_topic_partition_list_t *assigned,
                         char *err, size_t errlen);
static int lag_read_ages(rd_kafka_t *rk, struct lag_group *groups,
                         size_t ngroups, char *err, size_t errlen);
static enum ctl_scan_verdict lag_on_record(struct ctl_scan_range *range,
                                           const rd_kafka_message_t *msg,
                                           void *opaque);
static void lag_print_tables(const struct lag_group *groups, size_t ngroups,
                             int64_t now_ms);
static void lag_print_json(const struct lag_group *groups, size_t ngroups,
                           int64_t now_ms, bool compact);
static int64_t lag_age_ms(const struct lag_row *row, int64_t now_ms);
static void lag_group_reset(struct lag_group *g);


int64_t
ctl_lag_messages(int64_t committed, int64_t low, int64_t end)
{
    return kafka_group_lag(committed, low, end);
}


int64_t
ctl_lag_oldest_offset(int64_t committed, int64_t low)
{
    return kafka_group_oldest_offset(committed, low);
}


int
ctl_lag_main(int argc, char **argv)
{
    static const struct option options[] = {
        { "config", required_argument, NULL, 'c' },
        { "bootstrap", required_argument, NULL, CTL_OPT_BOOTSTRAP },
        { "group", required_argument, NULL, CTL_OPT_GROUP },
        { "json", no_argument, NULL, CTL_OPT_JSON },
        { "watch", required_argument, NULL, CTL_OPT_WATCH },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    struct ctl        ctl;
    const char       *config_path = NULL, *bootstrap = NULL;
    struct lag_group *groups = NULL;
    size_t            ngroups = 0;
    bool              json = false;
    long              watch = 0;
    rd_kafka_t       *rk = NULL;
    char              err[1024], *end;
    int               opt, rc = CTL_EXIT_FAILURE;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":c:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; break;
        case CTL_OPT_BOOTSTRAP: bootstrap = optarg; break;
        case CTL_OPT_GROUP:
            lag_add_group(&groups, &ngroups, optarg, NULL);
            break;
        case CTL_OPT_JSON: json = true; break;
        case CTL_OPT_WATCH:
            watch = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || watch < 1 ||
                watch > 86400)
                ctl_usage_error("lag", "invalid --watch '%s': expected "
                                "whole seconds from 1 to 86400", optarg);
            break;
        case 'h': fputs(lag_usage, stdout); return CTL_EXIT_OK;
        case ':':
            ctl_usage_error("lag", "option '%s' needs a value",
                            argv[optind - 1]);
        default:
            ctl_usage_error("lag", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        ctl_usage_error("lag", "unexpected argument '%s'", argv[optind]);
    if (ctl_init(&ctl, "lag", config_path, bootstrap, err,
                 sizeof(err)) == -1)
        ctl_usage_error("lag", "%s", err);

    if ((rk = ctl_consumer_new(&ctl, err, sizeof(err))) == NULL) {
        ctl_error("lag", "%s", err);
        goto out;
    }
    if (ngroups == 0)
        lag_add_default_groups(&ctl, rk, &groups, &ngroups);
    if (ngroups == 0) {
        ctl_error("lag", "no Ferry topic mail.R found for any region; name "
                  "groups with --group");
        goto out;
    }

    for (;;) {
        int64_t now_ms;

        for (size_t i = 0; i < ngroups; i++) {
            lag_group_reset(&groups[i]);
            if (lag_collect(rk, &groups[i], err, sizeof(err)) == -1) {
                ctl_error("lag", "group %s: %s", groups[i].name, err);
                goto out;
            }
        }
        if (lag_read_ages(rk, groups, ngroups, err, sizeof(err)) == -1) {
            ctl_error("lag", "%s", err);
            goto out;
        }

        now_ms = util_now_ms();
        if (watch > 0 && !json && isatty(STDOUT_FILENO))
            fputs("\033[H\033[2J", stdout);
        if (json)
            lag_print_json(groups, ngroups, now_ms, watch > 0);
        else
            lag_print_tables(groups, ngroups, now_ms);
        fflush(stdout);
        if (watch == 0)
            break;
        for (long s = 0; s < watch * 10 && !ctl_interrupted; s++)
            usleep(100000);
        if (ctl_interrupted)
            break;
    }
    rc = CTL_EXIT_OK;

out:
    for (size_t i = 0; i < ngroups; i++) {
        lag_group_reset(&groups[i]);
        free(groups[i].name);
        free(groups[i].topic);
    }
    free(groups);
    if (rk != NULL) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    ctl_fini(&ctl);
    return rc;
}


/* The groups of every region whose mail.R topic exists on the broker. */
static void
lag_add_default_groups(const struct ctl *ctl, rd_kafka_t *rk,
                       struct lag_group **groups, size_t *ngroups)
{
    char   **regions, err[512], name[300], topic[300];
    size_t   nregions;
    int      count, rc;

    regions = ctl_regions(ctl, rk, &nregions, err, sizeof(err));
    if (regions == NULL) {
        ctl_error("lag", "%s", err);
        return;
    }
    for (size_t i = 0; i < nregions; i++) {
        snprintf(topic, sizeof(topic), "mail.%s", regions[i]);
        rc = ctl_topic_partitions(rk, topic, &count, err, sizeof(err));
        if (rc == -1)
            ctl_error("lag", "%s", err);

        /* A failover-only region such as us-west-2 has no topics. */
        if (rc != 0)
            continue;
        snprintf(name, sizeof(name), "ferry-deliver.%s", regions[i]);
        lag_add_group(groups, ngroups, name, topic);
        snprintf(name, sizeof(name), "ferry-deliver.%s.pinned", regions[i]);
        snprintf(topic, sizeof(topic), "mail.%s.pinned", regions[i]);
        lag_add_group(groups, ngroups, name, topic);
        snprintf(name, sizeof(name), "ferry-takeover.%s", regions[i]);
        snprintf(topic, sizeof(topic), "mail.%s", regions[i]);
        lag_add_group(groups, ngroups, name, topic);
    }
    ctl_regions_free(regions, nregions);
}


static void
lag_add_group(struct lag_group **groups, size_t *ngroups, const char *name,
              const char *topic)
{
    struct lag_group *g;

    *groups = xrealloc(*groups, (*ngroups + 1) * sizeof(**groups));
    g = &(*groups)[(*ngroups)++];
    memset(g, 0, sizeof(*g));
    g->name = xstrdup(name);
    g->topic = topic != NULL ? xstrdup(topic) : lag_topic_of_group(name);
}


/*
 * Returns the topic a Ferry group consumes: ferry-deliver.R and
 * ferry-takeover.R read mail.R, ferry-deliver.R.pinned reads
 * mail.R.pinned. Other names return NULL.
 */
static char *
lag_topic_of_group(const char *group)
{
    const char *rest = NULL;
    char       *topic;

    if (strncmp(group, "ferry-deliver.", 14) == 0)
        rest = group + 14;
    else if (strncmp(group, "ferry-takeover.", 15) == 0)
        rest = group + 15;
    if (rest == NULL || *rest == '\0')
        return NULL;
    if (asprintf(&topic, "mail.%s", rest) == -1)
        abort();
    return topic;
}


/*
 * Fills g's rows: every partition of the group's Ferry topic and of every
 * topic the group committed or is assigned.
 */
static int
lag_collect(rd_kafka_t *rk, struct lag_group *g, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *committed = NULL, *assigned;
    char                           **topics = NULL;
    size_t                           ntopics = 0;
    int                              rc = -1;

    /*
     * Right after a broker starts, or while a group moves, the coordinator
     * returns "not coordinator" or "loading". librdkafka 2.0.2 passes
     * that on instead of retrying, so ferryctl retries for a while.
     */
    assigned = rd_kafka_topic_partition_list_new(8);
    for (int attempt = 1;; attempt++) {
        enum kafka_group_outcome outcome =
            lag_describe(rk, g, assigned, err, errlen);

        if (outcome == KAFKA_GROUP_OK)
            break;
        if (outcome == KAFKA_GROUP_FAILED || attempt == LAG_ATTEMPTS)
            goto out;
        usleep(LAG_RETRY_US);
    }
    if ((committed = ctl_lag_committed(rk, g->name, err, errlen)) == NULL)
        goto out;

    /* The topics in order: the Ferry topic first, then as found. */
    topics = xcalloc(1 + (size_t)committed->cnt + (size_t)assigned->cnt,
                     sizeof(*topics));
    if (g->topic != NULL)
        topics[ntopics++] = g->topic;
    for (int pass = 0; pass < 2; pass++) {
        const rd_kafka_topic_partition_list_t *list =
            pass == 0 ? committed : assigned;

        for (int i = 0; i < list->cnt; i++) {
            size_t j;

            for (j = 0; j < ntopics; j++)
                if (strcmp(topics[j], list->elems[i].topic) == 0)
                    break;
            if (j == ntopics)
                topics[ntopics++] = list->elems[i].topic;
        }
    }

    for (size_t i = 0; i < ntopics; i++)
        if (lag_add_topic(rk, g, topics[i], committed, assigned, err,
                          errlen) == -1)
            goto out;
    rc = 0;

out:
    free(topics);
    if (committed != NULL)
        rd_kafka_topic_partition_list_destroy(committed);
    rd_kafka_topic_partition_list_destroy(assigned);
    return rc;
}


rd_kafka_topic_partition_list_t *
ctl_lag_committed(rd_kafka_t *rk, const char *group, char *err,
                  size_t errlen)
{
    return kafka_group_committed(rk, group, CTL_REQUEST_TIMEOUT_MS,
                                 LAG_ATTEMPTS, err, errlen);
}


/*
 * Reads the group's state and members, and adds every assigned partition
 * to assigned with a pointer to its owner in opaque.
 */
static enum kafka_group_outcome
lag_describe(rd_kafka_t *rk, struct lag_group *g,
             rd_kafka_topic_partition_list_t *assigned, char *err,
             size_t errlen)
{
    rd_kafka_queue_t                           *queue = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t                    *options;
    rd_kafka_event_t                           *ev;
    const rd_kafka_DescribeConsumerGroups_result_t *res;
    const rd_kafka_ConsumerGroupDescription_t **descs;
    const rd_kafka_ConsumerGroupDescription_t  *desc;
    const rd_kafka_error_t                     *gerr;
    const char                                 *names[1] = { g->name };
    size_t                                      ndescs;
    enum kafka_group_outcome                    rc = KAFKA_GROUP_FAILED;

    options = rd_kafka_AdminOptions_new(rk,
                                        RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
    rd_kafka_AdminOptions_set_request_timeout(options, CTL_REQUEST_TIMEOUT_MS,
                                              NULL, 0);
    rd_kafka_DescribeConsumerGroups(rk, names, 1, options, queue);
    rd_kafka_AdminOptions_destroy(options);
    ev = kafka_group_wait(queue, RD_KAFKA_EVENT_DESCRIBECONSUMERGROUPS_RESULT,
                          CTL_REQUEST_TIMEOUT_MS, err, errlen);
    if (ev == NULL)
        goto out;
    if (rd_kafka_event_error(ev)) {
        snprintf(err, errlen, "describing the group: %s",
                 rd_kafka_event_error_string(ev));
        rc = kafka_group_outcome_of(rd_kafka_event_error(ev));
        goto out_event;
    }

    res = rd_kafka_event_DescribeConsumerGroups_result(ev);
    descs = rd_kafka_DescribeConsumerGroups_result_groups(res, &ndescs);
    if (ndescs != 1) {
        snprintf(err, errlen, "describing the group returned %zu groups",
                 ndescs);
        goto out_event;
    }
    desc = descs[0];
    gerr = rd_kafka_ConsumerGroupDescription_error(desc);
    if (gerr != NULL &&
        rd_kafka_error_code(gerr) != RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
        snprintf(err, errlen, "describing the group: %s",
                 rd_kafka_error_string(gerr));
        rc = kafka_group_outcome_of(rd_kafka_error_code(gerr));
        goto out_event;
    }

    g->state = rd_kafka_consumer_group_state_name(
        rd_kafka_ConsumerGroupDescription_state(desc));
    g->nmembers = rd_kafka_ConsumerGroupDescription_member_count(desc);
    g->members = xcalloc(g->nmembers + 1, sizeof(*g->members));
    for (size_t i = 0; i < g->nmembers; i++) {
        const rd_kafka_MemberDescription_t *m =
            rd_kafka_ConsumerGroupDescription_member(desc, i);
        const rd_kafka_topic_partition_list_t *parts =
            rd_kafka_MemberAssignment_partitions(
                rd_kafka_MemberDescription_assignment(m));

        g->members[i].client_id = xstrdup(rd_kafka_MemberDescription_client_id(m));
        g->members[i].consumer_id =
            xstrdup(rd_kafka_MemberDescription_consumer_id(m));
        g->members[i].host = xstrdup(rd_kafka_MemberDescription_host(m));
        for (int j = 0; parts != NULL && j < parts->cnt; j++)
            rd_kafka_topic_partition_list_add(assigned, parts->elems[j].topic,
                                              parts->elems[j].partition)
                ->opaque = &g->members[i];
    }
    rc = KAFKA_GROUP_OK;

out_event:
    rd_kafka_event_destroy(ev);
out:
    rd_kafka_queue_destroy(queue);
    return rc;
}


static int
lag_add_topic(rd_kafka_t *rk, struct lag_group *g, const char *topic,
              const rd_kafka_topic_partition_list_t *committed,
              const rd_kafka_topic_partition_list_t *assigned, char *err,
              size_t errlen)
{
    int count;

    if (ctl_topic_partitions(rk, topic, &count, err, errlen) != 0)
        return -1;
    g->rows = xrealloc(g->rows, (g->nrows + (size_t)count) *
                                    sizeof(*g->rows));
    for (int p = 0; p < count; p++) {
        struct lag_row                   *row = &g->rows[g->nrows];
        const rd_kafka_topic_partition_t *tp;

        memset(row, 0, sizeof(*row));
        row->topic = xstrdup(topic);
        row->partition = p;
        row->committed = CTL_LAG_NONE;
        row->oldest_ms = -1;
        g->nrows++;

        tp = rd_kafka_topic_partition_list_find(committed, topic, p);
        if (tp != NULL && tp->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "committed offset of %s [%d]: %s", topic, p,
                     rd_kafka_err2str(tp->err));
            return -1;
        }
        if (tp != NULL && tp->offset >= 0)
            row->committed = tp->offset;

        tp = rd_kafka_topic_partition_list_find(assigned, topic, p);
        if (tp != NULL && tp->opaque != NULL)
            row->member = xstrdup(((struct lag_member *)tp->opaque)->client_id);

        if (kafka_group_watermarks(rk, topic, p, CTL_REQUEST_TIMEOUT_MS,
                                   &row->low, &row->end, err, errlen) == -1)
            return -1;
        row->lag = ctl_lag_messages(row->committed, row->low, row->end);
    }
    return 0;
}


/*
 * Reads the oldest unconsumed record of every lagging partition, for its
 * timestamp. A partition that several groups consume is read once per
 * group, which is cheap for the handful of groups ferryctl shows.
 */
static int
lag_read_ages(rd_kafka_t *rk, struct lag_group *groups, size_t ngroups,
              char *err, size_t errlen)
{
    struct ctl_scan_range *ranges = NULL;
    size_t                 nranges = 0;
    int                    rc = 0;

    /* One scan per group, so a partition appears once in each scan. */
    for (size_t i = 0; i < ngroups; i++) {
        struct lag_group *g = &groups[i];

        nranges = 0;
        ranges = xrealloc(ranges, (g->nrows + 1) * sizeof(*ranges));
        for (size_t j = 0; j < g->nrows; j++) {
            struct lag_row        *row = &g->rows[j];
            struct ctl_scan_range *r;

            if (row->lag == 0)
                continue;
            r = &ranges[nranges++];
            memset(r, 0, sizeof(*r));
            r->topic = row->topic;
            r->partition = row->partition;
            r->start = ctl_lag_oldest_offset(row->committed, row->low);
            r->end = row->end;
            r->opaque = row;
        }
        rc = ctl_scan_run(rk, ranges, nranges, lag_on_record, NULL, NULL,
                          CTL_LAG_READ_TIMEOUT_MS, err, errlen);
        if (rc == -1)
            break;
    }
    free(ranges);
    return rc == -1 ? -1 : 0;
}


static enum ctl_scan_verdict
lag_on_record(struct ctl_scan_range *range, const rd_kafka_message_t *msg,
              void *opaque)
{
    struct lag_row *row = range->opaque;

    row->oldest_ms = rd_kafka_message_timestamp(msg, NULL);
    return CTL_SCAN_STOP_PARTITION;
}


static int64_t
lag_age_ms(const struct lag_row *row, int64_t now_ms)
{
    if (row->lag == 0 || row->oldest_ms < 0 || row->oldest_ms > now_ms)
        return 0;
    return now_ms - row->oldest_ms;
}


static void
lag_print_tables(const struct lag_group *groups, size_t ngroups,
                 int64_t now_ms)
{
    static const char *const headers[] = {
        "TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "LAG-SECONDS",
        "MEMBER"
    };
    static const bool right[] = { false, true, true, true, true, true,
                                  false };
    char now[CTL_TIME_LEN];

    printf("lag at %s\n", ctl_time_format(now_ms, now));
    for (size_t i = 0; i < ngroups; i++) {
        const struct lag_group *g = &groups[i];
        struct ctl_table       *t = ctl_table_new(headers, right, 7);
        int64_t                 total = 0;

        for (size_t j = 0; j < g->nrows; j++) {
            const struct lag_row *row = &g->rows[j];

            ctl_table_row(t);
            ctl_table_cell(t, "%s", row->topic);
            ctl_table_cell(t, "%d", (int)row->partition);
            if (row->committed == CTL_LAG_NONE)
                ctl_table_cell(t, "none");
            else
                ctl_table_cell(t, "%lld", (long long)row->committed);
            ctl_table_cell(t, "%lld", (long long)row->end);
            ctl_table_cell(t, "%lld", (long long)row->lag);
            ctl_table_cell(t, "%lld",
                           (long long)(lag_age_ms(row, now_ms) / 1000));
            ctl_table_cell(t, "%s", row->member != NULL ? row->member : "-");
            total += row->lag;
        }
        printf("\ngroup %s: %s, %zu member%s, lag %lld\n", g->name,
               g->state != NULL ? g->state : "Unknown", g->nmembers,
               g->nmembers == 1 ? "" : "s", (long long)total);
        if (g->nrows == 0)
            printf("(no committed offsets, no members and no Ferry topic)\n");
        else
            ctl_table_print(t, stdout);
        ctl_table_free(t);
    }
}


static void
lag_print_json(const struct lag_group *groups, size_t ngroups,
               int64_t now_ms, bool compact)
{
    json_t *root = json_object(), *jgroups = json_array();
    char    when[CTL_TIME_LEN], *text;

    json_object_set_new(root, "time", json_string(ctl_time_format(now_ms,
                                                                  when)));
    for (size_t i = 0; i < ngroups; i++) {
        const struct lag_group *g = &groups[i];
        json_t *jg = json_object(), *members = json_array(),
               *rows = json_array();
        int64_t total = 0;

        for (size_t j = 0; j < g->nmembers; j++)
            json_array_append_new(members, json_pack(
                "{s:s, s:s, s:s}", "client_id", g->members[j].client_id,
                "consumer_id", g->members[j].consumer_id, "host",
                g->members[j].host));
        for (size_t j = 0; j < g->nrows; j++) {
            const struct lag_row *row = &g->rows[j];
            json_t               *jr = json_object();

            json_object_set_new(jr, "topic", json_string(row->topic));
            json_object_set_new(jr, "partition",
                                json_integer(row->partition));
            json_object_set_new(jr, "committed",
                                row->committed == CTL_LAG_NONE
                                    ? json_null()
                                    : json_integer(row->committed));
            json_object_set_new(jr, "low", json_integer(row->low));
            json_object_set_new(jr, "end", json_integer(row->end));
            json_object_set_new(jr, "lag", json_integer(row->lag));
            json_object_set_new(jr, "lag_seconds",
                                json_real(lag_age_ms(row, now_ms) / 1000.0));
            json_object_set_new(jr, "oldest_timestamp",
                                row->lag > 0 && row->oldest_ms >= 0
                                    ? json_string(ctl_time_format(
                                          row->oldest_ms, when))
                                    : json_null());
            json_object_set_new(jr, "member",
                                row->member != NULL
                                    ? json_string(row->member)
                                    : json_null());
            json_array_append_new(rows, jr);
            total += row->lag;
        }
        json_object_set_new(jg, "group", json_string(g->name));
        json_object_set_new(jg, "state",
                            json_string(g->state != NULL ? g->state
                                                         : "Unknown"));
        json_object_set_new(jg, "members", members);
        json_object_set_new(jg, "lag", json_integer(total));
        json_object_set_new(jg, "partitions", rows);
        json_array_append_new(jgroups, jg);
    }
    json_object_set_new(root, "groups", jgroups);

    text = json_dumps(root, compact ? JSON_COMPACT : JSON_INDENT(2));
    puts(text);
    free(text);
    json_decref(root);
}


static void
lag_group_reset(struct lag_group *g)
{
    for (size_t i = 0; i < g->nmembers; i++) {
        free(g->members[i].client_id);
        free(g->members[i].consumer_id);
        free(g->members[i].host);
    }
    free(g->members);
    for (size_t i = 0; i < g->nrows; i++) {
        free(g->rows[i].topic);
        free(g->rows[i].member);
    }
    free(g->rows);
    g->members = NULL;
    g->nmembers = 0;
    g->rows = NULL;
    g->nrows = 0;
    g->state = NULL;
}

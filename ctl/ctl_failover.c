#include "ctl_failover.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "ctl_scan.h"
#include "ctl_table.h"
#include "ctl_time.h"
#include "util.h"

#define FAILOVER_IDLE_TIMEOUT_MS  10000
#define FAILOVER_FLUSH_TIMEOUT_MS 10000
#define FAILOVER_MAX_REGIONS      64

static const char failover_usage[] =
    "usage: ferryctl failover status [--region R]\n"
    "       ferryctl failover force|failback|hold|release --region R\n"
    "                         [--reason TEXT]\n"
    "  status     show each primary region's failover state, epoch,\n"
    "             time of the last change, hold flag and reason, from\n"
    "             the newest state records in ferry.control\n"
    "  force      ask the controller to fail region R over to the\n"
    "             secondary region now, whatever the health, and hold\n"
    "  failback   ask the controller to move R back to its own region\n"
    "             now, and hold\n"
    "  hold       stop automatic failovers and failbacks of R\n"
    "  release    allow them again\n"
    "  -c, --config FILE        the Ferry configuration\n"
    "  --bootstrap HOST:PORT    Kafka brokers, instead of the file's\n"
    "  --region R               the primary region\n"
    "  --reason TEXT            why, stored in the command record\n"
    "The controller ignores a command older than "
    "controller.command_max_age_seconds.\n";

/* Command-line actions other than status, and the commands they write. */
static const struct {
    const char               *name;
    enum control_command_kind command;
} failover_actions[] = {
    { "force", CONTROL_FORCE_FAILOVER },
    { "failback", CONTROL_FORCE_FAILBACK },
    { "hold", CONTROL_HOLD },
    { "release", CONTROL_RELEASE },
};

/* The newest state record of each region seen while reading. */
struct failover_status {
    const char     *region;         /* --region, or NULL for all */
    struct control  records[FAILOVER_MAX_REGIONS];
    size_t          count;
    size_t          skipped;        /* records control_decode() rejected */
};

/* The outcome of producing one command record. */
struct failover_delivery {
    int                 done;
    rd_kafka_resp_err_t err;
    int64_t             offset;
};

static int failover_status(const struct ctl *ctl, const char *region);
static enum ctl_scan_verdict failover_on_control(
    struct ctl_scan_range *range, const rd_kafka_message_t *msg,
    void *opaque);
static void failover_print_status(const struct failover_status *st);
static int failover_command(const struct ctl *ctl,
                            const struct ctl_failover_args *args);
static void failover_on_delivery(rd_kafka_t *rk,
                                 const rd_kafka_message_t *msg,
                                 void *opaque);


int
ctl_failover_parse(int argc, char **argv, struct ctl_failover_args *args,
                   char *err, size_t errlen)
{
    static const struct option options[] = {
        { "config", required_argument, NULL, 'c' },
        { "bootstrap", required_argument, NULL, CTL_OPT_BOOTSTRAP },
        { "region", required_argument, NULL, CTL_OPT_REGION },
        { "reason", required_argument, NULL, CTL_OPT_REASON },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    const char *action;
    int         opt;
    size_t      i;

    memset(args, 0, sizeof(*args));
    optind = 0;                 /* glibc: reinitialise getopt */
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":c:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c': args->config_path = optarg; break;
        case CTL_OPT_BOOTSTRAP: args->bootstrap = optarg; break;
        case CTL_OPT_REGION: args->region = optarg; break;
        case CTL_OPT_REASON: args->reason = optarg; break;
        case 'h': args->help = true; return 0;
        case ':':
            snprintf(err, errlen, "option '%s' needs a value",
                     argv[optind - 1]);
            return -1;
        default:
            snprintf(err, errlen, "unknown option '%s'", argv[optind - 1]);
            return -1;
        }
    }

    if (optind == argc) {
        snprintf(err, errlen, "missing the action: status, force, "
                 "failback, hold or release");
        return -1;
    }
    action = argv[optind];
    if (optind + 1 < argc) {
        snprintf(err, errlen, "unexpected argument '%s'", argv[optind + 1]);
        return -1;
    }
    if (args->region != NULL &&
        (args->region[0] == '\0' ||
         strlen(args->region) >= sizeof(((struct control *)0)->region) ||
         strchr(args->region, '/') != NULL)) {
        snprintf(err, errlen, "invalid region '%s': expected a name of 1 "
                 "to 63 characters without '/'", args->region);
        return -1;
    }
    if (args->reason != NULL &&
        strlen(args->reason) >= sizeof(((struct control_command *)0)->reason)) {
        snprintf(err, errlen, "--reason is longer than %zu characters",
                 sizeof(((struct control_command *)0)->reason) - 1);
        return -1;
    }

    if (strcmp(action, "status") == 0) {
        if (args->reason != NULL) {
            snprintf(err, errlen, "--reason applies only to commands");
            return -1;
        }
        args->action = CTL_FAILOVER_STATUS;
        return 0;
    }
    for (i = 0; i < sizeof(failover_actions) / sizeof(failover_actions[0]);
         i++)
        if (strcmp(action, failover_actions[i].name) == 0)
            break;
    if (i == sizeof(failover_actions) / sizeof(failover_actions[0])) {
        snprintf(err, errlen, "unknown action '%s': expected status, force, "
                 "failback, hold or release", action);
        return -1;
    }
    if (args->region == NULL) {
        snprintf(err, errlen, "%s needs --region R", action);
        return -1;
    }
    args->action = CTL_FAILOVER_COMMAND;
    args->command = failover_actions[i].command;
    return 0;
}


/*
 * With a configuration, --region must name one of its primary regions: a
 * command for any other region would be written and then ignored by the
 * controller, which looks like a failover on its way.
 */
static int
failover_check_region(const struct config *cfg, const char *region,
                      char *err, size_t errlen)
{
    size_t used;

    if (config_region(cfg, region) != NULL &&
        strcmp(region, cfg->controller_secondary_region) != 0)
        return 0;
    used = (size_t)snprintf(err, errlen, "region '%s' is not a primary "
                            "region of %s; primary regions:", region,
                            cfg->path);
    for (size_t i = 0; i < cfg->nregions && used < errlen; i++)
        if (strcmp(cfg->regions[i].name,
                   cfg->controller_secondary_region) != 0)
            used += (size_t)snprintf(err + used, errlen - used, " %s",
                                     cfg->regions[i].name);
    return -1;
}


int
ctl_failover_main(int argc, char **argv)
{
    struct ctl_failover_args args;
    struct ctl               ctl;
    char                     err[1024];
    int                      rc;

    if (ctl_failover_parse(argc, argv, &args, err, sizeof(err)) == -1)
        ctl_usage_error("failover", "%s", err);
    if (args.help) {
        fputs(failover_usage, stdout);
        return CTL_EXIT_OK;
    }
    if (ctl_init(&ctl, "failover", args.config_path, args.bootstrap, err,
                 sizeof(err)) == -1)
        ctl_usage_error("failover", "%s", err);
    if (args.region != NULL && ctl.cfg != NULL &&
        failover_check_region(ctl.cfg, args.region, err, sizeof(err)) == -1)
        ctl_usage_error("failover", "%s", err);

    if (args.action == CTL_FAILOVER_STATUS)
        rc = failover_status(&ctl, args.region);
    else
        rc = failover_command(&ctl, &args);
    ctl_fini(&ctl);
    return rc;
}


/* Reads ferry.control up to its end and prints the newest states. */
static int
failover_status(const struct ctl *ctl, const char *region)
{
    struct failover_status *st = xcalloc(1, sizeof(*st));
    struct ctl_scan_range   range;
    rd_kafka_t             *rk;
    char                    err[1024];
    int                     count, found, rc = CTL_EXIT_FAILURE;

    st->region = region;
    if ((rk = ctl_consumer_new(ctl, err, sizeof(err))) == NULL) {
        ctl_error("failover", "%s", err);
        free(st);
        return CTL_EXIT_FAILURE;
    }
    found = ctl_topic_partitions(rk, CONTROL_TOPIC, &count, err,
                                 sizeof(err));
    if (found == -1) {
        ctl_error("failover", "%s", err);
        goto out;
    }

    /* No topic yet means no controller has run: nothing to read. */
    if (found == 0) {
        memset(&range, 0, sizeof(range));
        range.topic = CONTROL_TOPIC;
        range.partition = 0;        /* the controller uses partition 0 */
        if (ctl_scan_watermarks(rk, &range, 1, err, sizeof(err)) == -1 ||
            ctl_scan_run(rk, &range, 1, failover_on_control, NULL, st,
                         FAILOVER_IDLE_TIMEOUT_MS, err, sizeof(err)) == -1) {
            ctl_error("failover", "%s", err);
            goto out;
        }
    }
    failover_print_status(st);
    if (st->skipped > 0)
        ctl_error("failover", "skipped %zu records of %s that are not "
                  "valid control records", st->skipped, CONTROL_TOPIC);
    rc = CTL_EXIT_OK;

out:
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    free(st);
    return rc;
}


static enum ctl_scan_verdict
failover_on_control(struct ctl_scan_range *range,
                    const rd_kafka_message_t *msg, void *opaque)
{
    struct failover_status  *st = opaque;
    struct control           rec;
    struct control_command   cmd;
    enum control_record_kind kind;
    size_t                   i;

    if (msg->payload == NULL)           /* a tombstone */
        return CTL_SCAN_CONTINUE;
    if (control_decode(msg->payload, msg->len, &kind, &rec, &cmd) == -1) {
        st->skipped++;
        return CTL_SCAN_CONTINUE;
    }
    if (kind != CONTROL_RECORD_STATE ||
        (st->region != NULL && strcmp(rec.region, st->region) != 0))
        return CTL_SCAN_CONTINUE;

    /*
     * Keep the record with the highest epoch, as the controller does; a
     * later record of the same epoch replaces an earlier one.
     */
    for (i = 0; i < st->count; i++)
        if (strcmp(st->records[i].region, rec.region) == 0)
            break;
    if (i == st->count) {
        if (st->count == FAILOVER_MAX_REGIONS)
            return CTL_SCAN_CONTINUE;   /* NOTE: more regions are left out */
        st->records[st->count++] = rec;
    } else if (rec.epoch >= st->records[i].epoch) {
        st->records[i] = rec;
    }
    return CTL_SCAN_CONTINUE;
}


static void
failover_print_status(const struct failover_status *st)
{
    static const char *const headers[] = {
        "REGION", "STATE", "EPOCH", "SINCE", "HOLD", "REASON"
    };
    static const bool right[] = { false, false, true, false, false, false };
    struct ctl_table *t = ctl_table_new(headers, right, 6);

    for (size_t i = 0; i < st->count; i++) {
        const struct control *c = &st->records[i];
        char                  since[CTL_TIME_LEN];

        ctl_table_row(t);
        ctl_table_cell(t, "%s", c->region);
        ctl_table_cell(t, "%s", control_state_name(c->state));
        ctl_table_cell(t, "%llu", (unsigned long long)c->epoch);
        ctl_table_cell(t, "%s", ctl_time_format(c->since_ms, since));
        ctl_table_cell(t, "%s", c->hold ? "yes" : "no");
        ctl_table_cell(t, "%s", c->reason);
    }
    ctl_table_print(t, stdout);
    if (st->count == 0)
        printf("no state records in %s%s%s: regions without one are "
               "PRIMARY\n", CONTROL_TOPIC,
               st->region != NULL ? " for " : "",
               st->region != NULL ? st->region : "");
    ctl_table_free(t);
}


/* Produces one command record to partition 0 and waits for its report. */
static int
failover_command(const struct ctl *ctl, const struct ctl_failover_args *args)
{
    struct control_command   cmd;
    struct failover_delivery dr = { 0, RD_KAFKA_RESP_ERR_NO_ERROR, -1 };
    rd_kafka_resp_err_t      kerr;
    rd_kafka_t              *rk;
    unsigned char           *value;
    size_t                   len;
    char                     key[96], host[64], err[1024];
    const char              *user;
    int                      rc = CTL_EXIT_FAILURE;

    memset(&cmd, 0, sizeof(cmd));
    snprintf(cmd.region, sizeof(cmd.region), "%s", args->region);
    cmd.kind = args->command;
    cmd.issued_ms = util_now_ms();
    if (gethostname(host, sizeof(host)) == -1)
        snprintf(host, sizeof(host), "unknown");
    host[sizeof(host) - 1] = '\0';
    if ((user = getenv("USER")) == NULL)
        user = "unknown";
    snprintf(cmd.issued_by, sizeof(cmd.issued_by), "ferryctl:%s@%s:%ld",
             user, host, (long)getpid());
    if (args->reason != NULL)
        snprintf(cmd.reason, sizeof(cmd.reason), "%s", args->reason);
    if (control_command_key(cmd.region, key, sizeof(key)) == -1) {
        ctl_error("failover", "region '%s' makes too long a record key",
                  cmd.region);
        return CTL_EXIT_FAILURE;
    }

    if ((rk = ctl_producer_new(ctl, failover_on_delivery, err,
                               sizeof(err))) == NULL) {
        ctl_error("failover", "%s", err);
        return CTL_EXIT_FAILURE;
    }
    value = control_command_encode(&cmd, &len);
    kerr = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(CONTROL_TOPIC),
                             RD_KAFKA_V_PARTITION(0),
                             RD_KAFKA_V_KEY(key, strlen(key)),
                             RD_KAFKA_V_VALUE(value, len),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_OPAQUE(&dr), RD_KAFKA_V_END);
    free(value);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ctl_error("failover", "producing to %s failed: %s", CONTROL_TOPIC,
                  rd_kafka_err2str(kerr));
        goto out;
    }
    rd_kafka_flush(rk, FAILOVER_FLUSH_TIMEOUT_MS);
    if (!dr.done) {
        ctl_error("failover", "no delivery report from %s within %d ms; "
                  "the command may or may not have been written",
                  CONTROL_TOPIC, FAILOVER_FLUSH_TIMEOUT_MS);
        goto out;
    }
    if (dr.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ctl_error("failover", "producing to %s failed: %s", CONTROL_TOPIC,
                  rd_kafka_err2str(dr.err));
        goto out;
    }
    printf("wrote %s for %s at %s offset %lld\n",
           control_command_name(cmd.kind), cmd.region, CONTROL_TOPIC,
           (long long)dr.offset);
    rc = CTL_EXIT_OK;

out:
    rd_kafka_destroy(rk);
    return rc;
}


static void
failover_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg,
                     void *opaque)
{
    struct failover_delivery *dr = msg->_private;

    dr->done = 1;
    dr->err = msg->err;
    dr->offset = msg->offset;
}

/*
 * ferry-deliver: consumes the mail topics of one region and sends every
 * message to Amazon SES in that region.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "deliver_metrics.h"
#include "httpd.h"
#include "deliver.h"
#include "log.h"
#include "reload.h"
#include "sdnotify.h"
#include "ses.h"

struct main_options {
    const char *config_path;
    const char *region;             /* NULL: deliver.region */
    int         takeover;
    int         check_config;
};

static volatile sig_atomic_t main_stop;

static int main_parse_args(int argc, char **argv, struct main_options *o);
static void main_usage(FILE *out);
static void main_on_signal(int sig);
static void main_install_signals(void);


static void
main_usage(FILE *out)
{
    fprintf(out,
            "usage: ferry-deliver -c FILE [--region REGION] [--takeover] "
            "[--check-config]\n"
            "  -c, --config FILE  configuration file (YAML)\n"
            "  --region REGION    region to deliver for; overrides "
            "deliver.region\n"
            "  --takeover         deliver, through SES in the secondary "
            "region\n"
            "                     (controller.secondary_region), the "
            "mail.R topics of\n"
            "                     primary regions that are failed over\n"
            "  --check-config     check the configuration, print "
            "\"FILE: ok\" and exit\n"
            "SES credentials come, in this order, from AWS_ACCESS_KEY_ID,\n"
            "AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN; from a web "
            "identity\n(AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, "
            "exchanged at STS); or\nfrom the shared credentials file "
            "(AWS_SHARED_CREDENTIALS_FILE or\n~/.aws/credentials, profile "
            "AWS_PROFILE or default).\n");
}


static int
main_parse_args(int argc, char **argv, struct main_options *o)
{
    static const struct option longopts[] = {
        { "config", required_argument, NULL, 'c' },
        { "region", required_argument, NULL, 'r' },
        { "takeover", no_argument, NULL, 't' },
        { "check-config", no_argument, NULL, 'k' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    memset(o, 0, sizeof(*o));
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': o->config_path = optarg; break;
        case 'r': o->region = optarg; break;
        case 't': o->takeover = 1; break;
        case 'k': o->check_config = 1; break;
        case 'h': main_usage(stdout); exit(0);
        default: return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "ferry-deliver: unexpected argument '%s'\n",
                argv[optind]);
        return -1;
    }
    if (o->config_path == NULL) {
        fprintf(stderr, "ferry-deliver: missing -c FILE\n");
        return -1;
    }
    return 0;
}


static void
main_on_signal(int sig)
{
    main_stop = sig;
}


static void
main_install_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = main_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}


int
main(int argc, char **argv)
{
    struct main_options    opts;
    struct config         *cfg;
    struct ses_credentials creds;
    struct deliver        *d;
    struct metrics        *metrics;
    struct httpd          *httpd = NULL;
    enum log_level         level = LOG_LEVEL_INFO;
    char                   err[1024];
    int                    rc;

    /* Arguments and configuration. */
    if (main_parse_args(argc, argv, &opts) == -1) {
        main_usage(stderr);
        return DELIVER_EXIT_USAGE;
    }
    if ((cfg = config_load(opts.config_path, err, sizeof(err))) == NULL ||
        deliver_check(cfg, opts.region, opts.takeover, err,
                      sizeof(err)) == -1) {
        fprintf(stderr, "ferry-deliver: %s\n", err);
        config_free(cfg);
        return DELIVER_EXIT_CONFIG;
    }
    if (opts.check_config) {
        printf("%s: ok\n", opts.config_path);
        config_free(cfg);
        return 0;
    }

    /* Logging and credentials. */
    log_level_parse(cfg->log_level, &level);
    log_init("deliver", level);
    if (ses_credentials_from_env(&creds, err, sizeof(err)) == -1) {
        fprintf(stderr, "ferry-deliver: %s\n", err);
        config_free(cfg);
        return DELIVER_EXIT_CONFIG;
    }

    /*
     * SIGHUP goes to a thread of its own, started before any other
     * thread (the listener's, librdkafka's).
     */
    if (reload_watch_start(opts.config_path, "ferry-deliver", err,
                           sizeof(err)) == -1) {
        fprintf(stderr, "ferry-deliver: %s\n", err);
        ses_credentials_fini(&creds);
        config_free(cfg);
        return 1;
    }

    /* Metrics and the monitoring listener, if configured. */
    metrics = metrics_new();
    metrics_add_process(metrics, "deliver");
    if (cfg->deliver_http_listen[0] != '\0' &&
        (httpd = httpd_start(cfg->deliver_http_listen, metrics, err,
                             sizeof(err))) == NULL) {
        fprintf(stderr, "ferry-deliver: deliver.http_listen: %s\n", err);
        metrics_free(metrics);
        ses_credentials_fini(&creds);
        config_free(cfg);
        return 1;
    }
    deliver_metrics_init(metrics, httpd);

    /*
     * Signals, then the Kafka and SES handles and the loop. A SIGTERM
     * during the start makes the loop end at once and the worker drain.
     */
    main_install_signals();
    if ((d = deliver_new(cfg, opts.region, opts.takeover, &creds, err,
                         sizeof(err))) == NULL) {
        fprintf(stderr, "ferry-deliver: %s\n", err);
        httpd_stop(httpd);
        metrics_free(metrics);
        ses_credentials_fini(&creds);
        config_free(cfg);
        return 1;
    }
    sdnotify_ready();
    rc = deliver_run(d, &main_stop);
    sdnotify_stopping();

    /* Drain, then teardown. */
    log_info(NULL, "stopping", "signal=%d", (int)main_stop);
    deliver_drain(d, cfg->deliver_request_timeout_ms + 5000);
    deliver_free(d);
    httpd_stop(httpd);
    metrics_free(metrics);
    ses_credentials_fini(&creds);
    config_free(cfg);
    log_info(NULL, "stopped", "exit=%d", rc == 0 ? 0 : 1);
    return rc == 0 ? 0 : 1;
}

/*
 * ferry-controller: watches SES in every region and moves the consumption
 * of a primary region's multi-region topic to the secondary region while
 * SES there is down, and back once it has recovered.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "controller.h"
#include "httpd.h"
#include "lag.h"
#include "log.h"
#include "metrics.h"
#include "reload.h"
#include "sdnotify.h"
#include "ses.h"
#include "status.h"

#define MAIN_EXIT_USAGE  64        /* EX_USAGE of sysexits.h */
#define MAIN_EXIT_CONFIG 78        /* EX_CONFIG */

struct main_options {
    const char *config_path;
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
            "usage: ferry-controller -c FILE [--check-config]\n"
            "  -c, --config FILE  configuration file (YAML)\n"
            "  --check-config     check the configuration, print "
            "\"FILE: ok\" and exit\n"
            "SES credentials come from AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY and\nAWS_SESSION_TOKEN.\n");
}


static int
main_parse_args(int argc, char **argv, struct main_options *o)
{
    static const struct option longopts[] = {
        { "config", required_argument, NULL, 'c' },
        { "check-config", no_argument, NULL, 'k' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    memset(o, 0, sizeof(*o));
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': o->config_path = optarg; break;
        case 'k': o->check_config = 1; break;
        case 'h': main_usage(stdout); exit(0);
        default: return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "ferry-controller: unexpected argument '%s'\n",
                argv[optind]);
        return -1;
    }
    if (o->config_path == NULL) {
        fprintf(stderr, "ferry-controller: missing -c FILE\n");
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
    struct controller     *c;
    struct metrics        *metrics;
    struct httpd          *httpd = NULL;
    struct lag_monitor    *lag;
    enum log_level         level = LOG_LEVEL_INFO;
    char                   err[1024];
    int                    rc;

    /* Arguments and configuration. */
    if (main_parse_args(argc, argv, &opts) == -1) {
        main_usage(stderr);
        return MAIN_EXIT_USAGE;
    }
    if ((cfg = config_load(opts.config_path, err, sizeof(err))) == NULL ||
        controller_check(cfg, err, sizeof(err)) == -1) {
        fprintf(stderr, "ferry-controller: %s\n", err);
        config_free(cfg);
        return MAIN_EXIT_CONFIG;
    }
    if (opts.check_config) {
        printf("%s: ok\n", opts.config_path);
        config_free(cfg);
        return 0;
    }

    /* Logging and credentials. */
    log_level_parse(cfg->log_level, &level);
    log_init("controller", level);
    if (ses_credentials_from_env(&creds, err, sizeof(err)) == -1) {
        fprintf(stderr, "ferry-controller: %s\n", err);
        config_free(cfg);
        return MAIN_EXIT_CONFIG;
    }

    /*
     * SIGHUP goes to a thread of its own, started before any other
     * thread (the listener's, the lag reader's, librdkafka's).
     */
    if (reload_watch_start(opts.config_path, "ferry-controller", err,
                           sizeof(err)) == -1) {
        fprintf(stderr, "ferry-controller: %s\n", err);
        ses_credentials_fini(&creds);
        config_free(cfg);
        return 1;
    }

    /* Metrics, the monitoring listener if configured, the lag thread. */
    metrics = metrics_new();
    metrics_add_process(metrics, "controller");
    if (cfg->controller_http_listen[0] != '\0' &&
        (httpd = httpd_start(cfg->controller_http_listen, metrics, err,
                             sizeof(err))) == NULL) {
        log_error(NULL, "startup-failed", "key=controller.http_listen "
                  "error=\"%s\"", err);
        metrics_free(metrics);
        ses_credentials_fini(&creds);
        config_free(cfg);
        return 1;
    }
    if ((lag = lag_start(cfg, metrics, err, sizeof(err))) == NULL) {
        log_error(NULL, "startup-failed", "error=\"%s\"", err);
        httpd_stop(httpd);
        metrics_free(metrics);
        ses_credentials_fini(&creds);
        config_free(cfg);
        return 1;
    }
    status_init(metrics, httpd, lag);

    /* Kafka, SES and the stored state, then signals and the loop. */
    if ((c = controller_new(cfg, &creds, err, sizeof(err))) == NULL) {
        log_error(NULL, "startup-failed", "error=\"%s\"", err);
        lag_stop(lag);
        httpd_stop(httpd);
        metrics_free(metrics);
        ses_credentials_fini(&creds);
        config_free(cfg);
        return 1;
    }
    main_install_signals();
    sdnotify_ready();
    rc = controller_run(c, &main_stop);
    sdnotify_stopping();

    /* Teardown: leaving the lease group hands the lease on at once. */
    log_info(NULL, "stopping", "signal=%d", (int)main_stop);
    controller_free(c);
    httpd_stop(httpd);
    lag_stop(lag);
    metrics_free(metrics);
    ses_credentials_fini(&creds);
    config_free(cfg);
    log_info(NULL, "stopped", "exit=%d", rc == 0 ? 0 : 1);
    return rc == 0 ? 0 : 1;
}

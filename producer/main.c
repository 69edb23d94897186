/*
 * ferry-ingress: accepts outbound mail over ESMTP and publishes each
 * message to the Kafka topic of its organization's home region, replying
 * 250 only once Kafka has acknowledged the record.
 */
#include <event2/event.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "config.h"
#include "httpd.h"
#include "ingress_durability.h"
#include "ingress_kafka.h"
#include "ingress_metrics.h"
#include "log.h"
#include "metrics.h"
#include "sdnotify.h"
#include "smtp_auth.h"
#include "smtp_auth_pool.h"
#include "smtp_server.h"
#include "smtp_tls.h"
#include "util.h"

#define MAIN_EXIT_USAGE      64        /* EX_USAGE of sysexits.h */
#define MAIN_EXIT_CONFIG     78        /* EX_CONFIG */

/* How long sessions waiting for Kafka may take after SIGTERM. */
#define MAIN_DRAIN_GRACE_MS  10000

/* How long records still in flight may take once the loop has ended. */
#define MAIN_FLUSH_MS        5000

/* How long the start-up check of the topics may take. */
#define MAIN_DURABILITY_MS   10000

/* Seconds between updates of liveness, readiness and the state gauges. */
#define MAIN_STATUS_S        1

/* Age of an event loop's last beat beyond which the ingress is not alive. */
#define MAIN_LOOP_STALL_MS   5000

/* Descriptors kept for Kafka, the listeners, pipes, logs and refusals. */
#define MAIN_FD_RESERVE      256

/* Maximum number of event loops chosen by CPU count (ingress.threads 0). */
#define MAIN_THREADS_MAX     16

struct main_args {
    const char *config_path;
    bool        check_only;
    bool        hash_password;
};

/* What the status timer reads and where it reports. */
struct main_status {
    struct httpd                      *httpd;
    struct ingress_kafka              *ik;
    struct ingress_durability_monitor *durability;
    struct smtp_server                *srv;     /* stopped if ik breaks */
};

static void main_usage(void) __attribute__((noreturn));
static void main_parse_args(int argc, char **argv, struct main_args *args);
static int main_hash_password(void);
static int main_check_config(const struct config *cfg, char *err,
                             size_t errlen);
static int main_check_durability(const struct config *cfg);
/* What SIGHUP loads again. */
struct main_reload {
    struct smtp_tls    *tls;    /* NULL without TLS */
    struct config      *cfg;
    struct smtp_server *srv;    /* whose loops wait during the reload */
};

static int main_add_signals(struct event_base *base, struct smtp_server *srv,
                            struct main_reload *reload,
                            struct event *events[3]);
static void main_block_signals(sigset_t *saved);
static void main_on_stop_signal(evutil_socket_t sig, short what, void *arg);
static void main_on_hangup(evutil_socket_t sig, short what, void *arg);
static void main_reload(void *arg);
static unsigned main_threads(const struct config *cfg);
static void main_raise_fd_limit(const struct config *cfg);
static void main_on_status(evutil_socket_t fd, short what, void *arg);


int
main(int argc, char **argv)
{
    struct main_args      args;
    struct config        *cfg = NULL;
    struct event_base    *base = NULL;
    struct ingress_kafka *ik = NULL;
    struct smtp_server   *srv = NULL;
    struct smtp_tls      *tls = NULL;
    struct smtp_auth_pool *auth_pool = NULL;
    struct ingress_durability_monitor *durability = NULL;
    struct event         *signals[3] = { NULL, NULL, NULL };
    struct metrics       *metrics = NULL;
    struct main_status    status = { NULL, NULL, NULL, NULL };
    struct event         *status_timer = NULL;
    struct timeval        status_every = { MAIN_STATUS_S, 0 };
    struct main_reload    reload;
    unsigned              threads;
    sigset_t              saved_mask;
    enum log_level        level = LOG_LEVEL_INFO;
    char                  err[1024];
    char                  quoted[1100];
    int                   unflushed;
    int                   rc = 1;

    /* Arguments. */
    main_parse_args(argc, argv, &args);
    if (args.hash_password)
        return main_hash_password() == 0 ? 0 : 1;

    /* Configuration. */
    cfg = config_load(args.config_path, err, sizeof(err));
    if (cfg == NULL || main_check_config(cfg, err, sizeof(err)) == -1) {
        fprintf(stderr, "%s\n", err);
        rc = MAIN_EXIT_CONFIG;
        goto out;
    }
    if (args.check_only) {
        printf("%s: ok\n", args.config_path);
        rc = 0;
        goto out;
    }

    /* Logging. */
    log_level_parse(cfg->log_level, &level);
    log_init("ingress", level);

    /* Metrics and the monitoring listener, if configured. */
    metrics = metrics_new();
    metrics_add_process(metrics, "ingress");
    ingress_metrics_init(metrics);
    main_block_signals(&saved_mask);
    if (cfg->ingress_http_listen[0] != '\0')
        status.httpd = httpd_start(cfg->ingress_http_listen, metrics, err,
                                   sizeof(err));
    pthread_sigmask(SIG_SETMASK, &saved_mask, NULL);
    if (cfg->ingress_http_listen[0] != '\0' && status.httpd == NULL) {
        log_error(NULL, "startup-failed", "key=ingress.http_listen error=%s",
                  log_quote(quoted, sizeof(quoted), err));
        goto out;
    }

    /* Topics that can lose acknowledged records, before any 250. */
    if (main_check_durability(cfg) == -1)
        goto out;

    /* Resources: descriptors, the event loops, the producer, the listener. */
    main_raise_fd_limit(cfg);
    signal(SIGPIPE, SIG_IGN);
    /* Ingress nodes started together must not fill the same partitions. */
    srandom((unsigned)(util_now_ms() ^ getpid()));
    if ((base = event_base_new()) == NULL) {
        log_error(NULL, "startup-failed", "error=\"cannot create the event "
                  "loop\"");
        goto out;
    }
    if (cfg->ingress_tls_certificate[0] != '\0' &&
        (tls = smtp_tls_new(cfg, err, sizeof(err))) == NULL) {
        log_error(NULL, "startup-failed", "error=%s",
                  log_quote(quoted, sizeof(quoted), err));
        goto out;
    }
    /* AUTH password checks, on threads of their own. */
    if (cfg->ingress_credentials_file[0] != '\0' &&
        (auth_pool = smtp_auth_pool_new(
             (int)cfg->ingress_auth_threads,
             (size_t)cfg->ingress_max_auth_queue, smtp_auth_verify, err,
             sizeof(err))) == NULL) {
        log_error(NULL, "startup-failed", "error=%s",
                  log_quote(quoted, sizeof(quoted), err));
        goto out;
    }
    threads = main_threads(cfg);
    if ((ik = ingress_kafka_new(cfg, err, sizeof(err))) == NULL ||
        (srv = smtp_server_new(cfg, base, threads, ik, tls, auth_pool, err,
                               sizeof(err))) == NULL) {
        log_error(NULL, "startup-failed", "error=%s",
                  log_quote(quoted, sizeof(quoted), err));
        goto out;
    }

    /* The durability check again every interval, off the event loop. */
    if (cfg->ingress_durability_check_interval > 0) {
        main_block_signals(&saved_mask);
        durability = ingress_durability_monitor_start(
            cfg, MAIN_DURABILITY_MS, ingress_durability_check);
        pthread_sigmask(SIG_SETMASK, &saved_mask, NULL);
        if (durability == NULL) {
            log_error(NULL, "startup-failed", "error=\"cannot start the "
                      "durability check thread\"");
            goto out;
        }
        smtp_server_set_durability(srv, durability);
    }

    /* Liveness, readiness and state gauges, now and every second. */
    status.ik = ik;
    status.durability = durability;
    status.srv = srv;
    if ((status_timer = event_new(base, -1, EV_PERSIST, main_on_status,
                                  &status)) == NULL ||
        event_add(status_timer, &status_every) == -1) {
        log_error(NULL, "startup-failed", "error=\"cannot add the status "
                  "timer\"");
        goto out;
    }
    main_on_status(-1, 0, &status);

    /* Signals. */
    reload.tls = tls;
    reload.cfg = cfg;
    reload.srv = srv;
    if (main_add_signals(base, srv, &reload, signals) == -1) {
        log_error(NULL, "startup-failed", "error=\"cannot register signal "
                  "events\"");
        goto out;
    }

    /* The other loops' threads. */
    if (smtp_server_start(srv, err, sizeof(err)) == -1) {
        log_error(NULL, "startup-failed", "error=%s",
                  log_quote(quoted, sizeof(quoted), err));
        goto out;
    }

    /* Loop, until a drain has closed every connection. */
    log_info(NULL, "started", "listen=%s hostname=%s config=%s "
             "threads=%u max_connections=%lld "
             "durability_check_interval_s=%lld",
             cfg->ingress_listen, cfg->ingress_hostname, cfg->path, threads,
             (long long)cfg->ingress_max_connections,
             (long long)cfg->ingress_durability_check_interval);
    sdnotify_ready();
    event_base_dispatch(base);
    smtp_server_join(srv);
    log_info(NULL, "drained", "late_acks=%llu",
             (unsigned long long)ingress_kafka_late_acks(ik));

    /* Drain: records still in flight get their reports logged. */
    unflushed = ingress_kafka_flush(ik, MAIN_FLUSH_MS);
    rc = ingress_kafka_broken(ik) ? 1 : 0;
    log_info(NULL, "stopped", "unflushed=%d late_acks=%llu exit=%d",
             unflushed, (unsigned long long)ingress_kafka_late_acks(ik), rc);

out:
    /*
     * Teardown: connections first, since they point into the producer
     * and the AUTH pool, then the pool, whose running checks post to the
     * loops' mailboxes, then the loops.
     */
    main_block_signals(NULL);
    for (int i = 0; i < 3; i++)
        if (signals[i] != NULL)
            event_free(signals[i]);
    if (status_timer != NULL)
        event_free(status_timer);
    httpd_stop(status.httpd);
    if (srv != NULL)
        smtp_server_disconnect(srv);
    smtp_auth_pool_free(auth_pool);
    smtp_server_free(srv);
    ingress_durability_monitor_stop(durability);
    smtp_tls_free(tls);
    ingress_kafka_free(ik);
    if (base != NULL)
        event_base_free(base);
    metrics_free(metrics);
    config_free(cfg);
    return rc;
}


static void
main_usage(void)
{
    fprintf(stderr, "usage: ferry-ingress -c FILE [--check-config]\n"
            "       ferry-ingress --hash-password\n"
            "  --hash-password  read a password from standard input and "
            "print its\n"
            "                   yescrypt hash for ingress.credentials_file"
            "\n");
    exit(MAIN_EXIT_USAGE);
}


static void
main_parse_args(int argc, char **argv, struct main_args *args)
{
    static const struct option options[] = {
        { "config", required_argument, NULL, 'c' },
        { "check-config", no_argument, NULL, 'C' },
        { "hash-password", no_argument, NULL, 'H' },
        { NULL, 0, NULL, 0 },
    };
    int ch;

    args->config_path = NULL;
    args->check_only = false;
    args->hash_password = false;
    while ((ch = getopt_long(argc, argv, "c:", options, NULL)) != -1) {
        switch (ch) {
        case 'c':
            args->config_path = optarg;
            break;
        case 'C':
            args->check_only = true;
            break;
        case 'H':
            args->hash_password = true;
            break;
        default:
            main_usage();
        }
    }
    if (optind != argc)
        main_usage();
    if (args->hash_password ? args->config_path != NULL || args->check_only
                            : args->config_path == NULL)
        main_usage();
}


/*
 * Reads one password line from standard input, without echo on a
 * terminal, and prints its hash for ingress.credentials_file.
 */
static int
main_hash_password(void)
{
    char           password[SMTP_AUTH_FIELD_MAX + 2];
    char           hash[256];
    char           err[256];
    struct termios saved, quiet;
    bool           tty = isatty(STDIN_FILENO) == 1 &&
                         tcgetattr(STDIN_FILENO, &saved) == 0;
    size_t         len;
    int            rc = -1;

    if (tty) {
        fprintf(stderr, "Password: ");
        quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    if (fgets(password, sizeof(password), stdin) == NULL)
        password[0] = '\0';
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
        fprintf(stderr, "\n");
    }

    len = strcspn(password, "\r\n");
    if (len == 0) {
        fprintf(stderr, "ferry-ingress: no password on standard input\n");
    } else if (password[len] == '\0' && !feof(stdin)) {
        fprintf(stderr, "ferry-ingress: password longer than %d octets\n",
                SMTP_AUTH_FIELD_MAX);
    } else {
        password[len] = '\0';
        if (smtp_auth_hash_password(password, hash, sizeof(hash), err,
                                    sizeof(err)) == 0) {
            printf("%s\n", hash);
            rc = 0;
        } else {
            fprintf(stderr, "ferry-ingress: %s\n", err);
        }
    }
    smtp_auth_wipe(password, sizeof(password));
    return rc;
}


/* Adds the ingress's own checks to those of config_load(). */
static int
main_check_config(const struct config *cfg, char *err, size_t errlen)
{
    if (smtp_server_check(cfg, err, errlen) == -1 ||
        ingress_kafka_check(cfg, err, errlen) == -1)
        return -1;
    return 0;
}


/*
 * Runs the durability check of the topics once at start; the monitor
 * repeats it while running. With ingress.durability strict a failed
 * check stops the start. With relaxed it is a warning, as a
 * single test broker cannot pass it. A topic whose max.message.bytes is
 * below the largest record stops the start in either mode, because every
 * message needing such a record would get 451 and be retried forever.
 */
static int
main_check_durability(const struct config *cfg)
{
    char    err[2048];
    char    quoted[2200];
    int64_t topic_max = -1;
    int64_t record_max = ingress_kafka_record_max(cfg);
    int     rc;

    rc = ingress_durability_check(cfg, MAIN_DURABILITY_MS, &topic_max, err,
                                  sizeof(err));
    if (topic_max >= 0 && topic_max < record_max) {
        log_error(NULL, "record-limit-too-small", "topic_max_message_bytes="
                  "%lld record_max=%lld chunk_size=%lld action=exit "
                  "hint=\"raise max.message.bytes of the mail topics, or "
                  "lower ingress.chunk_size\"", (long long)topic_max,
                  (long long)record_max, (long long)cfg->ingress_chunk_size);
        return -1;
    }
    if (rc == 0) {
        log_info(NULL, "durability-ok", "min_replicas=%d min_isr=%d "
                 "topic_max_message_bytes=%lld record_max=%lld",
                 INGRESS_DURABILITY_MIN_REPLICAS, INGRESS_DURABILITY_MIN_ISR,
                 (long long)topic_max, (long long)record_max);
        return 0;
    }
    log_quote(quoted, sizeof(quoted), err);
    if (cfg->ingress_durability == DURABILITY_STRICT) {
        log_error(NULL, "durability-failed", "problems=%s action=exit "
                  "hint=\"fix the topics, or set ingress.durability: "
                  "relaxed for a test broker\"", quoted);
        return -1;
    }
    log_warn(NULL, "durability-weak", "problems=%s action=continue "
             "reason=\"ingress.durability is relaxed\"", quoted);
    return 0;
}


/*
 * Makes SIGTERM and SIGINT drain and stop, and SIGHUP load the TLS
 * certificate and key and the AUTH credentials again.
 */
static int
main_add_signals(struct event_base *base, struct smtp_server *srv,
                 struct main_reload *reload, struct event *events[3])
{
    events[0] = evsignal_new(base, SIGTERM, main_on_stop_signal, srv);
    events[1] = evsignal_new(base, SIGINT, main_on_stop_signal, srv);
    events[2] = evsignal_new(base, SIGHUP, main_on_hangup, reload);
    for (int i = 0; i < 3; i++)
        if (events[i] == NULL || evsignal_add(events[i], NULL) == -1)
            return -1;
    return 0;
}


/*
 * Blocks SIGTERM, SIGINT and SIGHUP in the calling thread and stores the
 * previous mask in saved, unless it is NULL. Threads created meanwhile
 * inherit the mask, so these signals reach only the main thread. The
 * teardown blocks them as well, because freeing their events restores
 * the default action, which would kill the process instead of letting it
 * exit with its own status. A signal that arrives then stays pending.
 */
static void
main_block_signals(sigset_t *saved)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, saved);
}


static void
main_on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    log_info(NULL, "signal", "signal=%s",
             sig == SIGTERM ? "SIGTERM" : "SIGINT");
    sdnotify_stopping();
    smtp_server_drain(arg, MAIN_DRAIN_GRACE_MS);
}


static void
main_on_hangup(evutil_socket_t sig, short what, void *arg)
{
    struct main_reload *reload = arg;

    /* TODO: reload the rest of the configuration. Until then it stays. */
    if (reload->tls == NULL) {
        log_warn(NULL, "signal", "signal=SIGHUP action=ignored "
                 "reason=\"TLS is not configured, and reloading the rest "
                 "of the configuration is not implemented\"");
        return;
    }
    sdnotify_reloading();
    smtp_server_pause(reload->srv, main_reload, reload);
    sdnotify_ready();
}


/*
 * Loads the TLS certificate and key and the credentials again, while the
 * other loops wait, since their sessions read both.
 */
static void
main_reload(void *arg)
{
    struct main_reload *reload = arg;
    struct smtp_tls    *tls = reload->tls;
    char                err[1024];
    char                quoted[1100];

    if (smtp_tls_reload(tls, err, sizeof(err)) == -1)
        log_error(NULL, "tls-reload-failed", "error=%s action=kept-old",
                  log_quote(quoted, sizeof(quoted), err));
    else
        log_info(NULL, "tls-reloaded", "signal=SIGHUP");

    /* Credentials need TLS, so they are only present with it. */
    if (reload->cfg->ingress_credentials_file[0] != '\0') {
        if (config_reload_credentials(reload->cfg, err, sizeof(err)) == -1)
            log_error(NULL, "credentials-reload-failed", "error=%s "
                      "action=kept-old",
                      log_quote(quoted, sizeof(quoted), err));
        else
            log_info(NULL, "credentials-reloaded", "signal=SIGHUP "
                     "users=%zu", reload->cfg->ningress_credentials);
    }
}


/*
 * Raises the soft limit of open descriptors to the hard one, since each
 * session takes one, and warns when ingress.max_connections does not fit
 * under it with MAIN_FD_RESERVE to spare.
 */
static void
main_raise_fd_limit(const struct config *cfg)
{
    struct rlimit lim;

    if (getrlimit(RLIMIT_NOFILE, &lim) == -1)
        return;
    if (lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &lim) == -1)
            getrlimit(RLIMIT_NOFILE, &lim);
    }
    if (lim.rlim_cur != RLIM_INFINITY &&
        (rlim_t)cfg->ingress_max_connections + MAIN_FD_RESERVE >
            lim.rlim_cur)
        log_warn(NULL, "descriptor-limit-low", "limit=%llu "
                 "max_connections=%lld reserve=%d hint=\"raise the "
                 "descriptor limit (ulimit -n, LimitNOFILE) or lower "
                 "ingress.max_connections\"",
                 (unsigned long long)lim.rlim_cur,
                 (long long)cfg->ingress_max_connections, MAIN_FD_RESERVE);
}


/*
 * Returns ingress.threads, or when it is 0 one loop per CPU the process
 * may run on (its affinity mask, which taskset and cpusets narrow). A CPU
 * quota, such as a Kubernetes CPU limit, is not seen, so set
 * ingress.threads under one.
 */
static unsigned
main_threads(const struct config *cfg)
{
    cpu_set_t set;
    int       cpus = 1;

    if (cfg->ingress_threads > 0)
        return (unsigned)cfg->ingress_threads;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        cpus = CPU_COUNT(&set);
    if (cpus < 1)
        return 1;
    return cpus > MAIN_THREADS_MAX ? MAIN_THREADS_MAX : (unsigned)cpus;
}


/*
 * Marks the loop alive and reports readiness: the producer is usable and
 * the topics passed the durability check, or ingress.durability is relaxed.
 */
static void
main_on_status(evutil_socket_t fd, short what, void *arg)
{
    struct main_status *st = arg;
    bool                usable = ingress_kafka_usable(st->ik);
    bool                durable =
        ingress_durability_monitor_safe(st->durability);

    /* A producer that could not be replaced ends the process. */
    if (ingress_kafka_broken(st->ik)) {
        smtp_server_stop(st->srv);
        return;
    }
    ingress_metrics_kafka_ready(usable);
    ingress_metrics_durability_ok(durable);

    /* Alive only while every event loop runs, not just this one. */
    if (smtp_server_alive(st->srv, MAIN_LOOP_STALL_MS))
        httpd_set_alive(st->httpd);
    else
        log_warn(NULL, "loop-stalled", "max_age_ms=%d action=not-alive",
                 MAIN_LOOP_STALL_MS);
    if (!usable)
        httpd_set_ready(st->httpd, "the Kafka producer is being recreated");
    else if (!durable)
        httpd_set_ready(st->httpd, "the last durability check of the "
                        "topics failed");
    else
        httpd_set_ready(st->httpd, NULL);
}

#include "smtp_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ingress_metrics.h"
#include "log.h"
#include "mailbox.h"
#include "proxy_header.h"
#include "smtp_auth_pool.h"
#include "smtp_session.h"
#include "util.h"

/*
 * Time a refused client has to read its 421 reply. It is short because
 * refused connections are not counted against the connection limits.
 */
#define SMTP_SERVER_REFUSED_SECONDS  10

/* Unread input kept per client. Reading pauses above it. */
#define SMTP_SERVER_INPUT_MAX        (256 * 1024)

/* Unsent replies above which commands wait until the client reads. */
#define SMTP_SERVER_OUTPUT_MAX       (64 * 1024)

/*
 * Time a load balancer has to send its PROXY protocol header. It sends
 * the header as soon as it connects, so a short limit will do.
 */
#define SMTP_SERVER_PROXY_HEADER_SECONDS  10

/* After the grace period, time for the last replies to be written. */
#define SMTP_SERVER_FLUSH_MS         2000

/* Pause in accepting after running out of descriptors or memory. */
#define SMTP_SERVER_ACCEPT_PAUSE_MS  1000

/* Interval of each loop's beat, which smtp_server_alive() checks. */
#define SMTP_SERVER_BEAT_MS          1000

/* Maximum host name length in the greeting and the Received header. */
#define SMTP_SERVER_HOSTNAME_MAX     253

struct smtp_conn {
    TAILQ_ENTRY(smtp_conn)        entry;        /* guarded by srv->lock */
    struct smtp_server           *srv;
    struct smtp_loop             *loop;
    struct bufferevent           *bev;
    struct smtp_session          *s;
    struct sockaddr_storage       client;       /* guarded by srv->lock */
    struct ingress_kafka_pending *pending;      /* not owned */
    struct smtp_auth_pool_job    *auth_job;     /* not owned */
    struct event                 *ack_timer;
    struct event                 *resume;       /* feeds input after a wait */
    const char                   *reason;       /* why it is closing */
    bool                          eof;          /* the client sent FIN */
    bool                          closing;      /* free once flushed */
    bool                          tls;          /* handshake started */
    bool                          refused;      /* not counted: got 421, or
                                                   waits for its PROXY
                                                   header; guarded by
                                                   srv->lock */
    bool                          proxy_wait;   /* PROXY header not read */
    int                           wait;         /* enum smtp_wait, or -1 */
};

TAILQ_HEAD(smtp_conn_list, smtp_conn);

/*
 * One event loop and its thread. Loop 0 runs on the caller's base and
 * thread, and accepts every connection; the others run on bases and
 * threads of their own. Connections are handed to the loops in turn and
 * stay on theirs.
 */
struct smtp_loop {
    struct smtp_server    *srv;
    unsigned               index;
    struct event_base     *base;
    struct mailbox        *mailbox;     /* work from other threads */
    struct mailbox_item    drain_item;
    struct mailbox_item    stop_item;
    struct mailbox_item    pause_item;
    pthread_t              thread;
    bool                   thread_started;
    bool                   exited;      /* guarded by srv->lock */
    struct event          *drain_timer;
    struct event          *beat_timer;
    int64_t                beat_ms;     /* last beat; atomic */
    struct smtp_conn_list  conns;       /* guarded by srv->lock */
    size_t                 nconns;
    bool                   draining;
    bool                   grace_over;
};

struct smtp_server {
    const struct config   *cfg;
    struct ingress_kafka  *ik;
    struct smtp_tls       *tls;         /* NULL: no STARTTLS */
    struct smtp_auth_pool *auth_pool;   /* NULL: no AUTH */
    const struct ingress_durability_monitor *durability;
    struct evconnlistener *listener;    /* on loop 0 */
    struct event          *accept_timer;
    struct smtp_loop      *loops;
    unsigned               nloops;
    unsigned               next_loop;   /* the next connection's */
    int                    grace_ms;    /* of the drain, once started */
    bool                   draining;    /* main thread only */
    bool                   stopping;    /* main thread only */

    /* Guards the connection lists and counts, and the pause. */
    pthread_mutex_t        lock;
    pthread_cond_t         changed;
    size_t                 nadmitted;   /* conns not refused, all loops */
    unsigned               running;     /* loop threads not yet exited */
    unsigned               paused;      /* loop threads in the pause */
    bool                   pause;
};

static in_port_t smtp_server_port(const struct sockaddr_storage *ss);
static void smtp_server_send(void *arg, const char *data, size_t len);
static enum smtp_produce_status smtp_server_produce(void *arg,
                                                    const char *topic,
                                                    const struct envelope *env);
static enum smtp_produce_status smtp_server_status(rd_kafka_resp_err_t err);
static void smtp_server_on_report(void *arg, rd_kafka_resp_err_t err);
static void smtp_server_on_ack_timeout(evutil_socket_t fd, short what,
                                       void *arg);
static int smtp_server_auth(void *arg, const char *password,
                            const char *hash);
static void smtp_server_on_auth(void *arg, bool match);
static void smtp_server_cancel_auth(struct smtp_conn *c);
static void smtp_server_on_resume(evutil_socket_t fd, short what, void *arg);
static void smtp_server_on_accept(struct evconnlistener *listener,
                                  evutil_socket_t fd, struct sockaddr *sa,
                                  int salen, void *arg);
static void smtp_server_on_accept_error(struct evconnlistener *listener,
                                        void *arg);
static void smtp_server_on_accept_timer(evutil_socket_t fd, short what,
                                        void *arg);
static void smtp_server_on_read(struct bufferevent *bev, void *arg);
static void smtp_server_on_write(struct bufferevent *bev, void *arg);
static void smtp_server_on_event(struct bufferevent *bev, short what,
                                 void *arg);
static void smtp_server_on_drain_timer(evutil_socket_t fd, short what,
                                       void *arg);
static void smtp_server_process(struct smtp_conn *c);
static void smtp_server_setup_bev(struct smtp_conn *c);
static void smtp_server_set_timeouts(struct smtp_conn *c);
static bool smtp_server_same_client(const struct sockaddr_storage *a,
                                    const struct sockaddr *b);
static int smtp_server_admit(struct smtp_server *srv,
                             const struct sockaddr *sa,
                             enum smtp_refusal *why);
static bool smtp_server_proxy_allowed(const struct config *cfg,
                                      const struct sockaddr *sa);
static void smtp_server_format_peer(const struct sockaddr *sa, char *buf,
                                    size_t size);
static int smtp_server_read_proxy(struct smtp_conn *c);
static void smtp_server_greet(struct smtp_conn *c);
static void smtp_server_start_tls(struct smtp_conn *c);
static void smtp_server_tls_done(struct smtp_conn *c);
static bool smtp_server_flushed(struct smtp_conn *c);
static void smtp_server_on_tls_output(struct evbuffer *buf,
                                      const struct evbuffer_cb_info *info,
                                      void *arg);
static void smtp_server_stop_waiting(struct smtp_conn *c,
                                     enum smtp_produce_status status);
static void smtp_server_close(struct smtp_conn *c, const char *reason);
static void smtp_server_free_conn(struct smtp_conn *c, const char *reason);
static void smtp_server_check_drained(struct smtp_loop *loop);
static int smtp_server_loop_init(struct smtp_server *srv,
                                 struct smtp_loop *loop,
                                 struct event_base *base, char *err,
                                 size_t errlen);
static void smtp_server_loop_free(struct smtp_loop *loop);
static void *smtp_server_loop_main(void *arg);
static void smtp_server_drain_loop(struct smtp_loop *loop);
static void smtp_server_on_drain(struct mailbox_item *item);
static void smtp_server_on_stop(struct mailbox_item *item);
static void smtp_server_on_pause(struct mailbox_item *item);
static void smtp_server_on_handoff(struct mailbox_item *item);
static void smtp_server_on_beat(evutil_socket_t fd, short what, void *arg);
static void smtp_server_add_conn(struct smtp_loop *loop, evutil_socket_t fd,
                                 const struct sockaddr *sa, int salen);

static const struct smtp_session_ops smtp_server_ops = {
    .send = smtp_server_send,
    .produce = smtp_server_produce,
    .auth = smtp_server_auth,
};


static in_port_t
smtp_server_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6)
        return ((const struct sockaddr_in6 *)(const void *)ss)->sin6_port;
    return ((const struct sockaddr_in *)(const void *)ss)->sin_port;
}


int
smtp_server_check(const struct config *cfg, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    int                     len = (int)sizeof(ss);
    const char             *host = cfg->ingress_hostname;

    memset(&ss, 0, sizeof(ss));
    if (evutil_parse_sockaddr_port(cfg->ingress_listen,
                                   (struct sockaddr *)&ss, &len) == -1 ||
        smtp_server_port(&ss) == 0) {
        snprintf(err, errlen, "%s: key 'ingress.listen': '%s' is not an "
                 "address and port such as 127.0.0.1:2525 or [::1]:2525",
                 cfg->path, cfg->ingress_listen);
        return -1;
    }
    if (strlen(host) > SMTP_SERVER_HOSTNAME_MAX) {
        snprintf(err, errlen, "%s: key 'ingress.hostname': longer than %d "
                 "characters", cfg->path, SMTP_SERVER_HOSTNAME_MAX);
        return -1;
    }
    for (const char *p = host; *p != '\0'; p++) {
        if (*p <= ' ' || *p > '~') {
            snprintf(err, errlen, "%s: key 'ingress.hostname': '%s' "
                     "contains a space or a non-ASCII character", cfg->path,
                     host);
            return -1;
        }
    }
    return 0;
}


struct smtp_server *
smtp_server_new(const struct config *cfg, struct event_base *base,
                unsigned nloops, struct ingress_kafka *ik,
                struct smtp_tls *tls, struct smtp_auth_pool *auth_pool,
                char *err, size_t errlen)
{
    struct smtp_server     *srv;
    struct sockaddr_storage ss;
    int                     len = (int)sizeof(ss);

    if (smtp_server_check(cfg, err, errlen) == -1)
        return NULL;
    evutil_parse_sockaddr_port(cfg->ingress_listen, (struct sockaddr *)&ss,
                               &len);

    srv = xcalloc(1, sizeof(*srv));
    srv->cfg = cfg;
    srv->ik = ik;
    srv->tls = tls;
    srv->auth_pool = auth_pool;
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->changed, NULL);
    srv->loops = xcalloc(nloops, sizeof(*srv->loops));
    srv->nloops = nloops;
    for (unsigned i = 0; i < nloops; i++) {
        if (smtp_server_loop_init(srv, &srv->loops[i], i == 0 ? base : NULL,
                                  err, errlen) == -1) {
            smtp_server_free(srv);
            return NULL;
        }
    }

    srv->accept_timer = evtimer_new(base, smtp_server_on_accept_timer, srv);
    srv->listener = evconnlistener_new_bind(
        base, smtp_server_on_accept, srv,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        128, (struct sockaddr *)&ss, len);
    if (srv->listener == NULL) {
        snprintf(err, errlen, "cannot listen on %s (key 'ingress.listen'): "
                 "%s", cfg->ingress_listen, strerror(errno));
        smtp_server_free(srv);
        return NULL;
    }
    evconnlistener_set_error_cb(srv->listener, smtp_server_on_accept_error);
    return srv;
}


/* Sets up a loop; base is NULL for a loop with a base of its own. */
static int
smtp_server_loop_init(struct smtp_server *srv, struct smtp_loop *loop,
                      struct event_base *base, char *err, size_t errlen)
{
    struct timeval beat = { SMTP_SERVER_BEAT_MS / 1000,
                            (SMTP_SERVER_BEAT_MS % 1000) * 1000 };

    loop->srv = srv;
    loop->index = (unsigned)(loop - srv->loops);
    loop->drain_item.run = smtp_server_on_drain;
    loop->stop_item.run = smtp_server_on_stop;
    loop->pause_item.run = smtp_server_on_pause;
    TAILQ_INIT(&loop->conns);
    loop->base = base != NULL ? base : event_base_new();
    if (loop->base == NULL) {
        snprintf(err, errlen, "cannot create the event loop of thread %u",
                 loop->index);
        return -1;
    }
    if ((loop->mailbox = mailbox_new(loop->base, err, errlen)) == NULL)
        return -1;
    loop->drain_timer = evtimer_new(loop->base, smtp_server_on_drain_timer,
                                    loop);
    loop->beat_timer = event_new(loop->base, -1, EV_PERSIST,
                                 smtp_server_on_beat, loop);
    loop->beat_ms = util_monotonic_ms();
    if (loop->drain_timer == NULL || loop->beat_timer == NULL ||
        event_add(loop->beat_timer, &beat) == -1) {
        snprintf(err, errlen, "cannot register the timers of thread %u",
                 loop->index);
        return -1;
    }
    return 0;
}


/* Records that the loop ran just now, for smtp_server_alive(). */
static void
smtp_server_on_beat(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_loop *loop = arg;

    __atomic_store_n(&loop->beat_ms, util_monotonic_ms(), __ATOMIC_RELAXED);
}


bool
smtp_server_alive(struct smtp_server *srv, int64_t max_age_ms)
{
    int64_t now = util_monotonic_ms();
    bool    alive = true;

    pthread_mutex_lock(&srv->lock);
    for (unsigned i = 0; i < srv->nloops && alive; i++) {
        struct smtp_loop *loop = &srv->loops[i];

        if (!loop->exited &&
            now - __atomic_load_n(&loop->beat_ms, __ATOMIC_RELAXED) >
                max_age_ms)
            alive = false;
    }
    pthread_mutex_unlock(&srv->lock);
    return alive;
}


int
smtp_server_start(struct smtp_server *srv, char *err, size_t errlen)
{
    int rc = 0;

    for (unsigned i = 1; i < srv->nloops && rc == 0; i++) {
        struct smtp_loop *loop = &srv->loops[i];

        rc = util_thread_start(&loop->thread, smtp_server_loop_main, loop);
        if (rc == 0) {
            loop->thread_started = true;
            pthread_mutex_lock(&srv->lock);
            srv->running++;
            pthread_mutex_unlock(&srv->lock);
        }
    }
    if (rc != 0) {
        snprintf(err, errlen, "cannot start an event loop thread: %s",
                 strerror(rc));
        smtp_server_stop(srv);
        smtp_server_join(srv);
        return -1;
    }
    return 0;
}


static void *
smtp_server_loop_main(void *arg)
{
    struct smtp_loop   *loop = arg;
    struct smtp_server *srv = loop->srv;

    event_base_dispatch(loop->base);
    pthread_mutex_lock(&srv->lock);
    loop->exited = true;
    srv->running--;
    pthread_cond_broadcast(&srv->changed);
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}


void
smtp_server_join(struct smtp_server *srv)
{
    for (unsigned i = 1; i < srv->nloops; i++) {
        if (srv->loops[i].thread_started) {
            pthread_join(srv->loops[i].thread, NULL);
            srv->loops[i].thread_started = false;
        }
    }
}


void
smtp_server_stop(struct smtp_server *srv)
{
    if (srv->stopping)
        return;
    srv->stopping = true;

    /*
     * No connection is handed out after this, so each loop runs the ones
     * handed to it before its stop item, and none is left in a mailbox.
     */
    if (srv->listener != NULL) {
        evconnlistener_free(srv->listener);
        srv->listener = NULL;
    }
    for (unsigned i = 0; i < srv->nloops; i++) {
        struct smtp_loop *loop = &srv->loops[i];

        pthread_mutex_lock(&srv->lock);
        if (!loop->exited)
            mailbox_post(loop->mailbox, &loop->stop_item);
        pthread_mutex_unlock(&srv->lock);
    }
}


static void
smtp_server_on_stop(struct mailbox_item *item)
{
    struct smtp_loop *loop = MAILBOX_OWNER(item, struct smtp_loop, stop_item);

    event_base_loopexit(loop->base, NULL);
}


/*
 * Runs fn while the other loops wait, each inside a posted item, so fn
 * may change what their sessions read. Called from loop 0's thread.
 */
void
smtp_server_pause(struct smtp_server *srv, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&srv->lock);
    srv->pause = true;
    for (unsigned i = 1; i < srv->nloops; i++)
        if (srv->loops[i].thread_started && !srv->loops[i].exited)
            mailbox_post(srv->loops[i].mailbox, &srv->loops[i].pause_item);
    while (srv->paused < srv->running)
        pthread_cond_wait(&srv->changed, &srv->lock);
    pthread_mutex_unlock(&srv->lock);

    fn(arg);

    pthread_mutex_lock(&srv->lock);
    srv->pause = false;
    pthread_cond_broadcast(&srv->changed);
    while (srv->paused > 0)
        pthread_cond_wait(&srv->changed, &srv->lock);
    pthread_mutex_unlock(&srv->lock);
}


static void
smtp_server_on_pause(struct mailbox_item *item)
{
    struct smtp_loop   *loop =
        MAILBOX_OWNER(item, struct smtp_loop, pause_item);
    struct smtp_server *srv = loop->srv;

    pthread_mutex_lock(&srv->lock);
    srv->paused++;
    pthread_cond_broadcast(&srv->changed);
    while (srv->pause)
        pthread_cond_wait(&srv->changed, &srv->lock);
    srv->paused--;
    pthread_cond_broadcast(&srv->changed);
    pthread_mutex_unlock(&srv->lock);
}


void
smtp_server_disconnect(struct smtp_server *srv)
{
    struct smtp_conn *c;

    smtp_server_join(srv);
    for (unsigned i = 0; i < srv->nloops; i++) {
        if (srv->loops[i].srv == NULL)
            continue;     /* never set up */
        while ((c = TAILQ_FIRST(&srv->loops[i].conns)) != NULL)
            smtp_server_free_conn(c, "shutdown");
    }
}


/* Frees a loop's events, once its thread and connections are gone. */
static void
smtp_server_loop_free(struct smtp_loop *loop)
{
    if (loop->srv == NULL)
        return;     /* never set up */
    if (loop->drain_timer != NULL)
        event_free(loop->drain_timer);
    if (loop->beat_timer != NULL)
        event_free(loop->beat_timer);
    mailbox_free(loop->mailbox);
    if (loop->index > 0 && loop->base != NULL)
        event_base_free(loop->base);
}


void
smtp_server_free(struct smtp_server *srv)
{
    if (srv == NULL)
        return;

    smtp_server_disconnect(srv);
    if (srv->listener != NULL)
        evconnlistener_free(srv->listener);
    if (srv->accept_timer != NULL)
        event_free(srv->accept_timer);
    for (unsigned i = 0; i < srv->nloops; i++)
        smtp_server_loop_free(&srv->loops[i]);
    pthread_cond_destroy(&srv->changed);
    pthread_mutex_destroy(&srv->lock);
    free(srv->loops);
    free(srv);
}


size_t
smtp_server_connections(struct smtp_server *srv)
{
    size_t n = 0;

    pthread_mutex_lock(&srv->lock);
    for (unsigned i = 0; i < srv->nloops; i++)
        n += srv->loops[i].nconns;
    pthread_mutex_unlock(&srv->lock);
    return n;
}


void
smtp_server_set_durability(struct smtp_server *srv,
                           const struct ingress_durability_monitor *m)
{
    srv->durability = m;
}


/* Compares the IP addresses of two clients, ignoring the ports. */
static bool
smtp_server_same_client(const struct sockaddr_storage *a,
                        const struct sockaddr *b)
{
    if (a->ss_family != b->sa_family)
        return false;
    if (b->sa_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)(const void *)a)
                           ->sin_addr,
                      &((const struct sockaddr_in *)(const void *)b)
                           ->sin_addr,
                      sizeof(struct in_addr)) == 0;
    if (b->sa_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)(const void *)a)
                           ->sin6_addr,
                      &((const struct sockaddr_in6 *)(const void *)b)
                           ->sin6_addr,
                      sizeof(struct in6_addr)) == 0;
    return false;
}


/*
 * Decides whether a new client gets a session: returns -1 and sets *why
 * when a connection limit is reached or the topics are not durable.
 * Called with srv->lock held, since the limits span every loop.
 */
static int
smtp_server_admit(struct smtp_server *srv, const struct sockaddr *sa,
                  enum smtp_refusal *why)
{
    const struct config *cfg = srv->cfg;
    struct smtp_conn    *c;
    int64_t              same = 0;

    if (!ingress_durability_monitor_safe(srv->durability)) {
        *why = SMTP_REFUSE_NOT_DURABLE;
        return -1;
    }
    if ((int64_t)srv->nadmitted >= cfg->ingress_max_connections) {
        *why = SMTP_REFUSE_SERVER_FULL;
        return -1;
    }

    /*
     * A linear scan, bounded by ingress.max_connections, costs less than
     * the accept() before it at the default limit.
     */
    for (unsigned i = 0; i < srv->nloops; i++) {
        TAILQ_FOREACH(c, &srv->loops[i].conns, entry) {
            if (!c->refused && smtp_server_same_client(&c->client, sa))
                same++;
        }
    }
    if (same >= cfg->ingress_max_connections_per_client) {
        *why = SMTP_REFUSE_CLIENT_FULL;
        return -1;
    }
    return 0;
}


/* A connection accepted by loop 0, on its way to another loop. */
struct smtp_handoff {
    struct mailbox_item     item;
    struct smtp_loop       *loop;
    evutil_socket_t         fd;
    struct sockaddr_storage client;
    int                     salen;
};


/*
 * Accepts on loop 0 and hands the connection to the next loop in turn.
 * Handing out in turn keeps the loops evenly loaded without the herd of
 * every loop waking for each connection.
 */
static void
smtp_server_on_accept(struct evconnlistener *listener, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
    struct smtp_server  *srv = arg;
    struct smtp_loop    *loop = &srv->loops[srv->next_loop];
    struct smtp_handoff *handoff;
    char                 peer[INET6_ADDRSTRLEN];

    /* Only the configured load balancers may send a PROXY header. */
    if (srv->cfg->ingress_proxy_protocol &&
        !smtp_server_proxy_allowed(srv->cfg, sa)) {
        smtp_server_format_peer(sa, peer, sizeof(peer));
        log_warn(NULL, "proxy-peer-not-allowed", "peer=%s reason=\"not in "
                 "ingress.proxy_networks\" action=close", peer);
        evutil_closesocket(fd);
        return;
    }

    srv->next_loop = (srv->next_loop + 1) % srv->nloops;
    if (loop->index == 0) {
        smtp_server_add_conn(loop, fd, sa, salen);
        return;
    }
    handoff = xcalloc(1, sizeof(*handoff));
    handoff->item.run = smtp_server_on_handoff;
    handoff->loop = loop;
    handoff->fd = fd;
    memcpy(&handoff->client, sa, (size_t)salen);
    handoff->salen = salen;
    mailbox_post(loop->mailbox, &handoff->item);
}


/* Takes a handed connection on its loop's thread. */
static void
smtp_server_on_handoff(struct mailbox_item *item)
{
    struct smtp_handoff *handoff =
        MAILBOX_OWNER(item, struct smtp_handoff, item);

    smtp_server_add_conn(handoff->loop, handoff->fd,
                         (struct sockaddr *)&handoff->client,
                         handoff->salen);
    free(handoff);
}


/* Sets up the connection of fd on loop, and greets the client. */
static void
smtp_server_add_conn(struct smtp_loop *loop, evutil_socket_t fd,
                     const struct sockaddr *sa, int salen)
{
    struct smtp_server *srv = loop->srv;
    struct smtp_conn   *c;
    int                 nodelay = 1;

    c = xcalloc(1, sizeof(*c));
    c->srv = srv;
    c->loop = loop;
    c->wait = -1;
    c->proxy_wait = srv->cfg->ingress_proxy_protocol != 0;
    c->refused = true;      /* counted once admitted */
    if ((size_t)salen <= sizeof(c->client))
        memcpy(&c->client, sa, (size_t)salen);
    c->bev = bufferevent_socket_new(loop->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->ack_timer = evtimer_new(loop->base, smtp_server_on_ack_timeout, c);
    c->resume = event_new(loop->base, -1, 0, smtp_server_on_resume, c);
    if (c->bev == NULL || c->ack_timer == NULL || c->resume == NULL) {
        log_error(NULL, "accept-failed", "error=\"cannot set up the "
                  "connection events\"");
        if (c->bev != NULL)
            bufferevent_free(c->bev);
        else
            evutil_closesocket(fd);
        if (c->ack_timer != NULL)
            event_free(c->ack_timer);
        if (c->resume != NULL)
            event_free(c->resume);
        free(c);
        return;
    }

    /* Replies are small and a client waits for each, so send them at once. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof(nodelay));

    c->s = smtp_session_new(srv->cfg, sa, &smtp_server_ops, c);
    pthread_mutex_lock(&srv->lock);
    TAILQ_INSERT_TAIL(&loop->conns, c, entry);
    loop->nconns++;
    pthread_mutex_unlock(&srv->lock);
    ingress_metrics_session(1);

    smtp_server_setup_bev(c);
    if (c->proxy_wait) {
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
        return;
    }
    smtp_server_greet(c);
}


/*
 * Admits the client, or refuses it, once its address is known: at
 * accept, or after the PROXY header.
 */
static void
smtp_server_greet(struct smtp_conn *c)
{
    struct smtp_server *srv = c->srv;
    enum smtp_refusal   why = SMTP_REFUSE_SERVER_FULL;

    pthread_mutex_lock(&srv->lock);
    c->refused = smtp_server_admit(srv, (struct sockaddr *)&c->client,
                                   &why) == -1;
    if (!c->refused)
        srv->nadmitted++;
    pthread_mutex_unlock(&srv->lock);
    smtp_server_set_timeouts(c);

    log_info(NULL, "connect", "session=%s client=%s thread=%u",
             smtp_session_id(c->s), smtp_session_client(c->s),
             c->loop->index);
    if (c->refused) {
        smtp_session_refuse(c->s, why);
        smtp_server_close(c, smtp_session_close_reason(c->s));
        return;
    }
    smtp_session_start(c->s);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}


/* Writes the IP address of sa, without the port. */
static void
smtp_server_format_peer(const struct sockaddr *sa, char *buf, size_t size)
{
    const void *addr = NULL;

    if (sa->sa_family == AF_INET)
        addr = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6)
        addr = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    if (addr == NULL || inet_ntop(sa->sa_family, addr, buf,
                                  (socklen_t)size) == NULL)
        snprintf(buf, size, "unknown");
}


static bool
smtp_server_proxy_allowed(const struct config *cfg,
                          const struct sockaddr *sa)
{
    for (size_t i = 0; i < cfg->ningress_proxy_networks; i++)
        if (cidr_contains(&cfg->ingress_proxy_networks[i], sa))
            return true;
    return false;
}


/*
 * Reads the PROXY protocol header that must start the connection and
 * takes the client address from it. Returns 0 once the header is read,
 * or -1 while it is incomplete or after c was freed for a bad header.
 */
static int
smtp_server_read_proxy(struct smtp_conn *c)
{
    struct evbuffer         *in = bufferevent_get_input(c->bev);
    size_t                   len = evbuffer_get_length(in);
    struct proxy_header      header;
    enum proxy_header_status status;
    char                     peer[INET6_ADDRSTRLEN];
    unsigned char           *buf;

    if (len > PROXY_HEADER_MAX)
        len = PROXY_HEADER_MAX;
    buf = evbuffer_pullup(in, (ev_ssize_t)len);
    status = proxy_header_parse(buf, len, &header);
    if (status == PROXY_HEADER_INCOMPLETE && !c->eof)
        return -1;

    smtp_server_format_peer((struct sockaddr *)&c->client, peer,
                            sizeof(peer));
    if (status == PROXY_HEADER_INCOMPLETE && len == 0) {
        /* A TCP health check of the load balancer, most likely. */
        smtp_server_free_conn(c, "client-closed");
        return -1;
    }
    if (status != PROXY_HEADER_OK) {
        log_warn(NULL, "proxy-header-invalid", "session=%s peer=%s "
                 "octets=%zu reason=%s", smtp_session_id(c->s), peer, len,
                 status == PROXY_HEADER_INCOMPLETE ? "closed-before-end"
                                                   : "malformed");
        smtp_server_free_conn(c, "proxy-header-invalid");
        return -1;
    }

    evbuffer_drain(in, header.length);
    c->proxy_wait = false;
    if (!header.local) {
        pthread_mutex_lock(&c->srv->lock);
        memcpy(&c->client, &header.source, sizeof(c->client));
        pthread_mutex_unlock(&c->srv->lock);
        smtp_session_set_client(c->s, (struct sockaddr *)&c->client);
    }
    log_debug(NULL, "proxy-header", "session=%s peer=%s version=%d "
              "local=%s client=%s", smtp_session_id(c->s), peer,
              header.version, header.local ? "true" : "false",
              smtp_session_client(c->s));
    smtp_server_greet(c);
    return 0;
}


/* Sets the callbacks, read limit and timeouts of c->bev. */
static void
smtp_server_setup_bev(struct smtp_conn *c)
{
    bufferevent_setcb(c->bev, smtp_server_on_read, smtp_server_on_write,
                      smtp_server_on_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, SMTP_SERVER_INPUT_MAX);
    c->wait = -1;
    smtp_server_set_timeouts(c);
}


/*
 * Applies the timeout of what the session waits for (RFC 5321 section
 * 4.5.3.2). libevent restarts the read timeout at every read, so a
 * timeout bounds the silence between reads, not a whole phase. The write
 * timeout is the command timeout: a client that stops reading its
 * replies is cut off after it.
 */
static void
smtp_server_set_timeouts(struct smtp_conn *c)
{
    const struct config *cfg = c->srv->cfg;
    enum smtp_wait       wait = smtp_session_wait(c->s);
    struct timeval       rd = { 0, 0 };
    struct timeval       wr = { cfg->ingress_command_timeout, 0 };

    if (c->proxy_wait) {
        rd.tv_sec = wr.tv_sec = SMTP_SERVER_PROXY_HEADER_SECONDS;
        bufferevent_set_timeouts(c->bev, &rd, &wr);
        return;
    }
    if (c->refused) {
        rd.tv_sec = wr.tv_sec = SMTP_SERVER_REFUSED_SECONDS;
        bufferevent_set_timeouts(c->bev, &rd, &wr);
        return;
    }
    if ((int)wait == c->wait)
        return;
    c->wait = (int)wait;

    switch (wait) {
    case SMTP_WAIT_COMMAND:
        rd.tv_sec = cfg->ingress_command_timeout;
        break;
    case SMTP_WAIT_DATA_INITIATION:
        rd.tv_sec = cfg->ingress_data_initiation_timeout;
        break;
    case SMTP_WAIT_DATA_BLOCK:
        rd.tv_sec = cfg->ingress_data_block_timeout;
        break;
    case SMTP_WAIT_DATA_TERMINATION:
        /* The ack timer ends this wait first; this is a safety net. */
        rd.tv_sec = cfg->ingress_data_termination_timeout;
        break;
    }
    bufferevent_set_timeouts(c->bev, &rd, &wr);
}


/*
 * Starts the TLS handshake after the 220 reply to STARTTLS. Whatever the
 * client sent after the STARTTLS line is discarded unread, because a
 * man in the middle could have injected commands there (RFC 3207 section
 * 4.2), and the TLS layer is stacked on the plain connection, behind the
 * 220 reply still queued there.
 */
static void
smtp_server_start_tls(struct smtp_conn *c)
{
    struct evbuffer    *in = bufferevent_get_input(c->bev);
    size_t              discarded = evbuffer_get_length(in);
    struct bufferevent *bev;
    SSL                *ssl;

    c->tls = true;
    evbuffer_drain(in, discarded);
    if (discarded > 0)
        log_info(NULL, "starttls-input-discarded", "session=%s octets=%zu",
                 smtp_session_id(c->s), discarded);

    ssl = smtp_tls_ssl_new(c->srv->tls);
    bev = ssl != NULL
              ? bufferevent_openssl_filter_new(c->loop->base, c->bev, ssl,
                                               BUFFEREVENT_SSL_ACCEPTING,
                                               BEV_OPT_CLOSE_ON_FREE)
              : NULL;
    if (bev == NULL) {
        /*
         * NOTE: whether libevent frees ssl when the filter cannot be
         * created is not documented, so it is left alone here.
         */
        log_error(NULL, "tls-failed", "session=%s error=\"cannot set up "
                  "the TLS layer\"", smtp_session_id(c->s));
        smtp_server_free_conn(c, "tls-setup-failed");
        return;
    }

    /*
     * A reply is written once it leaves the plain connection's buffer,
     * which the TLS layer's write callback does not see.
     */
    evbuffer_add_cb(bufferevent_get_output(c->bev),
                    smtp_server_on_tls_output, c);

    /* A client that closes without close_notify is only a closed one. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    c->bev = bev;
    smtp_server_setup_bev(c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}


/* Returns true when every reply queued for the client has been sent. */
static bool
smtp_server_flushed(struct smtp_conn *c)
{
    struct bufferevent *plain = bufferevent_get_underlying(c->bev);

    if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
        return false;
    return plain == NULL ||
           evbuffer_get_length(bufferevent_get_output(plain)) == 0;
}


/*
 * Notices that the plain connection under TLS has sent everything. The
 * connection is freed from the resume event, outside libevent's write
 * path.
 */
static void
smtp_server_on_tls_output(struct evbuffer *buf,
                          const struct evbuffer_cb_info *info, void *arg)
{
    struct smtp_conn *c = arg;

    if (c->closing && evbuffer_get_length(buf) == 0)
        event_active(c->resume, 0, 0);
}


/* Hands the negotiated protocol and cipher to the session. */
static void
smtp_server_tls_done(struct smtp_conn *c)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

    smtp_session_tls_started(c->s, SSL_get_version(ssl),
                             SSL_get_cipher_name(ssl));
    log_info(NULL, "tls-started", "session=%s protocol=%s cipher=%s",
             smtp_session_id(c->s), SSL_get_version(ssl),
             SSL_get_cipher_name(ssl));

    /*
     * What was pipelined in clear text behind STARTTLS was discarded
     * before the handshake began. The input now contains decrypted text
     * only, which the client sent after its Finished message, as TLS 1.3
     * allows in the same packet. It is the first command of the secure
     * session.
     */
    smtp_server_process(c);
}


/*
 * Pauses accepting when accept() fails for lack of descriptors or memory,
 * because the listening socket would stay readable and spin the loop.
 */
static void
smtp_server_on_accept_error(struct evconnlistener *listener, void *arg)
{
    struct smtp_server *srv = arg;
    int                 err = EVUTIL_SOCKET_ERROR();
    struct timeval      pause = {
        SMTP_SERVER_ACCEPT_PAUSE_MS / 1000,
        (SMTP_SERVER_ACCEPT_PAUSE_MS % 1000) * 1000
    };
    char                quoted[256];

    log_error(NULL, "accept-failed", "error=%s pause_ms=%d",
              log_quote(quoted, sizeof(quoted),
                        evutil_socket_error_to_string(err)),
              SMTP_SERVER_ACCEPT_PAUSE_MS);
    evconnlistener_disable(listener);
    evtimer_add(srv->accept_timer, &pause);
}


static void
smtp_server_on_accept_timer(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_server *srv = arg;

    if (srv->listener != NULL && !srv->draining)
        evconnlistener_enable(srv->listener);
}


static void
smtp_server_send(void *arg, const char *data, size_t len)
{
    struct smtp_conn *c = arg;

    bufferevent_write(c->bev, data, len);
}


/*
 * Queues one chunk of the message. The first chunk starts the message and
 * the ack timer, whose deadline covers every chunk. When a chunk cannot
 * be queued the message ends here: the chunks already queued are left to
 * their reports, which are only logged.
 */
static enum smtp_produce_status
smtp_server_produce(void *arg, const char *topic, const struct envelope *env)
{
    struct smtp_conn   *c = arg;
    int64_t             ms = c->srv->cfg->ingress_ack_timeout_ms;
    struct timeval      deadline = { ms / 1000, (ms % 1000) * 1000 };
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

    if (env->chunk_index == 0) {
        c->pending = ingress_kafka_begin(c->srv->ik, c->loop->mailbox,
                                         env->id, topic, env->chunk_count,
                                         smtp_server_on_report, c);
        evtimer_add(c->ack_timer, &deadline);
    }
    if (c->pending == NULL)
        return SMTP_PRODUCE_FAILED;

    if (ingress_kafka_produce(c->srv->ik, c->pending, env, &err) == -1) {
        ingress_kafka_detach(c->srv->ik, c->pending, INGRESS_KAFKA_REPLIED);
        c->pending = NULL;
        evtimer_del(c->ack_timer);
        return smtp_server_status(err);
    }
    return SMTP_PRODUCE_PENDING;
}


static enum smtp_produce_status
smtp_server_status(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return SMTP_PRODUCE_OK;
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
        return SMTP_PRODUCE_TIMEOUT;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        return SMTP_PRODUCE_TOO_LARGE;
    default:
        return SMTP_PRODUCE_FAILED;
    }
}


/* Handles the delivery report of this connection's message. */
static void
smtp_server_on_report(void *arg, rd_kafka_resp_err_t err)
{
    struct smtp_conn *c = arg;

    c->pending = NULL;
    evtimer_del(c->ack_timer);
    smtp_session_produce_done(c->s, smtp_server_status(err));

    /* Pipelined commands are read from the next loop pass. */
    event_active(c->resume, 0, 0);
}


static void
smtp_server_on_ack_timeout(evutil_socket_t fd, short what, void *arg)
{
    smtp_server_stop_waiting(arg, SMTP_PRODUCE_TIMEOUT);
}


/*
 * Gives up waiting for the report and replies with status. A report that
 * arrives later is only logged.
 */
static void
smtp_server_stop_waiting(struct smtp_conn *c, enum smtp_produce_status status)
{
    if (c->pending == NULL)
        return;
    ingress_kafka_detach(c->srv->ik, c->pending, INGRESS_KAFKA_REPLIED);
    c->pending = NULL;
    evtimer_del(c->ack_timer);
    smtp_session_produce_done(c->s, status);
    event_active(c->resume, 0, 0);
}


/* Queues an AUTH password check on the pool's threads. */
static int
smtp_server_auth(void *arg, const char *password, const char *hash)
{
    struct smtp_conn *c = arg;

    if (c->srv->auth_pool == NULL)
        return -1;
    c->auth_job = smtp_auth_pool_submit(c->srv->auth_pool, c->loop->mailbox,
                                        password, hash, smtp_server_on_auth,
                                        c);
    return c->auth_job != NULL ? 0 : -1;
}


static void
smtp_server_on_auth(void *arg, bool match)
{
    struct smtp_conn *c = arg;

    c->auth_job = NULL;
    smtp_session_auth_done(c->s, match);

    /* Pipelined commands are read from the next loop pass. */
    event_active(c->resume, 0, 0);
}


/* Drops the result of a running check, which then never calls back. */
static void
smtp_server_cancel_auth(struct smtp_conn *c)
{
    if (c->auth_job == NULL)
        return;
    smtp_auth_pool_cancel(c->srv->auth_pool, c->auth_job);
    c->auth_job = NULL;
}


static void
smtp_server_on_resume(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_conn *c = arg;

    if (c->closing) {
        if (smtp_server_flushed(c))
            smtp_server_free_conn(c, c->reason);
        return;
    }
    smtp_server_process(c);
}


static void
smtp_server_on_read(struct bufferevent *bev, void *arg)
{
    smtp_server_process(arg);
}


static void
smtp_server_on_write(struct bufferevent *bev, void *arg)
{
    struct smtp_conn *c = arg;

    /* Called once the output buffer is empty. */
    if (!c->closing)
        smtp_server_process(c);
    else if (smtp_server_flushed(c))
        smtp_server_free_conn(c, c->reason);
}


static void
smtp_server_on_event(struct bufferevent *bev, short what, void *arg)
{
    struct smtp_conn *c = arg;
    enum smtp_state   state = smtp_session_state(c->s);
    char              reason[400];
    char              quoted[300];
    unsigned long     tls_error;

    if (what & BEV_EVENT_CONNECTED) {
        smtp_server_tls_done(c);
        return;
    }

    if (what & BEV_EVENT_TIMEOUT) {
        if (c->proxy_wait) {
            smtp_server_free_conn(c, "proxy-header-timeout");
        } else if (c->closing || (what & BEV_EVENT_WRITING)) {
            smtp_server_free_conn(c, "write-timeout");
        } else if (state == SMTP_STATE_PRODUCING) {
            /* The ack timer bounds this wait, so keep watching for a close. */
            bufferevent_enable(bev, EV_READ);
        } else {
            smtp_session_timeout(c->s);
            smtp_server_close(c, "idle-timeout");
        }
        return;
    }

    if (what & BEV_EVENT_ERROR) {
        tls_error = c->tls ? bufferevent_get_openssl_error(bev) : 0;
        if (tls_error != 0) {
            char text[256];

            ERR_error_string_n(tls_error, text, sizeof(text));
            snprintf(reason, sizeof(reason), "tls-error error=%s",
                     log_quote(quoted, sizeof(quoted), text));
        } else {
            snprintf(reason, sizeof(reason), "network-error error=%s",
                     log_quote(quoted, sizeof(quoted),
                               evutil_socket_error_to_string(
                                   EVUTIL_SOCKET_ERROR())));
        }
        smtp_server_free_conn(c, reason);
        return;
    }

    if (what & BEV_EVENT_EOF) {
        /*
         * The client may only have shut down its sending side. A message
         * waiting for Kafka still gets its reply, and the connection closes
         * once the session has nothing left to do.
         */
        c->eof = true;
        if (c->closing)
            smtp_server_free_conn(c, c->reason);
        else
            smtp_server_process(c);
    }
}


/*
 * Feeds buffered input to the session until it stops taking input, then
 * closes the connection if the session or the client is done. May free c.
 */
static void
smtp_server_process(struct smtp_conn *c)
{
    struct evbuffer      *in = bufferevent_get_input(c->bev);
    struct evbuffer      *out = bufferevent_get_output(c->bev);
    struct evbuffer_iovec vec;
    size_t                used;

    if (c->proxy_wait && smtp_server_read_proxy(c) == -1)
        return;     /* incomplete, or c was freed */

    while (!c->closing && smtp_session_wants_input(c->s) &&
           evbuffer_get_length(in) > 0 &&
           evbuffer_get_length(out) < SMTP_SERVER_OUTPUT_MAX) {
        if (evbuffer_peek(in, -1, NULL, &vec, 1) < 1)
            break;
        used = smtp_session_feed(c->s, vec.iov_base, vec.iov_len);
        evbuffer_drain(in, used);
        if (used < vec.iov_len)
            break;
    }
    if (c->closing)
        return;

    if (smtp_session_state(c->s) == SMTP_STATE_STARTTLS && !c->tls) {
        smtp_server_start_tls(c);
        return;
    }
    if (smtp_session_state(c->s) == SMTP_STATE_CLOSED)
        smtp_server_close(c, smtp_session_close_reason(c->s));
    else if (c->eof && smtp_session_state(c->s) != SMTP_STATE_PRODUCING &&
             smtp_session_state(c->s) != SMTP_STATE_AUTH_CHECK &&
             evbuffer_get_length(in) == 0)
        smtp_server_close(c, "client-closed");
    else
        smtp_server_set_timeouts(c);
}


/* Stops reading and frees the connection once its replies are written. */
static void
smtp_server_close(struct smtp_conn *c, const char *reason)
{
    c->closing = true;
    c->reason = reason;
    smtp_server_cancel_auth(c);
    bufferevent_disable(c->bev, EV_READ);
    if (smtp_server_flushed(c))
        smtp_server_free_conn(c, reason);
}


static void
smtp_server_free_conn(struct smtp_conn *c, const char *reason)
{
    struct smtp_server *srv = c->srv;
    struct smtp_loop   *loop = c->loop;

    log_info(smtp_session_msgid(c->s), "disconnect",
             "session=%s reason=%s state=%s", smtp_session_id(c->s),
             reason != NULL ? reason : "unknown",
             smtp_session_state_name(smtp_session_state(c->s)));

    /* librdkafka keeps the pending produce, which must not call back. */
    if (c->pending != NULL)
        ingress_kafka_detach(srv->ik, c->pending, INGRESS_KAFKA_CLIENT_GONE);
    smtp_server_cancel_auth(c);
    event_free(c->ack_timer);
    event_free(c->resume);
    bufferevent_free(c->bev);
    smtp_session_free(c->s);
    pthread_mutex_lock(&srv->lock);
    TAILQ_REMOVE(&loop->conns, c, entry);
    loop->nconns--;
    if (!c->refused)
        srv->nadmitted--;
    pthread_mutex_unlock(&srv->lock);
    ingress_metrics_session(-1);
    free(c);

    if (loop->draining)
        smtp_server_check_drained(loop);
}


/*
 * Starts the drain of every loop: loop 0 at once, the others through
 * their mailboxes. Called from loop 0's thread.
 */
void
smtp_server_drain(struct smtp_server *srv, int grace_ms)
{
    if (srv->draining) {
        log_info(NULL, "drain-in-progress", "connections=%zu",
                 smtp_server_connections(srv));
        return;
    }
    srv->draining = true;
    srv->grace_ms = grace_ms;
    log_info(NULL, "draining", "connections=%zu grace_ms=%d threads=%u",
             smtp_server_connections(srv), grace_ms, srv->nloops);

    /* Closing the socket makes new clients fail fast instead of queueing. */
    evconnlistener_free(srv->listener);
    srv->listener = NULL;
    evtimer_del(srv->accept_timer);

    for (unsigned i = 1; i < srv->nloops; i++) {
        struct smtp_loop *loop = &srv->loops[i];

        pthread_mutex_lock(&srv->lock);
        if (loop->thread_started && !loop->exited)
            mailbox_post(loop->mailbox, &loop->drain_item);
        pthread_mutex_unlock(&srv->lock);
    }
    smtp_server_drain_loop(&srv->loops[0]);
}


static void
smtp_server_on_drain(struct mailbox_item *item)
{
    smtp_server_drain_loop(MAILBOX_OWNER(item, struct smtp_loop, drain_item));
}


/*
 * Sends 421 to the loop's sessions between commands and in DATA, and
 * gives those waiting for Kafka the grace period.
 */
static void
smtp_server_drain_loop(struct smtp_loop *loop)
{
    struct smtp_conn *c, *next;
    int               grace_ms = loop->srv->grace_ms;
    struct timeval    grace = { grace_ms / 1000, (grace_ms % 1000) * 1000 };

    if (loop->draining)
        return;
    loop->draining = true;

    /* Only this thread changes this loop's list; reading needs no lock. */
    for (c = TAILQ_FIRST(&loop->conns); c != NULL; c = next) {
        next = TAILQ_NEXT(c, entry);
        if (c->closing)
            continue;
        /*
         * A client still in its TLS handshake cannot read a reply before
         * the handshake ends, which it may hold off until the grace period
         * is over, so it is cut at once, like one without its PROXY header.
         */
        if (c->proxy_wait ||
            (c->tls && smtp_session_state(c->s) == SMTP_STATE_STARTTLS)) {
            smtp_server_free_conn(c, "shutdown");
            continue;
        }
        smtp_session_shutdown(c->s);
        if (smtp_session_state(c->s) == SMTP_STATE_CLOSED)
            smtp_server_close(c, "shutdown");
    }

    evtimer_add(loop->drain_timer, &grace);
    smtp_server_check_drained(loop);
}


/*
 * First expiry ends the grace period: sessions still waiting for Kafka get
 * 451 and 421. The second, SMTP_SERVER_FLUSH_MS later, cuts connections
 * whose clients do not read their last replies.
 */
static void
smtp_server_on_drain_timer(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_loop *loop = arg;
    struct smtp_conn *c, *next;
    struct timeval    flush = {
        SMTP_SERVER_FLUSH_MS / 1000, (SMTP_SERVER_FLUSH_MS % 1000) * 1000
    };
    size_t            waiting = 0;

    if (!loop->grace_over) {
        loop->grace_over = true;
        for (c = TAILQ_FIRST(&loop->conns); c != NULL; c = next) {
            next = TAILQ_NEXT(c, entry);
            if (c->pending == NULL)
                continue;
            waiting++;
            smtp_server_stop_waiting(c, SMTP_PRODUCE_FAILED);
        }
        log_warn(NULL, "drain-grace-expired", "thread=%u waiting=%zu "
                 "connections=%zu", loop->index, waiting, loop->nconns);
        evtimer_add(loop->drain_timer, &flush);
        return;
    }

    while ((c = TAILQ_FIRST(&loop->conns)) != NULL)
        smtp_server_free_conn(c, "shutdown");
}


/* Ends the loop once its last connection is gone. */
static void
smtp_server_check_drained(struct smtp_loop *loop)
{
    if (loop->nconns > 0)
        return;
    evtimer_del(loop->drain_timer);
    log_debug(NULL, "loop-drained", "thread=%u", loop->index);
    event_base_loopexit(loop->base, NULL);
}

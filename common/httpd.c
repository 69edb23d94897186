#include "httpd.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* Limits on what a client may send; the listener takes no bodies. */
#define HTTPD_MAX_HEADERS   8192
#define HTTPD_MAX_BODY      1024
#define HTTPD_TIMEOUT_S     10

struct httpd {
    struct metrics            *reg;
    struct event_base         *base;
    struct evhttp             *http;
    struct evhttp_bound_socket *bound;
    struct event              *wakeup;
    int                        pipe[2];     /* a byte on [1] stops the loop */
    pthread_t                  thread;
    int                        port;
    _Atomic int64_t            alive_ms;    /* monotonic; 0 = never */
    pthread_mutex_t            lock;        /* guards not_ready and page */
    char                      *not_ready;   /* NULL while ready */
    char                      *page;
};

static void httpd_on_request(struct evhttp_request *req, void *arg);
static void httpd_on_wakeup(evutil_socket_t fd, short what, void *arg);
static void *httpd_thread(void *arg);
static void httpd_reply(struct evhttp_request *req, int code,
                        const char *type, const char *body);
static int httpd_split(const char *listen, char *host, size_t hostlen,
                       int *port);


static int
httpd_split(const char *listen, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(listen, ':');
    const char *start = listen;
    size_t      n;
    char       *end;
    long        value;

    if (colon == NULL)
        return -1;
    n = (size_t)(colon - listen);
    if (n >= 2 && listen[0] == '[' && listen[n - 1] == ']') {
        start++;
        n -= 2;
    }
    if (n == 0 || n >= hostlen)
        return -1;
    memcpy(host, start, n);
    host[n] = '\0';
    value = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || value < 0 || value > 65535)
        return -1;
    *port = (int)value;
    return 0;
}


struct httpd *
httpd_start(const char *listen, struct metrics *reg, char *err,
            size_t errlen)
{
    struct httpd           *h = xcalloc(1, sizeof(*h));
    struct sockaddr_storage ss;
    socklen_t               sslen = sizeof(ss);
    char                    host[256];
    int                     port;

    h->reg = reg;
    h->pipe[0] = h->pipe[1] = -1;
    h->not_ready = xstrdup("starting");
    pthread_mutex_init(&h->lock, NULL);
    if (httpd_split(listen, host, sizeof(host), &port) == -1) {
        snprintf(err, errlen, "invalid listen address '%s': expected "
                 "host:port", listen);
        goto fail;
    }
    if ((h->base = event_base_new()) == NULL ||
        (h->http = evhttp_new(h->base)) == NULL) {
        snprintf(err, errlen, "creating the HTTP listener failed");
        goto fail;
    }
    evhttp_set_max_headers_size(h->http, HTTPD_MAX_HEADERS);
    evhttp_set_max_body_size(h->http, HTTPD_MAX_BODY);
    evhttp_set_timeout(h->http, HTTPD_TIMEOUT_S);
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(h->http, httpd_on_request, h);
    if ((h->bound = evhttp_bind_socket_with_handle(h->http, host,
                                                   (ev_uint16_t)port)) ==
        NULL) {
        snprintf(err, errlen, "listening on %s failed (address in use or "
                 "not local?)", listen);
        goto fail;
    }
    if (getsockname(evhttp_bound_socket_get_fd(h->bound),
                    (struct sockaddr *)&ss, &sslen) == 0)
        h->port = ss.ss_family == AF_INET6
                      ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                      : ntohs(((struct sockaddr_in *)&ss)->sin_port);

    /* The thread owns the base from here; a byte on the pipe stops it. */
    if (pipe(h->pipe) == -1 ||
        (h->wakeup = event_new(h->base, h->pipe[0], EV_READ,
                               httpd_on_wakeup, h)) == NULL ||
        event_add(h->wakeup, NULL) == -1) {
        snprintf(err, errlen, "creating the listener's wake-up pipe failed");
        goto fail;
    }
    if (pthread_create(&h->thread, NULL, httpd_thread, h) != 0) {
        snprintf(err, errlen, "starting the listener thread failed");
        goto fail;
    }
    return h;

fail:
    if (h->wakeup != NULL)
        event_free(h->wakeup);
    if (h->pipe[0] != -1) {
        close(h->pipe[0]);
        close(h->pipe[1]);
    }
    if (h->http != NULL)
        evhttp_free(h->http);
    if (h->base != NULL)
        event_base_free(h->base);
    pthread_mutex_destroy(&h->lock);
    free(h->not_ready);
    free(h);
    return NULL;
}


void
httpd_stop(struct httpd *h)
{
    char byte = 0;

    if (h == NULL)
        return;
    if (write(h->pipe[1], &byte, 1) != 1)
        log_warn(NULL, "httpd-stop-failed", "reason=\"write to the wake-up "
                 "pipe failed\"");
    pthread_join(h->thread, NULL);
    event_free(h->wakeup);
    close(h->pipe[0]);
    close(h->pipe[1]);
    evhttp_free(h->http);
    event_base_free(h->base);
    pthread_mutex_destroy(&h->lock);
    free(h->not_ready);
    free(h->page);
    free(h);
}


int
httpd_port(const struct httpd *h)
{
    return h != NULL ? h->port : 0;
}


void
httpd_set_alive(struct httpd *h)
{
    if (h != NULL)
        atomic_store(&h->alive_ms, util_monotonic_ms());
}


void
httpd_set_ready(struct httpd *h, const char *reason)
{
    char *copy = NULL;

    if (h == NULL)
        return;
    if (reason != NULL && reason[0] != '\0') {
        copy = xstrdup(reason);

        /* The body is one line. */
        for (char *p = copy; *p != '\0'; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
    }
    pthread_mutex_lock(&h->lock);
    free(h->not_ready);
    h->not_ready = copy;
    pthread_mutex_unlock(&h->lock);
}


void
httpd_set_page(struct httpd *h, const char *html)
{
    char *copy;

    if (h == NULL)
        return;
    copy = html != NULL ? xstrdup(html) : NULL;
    pthread_mutex_lock(&h->lock);
    free(h->page);
    h->page = copy;
    pthread_mutex_unlock(&h->lock);
}


static void *
httpd_thread(void *arg)
{
    struct httpd *h = arg;

    event_base_dispatch(h->base);
    return NULL;
}


static void
httpd_on_wakeup(evutil_socket_t fd, short what, void *arg)
{
    struct httpd *h = arg;

    event_base_loopbreak(h->base);
}


static void
httpd_reply(struct evhttp_request *req, int code, const char *type,
            const char *body)
{
    struct evbuffer *out = evbuffer_new();
    const char      *reason;

    switch (code) {
    case 200: reason = "OK"; break;
    case 404: reason = "Not Found"; break;
    default: reason = "Service Unavailable"; break;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      type);
    evhttp_add_header(evhttp_request_get_output_headers(req),
                      "Cache-Control", "no-store");
    if (out != NULL)
        evbuffer_add(out, body, strlen(body));
    evhttp_send_reply(req, code, reason, out);
    if (out != NULL)
        evbuffer_free(out);
}


static void
httpd_on_request(struct evhttp_request *req, void *arg)
{
    static const char       text[] = "text/plain; charset=utf-8";
    struct httpd           *h = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char             *path = uri != NULL ? evhttp_uri_get_path(uri)
                                               : NULL;
    char                   *body = NULL, line[1100];
    int64_t                 alive;

    if (path == NULL || path[0] == '\0')
        path = "/";
    if (strcmp(path, "/metrics") == 0) {
        body = metrics_render(h->reg, NULL);
        httpd_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8",
                    body);
    } else if (strcmp(path, "/healthz") == 0) {
        alive = atomic_load(&h->alive_ms);
        if (alive != 0 && util_monotonic_ms() - alive <= HTTPD_ALIVE_MS)
            httpd_reply(req, 200, text, "ok\n");
        else
            httpd_reply(req, 503, text, "the main loop did not run in the "
                        "last 30 s\n");
    } else if (strcmp(path, "/readyz") == 0) {
        pthread_mutex_lock(&h->lock);
        if (h->not_ready == NULL)
            snprintf(line, sizeof(line), "ready\n");
        else
            snprintf(line, sizeof(line), "not ready: %s\n", h->not_ready);
        pthread_mutex_unlock(&h->lock);
        httpd_reply(req, strncmp(line, "ready", 5) == 0 ? 200 : 503, text,
                    line);
    } else if (strcmp(path, "/") == 0) {
        pthread_mutex_lock(&h->lock);
        body = h->page != NULL ? xstrdup(h->page) : NULL;
        pthread_mutex_unlock(&h->lock);
        if (body != NULL)
            httpd_reply(req, 200, "text/html; charset=utf-8", body);
        else
            httpd_reply(req, 404, text, "not found\n");
    } else {
        httpd_reply(req, 404, text, "not found\n");
    }
    free(body);
}

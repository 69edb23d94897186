/*
 * httpd: a daemon's monitoring listener. It serves /metrics from a
 * metrics registry, /healthz, /readyz and an optional HTML page at /,
 * from its own thread with its own libevent event_base, so the daemon's
 * loop needs none.
 *
 *   /healthz  200 while the daemon called httpd_set_alive() within the
 *             last HTTPD_ALIVE_MS, otherwise 503
 *   /readyz   200 while the daemon reports itself ready, otherwise 503
 *             with the reason as a one-line body
 *
 * Every function accepts a NULL server and does nothing, so a daemon whose
 * listener is off calls them unchanged.
 */
#ifndef FERRY_HTTPD_H
#define FERRY_HTTPD_H

#include <stddef.h>

#include "metrics.h"

#define HTTPD_ALIVE_MS 30000

struct httpd;

/*
 * Binds listen ("host:port", port 0 picks a free one) and starts the
 * thread. reg stays owned by the caller and must outlive the server.
 * Returns NULL and fills err on failure.
 */
struct httpd *httpd_start(const char *listen, struct metrics *reg,
                          char *err, size_t errlen);

/* Stops the thread, closes the socket and frees h. */
void httpd_stop(struct httpd *h);

/* Returns the bound port. */
int httpd_port(const struct httpd *h);

/* Records that the daemon's loop ran just now. */
void httpd_set_alive(struct httpd *h);

/* Marks the daemon ready (reason NULL or "") or not ready for reason. */
void httpd_set_ready(struct httpd *h, const char *reason);

/* Replaces the HTML page served at /; NULL makes / answer 404. */
void httpd_set_page(struct httpd *h, const char *html);

#endif

/*
 * smtp_server: the listening socket and one bufferevent per client, which
 * connect the SMTP sessions to the network and to the Kafka producer.
 *
 * A connection owns its session. While the session waits for Kafka, the
 * connection keeps a pointer to the pending produce and runs an ack timer.
 * The first of delivery report, timer, client gone and shutdown ends the
 * wait. Every path except the report detaches the connection from the
 * pending produce, so a late report never touches a freed session. An
 * AUTH password check on the smtp_auth_pool threads is handled the same
 * way: closing the connection cancels it.
 */
#ifndef FERRY_SMTP_SERVER_H
#define FERRY_SMTP_SERVER_H

#include <event2/event.h>
#include <stddef.h>

#include "config.h"
#include "ingress_durability.h"
#include "ingress_kafka.h"
#include "smtp_auth_pool.h"
#include "smtp_tls.h"

struct smtp_server;

/* Checks the listen address and host name without binding. */
int smtp_server_check(const struct config *cfg, char *err, size_t errlen);

/*
 * Binds ingress.listen and starts accepting. tls, which must outlive the
 * server, serves STARTTLS; NULL when TLS is not configured. auth_pool,
 * which must outlive the server too, checks AUTH passwords; with NULL
 * every AUTH gets 454 4.7.0.
 */
struct smtp_server *smtp_server_new(const struct config *cfg,
                                    struct event_base *base,
                                    struct ingress_kafka *ik,
                                    struct smtp_tls *tls,
                                    struct smtp_auth_pool *auth_pool,
                                    char *err, size_t errlen);

/* Closes every connection at once and logs each disconnect. */
void smtp_server_free(struct smtp_server *srv);

/*
 * Starts a shutdown: stops accepting, sends 421 to sessions between
 * commands and in DATA, and gives sessions waiting for Kafka grace_ms to
 * get their real reply before they get 451. Exits the event loop once
 * every connection is closed.
 */
void smtp_server_drain(struct smtp_server *srv, int grace_ms);

size_t smtp_server_connections(const struct smtp_server *srv);

/*
 * Makes new clients get 421 4.3.0 while monitor reports the topics
 * unsafe. monitor, which may be NULL, must outlive the server.
 */
void smtp_server_set_durability(struct smtp_server *srv,
                                const struct ingress_durability_monitor *m);

#endif

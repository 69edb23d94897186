/*
 * smtp_server: the listening socket and one bufferevent per client, which
 * connect the SMTP sessions to the network and to the Kafka producer.
 *
 * The server runs several event loops, each on a thread of its own. Loop 0
 * is the caller's base and thread. It accepts every connection and hands
 * them to the loops in turn through their mailboxes, and a connection
 * stays on the loop it was handed to. The connection limits count the
 * connections of every loop.
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
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ingress_durability.h"
#include "ingress_kafka.h"
#include "smtp_auth_pool.h"
#include "smtp_tls.h"

struct smtp_server;

/* Checks the listen address and host name without binding. */
int smtp_server_check(const struct config *cfg, char *err, size_t errlen);

/*
 * Binds ingress.listen and sets up nloops loops, loop 0 on base, which
 * accepts once the caller runs base. tls, which must outlive the server,
 * serves STARTTLS; NULL when TLS is not configured. auth_pool checks AUTH
 * passwords; with NULL every AUTH gets 454 4.7.0.
 */
struct smtp_server *smtp_server_new(const struct config *cfg,
                                    struct event_base *base,
                                    unsigned nloops,
                                    struct ingress_kafka *ik,
                                    struct smtp_tls *tls,
                                    struct smtp_auth_pool *auth_pool,
                                    char *err, size_t errlen);

/* Starts the threads of loops 1 and up. */
int smtp_server_start(struct smtp_server *srv, char *err, size_t errlen);

/*
 * Starts a shutdown of every loop: stops accepting, sends 421 to sessions
 * between commands and in DATA, and gives sessions waiting for Kafka
 * grace_ms to get their real reply before they get 451. Each loop exits
 * once its last connection is closed; smtp_server_join() waits for the
 * threads. Called from loop 0's thread, as are the functions below
 * unless their comment states otherwise.
 */
void smtp_server_drain(struct smtp_server *srv, int grace_ms);

/* Makes every loop exit at once, connections left open. */
void smtp_server_stop(struct smtp_server *srv);

/* Waits for the threads of loops 1 and up to exit. */
void smtp_server_join(struct smtp_server *srv);

/*
 * Runs fn(arg) while the other loops wait, so that fn may change what
 * their sessions read, such as the TLS context or the credentials.
 */
void smtp_server_pause(struct smtp_server *srv, void (*fn)(void *arg),
                       void *arg);

/*
 * Waits for the threads, then closes every connection at once and logs
 * each disconnect. No loop posts or calls back afterwards, except the
 * AUTH pool's running checks, which that pool's free waits for.
 */
void smtp_server_disconnect(struct smtp_server *srv);

/*
 * Disconnects, then frees the loops and their mailboxes: the AUTH pool
 * must be freed before.
 */
void smtp_server_free(struct smtp_server *srv);

/*
 * Returns whether every loop that has not exited ran within max_age_ms,
 * for the liveness check. Safe from any thread.
 */
bool smtp_server_alive(struct smtp_server *srv, int64_t max_age_ms);

/* Counts the connections of every loop; safe from any thread. */
size_t smtp_server_connections(struct smtp_server *srv);

/*
 * Makes new clients get 421 4.3.0 while monitor reports the topics
 * unsafe. monitor, which may be NULL, must outlive the server. Called
 * before smtp_server_start().
 */
void smtp_server_set_durability(struct smtp_server *srv,
                                const struct ingress_durability_monitor *m);

#endif

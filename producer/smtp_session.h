/*
 * smtp_session: the ESMTP dialogue of one client, without sockets.
 *
 * The caller feeds the octets it read, in pieces of any size. The session
 * sends replies and requests that a message be produced through the
 * callbacks of struct smtp_session_ops. Commands are handled in order from
 * the buffered input (RFC 2920 PIPELINING). While a message waits for
 * Kafka, smtp_session_feed() consumes nothing, so replies to commands
 * pipelined behind the final dot follow the final-dot reply. The caller
 * keeps the unconsumed octets and feeds them again after
 * smtp_session_produce_done(). The same applies while an AUTH password is
 * checked, until smtp_session_auth_done().
 *
 * The session never frees itself. After it reaches SMTP_STATE_CLOSED the
 * caller flushes the replies, closes the connection and calls
 * smtp_session_free(), which discards any open transaction.
 */
#ifndef FERRY_SMTP_SESSION_H
#define FERRY_SMTP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config.h"
#include "envelope.h"

enum smtp_state {
    SMTP_STATE_INIT,        /* created, greeting not sent yet */
    SMTP_STATE_GREETED,     /* waiting for EHLO or HELO */
    SMTP_STATE_READY,       /* EHLO or HELO done, no transaction */
    SMTP_STATE_AUTH,        /* 334 sent to AUTH, waiting for a response */
    SMTP_STATE_MAIL,        /* MAIL accepted, no recipient accepted yet */
    SMTP_STATE_RCPT,        /* at least one recipient accepted */
    SMTP_STATE_DATA,        /* reading message text after 354 */
    SMTP_STATE_BDAT,        /* reading the octets of a BDAT chunk */
    SMTP_STATE_AUTH_CHECK,  /* AUTH response read, password being checked */
    SMTP_STATE_PRODUCING,   /* final dot read, waiting for Kafka */
    SMTP_STATE_STARTTLS,    /* 220 sent to STARTTLS, waiting for TLS */
    SMTP_STATE_CLOSED       /* 221 or 421 sent, so the caller closes */
};

/* Outcome of a produce request. */
enum smtp_produce_status {
    SMTP_PRODUCE_PENDING,   /* started; smtp_session_produce_done() follows */
    SMTP_PRODUCE_OK,        /* Kafka acknowledged the record */
    SMTP_PRODUCE_FAILED,    /* failed or not started: 451 4.3.0 */
    SMTP_PRODUCE_TIMEOUT,   /* no acknowledgement in time: 451 4.4.1 */
    SMTP_PRODUCE_TOO_LARGE  /* larger than a record may be: 552 5.3.4 */
};

/* What the session waits for, which decides the timeout that applies. */
enum smtp_wait {
    SMTP_WAIT_COMMAND,          /* a command, or the reply to the greeting */
    SMTP_WAIT_DATA_INITIATION,  /* the first octet of text after 354 */
    SMTP_WAIT_DATA_BLOCK,       /* more text, or the final dot */
    SMTP_WAIT_DATA_TERMINATION  /* Kafka, to reply to the final dot */
};

/* Reasons for turning a client away instead of greeting it. */
enum smtp_refusal {
    SMTP_REFUSE_SERVER_FULL,    /* ingress.max_connections reached */
    SMTP_REFUSE_CLIENT_FULL,    /* ingress.max_connections_per_client */
    SMTP_REFUSE_NOT_DURABLE     /* the topics failed the durability check */
};

struct smtp_session_ops {
    /* Queues reply octets for the client. */
    void (*send)(void *arg, const char *data, size_t len);

    /*
     * Queues one record of a message to topic: called for chunk_index 0
     * up to chunk_count - 1, in order. The callee copies what it keeps:
     * env is freed when this returns. Returns SMTP_PRODUCE_PENDING when
     * the chunk was queued; after the last chunk the outcome of the whole
     * message comes through smtp_session_produce_done(). Any other value
     * ends the message at once: the session queues no more chunks and
     * replies with it, and the callee has already forgotten the chunks
     * queued before. It must not call back into the session.
     */
    enum smtp_produce_status (*produce)(void *arg, const char *topic,
                                        const struct envelope *env);

    /*
     * Starts comparing an AUTH password with a crypt(3) hash. The callee
     * copies both: the session wipes password when this returns. Returns
     * 0 when the check was queued, and its outcome comes through
     * smtp_session_auth_done(). Returns -1 when too many checks wait, and
     * the client gets 454 4.7.0. It must not call back into the session.
     */
    int (*auth)(void *arg, const char *password, const char *hash);
};

struct smtp_session;

/*
 * Creates a session for a client at address client; cfg must outlive it.
 * Nothing is sent until smtp_session_start().
 */
struct smtp_session *smtp_session_new(const struct config *cfg,
                                      const struct sockaddr *client,
                                      const struct smtp_session_ops *ops,
                                      void *arg);
void smtp_session_free(struct smtp_session *s);

/*
 * Replaces the client address before smtp_session_start(), with the one
 * a PROXY protocol header gave. The policy, the log and the Received
 * header use it from then on.
 */
void smtp_session_set_client(struct smtp_session *s,
                             const struct sockaddr *client);

/* Sends the 220 greeting. */
void smtp_session_start(struct smtp_session *s);

/*
 * Sends a 421 reply in place of the greeting and closes the session, so
 * the client retries later: 4.7.0 when a connection limit is reached,
 * 4.3.0 while the topics are not durable.
 */
void smtp_session_refuse(struct smtp_session *s, enum smtp_refusal why);

/*
 * Handles client octets. Returns how many were consumed: all of them,
 * unless the session started waiting for Kafka or closed on the way.
 */
size_t smtp_session_feed(struct smtp_session *s, const void *buf,
                         size_t len);

/* Delivers the outcome of a pending produce and sends the final reply. */
void smtp_session_produce_done(struct smtp_session *s,
                               enum smtp_produce_status status);

/*
 * Delivers the outcome of a pending password check and replies: 235, or
 * 535 for a wrong password or an unknown user, a 5xx reply that counts
 * against ingress.max_errors, so it bounds the guesses per session. A
 * SIGHUP that replaced the user's hash during the check gets 454 4.7.0.
 */
void smtp_session_auth_done(struct smtp_session *s, bool match);

/*
 * Ends the session for a server shutdown: 421 4.3.2 now, or right after
 * the final-dot reply when a message is waiting for Kafka. A transaction
 * in the middle of DATA is dropped.
 */
void smtp_session_shutdown(struct smtp_session *s);

/*
 * Starts over after a STARTTLS handshake: the session clears the EHLO
 * name, as RFC 3207 section 4.2 requires, and records protocol and cipher
 * for the Received header and the envelope. The caller discards every
 * octet the client sent before the handshake ended.
 */
void smtp_session_tls_started(struct smtp_session *s, const char *protocol,
                              const char *cipher);

/* Ends the session because the client was idle too long: 421 4.4.2. */
void smtp_session_timeout(struct smtp_session *s);

enum smtp_state smtp_session_state(const struct smtp_session *s);
enum smtp_wait smtp_session_wait(const struct smtp_session *s);
const char *smtp_session_state_name(enum smtp_state state);
bool smtp_session_wants_input(const struct smtp_session *s);

/* Returns the 16 hex digits that tag the session's log lines. */
const char *smtp_session_id(const struct smtp_session *s);

/* Returns the user name the client authenticated as, or NULL. */
const char *smtp_session_auth_user(const struct smtp_session *s);

/* Returns the client's IP address as text. */
const char *smtp_session_client(const struct smtp_session *s);

/* Returns the envelope id of the open transaction, or NULL. */
const char *smtp_session_msgid(const struct smtp_session *s);

/* Returns why the session closed ("quit", "shutdown", ...), or NULL. */
const char *smtp_session_close_reason(const struct smtp_session *s);

#endif

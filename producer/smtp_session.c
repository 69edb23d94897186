#include "smtp_session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ingress_metrics.h"
#include "log.h"
#include "smtp_address.h"
#include "smtp_auth.h"
#include "smtp_data.h"
#include "util.h"

/* Maximum command line length, CRLF included (RFC 5321 4.5.3.1.4). */
#define SMTP_LINE_MAX   512

/*
 * Maximum length of an AUTH command or a SASL response line, CRLF
 * included (RFC 4954 section 4).
 */
#define SMTP_AUTH_LINE_MAX 12288

/* Maximum length of a reply line we write, CRLF excluded. */
#define SMTP_REPLY_MAX  512

/* Maximum length of the EHLO or HELO argument, a domain or literal. */
#define SMTP_HELO_MAX   255

/*
 * Room for the Received header the ingress adds before a message. The
 * header holds at most a HELO argument, an address literal, the host name,
 * an envelope id, a recipient and a date, about 1 KB in all. The default
 * ingress.max_message_size leaves this much below the SES size limit.
 */
#define SMTP_SESSION_TRACE_MAX 4096

#define SMTP_SENDER_REJECTED \
    "550 5.7.1 sender domain not allowed to relay through this server"

struct smtp_transaction {
    char              id[ENVELOPE_ID_LEN + 1];      /* "" when none */
    const struct org *org;
    char             *sender;
    char            **rcpts;
    size_t            nrcpts;
    size_t            rcpts_rejected;
    bool              bdat;         /* the text comes in BDAT chunks */
    struct smtp_data  data;
    int64_t           dot_ms;       /* monotonic, at the final dot */
    uint64_t          size;         /* bytes of the queued message */
};

/* The BDAT chunk being read (RFC 3030). */
struct smtp_chunk {
    uint64_t          remaining;    /* octets still to read */
    uint64_t          size;
    bool              last;
    bool              discard;      /* rejected: read and drop the octets */
    enum smtp_state   resume;       /* state after a discarded chunk */
};

/* The AUTH step that the next SASL response line belongs to. */
enum smtp_auth_step {
    SMTP_AUTH_PLAIN,            /* PLAIN, after an empty challenge */
    SMTP_AUTH_LOGIN_USER,       /* LOGIN, after "Username:" */
    SMTP_AUTH_LOGIN_PASSWORD    /* LOGIN, after "Password:" */
};

struct smtp_session {
    char                           id[17];
    enum smtp_state                state;
    const struct config           *cfg;
    const struct smtp_session_ops *ops;
    void                          *arg;

    struct sockaddr_storage        client;
    char                           client_text[INET6_ADDRSTRLEN];
    char                          *helo;
    bool                           esmtp;
    char                           tls[128];    /* "" until STARTTLS */

    char                           line[SMTP_AUTH_LINE_MAX];
    size_t                         line_len;
    bool                           line_too_long;

    enum smtp_auth_step            auth_step;
    char                           auth_login_user[SMTP_AUTH_FIELD_MAX + 1];
    /* Pending check of SMTP_STATE_AUTH_CHECK: user, mechanism, hash. */
    char                           auth_check_user[SMTP_AUTH_FIELD_MAX + 1];
    const char                    *auth_mechanism;
    char                          *auth_hash;
    bool                           auth_known;  /* the user exists */
    char                          *auth_user;   /* NULL until AUTH succeeds */
    const struct org              *auth_org;

    int64_t                        errors;      /* 5xx replies sent */
    int64_t                        commands;    /* command lines read */
    bool                           draining;
    const char                    *close_reason;
    struct smtp_transaction        tx;
    struct smtp_chunk              chunk;
};

struct smtp_command {
    const char *name;
    void      (*handler)(struct smtp_session *s, char *args);
};

static void smtp_session_set_state(struct smtp_session *s,
                                   enum smtp_state state);
static void smtp_session_send(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void smtp_session_reject(struct smtp_session *s, const char *reason,
                                const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void smtp_session_close(struct smtp_session *s, const char *reason,
                               const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void smtp_session_clear_transaction(struct smtp_session *s);
static void smtp_session_end_transaction(struct smtp_session *s);
static size_t smtp_session_feed_line(struct smtp_session *s,
                                     const unsigned char *p, size_t len);
static size_t smtp_session_feed_data(struct smtp_session *s,
                                     const unsigned char *p, size_t len);
static size_t smtp_session_feed_chunk(struct smtp_session *s,
                                      const unsigned char *p, size_t len);
static void smtp_session_end_chunk(struct smtp_session *s);
static void smtp_session_cmd_bdat(struct smtp_session *s, char *args);
static void smtp_session_handle_line(struct smtp_session *s);
static void smtp_session_check_errors(struct smtp_session *s);
static bool smtp_session_is_auth_line(const struct smtp_session *s);
static bool smtp_session_valid_helo(const char *name);
static void smtp_session_greet(struct smtp_session *s, char *args,
                               bool esmtp);
static void smtp_session_reject_address(struct smtp_session *s,
                                        enum smtp_address_status status,
                                        bool sender);
static int smtp_session_mail_params(struct smtp_session *s, char *params);
static int smtp_session_check_sender(struct smtp_session *s,
                                     const char *mailbox,
                                     const struct org **org);
static void smtp_session_end_data(struct smtp_session *s);
static int smtp_session_reject_data(struct smtp_session *s);
static size_t smtp_session_trace_header(struct smtp_session *s,
                                        int64_t now_ms, char *buf,
                                        size_t size);
static void smtp_session_digest(struct smtp_session *s, const char *trace,
                                size_t trace_len, unsigned char *sha256);
static enum smtp_produce_status
smtp_session_produce_chunks(struct smtp_session *s, const char *topic,
                            struct envelope *env, const char *trace,
                            size_t trace_len);
static void smtp_session_finish(struct smtp_session *s,
                                enum smtp_produce_status status);
static void smtp_session_cmd_ehlo(struct smtp_session *s, char *args);
static void smtp_session_cmd_helo(struct smtp_session *s, char *args);
static void smtp_session_cmd_mail(struct smtp_session *s, char *args);
static int smtp_session_add_rcpt(struct smtp_session *s, char *args);
static void smtp_session_cmd_rcpt(struct smtp_session *s, char *args);
static void smtp_session_cmd_data(struct smtp_session *s, char *args);
static void smtp_session_cmd_rset(struct smtp_session *s, char *args);
static void smtp_session_cmd_noop(struct smtp_session *s, char *args);
static void smtp_session_cmd_quit(struct smtp_session *s, char *args);
static void smtp_session_cmd_vrfy(struct smtp_session *s, char *args);
static void smtp_session_cmd_help(struct smtp_session *s, char *args);
static void smtp_session_cmd_unimplemented(struct smtp_session *s,
                                           char *args);
static bool smtp_session_tls_offered(const struct smtp_session *s);
static bool smtp_session_auth_offered(const struct smtp_session *s);
static void smtp_session_cmd_auth(struct smtp_session *s, char *args);
static void smtp_session_auth_response(struct smtp_session *s, char *line);
static void smtp_session_auth_abort(struct smtp_session *s);
static void smtp_session_auth_finish(struct smtp_session *s,
                                     const char *mechanism, const char *user,
                                     char *password);
static void smtp_session_auth_end_check(struct smtp_session *s);
static void smtp_session_cmd_starttls(struct smtp_session *s, char *args);

static const struct smtp_command smtp_commands[] = {
    { "EHLO", smtp_session_cmd_ehlo },
    { "HELO", smtp_session_cmd_helo },
    { "MAIL", smtp_session_cmd_mail },
    { "RCPT", smtp_session_cmd_rcpt },
    { "DATA", smtp_session_cmd_data },
    { "RSET", smtp_session_cmd_rset },
    { "NOOP", smtp_session_cmd_noop },
    { "QUIT", smtp_session_cmd_quit },
    { "VRFY", smtp_session_cmd_vrfy },
    { "HELP", smtp_session_cmd_help },
    /* Known extensions and commands that this server does not offer. */
    { "AUTH", smtp_session_cmd_auth },
    { "BDAT", smtp_session_cmd_bdat },
    { "ETRN", smtp_session_cmd_unimplemented },
    { "EXPN", smtp_session_cmd_unimplemented },
    { "STARTTLS", smtp_session_cmd_starttls },
    { "TURN", smtp_session_cmd_unimplemented },
};

static const char *const smtp_state_names[] = {
    [SMTP_STATE_INIT] = "init",
    [SMTP_STATE_GREETED] = "greeted",
    [SMTP_STATE_READY] = "ready",
    [SMTP_STATE_AUTH] = "auth",
    [SMTP_STATE_MAIL] = "mail",
    [SMTP_STATE_RCPT] = "rcpt",
    [SMTP_STATE_DATA] = "data",
    [SMTP_STATE_BDAT] = "bdat",
    [SMTP_STATE_AUTH_CHECK] = "auth-check",
    [SMTP_STATE_PRODUCING] = "producing",
    [SMTP_STATE_STARTTLS] = "starttls",
    [SMTP_STATE_CLOSED] = "closed",
};


struct smtp_session *
smtp_session_new(const struct config *cfg, const struct sockaddr *client,
                 const struct smtp_session_ops *ops, void *arg)
{
    struct smtp_session *s = xcalloc(1, sizeof(*s));
    unsigned char        raw[8];
    static uint64_t      counter;

    s->cfg = cfg;
    s->ops = ops;
    s->arg = arg;
    s->state = SMTP_STATE_INIT;

    /* The id only distinguishes sessions in the log, so a counter will do. */
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        uint64_t n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);

        memcpy(raw, &n, sizeof(raw));
    }
    util_hex(raw, sizeof(raw), s->id);
    smtp_session_set_client(s, client);
    return s;
}


void
smtp_session_set_client(struct smtp_session *s,
                        const struct sockaddr *client)
{
    memset(&s->client, 0, sizeof(s->client));
    if (client->sa_family == AF_INET6) {
        memcpy(&s->client, client, sizeof(struct sockaddr_in6));
        inet_ntop(AF_INET6,
                  &((const struct sockaddr_in6 *)(const void *)client)
                       ->sin6_addr,
                  s->client_text, sizeof(s->client_text));
    } else if (client->sa_family == AF_INET) {
        memcpy(&s->client, client, sizeof(struct sockaddr_in));
        inet_ntop(AF_INET,
                  &((const struct sockaddr_in *)(const void *)client)
                       ->sin_addr,
                  s->client_text, sizeof(s->client_text));
    } else {
        s->client.ss_family = client->sa_family;
        snprintf(s->client_text, sizeof(s->client_text), "unknown");
    }
}


void
smtp_session_free(struct smtp_session *s)
{
    if (s == NULL)
        return;

    smtp_session_clear_transaction(s);
    smtp_auth_wipe(s->line, sizeof(s->line));
    smtp_auth_wipe(s->auth_login_user, sizeof(s->auth_login_user));
    smtp_auth_wipe(s->auth_check_user, sizeof(s->auth_check_user));
    free(s->auth_hash);
    free(s->auth_user);
    free(s->helo);
    free(s);
}


void
smtp_session_start(struct smtp_session *s)
{
    smtp_session_set_state(s, SMTP_STATE_GREETED);
    smtp_session_send(s, "220 %s ESMTP Ferry", s->cfg->ingress_hostname);
}


void
smtp_session_refuse(struct smtp_session *s, enum smtp_refusal why)
{
    const char *host = s->cfg->ingress_hostname;

    switch (why) {
    case SMTP_REFUSE_SERVER_FULL:
        smtp_session_close(s, "too-many-connections",
                           "421 4.7.0 %s too many connections, try again "
                           "later", host);
        break;
    case SMTP_REFUSE_CLIENT_FULL:
        smtp_session_close(s, "too-many-connections-from-client",
                           "421 4.7.0 %s too many connections from %s, try "
                           "again later", host, s->client_text);
        break;
    case SMTP_REFUSE_NOT_DURABLE:
        smtp_session_close(s, "not-durable",
                           "421 4.3.0 %s queue cannot store mail safely "
                           "now, try again later", host);
        break;
    }
}


/* Changes the state. No other code does, so the debug trace is complete. */
static void
smtp_session_set_state(struct smtp_session *s, enum smtp_state state)
{
    log_debug(smtp_session_msgid(s), "state", "session=%s from=%s to=%s",
              s->id, smtp_state_names[s->state], smtp_state_names[state]);
    s->state = state;
}


/* Sends one reply line. The format gives the text without CRLF. */
static void
smtp_session_send(struct smtp_session *s, const char *fmt, ...)
{
    char    line[SMTP_REPLY_MAX + 2];
    va_list ap;
    int     n;

    va_start(ap, fmt);
    n = vsnprintf(line, SMTP_REPLY_MAX + 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > SMTP_REPLY_MAX)
        n = SMTP_REPLY_MAX;

    if (log_enabled(LOG_LEVEL_TRACE)) {
        char quoted[SMTP_REPLY_MAX * 4];

        log_trace(smtp_session_msgid(s), "reply", "session=%s text=%s",
                  s->id, log_quote(quoted, sizeof(quoted), line));
    }
    line[n++] = '\r';
    line[n++] = '\n';
    s->ops->send(s->arg, line, (size_t)n);
}


/*
 * Sends a 4xx or 5xx reply and logs it with a short reason token. The only
 * client data in reply texts are checked domains and the client address,
 * which contain no quotes, so the text is logged inside quotes as is.
 */
static void
smtp_session_reject(struct smtp_session *s, const char *reason,
                    const char *fmt, ...)
{
    char    text[SMTP_REPLY_MAX + 1];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);

    if (text[0] == '5')
        s->errors++;
    log_info(smtp_session_msgid(s), "rejected",
             "session=%s reply=\"%s\" reason=%s", s->id, text, reason);
    smtp_session_send(s, "%s", text);
}


/*
 * Sends a final reply (221 or 421) and closes the session. A transaction
 * still open is dropped, and logged so its msgid has a last line.
 */
static void
smtp_session_close(struct smtp_session *s, const char *reason,
                   const char *fmt, ...)
{
    char    text[SMTP_REPLY_MAX + 1];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);

    if (smtp_session_msgid(s) != NULL)
        log_info(smtp_session_msgid(s), "rejected",
                 "session=%s reply=\"%s\" reason=%s", s->id, text, reason);
    smtp_session_send(s, "%s", text);
    smtp_session_clear_transaction(s);
    s->close_reason = reason;
    smtp_session_set_state(s, SMTP_STATE_CLOSED);
}


static void
smtp_session_clear_transaction(struct smtp_session *s)
{
    free(s->tx.sender);
    for (size_t i = 0; i < s->tx.nrcpts; i++)
        free(s->tx.rcpts[i]);
    free(s->tx.rcpts);
    smtp_data_fini(&s->tx.data);
    memset(&s->tx, 0, sizeof(s->tx));
}


/* Drops the transaction and waits for the next MAIL. */
static void
smtp_session_end_transaction(struct smtp_session *s)
{
    smtp_session_set_state(s, s->helo != NULL ? SMTP_STATE_READY
                                              : SMTP_STATE_GREETED);
    smtp_session_clear_transaction(s);
}


size_t
smtp_session_feed(struct smtp_session *s, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    size_t               used = 0;

    while (used < len && smtp_session_wants_input(s)) {
        if (s->state == SMTP_STATE_DATA)
            used += smtp_session_feed_data(s, p + used, len - used);
        else if (s->state == SMTP_STATE_BDAT)
            used += smtp_session_feed_chunk(s, p + used, len - used);
        else
            used += smtp_session_feed_line(s, p + used, len - used);
    }
    return used;
}


/*
 * Collects one command line. Octets beyond the limit are dropped up to the
 * LF, so an over-long line costs one error reply and the session stays in
 * step.
 */
static size_t
smtp_session_feed_line(struct smtp_session *s, const unsigned char *p,
                       size_t len)
{
    const unsigned char *lf = memchr(p, '\n', len);
    size_t               n = lf != NULL ? (size_t)(lf - p) : len;
    size_t               room = sizeof(s->line) - 1 - s->line_len;

    if (n > room) {
        s->line_too_long = true;
        memcpy(s->line + s->line_len, p, room);
        s->line_len += room;
    } else {
        memcpy(s->line + s->line_len, p, n);
        s->line_len += n;
    }
    if (lf == NULL)
        return len;

    smtp_session_handle_line(s);
    s->line_len = 0;
    s->line_too_long = false;
    return n + 1;
}


static void
smtp_session_handle_line(struct smtp_session *s)
{
    char   *line = s->line;
    size_t  len = s->line_len;
    size_t  verb_len;
    char   *args;
    size_t  i;
    bool    auth_line = smtp_session_is_auth_line(s);

    /*
     * The command after the last one allowed gets 421, so a message begun
     * within the limit is always finished.
     */
    if (++s->commands > s->cfg->ingress_max_commands) {
        smtp_session_close(s, "too-many-commands",
                           "421 4.7.0 %s too many commands, closing "
                           "connection", s->cfg->ingress_hostname);
        goto wipe;
    }

    /* Only AUTH and its responses may use the longer limit. */
    if (s->line_too_long || (!auth_line && len > SMTP_LINE_MAX - 1)) {
        smtp_session_auth_abort(s);
        smtp_session_reject(s, "line-too-long", "500 5.5.2 line too long");
        goto out;
    }
    if (memchr(line, '\0', len) != NULL) {
        smtp_session_auth_abort(s);
        smtp_session_reject(s, "nul-in-command",
                            "501 5.5.2 NUL not allowed in a command line");
        goto out;
    }

    /* A command ends with CRLF, but a bare LF is tolerated here. */
    if (len > 0 && line[len - 1] == '\r')
        len--;
    while (len > 0 && line[len - 1] == ' ')
        len--;
    line[len] = '\0';
    if (log_enabled(LOG_LEVEL_TRACE)) {
        char quoted[SMTP_LINE_MAX * 4];

        /* SASL data carries passwords, so only its kind is traced. */
        log_trace(smtp_session_msgid(s), "command", "session=%s line=%s",
                  s->id, auth_line ? "\"(AUTH data not logged)\""
                                   : log_quote(quoted, sizeof(quoted), line));
    }

    if (s->state == SMTP_STATE_AUTH) {
        smtp_session_auth_response(s, line);
        goto out;
    }

    verb_len = strcspn(line, " ");
    args = line + verb_len;
    while (*args == ' ')
        args++;

    for (i = 0; i < sizeof(smtp_commands) / sizeof(*smtp_commands); i++) {
        if (strlen(smtp_commands[i].name) == verb_len &&
            strncasecmp(line, smtp_commands[i].name, verb_len) == 0)
            break;
    }
    if (i == sizeof(smtp_commands) / sizeof(*smtp_commands))
        smtp_session_reject(s, "unknown-command",
                            "500 5.5.1 command not recognized");
    else
        smtp_commands[i].handler(s, args);

out:
    smtp_session_check_errors(s);
wipe:
    if (auth_line)
        smtp_auth_wipe(s->line, sizeof(s->line));
}


/* Ends the session once it has sent ingress.max_errors 5xx replies. */
static void
smtp_session_check_errors(struct smtp_session *s)
{
    if (s->state != SMTP_STATE_CLOSED &&
        s->errors >= s->cfg->ingress_max_errors)
        smtp_session_close(s, "too-many-errors",
                           "421 4.7.0 %s too many errors, closing connection",
                           s->cfg->ingress_hostname);
}


/* True when the line read is an AUTH command or a SASL response. */
static bool
smtp_session_is_auth_line(const struct smtp_session *s)
{
    if (s->state == SMTP_STATE_AUTH)
        return true;
    return s->line_len >= 4 && strncasecmp(s->line, "AUTH", 4) == 0 &&
           (s->line_len == 4 || s->line[4] == ' ' || s->line[4] == '\r');
}


static size_t
smtp_session_feed_data(struct smtp_session *s, const unsigned char *p,
                       size_t len)
{
    size_t used = smtp_data_feed(&s->tx.data, p, len);

    if (smtp_data_done(&s->tx.data))
        smtp_session_end_data(s);
    return used;
}


/* A HELO name goes into the Received header: printable ASCII, one word. */
static bool
smtp_session_valid_helo(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > SMTP_HELO_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (name[i] <= ' ' || name[i] > '~')
            return false;
    return true;
}


static void
smtp_session_greet(struct smtp_session *s, char *args, bool esmtp)
{
    const char *host = s->cfg->ingress_hostname;

    if (!smtp_session_valid_helo(args)) {
        smtp_session_reject(s, "syntax", "501 5.5.4 syntax: %s hostname",
                            esmtp ? "EHLO" : "HELO");
        return;
    }

    /* EHLO and HELO start over, as RSET does (RFC 5321 section 4.1.4). */
    smtp_session_clear_transaction(s);
    free(s->helo);
    s->helo = xstrdup(args);
    s->esmtp = esmtp;
    smtp_session_set_state(s, SMTP_STATE_READY);
    if (log_enabled(LOG_LEVEL_DEBUG)) {
        char quoted[SMTP_HELO_MAX * 4];

        log_debug(NULL, esmtp ? "ehlo" : "helo", "session=%s name=%s", s->id,
                  log_quote(quoted, sizeof(quoted), s->helo));
    }

    if (!esmtp) {
        smtp_session_send(s, "250 %s greets %s", host, s->helo);
        return;
    }
    smtp_session_send(s, "250-%s greets %s", host, s->helo);
    smtp_session_send(s, "250-PIPELINING");
    smtp_session_send(s, "250-SIZE %lld",
                      (long long)s->cfg->ingress_max_message_size);
    smtp_session_send(s, "250-8BITMIME");
    smtp_session_send(s, "250-CHUNKING");
    if (smtp_session_tls_offered(s))
        smtp_session_send(s, "250-STARTTLS");
    if (smtp_session_auth_offered(s))
        smtp_session_send(s, "250-AUTH PLAIN LOGIN");
    smtp_session_send(s, "250 ENHANCEDSTATUSCODES");
}


static void
smtp_session_cmd_ehlo(struct smtp_session *s, char *args)
{
    smtp_session_greet(s, args, true);
}


static void
smtp_session_cmd_helo(struct smtp_session *s, char *args)
{
    smtp_session_greet(s, args, false);
}


static void
smtp_session_reject_address(struct smtp_session *s,
                            enum smtp_address_status status, bool sender)
{
    const char *code = sender ? "5.1.7" : "5.1.3";
    const char *role = sender ? "sender" : "recipient";

    switch (status) {
    case SMTP_ADDRESS_OK:
        break;
    case SMTP_ADDRESS_NULL:
        if (sender)
            smtp_session_reject(s, "null-sender", SMTP_SENDER_REJECTED);
        else
            smtp_session_reject(s, "address-syntax",
                                "501 5.1.3 invalid recipient address");
        break;
    case SMTP_ADDRESS_SYNTAX:
        smtp_session_reject(s, "address-syntax", "501 %s invalid %s address",
                            code, role);
        break;
    case SMTP_ADDRESS_TOO_LONG:
        smtp_session_reject(s, "address-too-long",
                            "501 %s %s address too long", code, role);
        break;
    case SMTP_ADDRESS_NON_ASCII:
        smtp_session_reject(s, "non-ascii-address",
                            "553 5.6.7 non-ASCII address needs SMTPUTF8, "
                            "which this server does not support");
        break;
    case SMTP_ADDRESS_SOURCE_ROUTE:
        smtp_session_reject(s, "relay-probe",
                            "550 5.7.1 source routes are not accepted");
        break;
    case SMTP_ADDRESS_PERCENT_HACK:
        smtp_session_reject(s, "relay-probe",
                            "550 5.7.1 '%%' in the local part is not "
                            "accepted");
        break;
    case SMTP_ADDRESS_BANG_PATH:
        smtp_session_reject(s, "relay-probe",
                            "550 5.7.1 '!' in the local part is not "
                            "accepted");
        break;
    case SMTP_ADDRESS_QUOTED_AT:
        smtp_session_reject(s, "relay-probe",
                            "550 5.7.1 '@' in a quoted local part is not "
                            "accepted");
        break;
    case SMTP_ADDRESS_LITERAL:
        if (sender)
            smtp_session_reject(s, "unknown-sender-domain",
                                SMTP_SENDER_REJECTED);
        else
            smtp_session_reject(s, "address-literal",
                                "550 5.7.1 address literals are not "
                                "accepted");
        break;
    }
}


/* Checks the ESMTP parameters of MAIL (RFC 1870 SIZE, RFC 6152 BODY). */
static int
smtp_session_mail_params(struct smtp_session *s, char *params)
{
    char *save = NULL;
    char *tok;

    for (tok = strtok_r(params, " ", &save); tok != NULL;
         tok = strtok_r(NULL, " ", &save)) {
        if (strncasecmp(tok, "SIZE=", 5) == 0) {
            const char        *digits = tok + 5;
            unsigned long long size = 0;
            size_t             n = strlen(digits);

            if (n == 0 || n > 20 || strspn(digits, "0123456789") != n) {
                smtp_session_reject(s, "syntax",
                                    "501 5.5.4 invalid SIZE parameter");
                return -1;
            }
            size = strtoull(digits, NULL, 10);
            if (n == 20 ||
                size > (unsigned long long)s->cfg->ingress_max_message_size) {
                smtp_session_reject(s, "message-too-large",
                                    "552 5.3.4 message exceeds the maximum "
                                    "size of %lld octets",
                                    (long long)
                                        s->cfg->ingress_max_message_size);
                return -1;
            }
        } else if (strncasecmp(tok, "BODY=", 5) == 0) {
            if (strcasecmp(tok + 5, "7BIT") != 0 &&
                strcasecmp(tok + 5, "8BITMIME") != 0) {
                smtp_session_reject(s, "syntax",
                                    "501 5.5.4 invalid BODY parameter");
                return -1;
            }
        } else if (strcasecmp(tok, "SMTPUTF8") == 0) {
            smtp_session_reject(s, "smtputf8",
                                "555 5.5.4 SMTPUTF8 is not supported");
            return -1;
        } else {
            smtp_session_reject(s, "unsupported-parameter",
                                "555 5.5.4 unsupported MAIL parameter");
            return -1;
        }
    }
    return 0;
}


/*
 * Applies the relay policy to a sender: its domain must belong to an
 * organization, the client must be in that organization's networks or
 * have authenticated as one of its users, and this node must serve the
 * organization's home region.
 */
static int
smtp_session_check_sender(struct smtp_session *s, const char *mailbox,
                          const struct org **org)
{
    const char *domain = smtp_address_domain(mailbox);

    *org = config_org_by_domain(s->cfg, domain);
    if (*org == NULL) {
        smtp_session_reject(s, "unknown-sender-domain",
                            SMTP_SENDER_REJECTED);
        return -1;
    }
    if (s->auth_org != NULL && s->auth_org != *org &&
        !org_allows_address(*org,
                            (const struct sockaddr *)(const void *)
                                &s->client)) {
        smtp_session_reject(s, "auth-org-mismatch",
                            "550 5.7.1 the authenticated user may not send "
                            "mail for %.*s", SMTP_ADDRESS_DOMAIN_MAX,
                            domain);
        return -1;
    }
    if (s->auth_org != *org &&
        !org_allows_address(*org,
                            (const struct sockaddr *)(const void *)
                                &s->client)) {
        smtp_session_reject(s, "client-not-allowed",
                            "550 5.7.1 client address %s is not allowed to "
                            "send mail for %.*s", s->client_text,
                            SMTP_ADDRESS_DOMAIN_MAX, domain);
        return -1;
    }
    if (!config_serves_region(s->cfg, (*org)->home_region)) {
        smtp_session_reject(s, "region-not-served",
                            "550 5.7.1 mail from %.*s belongs to region %s, "
                            "which this server does not serve",
                            SMTP_ADDRESS_DOMAIN_MAX, domain,
                            (*org)->home_region);
        return -1;
    }
    return 0;
}


static void
smtp_session_cmd_mail(struct smtp_session *s, char *args)
{
    char                     mailbox[SMTP_ADDRESS_MAX + 1];
    enum smtp_address_status status;
    const struct org        *org;
    const char              *rest;
    char                     quoted[SMTP_ADDRESS_MAX * 4];

    if (s->state == SMTP_STATE_GREETED) {
        smtp_session_reject(s, "sequence",
                            "503 5.5.1 send EHLO or HELO first");
        return;
    }
    if (s->state != SMTP_STATE_READY) {
        smtp_session_reject(s, "sequence", "503 5.5.1 nested MAIL command");
        return;
    }
    if (strncasecmp(args, "FROM:", 5) != 0) {
        smtp_session_reject(s, "syntax",
                            "501 5.5.4 syntax: MAIL FROM:<address>");
        return;
    }
    args += 5;
    while (*args == ' ')
        args++;

    status = smtp_address_parse(args, mailbox, sizeof(mailbox), &rest);
    if (rest == NULL) {
        smtp_session_reject_address(s, SMTP_ADDRESS_SYNTAX, true);
        return;
    }
    if (*rest != '\0' && *rest != ' ') {
        smtp_session_reject(s, "syntax",
                            "501 5.5.4 syntax: MAIL FROM:<address> "
                            "[parameters]");
        return;
    }
    if (smtp_session_mail_params(s, (char *)rest) == -1)
        return;
    if (status != SMTP_ADDRESS_OK) {
        smtp_session_reject_address(s, status, true);
        return;
    }
    if (smtp_session_check_sender(s, mailbox, &org) == -1)
        return;

    envelope_id_new(s->tx.id);
    s->tx.org = org;
    s->tx.sender = xstrdup(mailbox);
    smtp_session_set_state(s, SMTP_STATE_MAIL);
    log_debug(s->tx.id, "mail", "session=%s sender=%s org=%s", s->id,
              log_quote(quoted, sizeof(quoted), mailbox), org->name);
    smtp_session_send(s, "250 2.1.0 Ok");
}


/* Adds one recipient, or rejects it and returns -1. */
static int
smtp_session_add_rcpt(struct smtp_session *s, char *args)
{
    char                     mailbox[SMTP_ADDRESS_MAX + 1];
    enum smtp_address_status status;
    const char              *rest;

    if (strncasecmp(args, "TO:", 3) != 0) {
        smtp_session_reject(s, "syntax",
                            "501 5.5.4 syntax: RCPT TO:<address>");
        return -1;
    }
    args += 3;
    while (*args == ' ')
        args++;

    status = smtp_address_parse(args, mailbox, sizeof(mailbox), &rest);
    if (rest == NULL) {
        smtp_session_reject_address(s, SMTP_ADDRESS_SYNTAX, false);
        return -1;
    }
    if (*rest == ' ') {
        smtp_session_reject(s, "unsupported-parameter",
                            "555 5.5.4 RCPT parameters are not supported");
        return -1;
    }
    if (*rest != '\0') {
        smtp_session_reject(s, "syntax",
                            "501 5.5.4 syntax: RCPT TO:<address>");
        return -1;
    }
    if (status != SMTP_ADDRESS_OK) {
        smtp_session_reject_address(s, status, false);
        return -1;
    }
    if (s->tx.nrcpts >= (size_t)s->cfg->ingress_max_recipients) {
        smtp_session_reject(s, "too-many-recipients",
                            "452 4.5.3 too many recipients");
        return -1;
    }

    s->tx.rcpts = xrealloc(s->tx.rcpts,
                           (s->tx.nrcpts + 1) * sizeof(*s->tx.rcpts));
    s->tx.rcpts[s->tx.nrcpts++] = xstrdup(mailbox);
    return 0;
}


static void
smtp_session_cmd_rcpt(struct smtp_session *s, char *args)
{
    if (s->state != SMTP_STATE_MAIL && s->state != SMTP_STATE_RCPT) {
        smtp_session_reject(s, "sequence", "503 5.5.1 need MAIL before RCPT");
        return;
    }
    if (smtp_session_add_rcpt(s, args) == -1) {
        s->tx.rcpts_rejected++;
        return;
    }
    if (s->state == SMTP_STATE_MAIL)
        smtp_session_set_state(s, SMTP_STATE_RCPT);
    smtp_session_send(s, "250 2.1.5 Ok");
}


static void
smtp_session_cmd_data(struct smtp_session *s, char *args)
{
    if (*args != '\0') {
        smtp_session_reject(s, "syntax", "501 5.5.4 syntax: DATA");
        return;
    }

    switch (s->state) {
    case SMTP_STATE_GREETED:
        smtp_session_reject(s, "sequence",
                            "503 5.5.1 send EHLO or HELO first");
        return;
    case SMTP_STATE_READY:
        smtp_session_reject(s, "sequence", "503 5.5.1 need MAIL command");
        return;
    case SMTP_STATE_MAIL:
        /*
         * With PIPELINING the client sent DATA before it saw its RCPT
         * replies, so the reply states why there is nothing to send.
         */
        if (s->tx.rcpts_rejected > 0)
            smtp_session_reject(s, "no-valid-recipients",
                                "554 5.5.1 no valid recipients");
        else
            smtp_session_reject(s, "sequence",
                                "503 5.5.1 need RCPT command");
        return;
    default:
        break;
    }
    if (s->tx.bdat) {
        smtp_session_reject(s, "sequence", "503 5.5.1 DATA not allowed "
                            "after BDAT");
        return;
    }

    smtp_data_init(&s->tx.data, (size_t)s->cfg->ingress_max_message_size,
                   (size_t)s->cfg->ingress_chunk_size);
    smtp_session_set_state(s, SMTP_STATE_DATA);
    smtp_session_send(s, "354 Start mail input; end with <CRLF>.<CRLF>");
}


/*
 * Starts reading one BDAT chunk (RFC 3030 CHUNKING). A chunk whose size
 * parses is always read, even when the command is rejected, so the
 * session stays in step with the client. Its reply follows at once for a
 * rejection, otherwise once the chunk has arrived.
 */
static void
smtp_session_cmd_bdat(struct smtp_session *s, char *args)
{
    char              *end = NULL;
    const char        *last;
    size_t             digits = strspn(args, "0123456789");
    unsigned long long size;

    last = args + digits;
    while (*last == ' ')
        last++;
    errno = 0;
    size = strtoull(args, &end, 10);
    if (digits == 0 || digits > 20 || errno != 0 ||
        (*last != '\0' && strcasecmp(last, "LAST") != 0) ||
        (*last != '\0' && last == args + digits)) {
        smtp_session_reject(s, "syntax", "501 5.5.4 syntax: BDAT size "
                            "[LAST]");
        return;
    }

    memset(&s->chunk, 0, sizeof(s->chunk));
    s->chunk.size = size;
    s->chunk.remaining = size;
    s->chunk.last = *last != '\0';
    s->chunk.resume = s->state;

    switch (s->state) {
    case SMTP_STATE_GREETED:
        smtp_session_reject(s, "sequence",
                            "503 5.5.1 send EHLO or HELO first");
        s->chunk.discard = true;
        break;
    case SMTP_STATE_READY:
        smtp_session_reject(s, "sequence", "503 5.5.1 need MAIL command");
        s->chunk.discard = true;
        break;
    case SMTP_STATE_MAIL:
        if (s->tx.rcpts_rejected > 0)
            smtp_session_reject(s, "no-valid-recipients",
                                "554 5.5.1 no valid recipients");
        else
            smtp_session_reject(s, "sequence",
                                "503 5.5.1 need RCPT command");
        s->chunk.discard = true;
        break;
    default:
        break;
    }

    if (!s->chunk.discard && !s->tx.bdat) {
        smtp_data_init(&s->tx.data,
                       (size_t)s->cfg->ingress_max_message_size,
                       (size_t)s->cfg->ingress_chunk_size);
        smtp_data_set_raw(&s->tx.data);
        s->tx.bdat = true;
    }
    smtp_session_set_state(s, SMTP_STATE_BDAT);
    if (s->chunk.remaining == 0)
        smtp_session_end_chunk(s);
}


static size_t
smtp_session_feed_chunk(struct smtp_session *s, const unsigned char *p,
                        size_t len)
{
    size_t n = len;

    if ((uint64_t)n > s->chunk.remaining)
        n = (size_t)s->chunk.remaining;
    if (!s->chunk.discard)
        smtp_data_feed(&s->tx.data, p, n);
    s->chunk.remaining -= n;
    if (s->chunk.remaining == 0)
        smtp_session_end_chunk(s);
    return n;
}


/*
 * Replies to a chunk that has arrived. The message ends after the LAST
 * chunk, or at once when it has grown too large, so a client that waits
 * for each reply sends no more of it.
 */
static void
smtp_session_end_chunk(struct smtp_session *s)
{
    enum smtp_data_fault fault = smtp_data_fault(&s->tx.data);

    if (s->chunk.discard) {
        smtp_session_set_state(s, s->chunk.resume);
        return;
    }
    if (s->chunk.last) {
        smtp_data_finish(&s->tx.data);
        smtp_session_end_data(s);
        return;
    }
    if (fault == SMTP_DATA_FAULT_TOO_LARGE ||
        fault == SMTP_DATA_FAULT_HEADER_TOO_LARGE) {
        smtp_session_reject_data(s);
        ingress_metrics_message("rejected");
        smtp_session_end_transaction(s);
        return;
    }
    smtp_session_set_state(s, SMTP_STATE_RCPT);
    smtp_session_send(s, "250 2.0.0 %llu octets received",
                      (unsigned long long)s->chunk.size);
}


static void
smtp_session_cmd_rset(struct smtp_session *s, char *args)
{
    if (*args != '\0') {
        smtp_session_reject(s, "syntax", "501 5.5.4 syntax: RSET");
        return;
    }
    smtp_session_end_transaction(s);
    smtp_session_send(s, "250 2.0.0 Ok");
}


static void
smtp_session_cmd_noop(struct smtp_session *s, char *args)
{
    smtp_session_send(s, "250 2.0.0 Ok");
}


static void
smtp_session_cmd_quit(struct smtp_session *s, char *args)
{
    smtp_session_close(s, "quit", "221 2.0.0 Bye");
}


static void
smtp_session_cmd_vrfy(struct smtp_session *s, char *args)
{
    smtp_session_send(s, "252 2.5.0 cannot verify the user, but will "
                         "accept mail for delivery");
}


static void
smtp_session_cmd_help(struct smtp_session *s, char *args)
{
    smtp_session_send(s, "214 2.0.0 commands: EHLO HELO MAIL RCPT DATA "
                         "RSET NOOP QUIT VRFY HELP");
}


/* STARTTLS is offered when TLS is configured and not active yet. */
static bool
smtp_session_tls_offered(const struct smtp_session *s)
{
    return s->cfg->ingress_tls_certificate[0] != '\0' && s->tls[0] == '\0';
}


static void
smtp_session_cmd_starttls(struct smtp_session *s, char *args)
{
    if (s->cfg->ingress_tls_certificate[0] == '\0') {
        smtp_session_cmd_unimplemented(s, args);
        return;
    }
    if (*args != '\0') {
        smtp_session_reject(s, "syntax", "501 5.5.4 syntax: STARTTLS");
        return;
    }
    if (s->tls[0] != '\0') {
        smtp_session_reject(s, "sequence", "503 5.5.1 TLS already active");
        return;
    }
    if (s->state != SMTP_STATE_GREETED && s->state != SMTP_STATE_READY) {
        smtp_session_reject(s, "sequence", "503 5.5.1 STARTTLS not allowed "
                            "during a mail transaction");
        return;
    }

    /* The caller starts the handshake once this reply is queued. */
    smtp_session_set_state(s, SMTP_STATE_STARTTLS);
    smtp_session_send(s, "220 2.0.0 Ready to start TLS");
}


/* AUTH is offered once TLS is active, when credentials are configured. */
static bool
smtp_session_auth_offered(const struct smtp_session *s)
{
    return s->cfg->ningress_credentials > 0 && s->tls[0] != '\0';
}


/*
 * Starts an AUTH exchange (RFC 4954) with PLAIN or LOGIN. An initial
 * response may follow the mechanism, "=" standing for an empty one.
 */
static void
smtp_session_cmd_auth(struct smtp_session *s, char *args)
{
    char *mechanism = args;
    char *initial = NULL;

    if (s->cfg->ningress_credentials == 0) {
        smtp_session_cmd_unimplemented(s, args);
        return;
    }
    if (s->tls[0] == '\0') {
        smtp_session_reject(s, "auth-without-tls",
                            "538 5.7.11 encryption required for requested "
                            "authentication mechanism, use STARTTLS first");
        return;
    }
    if (s->state == SMTP_STATE_GREETED || !s->esmtp) {
        smtp_session_reject(s, "sequence", "503 5.5.1 send EHLO first");
        return;
    }
    if (s->state != SMTP_STATE_READY) {
        smtp_session_reject(s, "sequence", "503 5.5.1 AUTH not allowed "
                            "during a mail transaction");
        return;
    }
    if (s->auth_user != NULL) {
        smtp_session_reject(s, "sequence",
                            "503 5.5.1 already authenticated");
        return;
    }

    initial = strchr(args, ' ');
    if (initial != NULL) {
        *initial++ = '\0';
        if (strchr(initial, ' ') != NULL) {
            smtp_session_reject(s, "syntax", "501 5.5.4 syntax: AUTH "
                                "mechanism [initial-response]");
            return;
        }
    }
    if (*mechanism == '\0') {
        smtp_session_reject(s, "syntax", "501 5.5.4 syntax: AUTH mechanism "
                            "[initial-response]");
        return;
    }

    if (strcasecmp(mechanism, "PLAIN") == 0) {
        s->auth_step = SMTP_AUTH_PLAIN;
    } else if (strcasecmp(mechanism, "LOGIN") == 0) {
        s->auth_step = SMTP_AUTH_LOGIN_USER;
    } else {
        smtp_session_reject(s, "auth-mechanism", "504 5.5.4 unrecognized "
                            "authentication mechanism");
        return;
    }

    smtp_session_set_state(s, SMTP_STATE_AUTH);
    if (initial != NULL) {
        smtp_session_auth_response(s, initial);
        return;
    }
    if (s->auth_step == SMTP_AUTH_PLAIN)
        smtp_session_send(s, "334 ");
    else
        smtp_session_send(s, "334 VXNlcm5hbWU6");     /* "Username:" */
}


/* Ends an AUTH exchange without a result, as after a bad line. */
static void
smtp_session_auth_abort(struct smtp_session *s)
{
    if (s->state != SMTP_STATE_AUTH)
        return;
    smtp_auth_wipe(s->auth_login_user, sizeof(s->auth_login_user));
    smtp_session_set_state(s, SMTP_STATE_READY);
}


/* Handles one SASL response line, the initial response included. */
static void
smtp_session_auth_response(struct smtp_session *s, char *line)
{
    unsigned char decoded[3 * SMTP_AUTH_FIELD_MAX + 3];
    char          user[SMTP_AUTH_FIELD_MAX + 1];
    char          password[SMTP_AUTH_FIELD_MAX + 1];
    int           n = 0;

    if (strcmp(line, "*") == 0) {
        smtp_session_auth_abort(s);
        smtp_session_reject(s, "auth-cancelled",
                            "501 5.0.0 authentication cancelled");
        return;
    }
    if (strcmp(line, "=") != 0 &&
        (n = smtp_auth_base64_decode(line, decoded, sizeof(decoded))) ==
            -1) {
        smtp_session_auth_abort(s);
        smtp_session_reject(s, "auth-syntax",
                            "501 5.5.2 cannot decode the response");
        return;
    }

    switch (s->auth_step) {
    case SMTP_AUTH_PLAIN:
        if (smtp_auth_split_plain(decoded, (size_t)n, user, password) ==
            -1) {
            smtp_auth_wipe(decoded, sizeof(decoded));
            smtp_session_auth_abort(s);
            smtp_session_reject(s, "auth-syntax", "501 5.5.2 invalid PLAIN "
                                "response");
            return;
        }
        smtp_session_auth_finish(s, "PLAIN", user, password);
        break;

    case SMTP_AUTH_LOGIN_USER:
        if (n == 0 || n > SMTP_AUTH_FIELD_MAX ||
            memchr(decoded, '\0', (size_t)n) != NULL) {
            smtp_session_auth_abort(s);
            smtp_session_reject(s, "auth-syntax",
                                "501 5.5.2 invalid user name");
            return;
        }
        memcpy(s->auth_login_user, decoded, (size_t)n);
        s->auth_login_user[n] = '\0';
        s->auth_step = SMTP_AUTH_LOGIN_PASSWORD;
        smtp_session_send(s, "334 UGFzc3dvcmQ6");     /* "Password:" */
        break;

    case SMTP_AUTH_LOGIN_PASSWORD:
        if (n == 0 || n > SMTP_AUTH_FIELD_MAX ||
            memchr(decoded, '\0', (size_t)n) != NULL) {
            smtp_auth_wipe(decoded, sizeof(decoded));
            smtp_session_auth_abort(s);
            smtp_session_reject(s, "auth-syntax",
                                "501 5.5.2 invalid password");
            return;
        }
        memcpy(password, decoded, (size_t)n);
        password[n] = '\0';
        memcpy(user, s->auth_login_user, sizeof(user));
        smtp_session_auth_finish(s, "LOGIN", user, password);
        break;
    }
    smtp_auth_wipe(decoded, sizeof(decoded));
    smtp_auth_wipe(password, sizeof(password));
}


/*
 * Hands the password to a check off the event loop and waits for
 * smtp_session_auth_done(), or replies 454 4.7.0 at once when the check
 * cannot start. An unknown user is checked against another user's hash,
 * so the reply time does not reveal which users exist.
 */
static void
smtp_session_auth_finish(struct smtp_session *s, const char *mechanism,
                         const char *user, char *password)
{
    const char *hash = smtp_auth_hash_for(s->cfg, user, &s->auth_known);
    const char *reason = "auth-unavailable";

    smtp_auth_wipe(s->auth_login_user, sizeof(s->auth_login_user));
    if (hash != NULL) {
        reason = "auth-busy";
        if (s->ops->auth(s->arg, password, hash) == 0)
            reason = NULL;
    }
    smtp_auth_wipe(password, strlen(password));
    if (reason != NULL) {
        smtp_session_set_state(s, SMTP_STATE_READY);
        smtp_session_reject(s, reason, "454 4.7.0 temporary authentication "
                            "failure, try again later");
        return;
    }

    /* The hash is kept to see whether a reload replaced it meanwhile. */
    snprintf(s->auth_check_user, sizeof(s->auth_check_user), "%s", user);
    s->auth_mechanism = mechanism;
    s->auth_hash = xstrdup(hash);
    smtp_session_set_state(s, SMTP_STATE_AUTH_CHECK);
}


void
smtp_session_auth_done(struct smtp_session *s, bool match)
{
    const struct credential *cred = NULL;
    char                     quoted[SMTP_AUTH_FIELD_MAX * 4];

    if (s->state != SMTP_STATE_AUTH_CHECK) {
        log_error(NULL, "auth-done-unexpected", "session=%s state=%s",
                  s->id, smtp_state_names[s->state]);
        return;
    }
    log_quote(quoted, sizeof(quoted), s->auth_check_user);

    /*
     * SIGHUP may have reloaded the credentials during the check, so the
     * user is looked up again, and must still have the hash that matched.
     */
    if (match && s->auth_known)
        cred = config_credential(s->cfg, s->auth_check_user);
    if (cred != NULL && strcmp(cred->hash, s->auth_hash) != 0) {
        smtp_session_auth_end_check(s);
        smtp_session_reject(s, "credentials-reloaded", "454 4.7.0 "
                            "temporary authentication failure, try again "
                            "later");
        return;
    }
    if (cred == NULL) {
        log_info(NULL, "auth-failed", "session=%s mechanism=%s user=%s",
                 s->id, s->auth_mechanism, quoted);
        smtp_session_auth_end_check(s);
        smtp_session_reject(s, "auth-failed", "535 5.7.8 authentication "
                            "credentials invalid");
        smtp_session_check_errors(s);
        return;
    }

    s->auth_user = xstrdup(cred->user);
    s->auth_org = cred->org;
    log_info(NULL, "auth", "session=%s mechanism=%s user=%s org=%s", s->id,
             s->auth_mechanism, quoted, cred->org->name);
    smtp_session_auth_end_check(s);
    smtp_session_send(s, "235 2.7.0 authentication successful");
}


/* Forgets the finished check and waits for commands again. */
static void
smtp_session_auth_end_check(struct smtp_session *s)
{
    smtp_auth_wipe(s->auth_check_user, sizeof(s->auth_check_user));
    free(s->auth_hash);
    s->auth_hash = NULL;
    s->auth_mechanism = NULL;
    smtp_session_set_state(s, SMTP_STATE_READY);
}


void
smtp_session_tls_started(struct smtp_session *s, const char *protocol,
                         const char *cipher)
{
    /* A shutdown may close the session while its handshake runs. */
    if (s->state == SMTP_STATE_CLOSED)
        return;
    if (s->state != SMTP_STATE_STARTTLS) {
        log_error(NULL, "tls-started-unexpected", "session=%s state=%s",
                  s->id, smtp_state_names[s->state]);
        return;
    }
    snprintf(s->tls, sizeof(s->tls), "%s:%s", protocol, cipher);
    smtp_session_clear_transaction(s);
    free(s->helo);
    s->helo = NULL;
    s->esmtp = false;
    s->line_len = 0;
    s->line_too_long = false;
    smtp_session_set_state(s, SMTP_STATE_GREETED);
}


static void
smtp_session_cmd_unimplemented(struct smtp_session *s, char *args)
{
    smtp_session_reject(s, "unimplemented-command",
                        "502 5.5.1 command not implemented");
}


/*
 * Rejects a message whose text broke a rule, now that the terminator has
 * arrived. Returns 0 when there was nothing to reject.
 */
static int
smtp_session_reject_data(struct smtp_session *s)
{
    switch (smtp_data_fault(&s->tx.data)) {
    case SMTP_DATA_FAULT_NONE:
        return 0;
    case SMTP_DATA_FAULT_TOO_LARGE:
        smtp_session_reject(s, "message-too-large",
                            "552 5.3.4 message exceeds the maximum size of "
                            "%lld octets",
                            (long long)s->cfg->ingress_max_message_size);
        break;
    case SMTP_DATA_FAULT_HEADER_TOO_LARGE:
        smtp_session_reject(s, "header-too-large",
                            "552 5.3.4 header section too large");
        break;
    case SMTP_DATA_FAULT_NUL:
        smtp_session_reject(s, "nul-in-data",
                            "554 5.6.0 NUL not allowed in message data");
        break;
    case SMTP_DATA_FAULT_BARE_CR:
        smtp_session_reject(s, "bare-cr",
                            "554 5.6.0 bare CR not allowed in message data, "
                            "end lines with CRLF");
        break;
    case SMTP_DATA_FAULT_BARE_LF:
        smtp_session_reject(s, "bare-lf",
                            "554 5.6.0 bare LF not allowed in message data, "
                            "end lines with CRLF");
        break;
    case SMTP_DATA_FAULT_LONG_LINE:
        smtp_session_reject(s, "line-too-long",
                            "554 5.6.0 line exceeds %d octets",
                            SMTP_DATA_LINE_MAX);
        break;
    }
    return -1;
}


/*
 * Writes the trace header that goes before the message: one Received
 * header (RFC 5321 section 4.4), folded so that no line exceeds 400
 * octets. Returns its length; it never reaches SMTP_SESSION_TRACE_MAX.
 */
static size_t
smtp_session_trace_header(struct smtp_session *s, int64_t now_ms, char *buf,
                          size_t size)
{
    char        date[64];
    char        literal[INET6_ADDRSTRLEN + 8];
    char        with[sizeof(s->tls) + 16];
    time_t      now = (time_t)(now_ms / 1000);
    struct tm   tm;
    int         n;

    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    if (s->client.ss_family == AF_INET6)
        snprintf(literal, sizeof(literal), "[IPv6:%s]", s->client_text);
    else
        snprintf(literal, sizeof(literal), "[%s]", s->client_text);

    /*
     * RFC 3848 names ESMTP after STARTTLS "ESMTPS", and "ESMTPSA" after
     * AUTH too. The protocol and cipher follow as a comment.
     */
    if (s->tls[0] != '\0')
        snprintf(with, sizeof(with), "%s (%s)",
                 !s->esmtp ? "SMTP"
                 : s->auth_user != NULL ? "ESMTPSA" : "ESMTPS",
                 s->tls);
    else
        snprintf(with, sizeof(with), "%s", s->esmtp ? "ESMTP" : "SMTP");

    n = snprintf(buf, size,
                 "Received: from %s (%s)\r\n"
                 "\tby %s (Ferry) with %s id %s\r\n"
                 "\tfor <%s>; %s\r\n",
                 s->helo, literal, s->cfg->ingress_hostname, with, s->tx.id,
                 s->tx.rcpts[0], date);
    return n < 0 ? 0 : (size_t)n;
}


/* Computes the SHA-256 of the whole message: trace header, then text. */
static void
smtp_session_digest(struct smtp_session *s, const char *trace,
                    size_t trace_len, unsigned char *sha256)
{
    EVP_MD_CTX          *ctx = EVP_MD_CTX_new();
    const unsigned char *seg;
    size_t               len;

    /* Like an allocation failure, this is no peer's doing. */
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        log_error(NULL, "digest-failed", "error=\"cannot start a SHA-256 "
                  "digest\"");
        abort();
    }
    EVP_DigestUpdate(ctx, trace, trace_len);
    for (size_t i = 0; i < s->tx.data.nsegments; i++) {
        seg = smtp_data_segment(&s->tx.data, i, &len);
        EVP_DigestUpdate(ctx, seg, len);
    }
    EVP_DigestFinal_ex(ctx, sha256, NULL);
    EVP_MD_CTX_free(ctx);
}


/*
 * Queues the message as env->chunk_count records: chunk 0 is the trace
 * header and the first segment of the text, chunk i the segment i. Each
 * segment is freed once its record is encoded, so the text is held about
 * once, not once more as records. Stops at the first chunk the producer
 * does not take and returns its status.
 */
static enum smtp_produce_status
smtp_session_produce_chunks(struct smtp_session *s, const char *topic,
                            struct envelope *env, const char *trace,
                            size_t trace_len)
{
    enum smtp_produce_status status = SMTP_PRODUCE_OK;
    const unsigned char     *seg;
    unsigned char           *first;
    size_t                   len = 0;

    for (uint32_t i = 0; i < env->chunk_count; i++) {
        seg = i < s->tx.data.nsegments
                  ? smtp_data_segment(&s->tx.data, i, &len)
                  : NULL;
        if (seg == NULL)
            len = 0;

        env->chunk_index = i;
        if (i == 0) {
            first = xmalloc(trace_len + len + 1);
            memcpy(first, trace, trace_len);
            if (len > 0)
                memcpy(first + trace_len, seg, len);
            env->message = first;
            env->message_len = trace_len + len;
            status = s->ops->produce(s->arg, topic, env);
            free(first);
        } else {
            env->message = (unsigned char *)seg;
            env->message_len = len;
            status = s->ops->produce(s->arg, topic, env);
        }
        env->message = NULL;
        if (i < s->tx.data.nsegments)
            smtp_data_release(&s->tx.data, i);
        if (status != SMTP_PRODUCE_PENDING && status != SMTP_PRODUCE_OK)
            return status;
    }
    return status;
}


/* Handles the final dot: reject, or build the envelope and produce it. */
static void
smtp_session_end_data(struct smtp_session *s)
{
    struct envelope          env;
    const struct org        *org = s->tx.org;
    char                     topic[256];
    char                     quoted[SMTP_ADDRESS_MAX * 4];
    char                     trace[SMTP_SESSION_TRACE_MAX];
    size_t                   trace_len;
    int64_t                  now = util_now_ms();
    enum smtp_produce_status status;

    s->tx.dot_ms = util_monotonic_ms();
    if (smtp_session_reject_data(s) == -1) {
        ingress_metrics_message("rejected");
        smtp_session_end_transaction(s);
        return;
    }
    if (org_topic(org, topic, sizeof(topic)) == -1) {
        smtp_session_finish(s, SMTP_PRODUCE_FAILED);
        return;
    }

    trace_len = smtp_session_trace_header(s, now, trace, sizeof(trace));

    memset(&env, 0, sizeof(env));
    memcpy(env.id, s->tx.id, sizeof(env.id));
    env.org = org->name;
    env.home_region = org->home_region;
    env.multi_region = org->multi_region;
    env.integration = org->integration;
    env.sender = s->tx.sender;
    env.recipients = s->tx.rcpts;
    env.nrecipients = s->tx.nrcpts;
    env.client_address = s->client_text;
    env.helo = s->helo;
    env.tls = s->tls;
    env.received_at_ms = now;
    env.size = trace_len + s->tx.data.len;
    s->tx.size = env.size;
    smtp_session_digest(s, trace, trace_len, env.sha256);
    env.chunk_count = s->tx.data.nsegments > 0
                          ? (uint32_t)s->tx.data.nsegments
                          : 1;

    log_info(s->tx.id, "accepted",
             "session=%s size=%llu chunks=%u rcpts=%zu org=%s topic=%s "
             "sender=%s", s->id, (unsigned long long)env.size,
             env.chunk_count, s->tx.nrcpts, org->name, topic,
             log_quote(quoted, sizeof(quoted), s->tx.sender));

    status = smtp_session_produce_chunks(s, topic, &env, trace, trace_len);
    smtp_data_fini(&s->tx.data);

    if (status == SMTP_PRODUCE_PENDING)
        smtp_session_set_state(s, SMTP_STATE_PRODUCING);
    else
        smtp_session_finish(s, status);
}


/* Sends the final-dot reply for a produce outcome. */
static void
smtp_session_finish(struct smtp_session *s, enum smtp_produce_status status)
{
    switch (status) {
    case SMTP_PRODUCE_OK:
        smtp_session_send(s, "250 2.0.0 Ok: queued as %s", s->tx.id);
        ingress_metrics_message("accepted");
        ingress_metrics_accepted(s->tx.size, (util_monotonic_ms() -
                                              s->tx.dot_ms) / 1000.0);
        break;
    case SMTP_PRODUCE_TIMEOUT:
        ingress_metrics_message("deferred");
        smtp_session_reject(s, "ack-timeout",
                            "451 4.4.1 no acknowledgement from the queue in "
                            "time, try again later");
        break;
    case SMTP_PRODUCE_TOO_LARGE:
        ingress_metrics_message("rejected");
        smtp_session_reject(s, "record-too-large",
                            "552 5.3.4 message too large for the queue");
        break;
    case SMTP_PRODUCE_PENDING:
    case SMTP_PRODUCE_FAILED:
        ingress_metrics_message("deferred");
        smtp_session_reject(s, "produce-failed",
                            "451 4.3.0 message not queued, try again later");
        break;
    }
    smtp_session_end_transaction(s);

    if (s->draining)
        smtp_session_close(s, "shutdown",
                           "421 4.3.2 %s service shutting down",
                           s->cfg->ingress_hostname);
}


void
smtp_session_produce_done(struct smtp_session *s,
                          enum smtp_produce_status status)
{
    if (s->state != SMTP_STATE_PRODUCING) {
        log_error(smtp_session_msgid(s), "produce-done-unexpected",
                  "session=%s state=%s", s->id, smtp_state_names[s->state]);
        return;
    }
    smtp_session_finish(s, status);
}


void
smtp_session_shutdown(struct smtp_session *s)
{
    switch (s->state) {
    case SMTP_STATE_CLOSED:
        return;
    case SMTP_STATE_PRODUCING:
        s->draining = true;
        return;
    default:
        smtp_session_close(s, "shutdown",
                           "421 4.3.2 %s service shutting down",
                           s->cfg->ingress_hostname);
    }
}


void
smtp_session_timeout(struct smtp_session *s)
{
    if (s->state == SMTP_STATE_CLOSED || s->state == SMTP_STATE_PRODUCING)
        return;
    smtp_session_close(s, "idle-timeout",
                       "421 4.4.2 %s idle timeout, closing connection",
                       s->cfg->ingress_hostname);
}


enum smtp_state
smtp_session_state(const struct smtp_session *s)
{
    return s->state;
}


const char *
smtp_session_state_name(enum smtp_state state)
{
    return smtp_state_names[state];
}


enum smtp_wait
smtp_session_wait(const struct smtp_session *s)
{
    switch (s->state) {
    case SMTP_STATE_BDAT:
        return SMTP_WAIT_DATA_BLOCK;
    case SMTP_STATE_DATA:
        return s->tx.data.size == 0 &&
                       s->tx.data.state == SMTP_DATA_LINE_START
                   ? SMTP_WAIT_DATA_INITIATION
                   : SMTP_WAIT_DATA_BLOCK;
    case SMTP_STATE_PRODUCING:
        return SMTP_WAIT_DATA_TERMINATION;
    default:
        return SMTP_WAIT_COMMAND;
    }
}


bool
smtp_session_wants_input(const struct smtp_session *s)
{
    return s->state >= SMTP_STATE_GREETED && s->state <= SMTP_STATE_BDAT;
}


const char *
smtp_session_id(const struct smtp_session *s)
{
    return s->id;
}


const char *
smtp_session_auth_user(const struct smtp_session *s)
{
    return s->auth_user;
}


const char *
smtp_session_client(const struct smtp_session *s)
{
    return s->client_text;
}


const char *
smtp_session_msgid(const struct smtp_session *s)
{
    return s->tx.id[0] != '\0' ? s->tx.id : NULL;
}


const char *
smtp_session_close_reason(const struct smtp_session *s)
{
    return s->close_reason;
}

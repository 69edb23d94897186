#include "dsn.h"

#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util.h"

/* A growing output buffer. */
struct dsn_buf {
    char  *data;
    size_t len;
    size_t size;
};

static void dsn_append(struct dsn_buf *b, const char *data, size_t len);
static void dsn_printf(struct dsn_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void dsn_clean(char *dst, size_t size, const char *src);
static size_t dsn_header_len(const unsigned char *msg, size_t len);
static int dsn_is_report(const unsigned char *msg, size_t len);
static void dsn_date(char *buf, size_t size, int64_t ms);


static void
dsn_append(struct dsn_buf *b, const char *data, size_t len)
{
    if (b->len + len + 1 > b->size) {
        b->size = (b->len + len + 1) * 2;
        b->data = xrealloc(b->data, b->size);
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}


static void
dsn_printf(struct dsn_buf *b, const char *fmt, ...)
{
    char    line[2048];
    va_list ap;
    int     n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    dsn_append(b, line, (size_t)n < sizeof(line) ? (size_t)n
                                                  : sizeof(line) - 1);
}


/*
 * Copies src as printable US-ASCII, every other byte turned into '?', so
 * text from SES or an address cannot break a header or a line.
 */
static void
dsn_clean(char *dst, size_t size, const char *src)
{
    size_t n = 0;

    for (; src != NULL && *src != '\0' && n + 1 < size; src++)
        dst[n++] = (*src >= ' ' && *src <= '~') ? *src : '?';
    dst[n] = '\0';
}


/* Returns the length of the header section, without the empty line. */
static size_t
dsn_header_len(const unsigned char *msg, size_t len)
{
    if (len >= 2 && msg[0] == '\r' && msg[1] == '\n')
        return 0;
    for (size_t i = 0; i + 3 < len; i++)
        if (memcmp(msg + i, "\r\n\r\n", 4) == 0)
            return i + 2;
    return len;
}


/*
 * True when the top-level Content-Type is multipart/report with
 * report-type=delivery-status, which marks a delivery status
 * notification (RFC 3464 section 2).
 */
static int
dsn_is_report(const unsigned char *msg, size_t len)
{
    size_t hlen = dsn_header_len(msg, len);
    char   value[1024];

    for (size_t i = 0; i < hlen; i++) {
        size_t n = 0;

        if ((i != 0 && msg[i - 1] != '\n') || hlen - i < 13 ||
            strncasecmp((const char *)msg + i, "Content-Type:", 13) != 0)
            continue;

        /* Unfold the value, whose continuation lines start with a blank. */
        for (size_t k = i + 13; k < hlen && n + 1 < sizeof(value); k++) {
            if (msg[k] == '\r' || msg[k] == '\n') {
                if (k + 2 < hlen && msg[k] == '\r' &&
                    (msg[k + 2] == ' ' || msg[k + 2] == '\t')) {
                    k++;
                    continue;
                }
                if (msg[k] == '\n' && k + 1 < hlen &&
                    (msg[k + 1] == ' ' || msg[k + 1] == '\t'))
                    continue;
                break;
            }
            /* Blanks and quotes dropped: report-type = "x" reads x. */
            if (msg[k] != ' ' && msg[k] != '\t' && msg[k] != '"')
                value[n++] = (char)msg[k];
        }
        value[n] = '\0';
        return strncasecmp(value, "multipart/report;", 17) == 0 &&
               strcasestr(value, ";report-type=delivery-status") != NULL;
    }
    return 0;
}


int
dsn_wanted(const struct envelope *env, const char *dsn_from)
{
    if (dsn_from == NULL || dsn_from[0] == '\0')
        return 0;
    if (env->sender == NULL || env->sender[0] == '\0')
        return 0;
    if (strcasecmp(env->sender, dsn_from) == 0)
        return 0;
    return !dsn_is_report(env->message, env->message_len);
}


const char *
dsn_status(const char *error_code)
{
    if (error_code != NULL && strcmp(error_code, "MessageTooLarge") == 0)
        return "5.3.4";     /* message too big for system */
    return "5.0.0";         /* other or undefined permanent failure */
}


/* Writes an RFC 5322 date in UTC. */
static void
dsn_date(char *buf, size_t size, int64_t ms)
{
    time_t    t = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, size, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}


unsigned char *
dsn_format(const struct dsn_report *r, size_t *len)
{
    const struct envelope *env = r->env;
    struct dsn_buf         b = { NULL, 0, 0 };
    char                   boundary[64], date[64], arrival[64];
    char                   sender[512], from[512], reason[600];
    char                   code[160], mta[256], rcpt[512];
    size_t                 hlen = dsn_header_len(env->message,
                                                 env->message_len);

    dsn_clean(sender, sizeof(sender), env->sender);
    dsn_clean(from, sizeof(from), r->dsn_from);
    dsn_clean(reason, sizeof(reason), r->reason);
    dsn_clean(code, sizeof(code), r->error_code);
    dsn_clean(mta, sizeof(mta), r->reporting_mta);
    dsn_date(date, sizeof(date), r->now_ms);
    dsn_date(arrival, sizeof(arrival), env->received_at_ms);
    /* The id is random, and the boundary stays under RFC 2046's 70. */
    snprintf(boundary, sizeof(boundary), "%.26s/report", r->dsn_id);

    /* Top-level header. Auto-Submitted keeps responders quiet (RFC 3834). */
    dsn_printf(&b, "From: Mail Delivery System <%s>\r\n", from);
    dsn_printf(&b, "To: <%s>\r\n", sender);
    dsn_printf(&b, "Subject: Undelivered Mail Returned to Sender\r\n");
    dsn_printf(&b, "Date: %s\r\n", date);
    dsn_printf(&b, "Message-ID: <%s@%s>\r\n", r->dsn_id, mta);
    dsn_printf(&b, "Auto-Submitted: auto-replied\r\n");
    dsn_printf(&b, "MIME-Version: 1.0\r\n");
    dsn_printf(&b, "Content-Type: multipart/report; "
               "report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n",
               boundary);
    dsn_printf(&b, "\r\nThis is a MIME-encapsulated message.\r\n\r\n");

    /* Part 1: the explanation for a person. */
    dsn_printf(&b, "--%s\r\n", boundary);
    dsn_printf(&b, "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
    dsn_printf(&b, "Your message could not be delivered to these "
               "recipients:\r\n\r\n");
    for (size_t i = 0; i < env->nrecipients; i++) {
        dsn_clean(rcpt, sizeof(rcpt), env->recipients[i]);
        dsn_printf(&b, "  <%s>\r\n", rcpt);
    }
    dsn_printf(&b, "\r\nAmazon SES in region %s rejected it for good, "
               "so it will not be\r\nsent again:\r\n\r\n  %s: %s\r\n\r\n",
               r->region, code, reason);
    dsn_printf(&b, "The header of your message follows.\r\n\r\n");

    /* Part 2: the machine-readable report (RFC 3464 section 2). */
    dsn_printf(&b, "--%s\r\n", boundary);
    dsn_printf(&b, "Content-Type: message/delivery-status\r\n\r\n");
    dsn_printf(&b, "Reporting-MTA: dns; %s\r\n", mta);
    dsn_printf(&b, "X-Ferry-Envelope-Id: %s\r\n", env->id);
    dsn_printf(&b, "Arrival-Date: %s\r\n", arrival);
    for (size_t i = 0; i < env->nrecipients; i++) {
        dsn_clean(rcpt, sizeof(rcpt), env->recipients[i]);
        dsn_printf(&b, "\r\nFinal-Recipient: rfc822; %s\r\n", rcpt);
        dsn_printf(&b, "Action: failed\r\n");
        dsn_printf(&b, "Status: %s\r\n", dsn_status(r->error_code));
        dsn_printf(&b, "Diagnostic-Code: X-SES; %s: %s\r\n", code, reason);
    }
    dsn_printf(&b, "\r\n");

    /* Part 3: the rejected message's header section, cut at a line end. */
    dsn_printf(&b, "--%s\r\n", boundary);
    dsn_printf(&b, "Content-Type: text/rfc822-headers\r\n\r\n");
    if (hlen > DSN_MAX_HEADERS) {
        hlen = DSN_MAX_HEADERS;
        while (hlen > 0 && env->message[hlen - 1] != '\n')
            hlen--;
    }
    dsn_append(&b, (const char *)env->message, hlen);
    dsn_printf(&b, "\r\n--%s--\r\n", boundary);

    *len = b.len;
    return (unsigned char *)b.data;
}


struct envelope *
dsn_envelope(const struct dsn_report *r)
{
    const struct envelope *orig = r->env;
    struct envelope       *env = xcalloc(1, sizeof(*env));

    snprintf(env->id, sizeof(env->id), "%s", r->dsn_id);
    env->org = xstrdup(orig->org != NULL ? orig->org : "");
    env->home_region = xstrdup(orig->home_region != NULL
                                   ? orig->home_region : "");
    env->multi_region = orig->multi_region;
    env->integration = orig->integration;
    env->sender = xstrdup(r->dsn_from);
    env->recipients = xcalloc(1, sizeof(*env->recipients));
    env->recipients[0] = xstrdup(orig->sender);
    env->nrecipients = 1;
    env->client_address = xstrdup("");
    env->helo = xstrdup("");
    env->tls = xstrdup("");
    env->received_at_ms = r->now_ms;
    env->message = dsn_format(r, &env->message_len);
    env->size = env->message_len;
    SHA256(env->message, env->message_len, env->sha256);
    env->chunk_index = 0;
    env->chunk_count = 1;
    return env;
}

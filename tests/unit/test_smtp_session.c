/*
 * Unit tests of the SMTP session: dialogues of client octets and the exact
 * replies expected, each sent once in one write and once one octet per
 * write, with a fake producer that records what the session produced.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "envelope.h"
#include "log.h"
#include "smtp_session.h"

#define HOST      "mx.test"
#define MAX_SIZE  300000

static const char *config_yaml =
    "kafka:\n"
    "  bootstrap_servers: 127.0.0.1:19092\n"
    "ingress:\n"
    "  hostname: " HOST "\n"
    "  regions: [us-east-1, eu-west-1]\n"
    "  max_message_size: 300000\n"
    "  max_recipients: 3\n"
    "regions:\n"
    "  us-east-1:\n"
    "  eu-west-1:\n"
    "  ap-south-1:\n"
    "organizations:\n"
    "  - name: acme\n"
    "    home_region: us-east-1\n"
    "    domains: [acme.example, example.com]\n"
    "    networks: [127.0.0.0/8, \"::1/128\"]\n"
    "    multi_region: true\n"
    "  - name: bergmann\n"
    "    home_region: eu-west-1\n"
    "    domains: [bergmann.example]\n"
    "    networks: [127.0.0.0/8]\n"
    "    multi_region: false\n"
    "  - name: faraway\n"
    "    home_region: ap-south-1\n"
    "    domains: [faraway.example]\n"
    "    networks: [127.0.0.0/8]\n"
    "    multi_region: true\n";

/* Dialogue building blocks; "<ID>" in expected replies is an envelope id. */
#define GREETING "220 " HOST " ESMTP Ferry\r\n"
#define EHLO     "EHLO client.test\r\n"
#define EHLO_OK                                                     \
    "250-" HOST " greets client.test\r\n250-PIPELINING\r\n"         \
    "250-SIZE 300000\r\n250-8BITMIME\r\n250-CHUNKING\r\n"       \
    "250 ENHANCEDSTATUSCODES\r\n"
#define MAIL_OK  "250 2.1.0 Ok\r\n"
#define RCPT_OK  "250 2.1.5 Ok\r\n"
#define DATA_GO  "354 Start mail input; end with <CRLF>.<CRLF>\r\n"
#define QUEUED   "250 2.0.0 Ok: queued as <ID>\r\n"
#define BYE      "221 2.0.0 Bye\r\n"
#define TXN \
    "MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n"
#define TXN_OK   MAIL_OK RCPT_OK DATA_GO
#define SENDER_DENIED \
    "550 5.7.1 sender domain not allowed to relay through this server\r\n"
#define BARE_LF \
    "554 5.6.0 bare LF not allowed in message data, end lines with CRLF\r\n"
#define BARE_CR \
    "554 5.6.0 bare CR not allowed in message data, end lines with CRLF\r\n"
#define LONG_LINE "554 5.6.0 line exceeds 998 octets\r\n"

#define RECORDS_MAX 64

/* ingress.chunk_size of the configuration the chunking tests use. */
#define CHUNK_SIZE 1024

enum produce_mode {
    PRODUCE_COMPLETE,       /* report success as soon as the session waits */
    PRODUCE_HOLD,           /* the test reports the outcome itself */
    PRODUCE_REJECT,         /* produce() fails at once */
    PRODUCE_REPORT_FAILURE, /* report a failure as soon as the session waits */
    PRODUCE_REPORT_TIMEOUT,
    PRODUCE_TOO_LARGE       /* produce() finds the record too large */
};

struct record {
    char             topic[64];
    struct envelope *env;       /* decoded from what the session produced */
};

struct harness {
    struct smtp_session *s;
    char                *out;
    size_t               outlen;
    size_t               outcap;
    unsigned char       *in;
    size_t               inlen;
    size_t               inoff;
    size_t               chunk;     /* octets per smtp_session_feed() */
    enum produce_mode    mode;
    struct record        records[RECORDS_MAX];
    size_t               nrecords;
    long                 fail_chunk;    /* chunk_index produce() fails, or -1 */
};

struct dialogue {
    const char *name;
    const char *client;         /* octets after the greeting */
    size_t      client_len;     /* 0: strlen(client) */
    const char *replies;        /* expected replies after the greeting */
    size_t      records;
    const char *body;           /* first record minus Received, or NULL */
    const char *client_ip;      /* NULL: 127.0.0.1 */
};

static struct config *cfg;
static struct config *chunked_cfg;   /* chunk_size CHUNK_SIZE */
static struct config *tls_cfg;       /* STARTTLS offered */
static struct config *limits_cfg;    /* max_errors 3, max_commands 12 */

static const struct smtp_session_ops fake_ops;


static void
fake_send(void *arg, const char *data, size_t len)
{
    struct harness *h = arg;

    if (h->outlen + len + 1 > h->outcap) {
        h->outcap = (h->outlen + len + 1) * 2;
        h->out = realloc(h->out, h->outcap);
        assert_non_null(h->out);
    }
    memcpy(h->out + h->outlen, data, len);
    h->outlen += len;
    h->out[h->outlen] = '\0';
}


static enum smtp_produce_status
fake_produce(void *arg, const char *topic, const struct envelope *env)
{
    struct harness *h = arg;
    struct record  *rec;
    unsigned char  *buf;
    size_t          len;
    char            err[256];

    if (h->mode == PRODUCE_REJECT)
        return SMTP_PRODUCE_FAILED;
    if (h->mode == PRODUCE_TOO_LARGE)
        return SMTP_PRODUCE_TOO_LARGE;
    if (h->fail_chunk >= 0 && env->chunk_index == (uint32_t)h->fail_chunk)
        return SMTP_PRODUCE_FAILED;

    assert_true(h->nrecords < RECORDS_MAX);
    rec = &h->records[h->nrecords++];
    snprintf(rec->topic, sizeof(rec->topic), "%s", topic);

    /* A round trip through the codec copies the envelope and checks it. */
    buf = envelope_encode(env, &len);
    rec->env = envelope_decode(buf, len, err, sizeof(err));
    free(buf);
    if (rec->env == NULL)
        fail_msg("produced envelope does not decode: %s", err);
    return SMTP_PRODUCE_PENDING;
}


/* Starts no check: the tests report its outcome themselves. */
static int
fake_auth(void *arg, const char *password, const char *hash)
{
    return 0;
}


static const struct smtp_session_ops fake_ops = {
    .send = fake_send,
    .produce = fake_produce,
    .auth = fake_auth,
};


static struct harness *
harness_new(const char *client_ip, enum produce_mode mode, size_t chunk)
{
    struct harness     *h = calloc(1, sizeof(*h));
    struct sockaddr_in6 sin6;
    struct sockaddr_in  sin;
    const char         *ip = client_ip != NULL ? client_ip : "127.0.0.1";

    assert_non_null(h);
    h->mode = mode;
    h->chunk = chunk;
    h->fail_chunk = -1;
    if (strchr(ip, ':') != NULL) {
        memset(&sin6, 0, sizeof(sin6));
        sin6.sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &sin6.sin6_addr), 1);
        h->s = smtp_session_new(cfg, (struct sockaddr *)&sin6, &fake_ops, h);
    } else {
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
        h->s = smtp_session_new(cfg, (struct sockaddr *)&sin, &fake_ops, h);
    }
    smtp_session_start(h->s);
    return h;
}


static void
harness_free(struct harness *h)
{
    smtp_session_free(h->s);
    for (size_t i = 0; i < h->nrecords; i++)
        envelope_free(h->records[i].env);
    free(h->out);
    free(h->in);
    free(h);
}


/*
 * Feeds the queued input as the server does: in chunks, keeping what the
 * session did not consume, and reporting produce outcomes per the mode.
 */
static void
harness_pump(struct harness *h)
{
    for (;;) {
        size_t n, used;

        if (smtp_session_state(h->s) == SMTP_STATE_PRODUCING) {
            switch (h->mode) {
            case PRODUCE_HOLD:
                return;
            case PRODUCE_REPORT_FAILURE:
                smtp_session_produce_done(h->s, SMTP_PRODUCE_FAILED);
                break;
            case PRODUCE_REPORT_TIMEOUT:
                smtp_session_produce_done(h->s, SMTP_PRODUCE_TIMEOUT);
                break;
            default:
                smtp_session_produce_done(h->s, SMTP_PRODUCE_OK);
                break;
            }
            continue;
        }
        if (!smtp_session_wants_input(h->s) || h->inoff == h->inlen)
            return;

        n = h->inlen - h->inoff;
        if (n > h->chunk)
            n = h->chunk;
        used = smtp_session_feed(h->s, h->in + h->inoff, n);
        assert_true(used <= n);
        h->inoff += used;
    }
}


static void
harness_write(struct harness *h, const void *data, size_t len)
{
    h->in = realloc(h->in, h->inlen + len + 1);
    assert_non_null(h->in);
    memcpy(h->in + h->inlen, data, len);
    h->inlen += len;
    harness_pump(h);
}


static void
harness_puts(struct harness *h, const char *text)
{
    harness_write(h, text, strlen(text));
}


/* Compares output with expected, where "<ID>" matches an envelope id. */
static bool
replies_match(const char *expected, const char *actual, size_t len)
{
    static const char base32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    size_t            i = 0;

    while (*expected != '\0') {
        if (strncmp(expected, "<ID>", 4) == 0) {
            for (int k = 0; k < ENVELOPE_ID_LEN; k++, i++)
                if (i >= len || actual[i] == '\0' ||
                    strchr(base32, actual[i]) == NULL)
                    return false;
            expected += 4;
            continue;
        }
        if (i >= len || actual[i] != *expected)
            return false;
        i++;
        expected++;
    }
    return i == len;
}


/* Writes text with CR and LF visible, for failure messages. */
static char *
escape(const char *text, size_t len)
{
    char  *out = malloc(len * 4 + 1);
    size_t n = 0;

    assert_non_null(out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];

        if (c == '\r') {
            memcpy(out + n, "\\r", 2);
            n += 2;
        } else if (c == '\n') {
            memcpy(out + n, "\\n\n", 3);
            n += 3;
        } else if (c < 0x20 || c >= 0x7f) {
            n += (size_t)sprintf(out + n, "\\x%02x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return out;
}


static void
assert_replies(const struct harness *h, const char *name,
               const char *expected)
{
    if (!replies_match(expected, h->out, h->outlen)) {
        char *want = escape(expected, strlen(expected));
        char *got = escape(h->out, h->outlen);

        fail_msg("%s (chunk %zu): replies differ\n--- expected\n%s\n"
                 "--- actual\n%s", name, h->chunk, want, got);
    }
}


/* Returns the stored message after its Received header. */
static const unsigned char *
record_body(const struct record *rec, size_t *len)
{
    const unsigned char *m = rec->env->message;
    size_t               n = rec->env->message_len;

    assert_true(n > 10);
    assert_memory_equal(m, "Received: ", 10);
    for (size_t i = 0; i + 2 < n; i++) {
        if (m[i] == '\r' && m[i + 1] == '\n' && m[i + 2] != '\t') {
            *len = n - i - 2;
            return m + i + 2;
        }
    }
    if (n >= 2 && m[n - 2] == '\r' && m[n - 1] == '\n') {
        *len = 0;
        return m + n;
    }
    fail_msg("Received header is not terminated");
    return NULL;
}


static void
assert_body(const struct record *rec, const char *name, const void *body,
            size_t body_len)
{
    size_t               len = 0;
    const unsigned char *got = record_body(rec, &len);

    if (len != body_len || memcmp(got, body, len) != 0) {
        char *want = escape(body, body_len);
        char *have = escape((const char *)got, len);

        fail_msg("%s: stored body differs\n--- expected\n%s\n--- actual\n%s",
                 name, want, have);
    }
}


/* Runs one dialogue with the given write size and checks everything. */
static void
run_dialogue(const struct dialogue *d, size_t chunk)
{
    struct harness *h = harness_new(d->client_ip, PRODUCE_COMPLETE, chunk);
    size_t          len = d->client_len ? d->client_len : strlen(d->client);
    char           *expected;

    expected = malloc(strlen(GREETING) + strlen(d->replies) + 1);
    assert_non_null(expected);
    strcpy(expected, GREETING);
    strcat(expected, d->replies);

    harness_write(h, d->client, len);
    assert_replies(h, d->name, expected);
    if (h->nrecords != d->records)
        fail_msg("%s (chunk %zu): %zu records, expected %zu", d->name, chunk,
                 h->nrecords, d->records);
    if (d->body != NULL)
        assert_body(&h->records[0], d->name, d->body, strlen(d->body));

    free(expected);
    harness_free(h);
}


static const struct dialogue dialogues[] = {
    { "ehlo then quit", EHLO "QUIT\r\n", 0, EHLO_OK BYE, 0, NULL, NULL },
    { "helo reply", "HELO client.test\r\nQUIT\r\n", 0,
      "250 " HOST " greets client.test\r\n" BYE, 0, NULL, NULL },
    { "ehlo without name", "EHLO\r\n", 0,
      "501 5.5.4 syntax: EHLO hostname\r\n", 0, NULL, NULL },
    { "message accepted",
      EHLO TXN "Subject: hi\r\n\r\nhello\r\n.\r\nQUIT\r\n", 0,
      EHLO_OK TXN_OK QUEUED BYE, 1, "Subject: hi\r\n\r\nhello\r\n", NULL },
    { "empty message", EHLO TXN ".\r\n", 0, EHLO_OK TXN_OK QUEUED, 1, "",
      NULL },
    { "lowercase commands",
      "ehlo client.test\r\nmail from:<alice@example.com>\r\n"
      "rcpt to:<bob@example.org>\r\nquit\r\n", 0,
      EHLO_OK MAIL_OK RCPT_OK BYE, 0, NULL, NULL },
    { "space after colon", EHLO "MAIL FROM: <alice@example.com>\r\n", 0,
      EHLO_OK MAIL_OK, 0, NULL, NULL },
    { "bare LF ends command", "EHLO client.test\nQUIT\n", 0, EHLO_OK BYE, 0,
      NULL, NULL },

    /* Sequence and syntax. */
    { "mail before ehlo", "MAIL FROM:<alice@example.com>\r\n", 0,
      "503 5.5.1 send EHLO or HELO first\r\n", 0, NULL, NULL },
    { "rcpt before mail", EHLO "RCPT TO:<bob@example.org>\r\n", 0,
      EHLO_OK "503 5.5.1 need MAIL before RCPT\r\n", 0, NULL, NULL },
    { "data before mail", EHLO "DATA\r\n", 0,
      EHLO_OK "503 5.5.1 need MAIL command\r\n", 0, NULL, NULL },
    { "data before rcpt", EHLO "MAIL FROM:<alice@example.com>\r\nDATA\r\n",
      0, EHLO_OK MAIL_OK "503 5.5.1 need RCPT command\r\n", 0, NULL, NULL },
    { "nested mail",
      EHLO "MAIL FROM:<alice@example.com>\r\n"
      "MAIL FROM:<alice@example.com>\r\n", 0,
      EHLO_OK MAIL_OK "503 5.5.1 nested MAIL command\r\n", 0, NULL, NULL },
    { "mail without from", EHLO "MAIL <alice@example.com>\r\n", 0,
      EHLO_OK "501 5.5.4 syntax: MAIL FROM:<address>\r\n", 0, NULL, NULL },
    { "data with argument", EHLO "DATA now\r\n", 0,
      EHLO_OK "501 5.5.4 syntax: DATA\r\n", 0, NULL, NULL },
    { "unknown command", "FOO bar\r\n", 0,
      "500 5.5.1 command not recognized\r\n", 0, NULL, NULL },
    { "starttls not offered", "STARTTLS\r\n", 0,
      "502 5.5.1 command not implemented\r\n", 0, NULL, NULL },
    { "noop vrfy help", "NOOP\r\nVRFY bob\r\nHELP\r\n", 0,
      "250 2.0.0 Ok\r\n"
      "252 2.5.0 cannot verify the user, but will accept mail for "
      "delivery\r\n"
      "214 2.0.0 commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY "
      "HELP\r\n", 0, NULL, NULL },

    /* NUL in data and in a command line. */
    { "nul in body",
      EHLO TXN "Subject: nul\r\n\r\nbefore\0after\r\n.\r\n",
      sizeof(EHLO TXN "Subject: nul\r\n\r\nbefore\0after\r\n.\r\n") - 1,
      EHLO_OK TXN_OK "554 5.6.0 NUL not allowed in message data\r\n", 0,
      NULL, NULL },
    { "nul before terminator", EHLO TXN "x\0\r\n.\r\nNOOP\r\n",
      sizeof(EHLO TXN "x\0\r\n.\r\nNOOP\r\n") - 1,
      EHLO_OK TXN_OK "554 5.6.0 NUL not allowed in message data\r\n"
      "250 2.0.0 Ok\r\n", 0, NULL, NULL },
    { "nul in command",
      EHLO "MAIL FROM:<alice@example.com>\r\n"
      "RCPT TO:<bob@example.org>\0junk\r\n",
      sizeof(EHLO "MAIL FROM:<alice@example.com>\r\n"
             "RCPT TO:<bob@example.org>\0junk\r\n") - 1,
      EHLO_OK MAIL_OK "501 5.5.2 NUL not allowed in a command line\r\n", 0,
      NULL, NULL },

    /* Dot-stuffing, the first line included. */
    { "dot unstuffing",
      EHLO TXN "..first-line-dot: x\r\nSubject: dots\r\n\r\n...\r\n..\r\n"
      "..leading\r\n.\r\n", 0,
      EHLO_OK TXN_OK QUEUED, 1,
      ".first-line-dot: x\r\nSubject: dots\r\n\r\n..\r\n.\r\n.leading\r\n",
      NULL },

    /* Line ends: only CRLF, and only CRLF.CRLF ends the data. */
    { "bare LF in body", EHLO TXN "a\nb\r\n.\r\n", 0,
      EHLO_OK TXN_OK BARE_LF, 0, NULL, NULL },
    { "bare CR in body", EHLO TXN "a\rb\r\n.\r\n", 0,
      EHLO_OK TXN_OK BARE_CR, 0, NULL, NULL },
    { "dot then bare CR", EHLO TXN ".\rx\r\n.\r\n", 0,
      EHLO_OK TXN_OK BARE_CR, 0, NULL, NULL },
    { "LF dot CRLF is data",
      EHLO TXN "Subject: s\r\n\r\nhello\n.\r\n"
      "MAIL FROM:<mallory@acme.example>\r\n.\r\n", 0,
      EHLO_OK TXN_OK BARE_LF, 0, NULL, NULL },

    /* 8-bit and UTF-8 without SMTPUTF8. */
    { "non-ascii sender", EHLO "MAIL FROM:<jos\xc3\xa9@example.com>\r\n", 0,
      EHLO_OK "553 5.6.7 non-ASCII address needs SMTPUTF8, which this "
      "server does not support\r\n", 0, NULL, NULL },
    { "smtputf8 parameter", EHLO "MAIL FROM:<alice@example.com> SMTPUTF8\r\n",
      0, EHLO_OK "555 5.5.4 SMTPUTF8 is not supported\r\n", 0, NULL, NULL },
    { "8bit header kept",
      EHLO "MAIL FROM:<alice@example.com> BODY=8BITMIME\r\n"
      "RCPT TO:<bob@example.org>\r\nDATA\r\n"
      "Subject: Gr\xc3\xb6\xc3\x9f" "e\r\n\r\nbody \xff\r\n.\r\n", 0,
      EHLO_OK TXN_OK QUEUED, 1,
      "Subject: Gr\xc3\xb6\xc3\x9f" "e\r\n\r\nbody \xff\r\n", NULL },

    /* Pipelining. */
    { "all recipients rejected",
      EHLO "MAIL FROM:<alice@example.com>\r\nRCPT TO:<@@bad>\r\nDATA\r\n", 0,
      EHLO_OK MAIL_OK "501 5.1.3 invalid recipient address\r\n"
      "554 5.5.1 no valid recipients\r\n", 0, NULL, NULL },
    { "two pipelined transactions",
      EHLO TXN "Subject: one\r\n\r\n1\r\n.\r\n"
      "MAIL FROM:<carol@acme.example>\r\nRCPT TO:<dave@example.net>\r\n"
      "DATA\r\nSubject: two\r\n\r\n2\r\n.\r\nQUIT\r\n", 0,
      EHLO_OK TXN_OK QUEUED MAIL_OK RCPT_OK DATA_GO QUEUED BYE, 2,
      "Subject: one\r\n\r\n1\r\n", NULL },
    { "quit behind final dot", EHLO TXN "x\r\n.\r\nQUIT\r\n", 0,
      EHLO_OK TXN_OK QUEUED BYE, 1, "x\r\n", NULL },
    { "input after quit ignored", "QUIT\r\nNOOP\r\n", 0, BYE, 0, NULL,
      NULL },

    /* Relay probes and address syntax. */
    { "percent hack", EHLO "MAIL FROM:<alice@example.com>\r\n"
      "RCPT TO:<bob%evil.example@example.org>\r\n", 0,
      EHLO_OK MAIL_OK "550 5.7.1 '%' in the local part is not accepted\r\n",
      0, NULL, NULL },
    { "source route", EHLO "MAIL FROM:<alice@example.com>\r\n"
      "RCPT TO:<@relay.example:bob@example.org>\r\n", 0,
      EHLO_OK MAIL_OK "550 5.7.1 source routes are not accepted\r\n", 0,
      NULL, NULL },
    { "quoted at", EHLO "MAIL FROM:<alice@example.com>\r\n"
      "RCPT TO:<\"bob@evil.example\"@example.org>\r\n", 0,
      EHLO_OK MAIL_OK "550 5.7.1 '@' in a quoted local part is not "
      "accepted\r\n", 0, NULL, NULL },
    { "bang path", EHLO "MAIL FROM:<alice@example.com>\r\n"
      "RCPT TO:<evil.example!bob@example.org>\r\n", 0,
      EHLO_OK MAIL_OK "550 5.7.1 '!' in the local part is not accepted\r\n",
      0, NULL, NULL },
    { "two at signs", EHLO "MAIL FROM:<alice@example.com>\r\n"
      "RCPT TO:<bob@evil.example@example.org>\r\n", 0,
      EHLO_OK MAIL_OK "501 5.1.3 invalid recipient address\r\n", 0, NULL,
      NULL },
    { "address literal", EHLO "MAIL FROM:<alice@example.com>\r\n"
      "RCPT TO:<bob@[192.0.2.1]>\r\n", 0,
      EHLO_OK MAIL_OK "550 5.7.1 address literals are not accepted\r\n", 0,
      NULL, NULL },
    { "recipient without brackets", EHLO "MAIL FROM:<alice@example.com>\r\n"
      "RCPT TO:bob@example.org\r\n", 0,
      EHLO_OK MAIL_OK "501 5.1.3 invalid recipient address\r\n", 0, NULL,
      NULL },
    { "quoted local part accepted", EHLO "MAIL FROM:<alice@example.com>\r\n"
      "RCPT TO:<\"bob smith\"@example.org>\r\n", 0,
      EHLO_OK MAIL_OK RCPT_OK, 0, NULL, NULL },
    { "percent hack in sender", EHLO "MAIL FROM:<alice%x@example.com>\r\n",
      0, EHLO_OK "550 5.7.1 '%' in the local part is not accepted\r\n", 0,
      NULL, NULL },
    { "sender without domain", EHLO "MAIL FROM:<alice>\r\n", 0,
      EHLO_OK "501 5.1.7 invalid sender address\r\n", 0, NULL, NULL },

    /* Relay policy at MAIL. */
    { "unknown sender domain", EHLO "MAIL FROM:<mallory@evil.example>\r\n",
      0, EHLO_OK SENDER_DENIED, 0, NULL, NULL },
    { "null sender", EHLO "MAIL FROM:<>\r\n", 0, EHLO_OK SENDER_DENIED, 0,
      NULL, NULL },
    { "sender domain any case", EHLO "MAIL FROM:<alice@EXAMPLE.Com>\r\n", 0,
      EHLO_OK MAIL_OK, 0, NULL, NULL },
    { "client outside networks", EHLO "MAIL FROM:<alice@example.com>\r\n", 0,
      EHLO_OK "550 5.7.1 client address 192.0.2.7 is not allowed to send "
      "mail for example.com\r\n", 0, NULL, "192.0.2.7" },
    { "ipv6 client allowed", EHLO "MAIL FROM:<alice@example.com>\r\n", 0,
      EHLO_OK MAIL_OK, 0, NULL, "::1" },
    { "region not served", EHLO "MAIL FROM:<x@faraway.example>\r\n", 0,
      EHLO_OK "550 5.7.1 mail from faraway.example belongs to region "
      "ap-south-1, which this server does not serve\r\n", 0, NULL, NULL },

    /* MAIL and RCPT parameters. */
    { "size parameter over max",
      EHLO "MAIL FROM:<alice@example.com> SIZE=300001\r\n", 0,
      EHLO_OK "552 5.3.4 message exceeds the maximum size of 300000 "
      "octets\r\n", 0, NULL, NULL },
    { "size parameter huge",
      EHLO "MAIL FROM:<alice@example.com> SIZE=99999999999999999999\r\n", 0,
      EHLO_OK "552 5.3.4 message exceeds the maximum size of 300000 "
      "octets\r\n", 0, NULL, NULL },
    { "size and body accepted",
      EHLO "MAIL FROM:<alice@example.com> SIZE=300000 BODY=7BIT\r\n", 0,
      EHLO_OK MAIL_OK, 0, NULL, NULL },
    { "size not a number", EHLO "MAIL FROM:<alice@example.com> SIZE=12k\r\n",
      0, EHLO_OK "501 5.5.4 invalid SIZE parameter\r\n", 0, NULL, NULL },
    { "binarymime rejected",
      EHLO "MAIL FROM:<alice@example.com> BODY=BINARYMIME\r\n", 0,
      EHLO_OK "501 5.5.4 invalid BODY parameter\r\n", 0, NULL, NULL },
    { "unknown mail parameter",
      EHLO "MAIL FROM:<alice@example.com> RET=FULL\r\n", 0,
      EHLO_OK "555 5.5.4 unsupported MAIL parameter\r\n", 0, NULL, NULL },
    { "rcpt parameter", EHLO "MAIL FROM:<alice@example.com>\r\n"
      "RCPT TO:<bob@example.org> NOTIFY=NEVER\r\n", 0,
      EHLO_OK MAIL_OK "555 5.5.4 RCPT parameters are not supported\r\n", 0,
      NULL, NULL },

    /* Recipient limit. */
    { "recipient limit", EHLO "MAIL FROM:<alice@example.com>\r\n"
      "RCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
      "RCPT TO:<c@example.org>\r\nRCPT TO:<d@example.org>\r\n"
      "DATA\r\nx\r\n.\r\n", 0,
      EHLO_OK MAIL_OK RCPT_OK RCPT_OK RCPT_OK
      "452 4.5.3 too many recipients\r\n" DATA_GO QUEUED, 1, "x\r\n", NULL },

    /* RSET and EHLO discard the transaction. */
    { "rset then data", EHLO "MAIL FROM:<alice@example.com>\r\n"
      "RCPT TO:<bob@example.org>\r\nRSET\r\nDATA\r\n", 0,
      EHLO_OK MAIL_OK RCPT_OK "250 2.0.0 Ok\r\n"
      "503 5.5.1 need MAIL command\r\n", 0, NULL, NULL },
    { "ehlo resets transaction", EHLO "MAIL FROM:<alice@example.com>\r\n"
      EHLO "RCPT TO:<bob@example.org>\r\n", 0,
      EHLO_OK MAIL_OK EHLO_OK "503 5.5.1 need MAIL before RCPT\r\n", 0, NULL,
      NULL },
    { "rejected data then next message", EHLO TXN "a\nb\r\n.\r\n"
      TXN "ok\r\n.\r\n", 0,
      EHLO_OK TXN_OK BARE_LF TXN_OK QUEUED, 1, "ok\r\n", NULL },
};


static void
dialogue_one_write(void **state)
{
    run_dialogue(*state, SIZE_MAX);
}


static void
dialogue_byte_per_write(void **state)
{
    run_dialogue(*state, 1);
}


/* Sends one message whose text is body (already dot-stuffed). */
static struct harness *
send_message(const void *body, size_t len, size_t chunk)
{
    struct harness *h = harness_new(NULL, PRODUCE_COMPLETE, chunk);

    harness_puts(h, EHLO TXN);
    harness_write(h, body, len);
    harness_puts(h, ".\r\n");
    return h;
}


/* Returns head, then a line of n copies of c ended by CRLF. */
static char *
long_line_message(const char *head, size_t n, char c, size_t *len)
{
    size_t head_len = strlen(head);
    char  *msg = malloc(head_len + n + 3);

    assert_non_null(msg);
    memcpy(msg, head, head_len);
    memset(msg + head_len, c, n);
    memcpy(msg + head_len + n, "\r\n", 3);
    *len = head_len + n + 2;
    return msg;
}


static void
long_body_line_rejected(void **state)
{
    size_t          len;
    char           *msg = long_line_message("Subject: a\r\n\r\n", 1500, 'A',
                                            &len);
    struct harness *h = send_message(msg, len, SIZE_MAX);

    (void)state;
    assert_replies(h, "1500-octet body line",
                   GREETING EHLO_OK TXN_OK LONG_LINE);
    assert_int_equal(h->nrecords, 0);
    harness_free(h);
    free(msg);
}


static void
long_header_line_rejected(void **state)
{
    size_t          len;
    char           *msg = long_line_message("X-Long: ", 1200 - 8, 'B', &len);
    struct harness *h;

    (void)state;
    msg = realloc(msg, len + 9);
    assert_non_null(msg);
    memcpy(msg + len, "\r\nbody\r\n", 9);
    len += 8;
    h = send_message(msg, len, 7);
    assert_replies(h, "1200-octet header line",
                   GREETING EHLO_OK TXN_OK LONG_LINE);
    assert_int_equal(h->nrecords, 0);
    harness_free(h);
    free(msg);
}


static void
line_of_998_kept(void **state)
{
    size_t          len;
    char           *msg = long_line_message("Subject: c\r\n\r\n", 998, 'C',
                                            &len);
    struct harness *h = send_message(msg, len, 1);

    (void)state;
    assert_replies(h, "998-octet line", GREETING EHLO_OK TXN_OK QUEUED);
    assert_int_equal(h->nrecords, 1);
    assert_body(&h->records[0], "998-octet line", msg, len);
    harness_free(h);
    free(msg);
}


static void
stuffed_line_of_998_kept(void **state)
{
    size_t          len;
    char           *msg = long_line_message("\r\n.", 998, '.', &len);
    char           *stored = long_line_message("\r\n", 998, '.', &len);
    struct harness *h = send_message(msg, len + 1, SIZE_MAX);

    (void)state;
    /* 999 octets on the wire, 998 once the stuffed dot is removed. */
    assert_replies(h, "stuffed 998-octet line",
                   GREETING EHLO_OK TXN_OK QUEUED);
    assert_body(&h->records[0], "stuffed 998-octet line", stored, len);
    harness_free(h);
    free(stored);
    free(msg);
}


static void
long_command_line_recovers(void **state)
{
    char            cmd[700];
    struct harness *h = harness_new(NULL, PRODUCE_COMPLETE, 64);

    (void)state;
    memcpy(cmd, "RCPT TO:<", 9);
    memset(cmd + 9, 'a', 600 - 9 - 14);
    memcpy(cmd + 600 - 14, "@example.org>\r\n", 16);
    assert_int_equal(strlen(cmd), 601);

    harness_puts(h, EHLO "MAIL FROM:<alice@example.com>\r\n");
    harness_puts(h, cmd);
    harness_puts(h, "RCPT TO:<bob@example.org>\r\nDATA\r\nx\r\n.\r\n");
    assert_replies(h, "600-octet command",
                   GREETING EHLO_OK MAIL_OK "500 5.5.2 line too long\r\n"
                   RCPT_OK DATA_GO QUEUED);
    assert_int_equal(h->nrecords, 1);
    harness_free(h);
}


static void
command_line_of_512_accepted(void **state)
{
    char            cmd[600];
    struct harness *h = harness_new(NULL, PRODUCE_COMPLETE, SIZE_MAX);

    (void)state;
    /* "NOOP " and 505 octets of padding make 510, and 512 with CRLF. */
    memcpy(cmd, "NOOP ", 5);
    memset(cmd + 5, 'x', 505);
    memcpy(cmd + 510, "\r\n", 2);
    harness_write(h, cmd, 512);
    assert_replies(h, "512-octet command", GREETING "250 2.0.0 Ok\r\n");
    harness_free(h);

    h = harness_new(NULL, PRODUCE_COMPLETE, SIZE_MAX);
    memset(cmd + 5, 'x', 506);
    memcpy(cmd + 511, "\r\n", 2);
    harness_write(h, cmd, 513);
    assert_replies(h, "513-octet command",
                   GREETING "500 5.5.2 line too long\r\n");
    harness_free(h);
}


static void
folded_references_kept(void **state)
{
    char           *msg = malloc(16384);
    size_t          len = 0;
    struct harness *h;

    (void)state;
    assert_non_null(msg);
    len += (size_t)sprintf(msg + len, "References: <0@example.com>\r\n");
    for (int i = 1; i <= 60; i++)
        len += (size_t)sprintf(msg + len,
                               " <reference-%03d-padding-padding-padding-"
                               "padding-padding-padding-padding-padding-"
                               "padding-padding-padding-padding-padding-"
                               "padding@example.com>\r\n", i);
    len += (size_t)sprintf(msg + len, "X-Tag: after-refs\r\n\r\nhello\r\n");
    assert_true(len > 8000);

    h = send_message(msg, len, 3);
    assert_replies(h, "folded References", GREETING EHLO_OK TXN_OK QUEUED);
    assert_body(&h->records[0], "folded References", msg, len);
    harness_free(h);
    free(msg);
}


static void
huge_header_rejected(void **state)
{
    size_t          cap = 290000;
    char           *msg = malloc(cap);
    size_t          len = 0;
    struct harness *h;

    (void)state;
    assert_non_null(msg);
    for (int i = 0; len + 64 < cap - 16; i++)
        len += (size_t)sprintf(msg + len, "X-Filler-%d: %s\r\n", i,
                               "abcdefghijklmnopqrstuvwxyz");
    len += (size_t)sprintf(msg + len, "\r\ntiny\r\n");
    assert_true(len > 256 * 1024 && len < MAX_SIZE);

    h = send_message(msg, len, SIZE_MAX);
    assert_replies(h, "huge header",
                   GREETING EHLO_OK TXN_OK
                   "552 5.3.4 header section too large\r\n");
    assert_int_equal(h->nrecords, 0);
    harness_free(h);
    free(msg);
}


static void
message_over_max_rejected(void **state)
{
    size_t          len;
    char           *msg = long_line_message("Subject: big\r\n\r\n", 0, 'x',
                                            &len);
    struct harness *h = harness_new(NULL, PRODUCE_COMPLETE, SIZE_MAX);
    char            line[102];

    (void)state;
    memset(line, 'z', 100);
    memcpy(line + 100, "\r\n", 2);
    harness_puts(h, EHLO TXN);
    harness_write(h, msg, len);
    for (int i = 0; i < 3000; i++)
        harness_write(h, line, sizeof(line));
    harness_puts(h, ".\r\nNOOP\r\n");
    assert_replies(h, "message over max",
                   GREETING EHLO_OK TXN_OK
                   "552 5.3.4 message exceeds the maximum size of 300000 "
                   "octets\r\n250 2.0.0 Ok\r\n");
    assert_int_equal(h->nrecords, 0);
    harness_free(h);
    free(msg);
}


static void
final_reply_waits_for_ack(void **state)
{
    struct harness *h = harness_new(NULL, PRODUCE_HOLD, SIZE_MAX);

    (void)state;
    harness_puts(h, EHLO TXN "Subject: q\r\n\r\nlast chunk\r\n.\r\nQUIT\r\n");
    assert_replies(h, "before the ack", GREETING EHLO_OK TXN_OK);
    assert_int_equal(smtp_session_state(h->s), SMTP_STATE_PRODUCING);
    assert_int_equal(h->nrecords, 1);

    smtp_session_produce_done(h->s, SMTP_PRODUCE_OK);
    harness_pump(h);
    assert_replies(h, "after the ack", GREETING EHLO_OK TXN_OK QUEUED BYE);
    assert_int_equal(smtp_session_state(h->s), SMTP_STATE_CLOSED);
    assert_int_equal(h->nrecords, 1);
    harness_free(h);
}


static void
pipelined_transactions_isolated(void **state)
{
    struct harness  *h = harness_new(NULL, PRODUCE_COMPLETE, SIZE_MAX);
    struct envelope *one, *two;

    (void)state;
    harness_puts(h, EHLO "MAIL FROM:<alice@example.com>\r\n"
                 "RCPT TO:<bob@example.org>\r\nRCPT TO:<eve@example.org>\r\n"
                 "DATA\r\nSubject: one\r\n\r\n1\r\n.\r\n"
                 "MAIL FROM:<carol@bergmann.example>\r\n"
                 "RCPT TO:<dave@example.net>\r\n"
                 "DATA\r\nSubject: two\r\n\r\n2\r\n.\r\n");
    assert_int_equal(h->nrecords, 2);
    one = h->records[0].env;
    two = h->records[1].env;

    assert_string_not_equal(one->id, two->id);
    assert_string_equal(one->sender, "alice@example.com");
    assert_string_equal(two->sender, "carol@bergmann.example");
    assert_int_equal(one->nrecipients, 2);
    assert_int_equal(two->nrecipients, 1);
    assert_string_equal(two->recipients[0], "dave@example.net");
    assert_string_equal(one->org, "acme");
    assert_string_equal(two->org, "bergmann");
    assert_string_equal(h->records[0].topic, "mail.us-east-1");
    assert_string_equal(h->records[1].topic, "mail.eu-west-1.pinned");
    assert_body(&h->records[1], "second transaction",
                "Subject: two\r\n\r\n2\r\n", 19);
    harness_free(h);
}


static void
rset_isolates_transactions(void **state)
{
    struct harness  *h = harness_new(NULL, PRODUCE_COMPLETE, SIZE_MAX);
    struct envelope *env;

    (void)state;
    harness_puts(h, EHLO "MAIL FROM:<alice@example.com>\r\n"
                 "RCPT TO:<bob@example.org>\r\nRSET\r\n"
                 "MAIL FROM:<carol@acme.example>\r\n"
                 "RCPT TO:<dave@example.net>\r\nDATA\r\nx\r\n.\r\n");
    assert_int_equal(h->nrecords, 1);
    env = h->records[0].env;
    assert_string_equal(env->sender, "carol@acme.example");
    assert_int_equal(env->nrecipients, 1);
    assert_string_equal(env->recipients[0], "dave@example.net");
    harness_free(h);
}


static void
envelope_fields_filled(void **state)
{
    struct harness  *h = harness_new(NULL, PRODUCE_COMPLETE, SIZE_MAX);
    struct envelope *env;
    unsigned char    digest[32];
    char             expected[256];
    const char      *msg;

    (void)state;
    harness_puts(h, EHLO TXN "Subject: e\r\n\r\nbody\r\n.\r\n");
    assert_int_equal(h->nrecords, 1);
    env = h->records[0].env;
    msg = (const char *)env->message;

    assert_string_equal(env->org, "acme");
    assert_string_equal(env->home_region, "us-east-1");
    assert_true(env->multi_region);
    assert_int_equal(env->integration, INTEGRATION_SMTP);
    assert_string_equal(env->client_address, "127.0.0.1");
    assert_string_equal(env->helo, "client.test");
    assert_string_equal(env->tls, "");
    assert_int_equal(env->chunk_index, 0);
    assert_int_equal(env->chunk_count, 1);
    assert_int_equal(env->size, env->message_len);
    assert_true(env->received_at_ms > 1700000000000LL);

    EVP_Digest(env->message, env->message_len, digest, NULL, EVP_sha256(),
               NULL);
    assert_memory_equal(env->sha256, digest, 32);

    snprintf(expected, sizeof(expected),
             "Received: from client.test ([127.0.0.1])\r\n"
             "\tby " HOST " (Ferry) with ESMTP id %s\r\n"
             "\tfor <bob@example.org>; ", env->id);
    assert_true(env->message_len > strlen(expected));
    assert_memory_equal(msg, expected, strlen(expected));

    /* The reply names the same id as the envelope. */
    assert_non_null(strstr(h->out, env->id));
    harness_free(h);
}


static void
disconnect_mid_data_no_record(void **state)
{
    struct harness *h = harness_new(NULL, PRODUCE_COMPLETE, SIZE_MAX);

    (void)state;
    harness_puts(h, EHLO TXN "Subject: half\r\n\r\nfirst half of the");
    assert_int_equal(smtp_session_state(h->s), SMTP_STATE_DATA);
    assert_non_null(smtp_session_msgid(h->s));
    assert_int_equal(h->nrecords, 0);
    harness_free(h);
}


static void
produce_outcomes(void **state)
{
    static const struct {
        const char       *name;
        enum produce_mode mode;
        const char       *reply;
        size_t            records;
    } cases[] = {
        { "produce rejected", PRODUCE_REJECT,
          "451 4.3.0 message not queued, try again later\r\n", 0 },
        { "report failed", PRODUCE_REPORT_FAILURE,
          "451 4.3.0 message not queued, try again later\r\n", 1 },
        { "ack timed out", PRODUCE_REPORT_TIMEOUT,
          "451 4.4.1 no acknowledgement from the queue in time, try again "
          "later\r\n", 1 },
        { "record too large", PRODUCE_TOO_LARGE,
          "552 5.3.4 message too large for the queue\r\n", 0 },
    };
    char expected[512];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        struct harness *h = harness_new(NULL, cases[i].mode, SIZE_MAX);

        harness_puts(h, EHLO TXN "x\r\n.\r\nNOOP\r\n");
        snprintf(expected, sizeof(expected), "%s%s%s%s%s", GREETING,
                 EHLO_OK, TXN_OK, cases[i].reply, "250 2.0.0 Ok\r\n");
        assert_replies(h, cases[i].name, expected);
        assert_int_equal(h->nrecords, cases[i].records);
        harness_free(h);
    }
}


static void
late_report_ignored(void **state)
{
    struct harness *h = harness_new(NULL, PRODUCE_COMPLETE, SIZE_MAX);

    (void)state;
    harness_puts(h, EHLO);
    smtp_session_produce_done(h->s, SMTP_PRODUCE_OK);
    assert_replies(h, "report without a message", GREETING EHLO_OK);
    harness_free(h);
}


static void
shutdown_between_commands(void **state)
{
    struct harness *h = harness_new(NULL, PRODUCE_COMPLETE, SIZE_MAX);

    (void)state;
    harness_puts(h, EHLO);
    smtp_session_shutdown(h->s);
    assert_replies(h, "shutdown when idle",
                   GREETING EHLO_OK "421 4.3.2 " HOST
                   " service shutting down\r\n");
    assert_int_equal(smtp_session_state(h->s), SMTP_STATE_CLOSED);
    assert_string_equal(smtp_session_close_reason(h->s), "shutdown");
    harness_free(h);
}


static void
shutdown_mid_data(void **state)
{
    struct harness *h = harness_new(NULL, PRODUCE_COMPLETE, SIZE_MAX);

    (void)state;
    harness_puts(h, EHLO TXN "Subject: cut\r\n\r\npart");
    smtp_session_shutdown(h->s);
    harness_puts(h, " more\r\n.\r\n");
    assert_replies(h, "shutdown in DATA",
                   GREETING EHLO_OK TXN_OK "421 4.3.2 " HOST
                   " service shutting down\r\n");
    assert_int_equal(h->nrecords, 0);
    harness_free(h);
}


static void
shutdown_while_producing(void **state)
{
    struct harness *h = harness_new(NULL, PRODUCE_HOLD, SIZE_MAX);

    (void)state;
    harness_puts(h, EHLO TXN "x\r\n.\r\nNOOP\r\n");
    smtp_session_shutdown(h->s);
    assert_replies(h, "shutdown before the ack", GREETING EHLO_OK TXN_OK);

    smtp_session_produce_done(h->s, SMTP_PRODUCE_OK);
    assert_replies(h, "shutdown after the ack",
                   GREETING EHLO_OK TXN_OK QUEUED "421 4.3.2 " HOST
                   " service shutting down\r\n");
    assert_int_equal(smtp_session_state(h->s), SMTP_STATE_CLOSED);
    harness_free(h);
}


static void
idle_timeout_closes(void **state)
{
    struct harness *h = harness_new(NULL, PRODUCE_COMPLETE, SIZE_MAX);

    (void)state;
    harness_puts(h, EHLO "MAIL FROM:<alice@example.com>\r\n");
    smtp_session_timeout(h->s);
    assert_replies(h, "idle timeout",
                   GREETING EHLO_OK MAIL_OK "421 4.4.2 " HOST
                   " idle timeout, closing connection\r\n");
    assert_string_equal(smtp_session_close_reason(h->s), "idle-timeout");
    harness_free(h);
}


/* Runs client with limits_cfg and returns the harness. */
static struct harness *
limits_dialogue(const char *client)
{
    struct harness *h = harness_new(NULL, PRODUCE_COMPLETE, SIZE_MAX);

    smtp_session_free(h->s);
    free(h->out);
    h->out = NULL;
    h->outlen = h->outcap = 0;
    h->s = smtp_session_new(limits_cfg, (struct sockaddr *)&(struct
                            sockaddr_in){ .sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK) },
                            &fake_ops, h);
    smtp_session_start(h->s);
    harness_puts(h, client);
    return h;
}


static void
max_errors_from_config(void **state)
{
    struct harness *h = limits_dialogue("FOO\r\nNOOP\r\nBAR\r\nBAZ\r\n"
                                        "NOOP\r\n");

    (void)state;
    assert_replies(h, "three errors",
                   GREETING "500 5.5.1 command not recognized\r\n"
                   "250 2.0.0 Ok\r\n"
                   "500 5.5.1 command not recognized\r\n"
                   "500 5.5.1 command not recognized\r\n"
                   "421 4.7.0 " HOST " too many errors, closing "
                   "connection\r\n");
    assert_string_equal(smtp_session_close_reason(h->s), "too-many-errors");
    harness_free(h);
}


static void
max_commands_from_config(void **state)
{
    char           *expected = malloc(4096);
    struct harness *h;

    (void)state;
    assert_non_null(expected);
    h = limits_dialogue("NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n"
                        "NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n"
                        "NOOP\r\nNOOP\r\nNOOP\r\n");
    strcpy(expected, GREETING);
    for (int i = 0; i < 12; i++)
        strcat(expected, "250 2.0.0 Ok\r\n");
    strcat(expected, "421 4.7.0 " HOST " too many commands, closing "
           "connection\r\n");
    assert_replies(h, "twelve commands", expected);
    assert_string_equal(smtp_session_close_reason(h->s),
                        "too-many-commands");
    free(expected);
    harness_free(h);
}


/* The DATA that reaches the limit still gets its message through. */
static void
max_commands_finishes_message(void **state)
{
    struct harness *h;

    (void)state;
    h = limits_dialogue(EHLO "NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n"
                        "NOOP\r\nNOOP\r\nNOOP\r\n" TXN "x\r\n.\r\nNOOP\r\n");
    assert_replies(h, "limit at DATA",
                   GREETING EHLO_OK "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"
                   "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"
                   "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"
                   TXN_OK QUEUED "421 4.7.0 " HOST " too many commands, "
                   "closing connection\r\n");
    assert_int_equal(h->nrecords, 1);
    harness_free(h);
}


static void
refusals_reply_421(void **state)
{
    static const struct {
        enum smtp_refusal why;
        const char       *reply;
        const char       *reason;
    } cases[] = {
        { SMTP_REFUSE_SERVER_FULL,
          "421 4.7.0 " HOST " too many connections, try again later\r\n",
          "too-many-connections" },
        { SMTP_REFUSE_CLIENT_FULL,
          "421 4.7.0 " HOST " too many connections from 127.0.0.1, try "
          "again later\r\n", "too-many-connections-from-client" },
        { SMTP_REFUSE_NOT_DURABLE,
          "421 4.3.0 " HOST " queue cannot store mail safely now, try "
          "again later\r\n", "not-durable" },
    };
    struct sockaddr_in sin = { .sin_family = AF_INET };

    (void)state;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        struct harness *h = calloc(1, sizeof(*h));

        assert_non_null(h);
        h->s = smtp_session_new(cfg, (struct sockaddr *)&sin, &fake_ops, h);
        smtp_session_refuse(h->s, cases[i].why);
        assert_replies(h, cases[i].reason, cases[i].reply);
        assert_int_equal(smtp_session_state(h->s), SMTP_STATE_CLOSED);
        assert_false(smtp_session_wants_input(h->s));
        assert_string_equal(smtp_session_close_reason(h->s),
                            cases[i].reason);
        harness_free(h);
    }
}


/* Each state maps to the RFC 5321 timeout that applies to it. */
static void
wait_follows_state(void **state)
{
    struct harness *h = harness_new(NULL, PRODUCE_HOLD, SIZE_MAX);

    (void)state;
    assert_int_equal(smtp_session_wait(h->s), SMTP_WAIT_COMMAND);
    harness_puts(h, EHLO TXN);
    assert_int_equal(smtp_session_wait(h->s), SMTP_WAIT_DATA_INITIATION);
    harness_puts(h, ".");
    assert_int_equal(smtp_session_wait(h->s), SMTP_WAIT_DATA_BLOCK);
    harness_puts(h, ".x\r\n");
    assert_int_equal(smtp_session_wait(h->s), SMTP_WAIT_DATA_BLOCK);
    harness_puts(h, ".\r\n");
    assert_int_equal(smtp_session_wait(h->s), SMTP_WAIT_DATA_TERMINATION);
    smtp_session_produce_done(h->s, SMTP_PRODUCE_OK);
    assert_int_equal(smtp_session_wait(h->s), SMTP_WAIT_COMMAND);
    harness_free(h);
}


static void
too_many_errors_close(void **state)
{
    struct harness *h = harness_new(NULL, PRODUCE_COMPLETE, SIZE_MAX);
    char           *expected = malloc(4096);

    (void)state;
    strcpy(expected, GREETING);
    for (int i = 0; i < 25; i++)
        harness_puts(h, "FOO\r\n");
    for (int i = 0; i < 20; i++)
        strcat(expected, "500 5.5.1 command not recognized\r\n");
    strcat(expected, "421 4.7.0 " HOST " too many errors, closing "
           "connection\r\n");
    assert_replies(h, "twenty errors", expected);
    assert_string_equal(smtp_session_close_reason(h->s), "too-many-errors");
    free(expected);
    harness_free(h);
}


/* Returns the message text of body_len octets: a header, then 'x' lines. */
static char *
chunk_body(size_t body_len)
{
    char  *body = malloc(body_len + 1);
    size_t n = (size_t)sprintf(body, "Subject: chunks\r\n\r\n");

    assert_non_null(body);
    while (n < body_len) {
        size_t line = body_len - n > 80 ? 80 : body_len - n;

        if (line < 3) {
            memset(body + n, 'y', line);
        } else {
            memset(body + n, 'x', line - 2);
            memcpy(body + n + line - 2, "\r\n", 2);
        }
        n += line;
    }
    body[body_len] = '\0';
    return body;
}


/*
 * Sends a message of body_len octets with chunk_size CHUNK_SIZE and
 * checks the records: one per segment, the envelope repeated, and the
 * slices joined giving the whole message with its size and SHA-256.
 */
static void
check_chunked(size_t body_len, size_t expected_chunks)
{
    struct config   *saved = cfg;
    char            *body = chunk_body(body_len);
    struct harness  *h;
    unsigned char   *joined;
    unsigned char    digest[32];
    size_t           len = 0;
    struct envelope *first;

    /* A body ending without CRLF still gets one before the final dot. */
    if (body_len >= 2 && memcmp(body + body_len - 2, "\r\n", 2) != 0)
        memcpy(body + body_len - 2, "\r\n", 2);

    cfg = chunked_cfg;
    h = send_message(body, body_len, 700);
    cfg = saved;

    assert_replies(h, "chunked message", GREETING EHLO_OK TXN_OK QUEUED);
    assert_int_equal(h->nrecords, expected_chunks);
    first = h->records[0].env;

    joined = malloc(first->size + 1);
    assert_non_null(joined);
    for (size_t i = 0; i < h->nrecords; i++) {
        struct envelope *env = h->records[i].env;

        assert_string_equal(env->id, first->id);
        assert_string_equal(h->records[i].topic, "mail.us-east-1");
        assert_int_equal(env->chunk_index, i);
        assert_int_equal(env->chunk_count, expected_chunks);
        assert_int_equal(env->size, first->size);
        assert_memory_equal(env->sha256, first->sha256, 32);
        assert_string_equal(env->sender, "alice@example.com");
        assert_int_equal(env->nrecipients, 1);
        assert_string_equal(env->recipients[0], "bob@example.org");
        assert_int_equal(env->received_at_ms, first->received_at_ms);
        if (i > 0)
            assert_true(env->message_len <= CHUNK_SIZE);
        if (i > 0 && i + 1 < h->nrecords)
            assert_int_equal(env->message_len, CHUNK_SIZE);
        assert_true(len + env->message_len <= first->size);
        memcpy(joined + len, env->message, env->message_len);
        len += env->message_len;
    }
    assert_int_equal(len, first->size);
    EVP_Digest(joined, len, digest, NULL, EVP_sha256(), NULL);
    assert_memory_equal(first->sha256, digest, 32);

    /* The joined records are the trace header and the text as sent. */
    assert_memory_equal(joined, "Received: ", 10);
    assert_memory_equal(joined + len - body_len, body, body_len);

    free(joined);
    free(body);
    harness_free(h);
}


static void
chunked_message_split(void **state)
{
    (void)state;
    check_chunked(5000, 5);
}


static void
chunked_message_exact_multiple(void **state)
{
    (void)state;
    check_chunked(2 * CHUNK_SIZE, 2);
}


static void
chunked_message_one_segment(void **state)
{
    (void)state;
    check_chunked(CHUNK_SIZE, 1);
}


/* A chunk the producer does not take ends the message with 451. */
static void
chunked_message_produce_fails(void **state)
{
    struct config  *saved = cfg;
    char           *body = chunk_body(5000);
    struct harness *h;

    (void)state;
    cfg = chunked_cfg;
    h = harness_new(NULL, PRODUCE_COMPLETE, SIZE_MAX);
    h->fail_chunk = 2;
    harness_puts(h, EHLO TXN);
    harness_write(h, body, 5000);
    harness_puts(h, ".\r\nNOOP\r\n");
    cfg = saved;

    assert_replies(h, "chunk 2 not queued",
                   GREETING EHLO_OK TXN_OK
                   "451 4.3.0 message not queued, try again later\r\n"
                   "250 2.0.0 Ok\r\n");
    assert_int_equal(h->nrecords, 2);
    assert_int_equal(smtp_session_state(h->s), SMTP_STATE_READY);
    free(body);
    harness_free(h);
}


/* A failed report after the last chunk is queued gives 451, never 250. */
static void
chunked_message_report_fails(void **state)
{
    struct config  *saved = cfg;
    char           *body = chunk_body(3000);
    struct harness *h;

    (void)state;
    cfg = chunked_cfg;
    h = harness_new(NULL, PRODUCE_HOLD, SIZE_MAX);
    harness_puts(h, EHLO TXN);
    harness_write(h, body, 3000);
    harness_puts(h, ".\r\n");
    cfg = saved;

    assert_int_equal(h->nrecords, 3);
    assert_int_equal(smtp_session_state(h->s), SMTP_STATE_PRODUCING);
    smtp_session_produce_done(h->s, SMTP_PRODUCE_FAILED);
    smtp_session_produce_done(h->s, SMTP_PRODUCE_OK);
    assert_replies(h, "failed report",
                   GREETING EHLO_OK TXN_OK
                   "451 4.3.0 message not queued, try again later\r\n");
    free(body);
    harness_free(h);
}


#define EHLO_TLS_OK                                                 \
    "250-" HOST " greets client.test\r\n250-PIPELINING\r\n"         \
    "250-SIZE 300000\r\n250-8BITMIME\r\n250-CHUNKING\r\n"       \
    "250-STARTTLS\r\n250 ENHANCEDSTATUSCODES\r\n"
#define TLS_READY "220 2.0.0 Ready to start TLS\r\n"
#define TLS_TEXT  "TLSv1.3:TLS_AES_256_GCM_SHA384"

/* Returns a session of tls_cfg whose STARTTLS handshake has finished. */
static struct harness *
tls_session(const char *after_starttls)
{
    struct config  *saved = cfg;
    struct harness *h;

    cfg = tls_cfg;
    h = harness_new(NULL, PRODUCE_COMPLETE, SIZE_MAX);
    cfg = saved;
    harness_puts(h, EHLO "STARTTLS\r\n");
    harness_puts(h, after_starttls);
    assert_replies(h, "starttls", GREETING EHLO_TLS_OK TLS_READY);
    assert_int_equal(smtp_session_state(h->s), SMTP_STATE_STARTTLS);
    assert_false(smtp_session_wants_input(h->s));

    /* The server discards what came before the handshake ended. */
    h->inoff = h->inlen;
    smtp_session_tls_started(h->s, "TLSv1.3", "TLS_AES_256_GCM_SHA384");
    assert_int_equal(smtp_session_state(h->s), SMTP_STATE_GREETED);
    h->outlen = 0;
    h->out[0] = '\0';
    return h;
}


static void
starttls_not_offered_without_tls(void **state)
{
    struct harness *h = harness_new(NULL, PRODUCE_COMPLETE, SIZE_MAX);

    (void)state;
    harness_puts(h, EHLO "STARTTLS\r\n");
    assert_replies(h, "no tls configured",
                   GREETING EHLO_OK "502 5.5.1 command not implemented\r\n");
    harness_free(h);
}


static void
starttls_pipelined_input_not_read(void **state)
{
    struct harness *h;

    (void)state;
    h = tls_session("MAIL FROM:<alice@example.com>\r\n"
                    "RCPT TO:<bob@example.org>\r\n");
    assert_int_equal(h->nrecords, 0);
    assert_null(smtp_session_msgid(h->s));

    /* After the handshake the client must say EHLO again. */
    harness_puts(h, "MAIL FROM:<alice@example.com>\r\n");
    assert_replies(h, "mail before ehlo",
                   "503 5.5.1 send EHLO or HELO first\r\n");
    harness_free(h);
}


static void
starttls_then_message(void **state)
{
    struct harness  *h = tls_session("");
    struct envelope *env;
    const char      *with = "with ESMTPS (" TLS_TEXT ") id ";

    (void)state;
    harness_puts(h, EHLO "STARTTLS\r\n" TXN "x\r\n.\r\n");
    assert_replies(h, "message over tls",
                   EHLO_OK "503 5.5.1 TLS already active\r\n" TXN_OK
                   QUEUED);
    assert_int_equal(h->nrecords, 1);
    env = h->records[0].env;
    assert_string_equal(env->tls, TLS_TEXT);
    assert_non_null(memmem(env->message, env->message_len, with,
                           strlen(with)));
    harness_free(h);
}


static void
starttls_rejected_cases(void **state)
{
    static const struct {
        const char *name;
        const char *client;
        const char *replies;
    } cases[] = {
        { "argument", EHLO "STARTTLS now\r\n",
          EHLO_TLS_OK "501 5.5.4 syntax: STARTTLS\r\n" },
        { "in transaction",
          EHLO "MAIL FROM:<alice@example.com>\r\nSTARTTLS\r\n",
          EHLO_TLS_OK MAIL_OK "503 5.5.1 STARTTLS not allowed during a mail "
          "transaction\r\n" },
    };
    char expected[1024];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        struct config  *saved = cfg;
        struct harness *h;

        cfg = tls_cfg;
        h = harness_new(NULL, PRODUCE_COMPLETE, SIZE_MAX);
        cfg = saved;
        harness_puts(h, cases[i].client);
        snprintf(expected, sizeof(expected), "%s%s", GREETING,
                 cases[i].replies);
        assert_replies(h, cases[i].name, expected);
        assert_true(smtp_session_wants_input(h->s));
        harness_free(h);
    }
}


static struct config *load_text(const char *text);

/* SHA-512 hashes of "correct horse" with two salts. */
#define HASH_ONE \
    "$6$dialoguesalt$OZDUdfIPfjHgmVwXqaC.xExtGTDVs6WgO0XOJ4hcG8Z0FRbVVBOs" \
    "jmka8/FPfKYl/CNefMMQSrgYou92DlWrg/"
#define HASH_TWO \
    "$6$othersalt$Vme7YuoVPcWV4.3nxCB/Rones1Q/C0lGqgKj1adhnnmBsolXdNhWURq" \
    "Sj8mhnnDc/CmKcbFUzwgDQ8p/B47da."

static void
write_credentials(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}


/*
 * A SIGHUP during a check reloads the credentials. A match counts only
 * when the user still has the hash that was checked.
 */
static void
auth_reload_during_check(void **state)
{
    static const struct {
        const char *name;
        const char *reloaded;   /* credentials file after the reload */
        bool        match;
        const char *reply;
    } cases[] = {
        { "unchanged", "alice acme " HASH_ONE "\n", true,
          "235 2.7.0 authentication successful\r\n" },
        { "hash replaced", "alice acme " HASH_TWO "\n", true,
          "454 4.7.0 temporary authentication failure, try again "
          "later\r\n" },
        { "user removed", "bob acme " HASH_ONE "\n", true,
          "535 5.7.8 authentication credentials invalid\r\n" },
        { "no match", "alice acme " HASH_ONE "\n", false,
          "535 5.7.8 authentication credentials invalid\r\n" },
    };
    char path[] = "/tmp/ferry-session-credentials-XXXXXX";
    int  fd = mkstemp(path);
    char text[4096];

    (void)state;
    assert_true(fd >= 0);
    close(fd);
    snprintf(text, sizeof(text), "%.*s  tls_certificate: /nonexistent.pem\n"
             "  tls_key: /nonexistent.key\n  credentials_file: %s\n%s",
             (int)(strstr(config_yaml, "  max_message_size") - config_yaml),
             config_yaml, path, strstr(config_yaml, "  max_message_size"));

    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        struct config  *saved = cfg;
        struct config  *auth_cfg;
        struct harness *h;
        char            err[512];

        write_credentials(path, "alice acme " HASH_ONE "\n");
        auth_cfg = load_text(text);
        cfg = auth_cfg;
        h = harness_new(NULL, PRODUCE_COMPLETE, SIZE_MAX);
        cfg = saved;
        harness_puts(h, EHLO "STARTTLS\r\n");
        h->inoff = h->inlen;
        smtp_session_tls_started(h->s, "TLSv1.3", "TLS_AES_256_GCM_SHA384");
        harness_puts(h, EHLO "AUTH PLAIN AGFsaWNlAGNvcnJlY3QgaG9yc2U=\r\n"
                     "NOOP\r\n");
        assert_int_equal(smtp_session_state(h->s), SMTP_STATE_AUTH_CHECK);
        h->outlen = 0;
        h->out[0] = '\0';

        write_credentials(path, cases[i].reloaded);
        if (config_reload_credentials(auth_cfg, err, sizeof(err)) == -1)
            fail_msg("%s: reload failed: %s", cases[i].name, err);
        smtp_session_auth_done(h->s, cases[i].match);
        assert_int_equal(smtp_session_state(h->s), SMTP_STATE_READY);
        assert_replies(h, cases[i].name, cases[i].reply);

        /* The NOOP pipelined behind AUTH is read only now. */
        harness_pump(h);
        assert_true(h->outlen > strlen(cases[i].reply));
        assert_string_equal(h->out + strlen(cases[i].reply),
                            "250 2.0.0 Ok\r\n");
        harness_free(h);
        config_free(auth_cfg);
    }
    unlink(path);
}


static struct config *
load_text(const char *text)
{
    char           path[] = "/tmp/ferry-session-test-XXXXXX";
    char           err[512];
    int            fd = mkstemp(path);
    struct config *loaded;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    loaded = config_load(path, err, sizeof(err));
    unlink(path);
    if (loaded == NULL)
        fail_msg("%s", err);
    return loaded;
}


static int
load_config(void **state)
{
    char *text = malloc(strlen(config_yaml) + 64);

    (void)state;
    assert_non_null(text);
    cfg = load_text(config_yaml);

    /* The same file with small chunks, placed under the ingress keys. */
    strcpy(text, config_yaml);
    text[strstr(text, "  max_message_size") - text] = '\0';
    sprintf(text + strlen(text), "  chunk_size: %d\n%s", CHUNK_SIZE,
            strstr(config_yaml, "  max_message_size"));
    chunked_cfg = load_text(text);

    /* And with TLS; the session only checks that the files are set. */
    text = realloc(text, strlen(config_yaml) + 128);
    assert_non_null(text);
    strcpy(text, config_yaml);
    text[strstr(text, "  max_message_size") - text] = '\0';
    sprintf(text + strlen(text), "  tls_certificate: /nonexistent.pem\n"
            "  tls_key: /nonexistent.key\n%s",
            strstr(config_yaml, "  max_message_size"));
    tls_cfg = load_text(text);

    /* And with small per-session limits. */
    strcpy(text, config_yaml);
    text[strstr(text, "  max_message_size") - text] = '\0';
    sprintf(text + strlen(text), "  max_errors: 3\n  max_commands: 12\n%s",
            strstr(config_yaml, "  max_message_size"));
    limits_cfg = load_text(text);
    free(text);
    return 0;
}


static int
free_config(void **state)
{
    (void)state;
    config_free(cfg);
    config_free(chunked_cfg);
    config_free(tls_cfg);
    config_free(limits_cfg);
    return 0;
}


int
main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(long_body_line_rejected),
        cmocka_unit_test(long_header_line_rejected),
        cmocka_unit_test(line_of_998_kept),
        cmocka_unit_test(stuffed_line_of_998_kept),
        cmocka_unit_test(long_command_line_recovers),
        cmocka_unit_test(command_line_of_512_accepted),
        cmocka_unit_test(folded_references_kept),
        cmocka_unit_test(huge_header_rejected),
        cmocka_unit_test(message_over_max_rejected),
        cmocka_unit_test(final_reply_waits_for_ack),
        cmocka_unit_test(pipelined_transactions_isolated),
        cmocka_unit_test(rset_isolates_transactions),
        cmocka_unit_test(envelope_fields_filled),
        cmocka_unit_test(disconnect_mid_data_no_record),
        cmocka_unit_test(produce_outcomes),
        cmocka_unit_test(late_report_ignored),
        cmocka_unit_test(shutdown_between_commands),
        cmocka_unit_test(shutdown_mid_data),
        cmocka_unit_test(shutdown_while_producing),
        cmocka_unit_test(idle_timeout_closes),
        cmocka_unit_test(too_many_errors_close),
        cmocka_unit_test(auth_reload_during_check),
        cmocka_unit_test(max_errors_from_config),
        cmocka_unit_test(max_commands_from_config),
        cmocka_unit_test(max_commands_finishes_message),
        cmocka_unit_test(refusals_reply_421),
        cmocka_unit_test(wait_follows_state),
        cmocka_unit_test(chunked_message_split),
        cmocka_unit_test(chunked_message_exact_multiple),
        cmocka_unit_test(chunked_message_one_segment),
        cmocka_unit_test(chunked_message_produce_fails),
        cmocka_unit_test(chunked_message_report_fails),
        cmocka_unit_test(starttls_not_offered_without_tls),
        cmocka_unit_test(starttls_pipelined_input_not_read),
        cmocka_unit_test(starttls_then_message),
        cmocka_unit_test(starttls_rejected_cases),
    };
    size_t             ndialogues = sizeof(dialogues) / sizeof(*dialogues);
    size_t             nfixed = sizeof(fixed) / sizeof(*fixed);
    size_t             n = 0;
    struct CMUnitTest *tests;
    char             (*names)[128];
    int                rc;

    log_init("ingress", LOG_LEVEL_ERROR);

    /* One test per dialogue and write size, named after the dialogue. */
    tests = calloc(2 * ndialogues + nfixed, sizeof(*tests));
    names = calloc(2 * ndialogues, sizeof(*names));
    assert_non_null(tests);
    assert_non_null(names);
    for (size_t i = 0; i < ndialogues; i++) {
        snprintf(names[2 * i], sizeof(names[0]), "%s, one write",
                 dialogues[i].name);
        snprintf(names[2 * i + 1], sizeof(names[0]), "%s, octet by octet",
                 dialogues[i].name);
        tests[n++] = (struct CMUnitTest){ names[2 * i], dialogue_one_write,
                                          NULL, NULL,
                                          (void *)&dialogues[i] };
        tests[n++] = (struct CMUnitTest){ names[2 * i + 1],
                                          dialogue_byte_per_write, NULL,
                                          NULL, (void *)&dialogues[i] };
    }
    for (size_t i = 0; i < nfixed; i++)
        tests[n++] = fixed[i];

    rc = _cmocka_run_group_tests("smtp_session", tests, n, load_config,
                                 free_config);
    free(tests);
    free(names);
    return rc;
}

/*
 * Unit tests of the delivery status notification: when one is sent, and
 * the shape of its text (RFC 3464 multipart/report).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsn.h"
#include "util.h"

#define DSN_FROM "mailer-daemon@acme.example"

static struct envelope *
make_envelope(const char *sender, const char *message, size_t nrcpt)
{
    struct envelope *env = xcalloc(1, sizeof(*env));

    strcpy(env->id, "01JTESTENVELOPE00000000000");
    env->org = xstrdup("acme");
    env->home_region = xstrdup("us-east-1");
    env->sender = xstrdup(sender);
    env->recipients = xcalloc(nrcpt, sizeof(char *));
    for (size_t i = 0; i < nrcpt; i++) {
        char rcpt[64];

        snprintf(rcpt, sizeof(rcpt), "bob%zu@example.org", i);
        env->recipients[i] = xstrdup(rcpt);
    }
    env->nrecipients = nrcpt;
    env->client_address = xstrdup("127.0.0.1");
    env->helo = xstrdup("client.test");
    env->tls = xstrdup("");
    env->received_at_ms = 1764866000000;
    env->message = (unsigned char *)xstrdup(message);
    env->message_len = strlen(message);
    env->size = env->message_len;
    env->chunk_count = 1;
    return env;
}


static void
wanted_only_for_plain_mail(void **state)
{
    static const struct {
        const char *sender;
        const char *dsn_from;
        const char *message;
        int         wanted;
    } cases[] = {
        { "alice@acme.example", DSN_FROM,
          "Subject: hi\r\n\r\nbody\r\n", 1 },
        { "", DSN_FROM, "Subject: bounce\r\n\r\nbody\r\n", 0 },
        { "alice@acme.example", "", "Subject: hi\r\n\r\nbody\r\n", 0 },
        { "MAILER-DAEMON@acme.example", DSN_FROM,
          "Subject: loop\r\n\r\nbody\r\n", 0 },
        { "alice@acme.example", DSN_FROM,
          "Content-Type: multipart/report; report-type=delivery-status;\r\n"
          "\tboundary=x\r\n\r\n--x--\r\n", 0 },
        { "alice@acme.example", DSN_FROM,
          "content-type: Multipart/Report;\r\n report-type=\"Delivery-"
          "Status\"; boundary=x\r\n\r\n--x--\r\n", 0 },
        { "alice@acme.example", DSN_FROM,
          "Content-Type: multipart/report; "
          "report-type=disposition-notification\r\n\r\nx\r\n", 1 },
        { "alice@acme.example", DSN_FROM,
          "Subject: x\r\n\r\nContent-Type: multipart/report; "
          "report-type=delivery-status\r\n", 1 },
        { "alice@acme.example", DSN_FROM,
          "X-Content-Type: multipart/report; "
          "report-type=delivery-status\r\n\r\nx\r\n", 1 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        struct envelope *env = make_envelope(cases[i].sender,
                                             cases[i].message, 1);
        int              wanted = dsn_wanted(env, cases[i].dsn_from);

        if (wanted != cases[i].wanted)
            fail_msg("case %zu: dsn_wanted %d, expected %d", i, wanted,
                     cases[i].wanted);
        envelope_free(env);
    }
}


static void
status_by_error_code(void **state)
{
    (void)state;
    assert_string_equal(dsn_status("MessageTooLarge"), "5.3.4");
    assert_string_equal(dsn_status("MessageRejected"), "5.0.0");
    assert_string_equal(dsn_status(NULL), "5.0.0");
}


/* Returns the number of times needle occurs in text. */
static int
count(const char *text, const char *needle)
{
    int n = 0;

    for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}


static void
format_has_report_shape(void **state)
{
    static const char message[] =
        "Received: from client.test\r\n"
        "Subject: Quarterly report\r\n"
        "Message-ID: <q1@acme.example>\r\n"
        "\r\n"
        "The body is not quoted.\r\n";
    struct envelope  *env = make_envelope("alice@acme.example", message, 2);
    struct dsn_report r = {
        env, DSN_FROM, "worker1.ferry.test", "us-east-1",
        "MessageRejected", "Message rejected: virus \001detected\303\251",
        "01JDSNDSNDSNDSNDSNDSNDSN00", 1764866400000
    };
    size_t            len;
    char             *text = (char *)dsn_format(&r, &len);
    char             *status, *headers;

    (void)state;
    assert_int_equal(strlen(text), len);

    /* The top-level header. */
    assert_non_null(strstr(text, "From: Mail Delivery System "
                                 "<" DSN_FROM ">\r\n"));
    assert_non_null(strstr(text, "\r\nTo: <alice@acme.example>\r\n"));
    assert_non_null(strstr(text, "\r\nDate: Thu, 04 Dec 2025 16:40:00 "
                                 "+0000\r\n"));
    assert_non_null(strstr(text, "\r\nMessage-ID: <01JDSNDSNDSNDSNDSNDSNDSN"
                                 "00@worker1.ferry.test>\r\n"));
    assert_non_null(strstr(text, "\r\nAuto-Submitted: auto-replied\r\n"));
    assert_non_null(strstr(text, "\r\nMIME-Version: 1.0\r\n"));
    assert_non_null(strstr(text, "\r\nContent-Type: multipart/report; "
                                 "report-type=delivery-status;\r\n\tboundary"
                                 "=\"01JDSNDSNDSNDSNDSNDSNDSN00/report\""
                                 "\r\n"));

    /* Three parts in order, then the closing boundary. */
    assert_int_equal(count(text, "\r\n--01JDSNDSNDSNDSNDSNDSNDSN00/report"
                                 "\r\n"), 3);
    assert_int_equal(count(text, "\r\n--01JDSNDSNDSNDSNDSNDSNDSN00/report"
                                 "--\r\n"), 1);
    assert_true(strstr(text, "Content-Type: text/plain") <
                strstr(text, "Content-Type: message/delivery-status"));
    assert_true(strstr(text, "Content-Type: message/delivery-status") <
                strstr(text, "Content-Type: text/rfc822-headers"));

    /* The per-message and per-recipient fields of RFC 3464. */
    status = strstr(text, "Content-Type: message/delivery-status\r\n\r\n");
    assert_non_null(status);
    assert_non_null(strstr(status, "\r\n\r\nReporting-MTA: dns; "
                                   "worker1.ferry.test\r\n"));
    assert_non_null(strstr(status, "\r\nArrival-Date: Thu, 04 Dec 2025 "
                                   "16:33:20 +0000\r\n"));
    assert_non_null(strstr(status, "\r\n\r\nFinal-Recipient: rfc822; "
                                   "bob0@example.org\r\nAction: failed\r\n"
                                   "Status: 5.0.0\r\n"));
    assert_non_null(strstr(status, "\r\n\r\nFinal-Recipient: rfc822; "
                                   "bob1@example.org\r\n"));
    assert_int_equal(count(status, "Action: failed\r\n"), 2);

    /* Bytes that are not printable ASCII are replaced. */
    assert_non_null(strstr(status, "Diagnostic-Code: X-SES; "
                                   "MessageRejected: Message rejected: "
                                   "virus ?detected??\r\n"));

    /* The header section is quoted, the body is not. */
    headers = strstr(text, "Content-Type: text/rfc822-headers\r\n\r\n");
    assert_non_null(headers);
    assert_non_null(strstr(headers, "Subject: Quarterly report\r\n"
                                    "Message-ID: <q1@acme.example>\r\n"));
    assert_null(strstr(text, "The body is not quoted"));

    /* Every line ends in CRLF and fits RFC 5322's 998 octets. */
    for (char *line = text, *end; *line != '\0'; line = end + 2) {
        end = strstr(line, "\r\n");
        assert_non_null(end);
        assert_true(end - line <= 998);
        assert_null(memchr(line, '\n', (size_t)(end - line)));
    }
    free(text);
    envelope_free(env);
}


static void
envelope_goes_back_to_sender(void **state)
{
    struct envelope  *env = make_envelope("alice@acme.example",
                                          "Subject: x\r\n\r\nbody\r\n", 3);
    struct dsn_report r = {
        env, DSN_FROM, "worker1", "eu-west-1", "MessageTooLarge",
        "too large", "01JDSNDSNDSNDSNDSNDSNDSN01", 1764866400000
    };
    struct envelope  *dsn = dsn_envelope(&r);

    (void)state;
    assert_string_equal(dsn->id, "01JDSNDSNDSNDSNDSNDSNDSN01");
    assert_string_equal(dsn->sender, DSN_FROM);
    assert_int_equal(dsn->nrecipients, 1);
    assert_string_equal(dsn->recipients[0], "alice@acme.example");
    assert_string_equal(dsn->org, "acme");
    assert_string_equal(dsn->home_region, "us-east-1");
    assert_int_equal(dsn->chunk_count, 1);
    assert_int_equal(dsn->size, dsn->message_len);
    assert_non_null(strstr((char *)dsn->message, "Status: 5.3.4\r\n"));

    /* A notification never gets a notification of its own. */
    assert_int_equal(dsn_wanted(dsn, DSN_FROM), 0);
    free(dsn->sender);
    dsn->sender = xstrdup("relay@other.example");
    assert_int_equal(dsn_wanted(dsn, DSN_FROM), 0);
    envelope_free(dsn);
    envelope_free(env);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(wanted_only_for_plain_mail),
        cmocka_unit_test(status_by_error_code),
        cmocka_unit_test(format_has_report_shape),
        cmocka_unit_test(envelope_goes_back_to_sender),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

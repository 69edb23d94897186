/*
 * Unit tests of the SES v2 client: how responses are classified,
 * the SendEmail body, the Host header, and whole requests against a small
 * HTTP server on 127.0.0.1 that records what the client sent.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ses.h"
#include "sigv4.h"
#include "util.h"

struct classify_case {
    long            status;
    const char     *error_type;
    const char     *message;
    int             has_message_id;
    enum ses_result expected;
};

static const struct classify_case classify_cases[] = {
    { 200, NULL, NULL, 1, SES_OK },
    { 200, NULL, NULL, 0, SES_RETRY },

    { 429, "TooManyRequestsException", "Too many requests.", 0,
      SES_THROTTLED },
    { 400, "Throttling", "Maximum sending rate exceeded.", 0,
      SES_THROTTLED },
    { 400, "ThrottlingException", "Rate exceeded", 0, SES_THROTTLED },
    { 429, NULL, NULL, 0, SES_THROTTLED },

    /* The daily quota is not a rate: the region stops until it resets. */
    { 454, "Throttling", "Daily message quota exceeded.", 0,
      SES_REGION_DOWN },
    { 429, "TooManyRequestsException", "Daily message quota exceeded", 0,
      SES_REGION_DOWN },
    { 400, "SendingPausedException",
      "Sending is paused for this account.", 0, SES_REGION_DOWN },
    { 400, "AccountSuspendedException",
      "The account has been suspended.", 0, SES_REGION_DOWN },
    { 400, "MessageRejected",
      "Sending paused for this account. For more information, please "
      "check the AWS console.", 0, SES_REGION_DOWN },
    { 400, "MessageRejected:http://internal.amazon.com/coral/com.amazon/",
      "Sending suspended for this account.", 0, SES_REGION_DOWN },

    { 403, "SignatureDoesNotMatch",
      "The request signature we calculated does not match the signature "
      "you provided.\n\nThe Canonical String for this request should have "
      "been\n'POST\n/v2/email/outbound-emails'", 0, SES_LOCAL_FAULT },
    { 403, "InvalidSignatureException",
      "Signature expired: 20260301T093015Z is now earlier than "
      "20260301T093515Z (20260301T094015Z - 5 min.)", 0, SES_LOCAL_FAULT },
    { 403, "InvalidSignatureException",
      "Signature not yet current: 20260301T100000Z is still later than "
      "20260301T094515Z (20260301T094015Z + 5 min.)", 0, SES_LOCAL_FAULT },
    { 403, "UnrecognizedClientException",
      "The security token included in the request is invalid.", 0,
      SES_LOCAL_FAULT },
    { 403, "InvalidClientTokenId", "The security token is invalid.", 0,
      SES_LOCAL_FAULT },
    { 400, "ExpiredTokenException", "The security token has expired.", 0,
      SES_LOCAL_FAULT },
    { 403, "com.amazonaws.sesv2#AccessDeniedException", "Not authorized.",
      0, SES_LOCAL_FAULT },
    { 400, "MessageRejected",
      "Email address is not verified. The following identities failed "
      "the check in region US-EAST-1: alice@example.com", 0,
      SES_LOCAL_FAULT },
    { 400, "MailFromDomainNotVerifiedException",
      "The MAIL FROM domain is not verified.", 0, SES_LOCAL_FAULT },
    { 404, "NotFoundException", "Configuration set does not exist.", 0,
      SES_LOCAL_FAULT },
    { 401, NULL, NULL, 0, SES_LOCAL_FAULT },

    { 400, "MessageRejected", "Message rejected: a virus was detected.", 0,
      SES_REJECTED },
    { 400, "MessageRejected",
      "Message length is more than 41943040 bytes after base64 encoding: "
      "42666668 bytes.", 0, SES_REJECTED },
    { 400, "BadRequestException", "Missing final '@domain'", 0,
      SES_REJECTED },
    { 413, NULL, "Request Entity Too Large", 0, SES_REJECTED },

    { 500, "InternalFailure", "An internal error occurred.", 0, SES_RETRY },
    { 503, NULL, "Service Unavailable", 0, SES_RETRY },
    { 502, NULL, NULL, 0, SES_RETRY },
    { 408, NULL, NULL, 0, SES_RETRY },
    { 418, "SomethingNewException", "An error not known today.", 0,
      SES_RETRY },
};

struct transport_case {
    CURLcode        code;
    enum ses_result expected;
};

static const struct transport_case transport_cases[] = {
    { CURLE_OPERATION_TIMEDOUT, SES_RETRY },
    { CURLE_COULDNT_CONNECT, SES_RETRY },
    { CURLE_COULDNT_RESOLVE_HOST, SES_RETRY },
    { CURLE_RECV_ERROR, SES_RETRY },
    { CURLE_SEND_ERROR, SES_RETRY },
    { CURLE_GOT_NOTHING, SES_RETRY },
    { CURLE_PARTIAL_FILE, SES_RETRY },
    { CURLE_PEER_FAILED_VERIFICATION, SES_LOCAL_FAULT },
    { CURLE_SSL_CACERT_BADFILE, SES_LOCAL_FAULT },
    { CURLE_UNSUPPORTED_PROTOCOL, SES_LOCAL_FAULT },
    { CURLE_URL_MALFORMAT, SES_LOCAL_FAULT },
};


static void
classify_table(void **state)
{
    (void)state;

    for (size_t i = 0; i < sizeof(classify_cases) / sizeof(*classify_cases);
         i++) {
        const struct classify_case *c = &classify_cases[i];
        char                        reason[512];
        enum ses_result             got;

        got = ses_classify(c->status, c->error_type, c->message,
                           c->has_message_id, reason, sizeof(reason));
        print_message("%ld %s -> %s (%s)\n", c->status,
                      c->error_type ? c->error_type : "-",
                      ses_result_name(got), reason);
        assert_string_equal(ses_result_name(got),
                            ses_result_name(c->expected));
        assert_null(strchr(reason, '\n'));
        assert_true(reason[0] != '\0');
    }
}


static void
classify_transport_table(void **state)
{
    (void)state;

    for (size_t i = 0;
         i < sizeof(transport_cases) / sizeof(*transport_cases); i++) {
        char            reason[512];
        enum ses_result got;

        got = ses_classify_transport(transport_cases[i].code, "detail",
                                     reason, sizeof(reason));
        print_message("curl %d -> %s (%s)\n", transport_cases[i].code,
                      ses_result_name(got), reason);
        assert_string_equal(ses_result_name(got),
                            ses_result_name(transport_cases[i].expected));
        assert_non_null(strstr(reason, "detail"));
    }
}


static void
classify_reasons_name_cause(void **state)
{
    char reason[512];

    (void)state;
    ses_classify(454, "Throttling", "Daily message quota exceeded.", 0,
                 reason, sizeof(reason));
    assert_string_equal(reason, "daily quota exceeded: Throttling: Daily "
                        "message quota exceeded.");

    ses_classify(403, "InvalidSignatureException",
                 "Signature expired: 20260301T093015Z is now earlier",
                 0, reason, sizeof(reason));
    assert_string_equal(reason, "clock skew: InvalidSignatureException: "
                        "Signature expired: 20260301T093015Z is now "
                        "earlier");

    ses_classify(403, "SignatureDoesNotMatch", "first line\nsecond line",
                 0, reason, sizeof(reason));
    assert_string_equal(reason, "SignatureDoesNotMatch: first line");

    ses_classify(503, NULL, NULL, 0, reason, sizeof(reason));
    assert_string_equal(reason, "HTTP 503");

    ses_classify(500, "InternalFailure", NULL, 0, reason, sizeof(reason));
    assert_string_equal(reason, "InternalFailure (HTTP 500)");
}


/* Returns Content.Raw.Data of a parsed SendEmail body, or NULL. */
static json_t *
body_data(json_t *root)
{
    return json_object_get(json_object_get(json_object_get(root, "Content"),
                                           "Raw"), "Data");
}


static void
send_email_body_shape(void **state)
{
    static const unsigned char raw[] = "Subject: hi\r\n\r\nhello\r\n";
    char *const      rcpts[] = { "bob@example.org", "carol@example.net" };
    struct ses_email email = {
        "01JFERRYTESTVECTOR00000000", "alice@example.com", rcpts, 2, raw,
        sizeof(raw) - 1
    };
    json_error_t     jerr;
    json_t          *root, *to, *tags;
    size_t           len = 0;
    char            *body = ses_send_email_body(&email, &len);

    (void)state;
    assert_non_null(body);
    assert_int_equal(len, strlen(body));
    root = json_loads(body, 0, &jerr);
    assert_non_null(root);
    assert_int_equal(json_object_size(root), 4);

    assert_string_equal(json_string_value(json_object_get(root,
                        "FromEmailAddress")), "alice@example.com");
    to = json_object_get(json_object_get(root, "Destination"),
                         "ToAddresses");
    assert_int_equal(json_array_size(to), 2);
    assert_string_equal(json_string_value(json_array_get(to, 0)),
                        "bob@example.org");
    assert_string_equal(json_string_value(json_array_get(to, 1)),
                        "carol@example.net");
    assert_string_equal(json_string_value(body_data(root)),
                        "U3ViamVjdDogaGkNCg0KaGVsbG8NCg==");
    tags = json_object_get(root, "EmailTags");
    assert_int_equal(json_array_size(tags), 1);
    assert_string_equal(json_string_value(json_object_get(
                        json_array_get(tags, 0), "Name")),
                        "ferry-envelope-id");
    assert_string_equal(json_string_value(json_object_get(
                        json_array_get(tags, 0), "Value")),
                        "01JFERRYTESTVECTOR00000000");

    json_decref(root);
    free(body);
}


/* Every byte value, and each length modulo 3, survives the base64 text. */
static void
send_email_body_binary_round_trip(void **state)
{
    char *const      rcpts[] = { "bob@example.org" };
    unsigned char    raw[258];
    struct ses_email email = {
        "01JFERRYTESTVECTOR00000000", "alice@example.com", rcpts, 1, raw, 0
    };

    (void)state;
    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = (unsigned char)(i * 7 + 3);

    for (size_t raw_len = 0; raw_len <= sizeof(raw); raw_len++) {
        json_error_t   jerr;
        json_t        *root, *data;
        unsigned char  decoded[sizeof(raw) + 3];
        size_t         len = 0, b64len;
        int            decoded_len;
        char          *body;

        email.raw_len = raw_len;
        body = ses_send_email_body(&email, &len);
        assert_non_null(body);
        assert_int_equal(len, strlen(body));
        root = json_loads(body, 0, &jerr);
        assert_non_null(root);
        assert_int_equal(json_object_size(root), 4);
        data = body_data(root);
        assert_true(json_is_string(data));
        b64len = json_string_length(data);
        assert_int_equal(b64len, (raw_len + 2) / 3 * 4);

        /* EVP_DecodeBlock counts the padding as zero bytes. */
        decoded_len = EVP_DecodeBlock(decoded, (const unsigned char *)
                                      json_string_value(data), (int)b64len);
        assert_int_equal(decoded_len, (int)b64len / 4 * 3);
        assert_memory_equal(decoded, raw, raw_len);

        json_decref(root);
        free(body);
    }
}


/*
 * Addresses and envelope ids that JSON must escape come back unchanged,
 * and no key appears twice once Content is appended to the object.
 */
static void
send_email_body_escaped_fields(void **state)
{
    static const struct {
        const char *envelope_id;
        const char *sender;
        const char *recipient;
    } cases[] = {
        { "01JFERRYTESTVECTOR00000000", "\"al\\\"ice\"@example.com",
          "\"b\\\\ob\"@example.org" },
        { "01JFERRYTESTVECTOR00000000", "\"tab\there\"@example.com",
          "\"ctl\x01\x1f\x7f\"@example.org" },
        { "01JFERRYTESTVECTOR00000000", "j\xc3\xb6rg@ex\xc3\xa4mple.de",
          "\xe2\x80\xa8sep\xf0\x9f\x93\xa7@example.org" },
        { "id\"}]}\\\n", "alice@example.com", "bob@example.org" },
        { "", "alice@example.com", "}" },
    };
    static const unsigned char raw[] = "Subject: hi\r\n\r\nhello\r\n";

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char *const      rcpts[] = { (char *)cases[i].recipient };
        struct ses_email email = {
            cases[i].envelope_id, cases[i].sender, rcpts, 1, raw,
            sizeof(raw) - 1
        };
        json_error_t     jerr;
        json_t          *root, *to, *tag;
        size_t           len = 0;
        char            *body = ses_send_email_body(&email, &len);

        assert_non_null(body);
        assert_int_equal(len, strlen(body));
        root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
        if (root == NULL)
            fail_msg("case %zu: %s: %s", i, jerr.text, body);
        assert_int_equal(json_object_size(root), 4);
        assert_string_equal(json_string_value(json_object_get(root,
                            "FromEmailAddress")), cases[i].sender);
        to = json_object_get(json_object_get(root, "Destination"),
                             "ToAddresses");
        assert_int_equal(json_array_size(to), 1);
        assert_string_equal(json_string_value(json_array_get(to, 0)),
                            cases[i].recipient);
        tag = json_array_get(json_object_get(root, "EmailTags"), 0);
        assert_string_equal(json_string_value(json_object_get(tag,
                            "Value")), cases[i].envelope_id);
        assert_string_equal(json_string_value(body_data(root)),
                            "U3ViamVjdDogaGkNCg0KaGVsbG8NCg==");

        json_decref(root);
        free(body);
    }
}


/* Recipients keep their order, however many there are. */
static void
send_email_body_many_recipients(void **state)
{
    enum { NRECIPIENTS = 1000 };
    static const unsigned char raw[] = "x";
    char             *rcpts[NRECIPIENTS];
    struct ses_email  email = {
        "01JFERRYTESTVECTOR00000000", "alice@example.com", rcpts,
        NRECIPIENTS, raw, 1
    };
    json_error_t      jerr;
    json_t           *root, *to;
    size_t            len = 0;
    char             *body;

    (void)state;
    for (size_t i = 0; i < NRECIPIENTS; i++) {
        rcpts[i] = xmalloc(32);
        snprintf(rcpts[i], 32, "rcpt%zu@example.org", i);
    }
    body = ses_send_email_body(&email, &len);
    assert_non_null(body);
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(root);
    to = json_object_get(json_object_get(root, "Destination"),
                         "ToAddresses");
    assert_int_equal(json_array_size(to), NRECIPIENTS);
    for (size_t i = 0; i < NRECIPIENTS; i++)
        assert_string_equal(json_string_value(json_array_get(to, i)),
                            rcpts[i]);

    json_decref(root);
    free(body);
    for (size_t i = 0; i < NRECIPIENTS; i++)
        free(rcpts[i]);
}


/* The largest message SES takes fills Data with exactly its limit. */
static void
send_email_body_size_limit(void **state)
{
    const size_t     raw_len = 31457280;
    unsigned char   *raw = xmalloc(raw_len);
    char *const      rcpts[] = { "bob@example.org" };
    struct ses_email email = {
        "01JFERRYTESTVECTOR00000000", "alice@example.com", rcpts, 1, raw,
        raw_len
    };
    json_error_t     jerr;
    json_t          *root, *data;
    size_t           len = 0;
    char            *body;

    (void)state;
    memset(raw, 0xff, raw_len);
    assert_int_equal(ses_email_fits(raw_len), 0);
    body = ses_send_email_body(&email, &len);
    assert_non_null(body);
    assert_int_equal(len, strlen(body));
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(root);
    data = body_data(root);
    assert_int_equal(json_string_length(data), SES_MAX_BASE64_BYTES);
    assert_memory_equal(json_string_value(data), "////", 4);
    assert_memory_equal(json_string_value(data) + SES_MAX_BASE64_BYTES - 4,
                        "////", 4);

    json_decref(root);
    free(body);
    free(raw);
}


static void
send_email_body_invalid_utf8(void **state)
{
    char *const      rcpts[] = { "bob@example.org" };
    struct ses_email email = {
        "01JFERRYTESTVECTOR00000000", "al\xffice@example.com", rcpts, 1,
        (const unsigned char *)"x", 1
    };
    size_t           len = 0;

    (void)state;
    assert_null(ses_send_email_body(&email, &len));
}


/* A recipient or envelope id that is not UTF-8 yields no body. */
static void
send_email_body_invalid_utf8_fields(void **state)
{
    static const struct {
        const char *envelope_id;
        const char *first;
        const char *second;
    } cases[] = {
        { "01JFERRYTESTVECTOR00000000", "b\xffob@example.org",
          "carol@example.net" },
        { "01JFERRYTESTVECTOR00000000", "bob@example.org",
          "carol@example.net\xc3" },
        { "01JFERRYTESTVECTOR0000000\xc0", "bob@example.org",
          "carol@example.net" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char *const      rcpts[] = { (char *)cases[i].first,
                                     (char *)cases[i].second };
        struct ses_email email = {
            cases[i].envelope_id, "alice@example.com", rcpts, 2,
            (const unsigned char *)"x", 1
        };
        size_t           len = 0;
        char            *body = ses_send_email_body(&email, &len);

        if (body != NULL)
            fail_msg("case %zu: expected no body, got %s", i, body);
    }
}


static void
email_fits_limit(void **state)
{
    (void)state;
    /* 30 000 000 bytes are 40 000 000 after base64; 32 000 000 are not. */
    assert_int_equal(ses_email_fits(30000000), 0);
    assert_int_equal(ses_email_fits(31457280), 0);
    assert_int_equal(ses_email_fits(31457281), -1);
    assert_int_equal(ses_email_fits(32000000), -1);
    assert_int_equal(ses_email_fits(0), 0);
}


static void
endpoint_host_table(void **state)
{
    static const struct {
        const char *url;
        const char *host;
    } cases[] = {
        { "http://127.0.0.1:4581", "127.0.0.1:4581" },
        { "http://127.0.0.1:80", "127.0.0.1" },
        { "http://localhost", "localhost" },
        { "https://email.us-east-1.amazonaws.com",
          "email.us-east-1.amazonaws.com" },
        { "https://email.us-east-1.amazonaws.com:443",
          "email.us-east-1.amazonaws.com" },
        { "https://ses.example:8443", "ses.example:8443" },
        { "http://[::1]:4581", "[::1]:4581" },
    };
    char host[300];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        assert_int_equal(ses_endpoint_host(cases[i].url, host, sizeof(host)),
                         0);
        assert_string_equal(host, cases[i].host);
    }
    assert_int_equal(ses_endpoint_host("not a url", host, sizeof(host)), -1);
}


static void
credentials_need_env(void **state)
{
    struct ses_credentials creds;
    char                   err[256] = "";

    (void)state;
    unsetenv("AWS_ACCESS_KEY_ID");
    setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
    assert_int_equal(ses_credentials_from_env(&creds, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "AWS_ACCESS_KEY_ID"));

    setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
    unsetenv("AWS_SESSION_TOKEN");
    assert_int_equal(ses_credentials_from_env(&creds, err, sizeof(err)), 0);
    assert_string_equal(creds.access_key_id, "AKID");
    assert_string_equal(creds.secret_access_key, "secret");
    assert_null(creds.session_token);
    ses_credentials_fini(&creds);

    setenv("AWS_SESSION_TOKEN", "token ", 1);
    assert_int_equal(ses_credentials_from_env(&creds, err, sizeof(err)), 0);
    assert_string_equal(creds.session_token, "token ");
    ses_credentials_fini(&creds);
}


/*
 * A one-connection HTTP server: it reads one request, stores it, writes a
 * canned response and closes.
 */
struct stub_server {
    int         listener;
    int         port;
    const char *responses[2];       /* one per connection, in order */
    size_t      nresponses;
    char        request[65536];     /* of the last connection */
    size_t      request_len;
    pthread_t   thread;
};


/* Reads one request into srv->request, writes response and closes fd. */
static void
stub_serve_one(struct stub_server *srv, int fd, const char *response)
{
    size_t need = 0;

    srv->request_len = 0;
    for (;;) {
        ssize_t n = read(fd, srv->request + srv->request_len,
                         sizeof(srv->request) - 1 - srv->request_len);
        char   *end;

        if (n <= 0)
            break;
        srv->request_len += (size_t)n;
        srv->request[srv->request_len] = '\0';
        end = strstr(srv->request, "\r\n\r\n");
        if (end != NULL && need == 0) {
            const char *cl = strcasestr(srv->request, "\r\nContent-Length:");

            need = (size_t)(end + 4 - srv->request) +
                   (cl != NULL && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
        }
        if (need != 0 && srv->request_len >= need)
            break;
    }
    if (write(fd, response, strlen(response)) < 0)
        perror("stub write");
    close(fd);
}


static void *
stub_serve(void *arg)
{
    struct stub_server *srv = arg;

    for (size_t i = 0; i < srv->nresponses; i++) {
        int fd = accept(srv->listener, NULL, NULL);

        if (fd < 0)
            return NULL;
        stub_serve_one(srv, fd, srv->responses[i]);
    }
    return NULL;
}


/* Starts a server that replies to n connections with responses, in order. */
static void
stub_start_sequence(struct stub_server *srv, const char *const *responses,
                    size_t n)
{
    struct sockaddr_in addr = { .sin_family = AF_INET };
    socklen_t          len = sizeof(addr);
    int                reuse = 1;

    memset(srv, 0, sizeof(*srv));
    assert_true(n <= sizeof(srv->responses) / sizeof(*srv->responses));
    for (size_t i = 0; i < n; i++)
        srv->responses[i] = responses[i];
    srv->nresponses = n;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    srv->listener = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(srv->listener >= 0);
    setsockopt(srv->listener, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse));
    assert_int_equal(bind(srv->listener, (struct sockaddr *)&addr,
                          sizeof(addr)), 0);
    assert_int_equal(listen(srv->listener, 4), 0);
    assert_int_equal(getsockname(srv->listener, (struct sockaddr *)&addr,
                                 &len), 0);
    srv->port = ntohs(addr.sin_port);
    assert_int_equal(pthread_create(&srv->thread, NULL, stub_serve, srv), 0);
}


static void
stub_start(struct stub_server *srv, const char *response)
{
    stub_start_sequence(srv, &response, 1);
}


static void
stub_stop(struct stub_server *srv)
{
    pthread_join(srv->thread, NULL);
    close(srv->listener);
}


struct captured {
    int                calls;
    struct ses_outcome outcome;
    char               body[256];
};


static void
capture_outcome(void *opaque, const struct ses_outcome *outcome)
{
    struct captured *cap = opaque;

    cap->calls++;
    cap->outcome = *outcome;
    cap->outcome.body = NULL;
    snprintf(cap->body, sizeof(cap->body), "%s",
             outcome->body != NULL ? outcome->body : "");
}


/* Sends one SendEmail to a stub returning response; returns the client. */
static struct ses_client *
send_to_stub(struct stub_server *srv, const char *response,
             const char *token, struct captured *cap)
{
    static const unsigned char raw[] = "Subject: hi\r\n\r\nhello\r\n";
    char *const               rcpts[] = { "bob@example.org" };
    struct ses_email          email = {
        "01JFERRYTESTVECTOR00000000", "alice@example.com", rcpts, 1, raw,
        sizeof(raw) - 1
    };
    struct ses_credentials    creds = {
        .access_key_id = "AKIDFERRYLOCAL",
        .secret_access_key = "ferry-local-secret",
        .session_token = (char *)token,
    };
    char                      endpoint[64];
    char                      err[256] = "";
    struct ses_client_options opts = {
        "us-east-1", endpoint, &creds, 5000, 4, capture_outcome
    };
    struct ses_client        *client;
    int64_t                   deadline = util_monotonic_ms() + 10000;

    stub_start(srv, response);
    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", srv->port);
    client = ses_client_new(&opts, err, sizeof(err));
    assert_non_null(client);
    memset(cap, 0, sizeof(*cap));
    assert_int_equal(ses_client_send_email(client, &email, cap, err,
                                           sizeof(err)), 0);
    assert_int_equal(ses_client_in_flight(client), 1);
    while (cap->calls == 0 && util_monotonic_ms() < deadline)
        assert_int_equal(ses_client_run(client, -1, 100), 0);
    stub_stop(srv);
    assert_int_equal(cap->calls, 1);
    assert_int_equal(ses_client_in_flight(client), 0);
    return client;
}


/* Returns the value of header name in the recorded request, or NULL. */
static char *
request_header(const struct stub_server *srv, const char *name, char *buf,
               size_t size)
{
    char        needle[128];
    const char *p, *end;

    snprintf(needle, sizeof(needle), "\r\n%s: ", name);
    if ((p = strcasestr(srv->request, needle)) == NULL)
        return NULL;
    p += strlen(needle);
    end = strstr(p, "\r\n");
    snprintf(buf, size, "%.*s", (int)(end - p), p);
    return buf;
}


static void
client_request_is_signed(void **state)
{
    struct stub_server       srv;
    struct captured          cap;
    struct ses_client       *client;
    char                     host[64], date[32], token[64], authz[512];
    char                     ctype[64], err[256];
    const char              *body;
    struct tm                tm = { 0 };
    struct sigv4_header      headers[2];
    struct sigv4_credentials creds = {
        "AKIDFERRYLOCAL", "ferry-local-secret", "session-token "
    };
    struct sigv4_request     req;
    struct sigv4_signature   sig;

    (void)state;
    client = send_to_stub(&srv,
                          "HTTP/1.1 200 OK\r\n"
                          "Content-Type: application/json\r\n"
                          "Content-Length: 29\r\n"
                          "Connection: close\r\n\r\n"
                          "{\"MessageId\":\"0100-abc-0000\"}",
                          "session-token ", &cap);
    assert_int_equal(cap.outcome.result, SES_OK);
    assert_int_equal(cap.outcome.http_status, 200);
    assert_string_equal(cap.outcome.message_id, "0100-abc-0000");

    /* The request line and the headers the signature covers. */
    assert_memory_equal(srv.request, "POST /v2/email/outbound-emails "
                        "HTTP/1.1\r\n", 41);
    assert_non_null(request_header(&srv, "Host", host, sizeof(host)));
    snprintf(err, sizeof(err), "127.0.0.1:%d", srv.port);
    assert_string_equal(host, err);
    assert_non_null(request_header(&srv, "Content-Type", ctype,
                                   sizeof(ctype)));
    assert_string_equal(ctype, "application/json");
    assert_non_null(request_header(&srv, "X-Amz-Security-Token", token,
                                   sizeof(token)));
    assert_string_equal(token, "session-token ");
    assert_null(request_header(&srv, "Expect", err, sizeof(err)));
    assert_non_null(request_header(&srv, "X-Amz-Date", date, sizeof(date)));
    assert_non_null(request_header(&srv, "Authorization", authz,
                                   sizeof(authz)));

    /* Signing the received request again gives the same Authorization. */
    body = strstr(srv.request, "\r\n\r\n") + 4;
    assert_non_null(strptime(date, "%Y%m%dT%H%M%SZ", &tm));
    headers[0] = (struct sigv4_header){ "host", host };
    headers[1] = (struct sigv4_header){ "content-type", ctype };
    req = (struct sigv4_request){
        "POST", "/v2/email/outbound-emails", NULL, headers, 2, body,
        strlen(body)
    };
    assert_int_equal(sigv4_sign(&req, &creds, "us-east-1", "ses",
                                timegm(&tm), &sig, err, sizeof(err)), 0);
    assert_string_equal(authz, sig.authorization);
    assert_non_null(strstr(authz, "SignedHeaders=content-type;host;"
                           "x-amz-date;x-amz-security-token,"));
    sigv4_signature_fini(&sig);
    ses_client_free(client);
}


/*
 * The first keys from STS are already due for renewal, so the send renews
 * them. The request must carry the renewed token and be signed with the
 * renewed keys, not with the ones the renewal freed.
 */
static void
client_signs_with_renewed_keys(void **state)
{
    static const char sts_format[] =
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n"
        "Connection: close\r\n\r\n"
        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>"
        "<Credentials><SessionToken>%s</SessionToken>"
        "<SecretAccessKey>%s</SecretAccessKey>"
        "<Expiration>%s</Expiration><AccessKeyId>%s</AccessKeyId>"
        "</Credentials></AssumeRoleWithWebIdentityResult>"
        "</AssumeRoleWithWebIdentityResponse>\n";
    static const unsigned char raw[] = "Subject: hi\r\n\r\nhello\r\n";
    char *const               rcpts[] = { "bob@example.org" };
    struct ses_email          email = {
        "01JFERRYTESTVECTOR00000000", "alice@example.com", rcpts, 1, raw,
        sizeof(raw) - 1
    };
    struct stub_server        sts, ses;
    struct captured           cap;
    char                      first[1024], renewed[1024], expired[32];
    char                      later[32], token_path[] = "/tmp/ses-tokenXXXXXX";
    char                      sts_endpoint[64], endpoint[64], err[256] = "";
    char                      host[64], date[32], token[64], authz[512];
    const char               *sts_responses[2] = { first, renewed };
    const char               *body;
    time_t                    now = time(NULL);
    struct tm                 tm = { 0 };
    struct ses_credentials    creds = {
        .role_arn = "arn:aws:iam::123456789012:role/ferry",
        .web_identity_token_file = token_path,
        .role_session_name = "ferry-test",
        .sts_endpoint = sts_endpoint,
    };
    struct ses_client_options opts = {
        "us-east-1", endpoint, &creds, 5000, 4, capture_outcome
    };
    struct sigv4_credentials  renewed_creds = {
        "ASIARENEWED", "renewed-secret", "renewed-token"
    };
    struct sigv4_header       headers[2];
    struct sigv4_request      req;
    struct sigv4_signature    sig;
    struct ses_client        *client;
    int64_t                   deadline = util_monotonic_ms() + 10000;
    int                       fd;

    (void)state;
    fd = mkstemp(token_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "web-identity-token\n", 19), 19);
    close(fd);

    strftime(expired, sizeof(expired), "%Y-%m-%dT%H:%M:%SZ",
             gmtime_r(&(time_t){ now - 60 }, &tm));
    strftime(later, sizeof(later), "%Y-%m-%dT%H:%M:%SZ",
             gmtime_r(&(time_t){ now + 3600 }, &tm));
    snprintf(first, sizeof(first), sts_format, "first-token",
             "first-secret", expired, "ASIAFIRST");
    snprintf(renewed, sizeof(renewed), sts_format, renewed_creds.session_token,
             renewed_creds.secret_access_key, later,
             renewed_creds.access_key_id);
    stub_start_sequence(&sts, sts_responses, 2);
    snprintf(sts_endpoint, sizeof(sts_endpoint), "http://127.0.0.1:%d",
             sts.port);
    stub_start(&ses, "HTTP/1.1 200 OK\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: 29\r\n"
                     "Connection: close\r\n\r\n"
                     "{\"MessageId\":\"0100-abc-0000\"}");
    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", ses.port);

    client = ses_client_new(&opts, err, sizeof(err));
    if (client == NULL)
        fail_msg("ses_client_new: %s", err);
    memset(&cap, 0, sizeof(cap));
    assert_int_equal(ses_client_send_email(client, &email, &cap, err,
                                           sizeof(err)), 0);
    while (cap.calls == 0 && util_monotonic_ms() < deadline)
        assert_int_equal(ses_client_run(client, -1, 100), 0);
    stub_stop(&ses);
    stub_stop(&sts);
    unlink(token_path);
    assert_int_equal(cap.calls, 1);
    assert_int_equal(cap.outcome.result, SES_OK);

    assert_non_null(request_header(&ses, "X-Amz-Security-Token", token,
                                   sizeof(token)));
    assert_string_equal(token, "renewed-token");
    assert_non_null(request_header(&ses, "Authorization", authz,
                                   sizeof(authz)));
    assert_non_null(strstr(authz, "Credential=ASIARENEWED/"));

    /* Signing the received request with the renewed keys gives authz. */
    assert_non_null(request_header(&ses, "Host", host, sizeof(host)));
    assert_non_null(request_header(&ses, "X-Amz-Date", date, sizeof(date)));
    body = strstr(ses.request, "\r\n\r\n") + 4;
    memset(&tm, 0, sizeof(tm));
    assert_non_null(strptime(date, "%Y%m%dT%H%M%SZ", &tm));
    headers[0] = (struct sigv4_header){ "host", host };
    headers[1] = (struct sigv4_header){ "content-type", "application/json" };
    req = (struct sigv4_request){
        "POST", "/v2/email/outbound-emails", NULL, headers, 2, body,
        strlen(body)
    };
    assert_int_equal(sigv4_sign(&req, &renewed_creds, "us-east-1", "ses",
                                timegm(&tm), &sig, err, sizeof(err)), 0);
    assert_string_equal(authz, sig.authorization);
    sigv4_signature_fini(&sig);
    ses_client_free(client);
}


static void
client_reads_rest_json_error(void **state)
{
    struct stub_server srv;
    struct captured    cap;
    struct ses_client *client;
    static const char  response[] =
        "HTTP/1.1 400 Bad Request\r\n"
        "x-amzn-ErrorType: MessageRejected:http://internal.amazon.com/\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 41\r\n"
        "Connection: close\r\n\r\n"
        "{\"message\":\"Sending paused for account.\"}";

    (void)state;
    client = send_to_stub(&srv, response, NULL, &cap);
    assert_int_equal(cap.outcome.http_status, 400);
    assert_string_equal(cap.outcome.error_type, "MessageRejected");
    assert_int_equal(cap.outcome.result, SES_REGION_DOWN);
    assert_string_equal(cap.outcome.reason,
                        "MessageRejected: Sending paused for account.");
    assert_null(request_header(&srv, "X-Amz-Security-Token", NULL, 0));
    ses_client_free(client);
}


static void
client_503_is_retry(void **state)
{
    struct stub_server srv;
    struct captured    cap;
    struct ses_client *client;

    (void)state;
    client = send_to_stub(&srv,
                          "HTTP/1.1 503 Service Unavailable\r\n"
                          "Content-Length: 0\r\n"
                          "Connection: close\r\n\r\n", NULL, &cap);
    assert_int_equal(cap.outcome.result, SES_RETRY);
    assert_int_equal(cap.outcome.http_status, 503);
    ses_client_free(client);
}


/* A Date header ten minutes ahead moves the signing clock by as much. */
static void
client_follows_server_date(void **state)
{
    struct stub_server srv;
    struct captured    cap;
    struct ses_client *client;
    char               response[512];
    char               date[64];
    time_t             ahead = time(NULL) + 600;
    struct tm          tm;
    int64_t            offset;

    (void)state;
    gmtime_r(&ahead, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    snprintf(response, sizeof(response),
             "HTTP/1.1 403 Forbidden\r\n"
             "Date: %s\r\n"
             "x-amzn-ErrorType: InvalidSignatureException\r\n"
             "Content-Length: 46\r\n"
             "Connection: close\r\n\r\n"
             "{\"message\":\"Signature expired: 20260301T0930\"}", date);
    client = send_to_stub(&srv, response, NULL, &cap);
    assert_int_equal(cap.outcome.result, SES_LOCAL_FAULT);
    assert_non_null(strstr(cap.outcome.reason, "clock skew"));
    offset = ses_client_clock_offset_ms(client);
    assert_true(offset > 595000);
    assert_true(offset < 605000);
    assert_int_equal(ses_client_measured_offset_ms(client, &offset), 0);
    assert_true(offset > 595000);
    assert_true(offset < 605000);
    ses_client_free(client);
}


/*
 * A large message gets time for its upload on top of the time for the
 * response: at 512 KiB/s, 10 MiB take 20 s more.
 */
static void
request_timeout_grows_with_body(void **state)
{
    (void)state;
    assert_int_equal(ses_request_timeout_ms(30000, 0), 30000);
    assert_int_equal(ses_request_timeout_ms(3000, 1000), 3001);
    assert_true(ses_request_timeout_ms(3000, 10 * 1024 * 1024) >= 22900);
    assert_true(ses_request_timeout_ms(3000, 10 * 1024 * 1024) <= 23100);
    assert_true(ses_request_timeout_ms(30000, 31457280) >= 89000);
}


/*
 * A Date header two seconds behind is measured and reported but, being
 * under a minute, leaves the signing clock alone.
 */
static void
client_measures_small_offset(void **state)
{
    struct stub_server srv;
    struct captured    cap;
    struct ses_client *client;
    char               response[512];
    char               date[64];
    time_t             behind = time(NULL) - 2;
    struct tm          tm;
    int64_t            offset = 0;

    (void)state;
    gmtime_r(&behind, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    snprintf(response, sizeof(response),
             "HTTP/1.1 503 Service Unavailable\r\n"
             "Date: %s\r\n"
             "Content-Length: 0\r\n"
             "Connection: close\r\n\r\n", date);
    client = send_to_stub(&srv, response, NULL, &cap);
    assert_int_equal(ses_client_clock_offset_ms(client), 0);
    assert_int_equal(ses_client_measured_offset_ms(client, &offset), 0);
    assert_true(offset > -3500);
    assert_true(offset < -500);
    ses_client_free(client);
}


static void
client_get_account_request(void **state)
{
    struct stub_server        srv;
    struct captured           cap = { 0 };
    struct ses_credentials    creds = {
        .access_key_id = "AKIDFERRYLOCAL", .secret_access_key = "secret"
    };
    char                      endpoint[64];
    char                      err[256];
    char                      authz[512];
    struct ses_client_options opts = {
        "eu-west-1", endpoint, &creds, 5000, 1, capture_outcome
    };
    struct ses_client        *client;
    int64_t                   deadline = util_monotonic_ms() + 10000;

    (void)state;
    stub_start(&srv, "HTTP/1.1 200 OK\r\n"
                     "Content-Length: 23\r\n"
                     "Connection: close\r\n\r\n"
                     "{\"SendingEnabled\":true}");
    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", srv.port);
    client = ses_client_new(&opts, err, sizeof(err));
    assert_non_null(client);
    assert_int_equal(ses_client_get_account(client, &cap, err, sizeof(err)),
                     0);
    while (cap.calls == 0 && util_monotonic_ms() < deadline)
        assert_int_equal(ses_client_run(client, -1, 100), 0);
    stub_stop(&srv);

    assert_int_equal(cap.calls, 1);
    assert_int_equal(cap.outcome.result, SES_OK);
    assert_string_equal(cap.body, "{\"SendingEnabled\":true}");
    assert_memory_equal(srv.request, "GET /v2/email/account HTTP/1.1\r\n",
                        32);
    assert_null(request_header(&srv, "Content-Type", err, sizeof(err)));
    assert_non_null(request_header(&srv, "Authorization", authz,
                                   sizeof(authz)));
    assert_non_null(strstr(authz, "/eu-west-1/ses/aws4_request, "
                           "SignedHeaders=host;x-amz-date, Signature="));
    ses_client_free(client);
}


static void
client_get_email_identity_request(void **state)
{
    struct stub_server        srv;
    struct captured           cap = { 0 };
    struct ses_credentials    creds = {
        .access_key_id = "AKIDFERRYLOCAL", .secret_access_key = "secret"
    };
    char                      endpoint[64];
    char                      err[256];
    struct ses_client_options opts = {
        "us-west-2", endpoint, &creds, 5000, 1, capture_outcome
    };
    struct ses_client        *client;
    int64_t                   deadline = util_monotonic_ms() + 10000;
    static const char         request_line[] =
        "GET /v2/email/identities/acme.example HTTP/1.1\r\n";

    (void)state;
    stub_start(&srv, "HTTP/1.1 404 Not Found\r\n"
                     "x-amzn-ErrorType: NotFoundException\r\n"
                     "Content-Length: 2\r\n"
                     "Connection: close\r\n\r\n{}");
    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", srv.port);
    client = ses_client_new(&opts, err, sizeof(err));
    assert_non_null(client);
    assert_int_equal(ses_client_get_email_identity(client, "user@acme.example",
                                                   &cap, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "not a domain name"));
    assert_int_equal(ses_client_get_email_identity(client, "acme.example",
                                                   &cap, err, sizeof(err)),
                     0);
    while (cap.calls == 0 && util_monotonic_ms() < deadline)
        assert_int_equal(ses_client_run(client, -1, 100), 0);
    stub_stop(&srv);

    assert_int_equal(cap.calls, 1);
    assert_int_equal(cap.outcome.http_status, 404);
    assert_string_equal(cap.outcome.error_type, "NotFoundException");
    assert_memory_equal(srv.request, request_line, sizeof(request_line) - 1);
    ses_client_free(client);
}


static void
client_refused_is_retry(void **state)
{
    struct ses_credentials    creds = {
        .access_key_id = "AKID", .secret_access_key = "secret"
    };
    struct ses_client_options opts = {
        "us-east-1", "http://127.0.0.1:1", &creds, 2000, 1, capture_outcome
    };
    struct captured           cap = { 0 };
    static const unsigned char raw[] = "x";
    char *const               rcpts[] = { "bob@example.org" };
    struct ses_email          email = {
        "01JFERRYTESTVECTOR00000000", "alice@example.com", rcpts, 1, raw, 1
    };
    char                      err[256];
    struct ses_client        *client = ses_client_new(&opts, err,
                                                      sizeof(err));
    int64_t                   deadline = util_monotonic_ms() + 5000;

    (void)state;
    assert_non_null(client);
    assert_int_equal(ses_client_send_email(client, &email, &cap, err,
                                           sizeof(err)), 0);
    /* One slot only: a second request must wait for it. */
    assert_int_equal(ses_client_send_email(client, &email, &cap, err,
                                           sizeof(err)), -1);
    while (cap.calls == 0 && util_monotonic_ms() < deadline)
        ses_client_run(client, -1, 100);
    assert_int_equal(cap.calls, 1);
    assert_int_equal(cap.outcome.result, SES_RETRY);
    assert_int_equal(cap.outcome.http_status, 0);
    ses_client_free(client);
}


static void
client_cancel_skips_callback(void **state)
{
    struct ses_credentials    creds = {
        .access_key_id = "AKID", .secret_access_key = "secret"
    };
    struct ses_client_options opts = {
        "us-east-1", "http://127.0.0.1:1", &creds, 2000, 2, capture_outcome
    };
    struct captured           cap = { 0 };
    char *const               rcpts[] = { "bob@example.org" };
    struct ses_email          email = {
        "01JFERRYTESTVECTOR00000000", "alice@example.com", rcpts, 1,
        (const unsigned char *)"x", 1
    };
    char                      err[256];
    struct ses_client        *client = ses_client_new(&opts, err,
                                                      sizeof(err));

    (void)state;
    assert_int_equal(ses_client_send_email(client, &email, &cap, err,
                                           sizeof(err)), 0);
    ses_client_cancel(client, &cap);
    assert_int_equal(ses_client_in_flight(client), 0);
    ses_client_run(client, -1, 100);
    assert_int_equal(cap.calls, 0);
    ses_client_free(client);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(classify_table),
        cmocka_unit_test(classify_transport_table),
        cmocka_unit_test(classify_reasons_name_cause),
        cmocka_unit_test(send_email_body_shape),
        cmocka_unit_test(send_email_body_binary_round_trip),
        cmocka_unit_test(send_email_body_escaped_fields),
        cmocka_unit_test(send_email_body_many_recipients),
        cmocka_unit_test(send_email_body_size_limit),
        cmocka_unit_test(send_email_body_invalid_utf8),
        cmocka_unit_test(send_email_body_invalid_utf8_fields),
        cmocka_unit_test(email_fits_limit),
        cmocka_unit_test(endpoint_host_table),
        cmocka_unit_test(credentials_need_env),
        cmocka_unit_test(client_request_is_signed),
        cmocka_unit_test(client_signs_with_renewed_keys),
        cmocka_unit_test(client_reads_rest_json_error),
        cmocka_unit_test(client_503_is_retry),
        cmocka_unit_test(client_follows_server_date),
        cmocka_unit_test(client_measures_small_offset),
        cmocka_unit_test(request_timeout_grows_with_body),
        cmocka_unit_test(client_get_account_request),
        cmocka_unit_test(client_get_email_identity_request),
        cmocka_unit_test(client_refused_is_retry),
        cmocka_unit_test(client_cancel_skips_callback),
    };

    return cmocka_run_group_tests_name("ses", tests, NULL, NULL);
}

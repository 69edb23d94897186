#include "ses.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "awscred.h"
#include "log.h"
#include "sigv4.h"
#include "util.h"

#define SES_SERVICE          "ses"
#define SES_SEND_EMAIL_PATH  "/v2/email/outbound-emails"
#define SES_ACCOUNT_PATH     "/v2/email/account"
#define SES_IDENTITY_PATH    "/v2/email/identities/"
#define SES_MAX_RESPONSE     (1024 * 1024)

/*
 * Below this difference between SES's Date header and our clock the
 * signing time is left alone. The Date header has whole seconds and
 * arrives after the network delay, while SigV4 tolerates 5 minutes.
 */
#define SES_CLOCK_SKEW_MIN_MS 60000

/*
 * Bound on one STS call, which blocks the delivery loop, and the wait
 * before another attempt after a failed renewal.
 */
#define SES_STS_TIMEOUT_MS 10000
#define SES_STS_RETRY_MS   30000

struct ses_request {
    struct ses_client  *client;
    struct ses_request *next;
    CURL               *easy;
    struct curl_slist  *headers;
    char               *body;
    char               *response;
    size_t              response_len;
    char                error_type[128];
    char                date[64];
    char                curl_error[CURL_ERROR_SIZE];
    int                 is_send;
    void               *opaque;
};

struct ses_client {
    char                  *region;
    char                  *endpoint;
    char                   host[300];
    struct ses_credentials creds;
    long                   timeout_ms;
    long                   max_in_flight;
    ses_done_fn           *done;
    CURLM                 *multi;
    int                    epoll_fd;        /* libcurl's sockets, wake fd */
    int                    wake_fd;         /* in epoll_fd, or -1 */
    int64_t                timer_at_ms;     /* libcurl's timeout, or -1 */
    struct ses_request    *requests;
    size_t                 in_flight;
    int64_t                clock_offset_ms;
    int64_t                measured_offset_ms;  /* see note_date() */
    int                    measured;
    int64_t                refresh_at_ms;   /* web identity: renew keys */
};

static int ses_client_start(struct ses_client *client, const char *method,
                            const char *path, char *body, size_t body_len,
                            int is_send, void *opaque, char *err,
                            size_t errlen);
static void ses_client_finish(struct ses_client *client,
                              struct ses_request *req, CURLcode code);
static void ses_client_note_date(struct ses_client *client,
                                 const char *date);
static int ses_client_fetch_credentials(struct ses_client *client,
                                        char *err, size_t errlen);
static void ses_client_refresh_credentials(struct ses_client *client);
static void ses_request_unlink(struct ses_client *client,
                               struct ses_request *req);
static void ses_request_free(struct ses_request *req);
static size_t ses_on_body(char *data, size_t size, size_t n, void *arg);
static size_t ses_on_header(char *data, size_t size, size_t n, void *arg);
static void ses_parse_body(const struct ses_request *req,
                           struct ses_outcome *out, char *message,
                           size_t messagelen);
static void ses_copy_line(char *dst, size_t size, const char *src);
static const char *ses_short_type(const char *type, char *buf, size_t size);
static int ses_type_in(const char *type, const char *const *names);
static int ses_text_in(const char *message, const char *const *texts);
static struct curl_slist *ses_slist_add(struct curl_slist *list,
                                        const char *name,
                                        const char *value);
static int ses_on_socket(CURL *easy, curl_socket_t fd, int what,
                         void *userp, void *socketp);
static int ses_on_timer(CURLM *multi, long timeout_ms, void *userp);
static int ses_client_set_wake(struct ses_client *client, int wake_fd);

static const char *const ses_result_names[] = {
    "ok", "throttled", "retry", "region_down", "local_fault", "rejected"
};

static const char *const ses_throttle_types[] = {
    "TooManyRequestsException", "Throttling", "ThrottlingException", NULL
};

static const char *const ses_region_down_types[] = {
    "SendingPausedException", "AccountSuspendedException", NULL
};

/*
 * Error codes meaning that our credentials, clock or configuration are
 * wrong. Each would fail every message alike, so none may dead-letter.
 */
static const char *const ses_local_fault_types[] = {
    "SignatureDoesNotMatch", "IncompleteSignatureException",
    "InvalidSignatureException", "UnrecognizedClientException",
    "InvalidClientTokenId", "MissingAuthenticationTokenException",
    "AccessDeniedException", "AccessDenied", "ExpiredToken",
    "ExpiredTokenException", "RequestExpired",
    "MailFromDomainNotVerifiedException", "NotFoundException", NULL
};

static const char *const ses_rejected_types[] = {
    "MessageRejected", "BadRequestException", "InvalidParameterValue", NULL
};

/*
 * Texts with which SES reports an account-wide stop inside an error type
 * that otherwise concerns one message (MessageRejected in SES v1, or a
 * throttling error for the daily quota).
 */
static const char *const ses_paused_texts[] = {
    "sending paused", "sending is paused", "sending has been paused",
    "account is paused", "sending is disabled", "sending suspended",
    "account is suspended", "account has been suspended", NULL
};

static const char *const ses_quota_texts[] = {
    "daily message quota", "daily sending quota", "max 24 hour send",
    NULL
};

static const char *const ses_clock_texts[] = {
    "signature expired", "signature not yet current", "clock skew",
    "request time too skewed", NULL
};


const char *
ses_result_name(enum ses_result result)
{
    return ses_result_names[result];
}


int
ses_credentials_from_env(struct ses_credentials *creds, char *err,
                         size_t errlen)
{
    return awscred_load(creds, err, errlen);
}


void
ses_credentials_fini(struct ses_credentials *creds)
{
    if (creds == NULL)
        return;
    free(creds->access_key_id);
    if (creds->secret_access_key != NULL) {
        OPENSSL_cleanse(creds->secret_access_key,
                        strlen(creds->secret_access_key));
        free(creds->secret_access_key);
    }
    free(creds->session_token);
    free(creds->role_arn);
    free(creds->web_identity_token_file);
    free(creds->role_session_name);
    free(creds->sts_endpoint);
    memset(creds, 0, sizeof(*creds));
}


int
ses_email_fits(size_t raw_len)
{
    /* base64 turns every started group of 3 bytes into 4. */
    return (raw_len / 3 + (raw_len % 3 != 0)) * 4 <= SES_MAX_BASE64_BYTES
               ? 0 : -1;
}


/*
 * Builds the fields other than Content with jansson, and writes the base64
 * text straight into the body, because it needs no JSON escaping. Passed
 * through jansson, it cost about a fifth of the worker's CPU (perf during
 * scripts/bench-deliver, 2 KB messages).
 */
char *
ses_send_email_body(const struct ses_email *email, size_t *len)
{
    static const char content[] = ",\"Content\":{\"Raw\":{\"Data\":\"";
    static const char content_end[] = "\"}}}";
    json_t *root, *to, *tags;
    char   *head, *body;
    size_t  head_len, at;
    size_t  b64len = (email->raw_len / 3 + (email->raw_len % 3 != 0)) * 4;

    to = json_array();
    for (size_t i = 0; i < email->nrecipients; i++) {
        json_t *address = json_string(email->recipients[i]);

        /*
         * json_string() returns NULL for text that is not UTF-8, and
         * json_array_append_new() appends nothing for NULL, so the
         * recipient would be dropped from the request.
         */
        if (address == NULL) {
            json_decref(to);
            return NULL;
        }
        json_array_append_new(to, address);
    }
    tags = json_pack("[{s:s, s:s}]", "Name", "ferry-envelope-id", "Value",
                     email->envelope_id);
    root = json_pack("{s:s, s:{s:o}, s:o}",
                     "FromEmailAddress", email->sender,
                     "Destination", "ToAddresses", to,
                     "EmailTags", tags);
    if (root == NULL) {
        /* Only invalid UTF-8 in the sender or envelope id gets here. */
        return NULL;
    }
    head = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (head == NULL)
        return NULL;

    /* The object's closing brace moves after Content. */
    head_len = strlen(head) - 1;
    body = xmalloc(head_len + sizeof(content) - 1 + b64len +
                   sizeof(content_end));
    memcpy(body, head, head_len);
    at = head_len;
    free(head);
    memcpy(body + at, content, sizeof(content) - 1);
    at += sizeof(content) - 1;
    EVP_EncodeBlock((unsigned char *)body + at, email->raw,
                    (int)email->raw_len);
    at += b64len;
    memcpy(body + at, content_end, sizeof(content_end));
    *len = at + sizeof(content_end) - 1;
    return body;
}


int
ses_endpoint_host(const char *endpoint, char *host, size_t size)
{
    CURLU *url = curl_url();
    char  *name = NULL, *port = NULL, *scheme = NULL;
    int    rc = -1;
    int    n;

    if (url == NULL)
        return -1;
    if (curl_url_set(url, CURLUPART_URL, endpoint, 0) != CURLUE_OK ||
        curl_url_get(url, CURLUPART_HOST, &name, 0) != CURLUE_OK ||
        curl_url_get(url, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(url, CURLUPART_PORT, &port, 0) != CURLUE_OK)
        port = NULL;

    if (port != NULL &&
        !(strcasecmp(scheme, "http") == 0 && strcmp(port, "80") == 0) &&
        !(strcasecmp(scheme, "https") == 0 && strcmp(port, "443") == 0))
        n = snprintf(host, size, "%s:%s", name, port);
    else
        n = snprintf(host, size, "%s", name);
    if (n > 0 && (size_t)n < size)
        rc = 0;

out:
    curl_free(name);
    curl_free(port);
    curl_free(scheme);
    curl_url_cleanup(url);
    return rc;
}


/* Copies the first line of src, control bytes turned into spaces. */
static void
ses_copy_line(char *dst, size_t size, const char *src)
{
    size_t n = 0;

    if (size == 0)
        return;
    for (; src != NULL && *src != '\0' && *src != '\n' && n + 1 < size;
         src++)
        dst[n++] = (unsigned char)*src < ' ' ? ' ' : *src;
    while (n > 0 && dst[n - 1] == ' ')
        n--;
    dst[n] = '\0';
}


/*
 * Strips what rest-json may wrap around an error code: a namespace before
 * '#' and a documentation URL after ':'.
 */
static const char *
ses_short_type(const char *type, char *buf, size_t size)
{
    const char *hash;
    size_t      n;

    if (type == NULL)
        return "";
    if ((hash = strrchr(type, '#')) != NULL)
        type = hash + 1;
    n = strcspn(type, ":");
    if (n >= size)
        n = size - 1;
    memcpy(buf, type, n);
    buf[n] = '\0';
    return buf;
}


static int
ses_type_in(const char *type, const char *const *names)
{
    for (size_t i = 0; names[i] != NULL; i++)
        if (strcmp(type, names[i]) == 0)
            return 1;
    return 0;
}


static int
ses_text_in(const char *message, const char *const *texts)
{
    for (size_t i = 0; texts[i] != NULL; i++)
        if (strcasestr(message, texts[i]) != NULL)
            return 1;
    return 0;
}


enum ses_result
ses_classify(long status, const char *error_type, const char *message,
             int has_message_id, char *reason, size_t reasonlen)
{
    char            typebuf[128];
    char            line[400];
    char            what[160];
    const char     *type = ses_short_type(error_type, typebuf,
                                          sizeof(typebuf));
    const char     *prefix = "";
    enum ses_result result;

    ses_copy_line(line, sizeof(line), message != NULL ? message : "");
    if (type[0] != '\0')
        snprintf(what, sizeof(what), "%s", type);
    else
        snprintf(what, sizeof(what), "HTTP %ld", status);

    if (status >= 200 && status < 300) {
        if (has_message_id) {
            snprintf(reason, reasonlen, "accepted");
            return SES_OK;
        }
        snprintf(reason, reasonlen, "HTTP %ld without a MessageId", status);
        return SES_RETRY;
    }

    if (ses_text_in(line, ses_quota_texts)) {
        result = SES_REGION_DOWN;
        prefix = "daily quota exceeded: ";
    } else if (ses_type_in(type, ses_throttle_types) || status == 429 ||
               strcasestr(line, "maximum sending rate exceeded") != NULL) {
        result = SES_THROTTLED;
    } else if (ses_type_in(type, ses_region_down_types)) {
        result = SES_REGION_DOWN;
    } else if (ses_text_in(line, ses_clock_texts)) {
        result = SES_LOCAL_FAULT;
        prefix = "clock skew: ";
    } else if (ses_type_in(type, ses_local_fault_types)) {
        result = SES_LOCAL_FAULT;
    } else if (strcmp(type, "MessageRejected") == 0 &&
               ses_text_in(line, ses_paused_texts)) {
        result = SES_REGION_DOWN;
    } else if (strcmp(type, "MessageRejected") == 0 &&
               strcasestr(line, "not verified") != NULL) {
        result = SES_LOCAL_FAULT;
    } else if (ses_type_in(type, ses_rejected_types) || status == 413) {
        result = SES_REJECTED;
    } else if (status >= 500 || status == 408) {
        result = SES_RETRY;
    } else if (status == 401 || status == 403) {
        result = SES_LOCAL_FAULT;
    } else {
        /* An unknown error is no reason to drop the message. */
        result = SES_RETRY;
    }

    if (line[0] != '\0')
        snprintf(reason, reasonlen, "%s%s: %s", prefix, what, line);
    else if (type[0] != '\0')
        snprintf(reason, reasonlen, "%s%s (HTTP %ld)", prefix, what, status);
    else
        snprintf(reason, reasonlen, "%s%s", prefix, what);
    return result;
}


enum ses_result
ses_classify_transport(int curl_code, const char *detail, char *reason,
                       size_t reasonlen)
{
    enum ses_result result;

    switch ((CURLcode)curl_code) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
        result = SES_LOCAL_FAULT;
        break;
    default:
        result = SES_RETRY;
        break;
    }
    if (detail != NULL && detail[0] != '\0')
        snprintf(reason, reasonlen, "%s: %s",
                 curl_easy_strerror((CURLcode)curl_code), detail);
    else
        snprintf(reason, reasonlen, "%s",
                 curl_easy_strerror((CURLcode)curl_code));
    return result;
}


struct ses_client *
ses_client_new(const struct ses_client_options *opts, char *err,
               size_t errlen)
{
    struct ses_client *client = NULL;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "libcurl failed to initialise");
        return NULL;
    }

    client = xcalloc(1, sizeof(*client));
    client->epoll_fd = -1;
    client->region = xstrdup(opts->region);
    client->endpoint = xstrdup(opts->endpoint);
    client->timeout_ms = opts->timeout_ms;
    client->max_in_flight = opts->max_in_flight > 0 ? opts->max_in_flight
                                                    : 1;
    client->done = opts->done;
    awscred_copy(&client->creds, opts->creds);
    if (client->creds.role_arn != NULL &&
        ses_client_fetch_credentials(client, err, errlen) == -1)
        goto fail;

    if (ses_endpoint_host(opts->endpoint, client->host,
                          sizeof(client->host)) == -1) {
        snprintf(err, errlen, "SES endpoint '%s' of region %s is not a "
                 "valid URL", opts->endpoint, opts->region);
        goto fail;
    }

    client->multi = curl_multi_init();
    if (client->multi == NULL) {
        snprintf(err, errlen, "libcurl failed to create a multi handle");
        goto fail;
    }

    /*
     * libcurl reports which sockets to watch and when its next timeout
     * is due. ses_client_run() waits on them with epoll and passes libcurl
     * only the sockets that are ready. curl_multi_perform() instead
     * checks every transfer on every call, which costs a poll() per
     * request in flight each time the worker's loop turns.
     */
    client->timer_at_ms = -1;
    client->wake_fd = -1;
    if ((client->epoll_fd = epoll_create1(EPOLL_CLOEXEC)) == -1) {
        snprintf(err, errlen, "epoll_create1: %s", strerror(errno));
        goto fail;
    }
    curl_multi_setopt(client->multi, CURLMOPT_SOCKETFUNCTION, ses_on_socket);
    curl_multi_setopt(client->multi, CURLMOPT_SOCKETDATA, client);
    curl_multi_setopt(client->multi, CURLMOPT_TIMERFUNCTION, ses_on_timer);
    curl_multi_setopt(client->multi, CURLMOPT_TIMERDATA, client);
    /* One connection per request in flight, all kept alive. */
    curl_multi_setopt(client->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      client->max_in_flight);
    curl_multi_setopt(client->multi, CURLMOPT_MAXCONNECTS,
                      client->max_in_flight);
    return client;

fail:
    ses_client_free(client);
    return NULL;
}


void
ses_client_free(struct ses_client *client)
{
    if (client == NULL)
        return;

    while (client->requests != NULL) {
        struct ses_request *req = client->requests;

        ses_request_unlink(client, req);
        ses_request_free(req);
    }
    if (client->multi != NULL)
        curl_multi_cleanup(client->multi);
    if (client->epoll_fd >= 0)
        close(client->epoll_fd);
    ses_credentials_fini(&client->creds);
    free(client->region);
    free(client->endpoint);
    free(client);
}


int
ses_client_send_email(struct ses_client *client,
                      const struct ses_email *email, void *opaque,
                      char *err, size_t errlen)
{
    char  *body;
    size_t len;

    if (ses_email_fits(email->raw_len) == -1) {
        snprintf(err, errlen, "message of %zu bytes exceeds SES's limit of "
                 "%d bytes after base64", email->raw_len,
                 SES_MAX_BASE64_BYTES);
        return -1;
    }
    if ((body = ses_send_email_body(email, &len)) == NULL) {
        snprintf(err, errlen, "sender or a recipient is not valid UTF-8");
        return -1;
    }
    return ses_client_start(client, "POST", SES_SEND_EMAIL_PATH, body, len,
                            1, opaque, err, errlen);
}


int
ses_client_get_account(struct ses_client *client, void *opaque, char *err,
                       size_t errlen)
{
    return ses_client_start(client, "GET", SES_ACCOUNT_PATH, NULL, 0, 0,
                            opaque, err, errlen);
}


int
ses_client_get_email_identity(struct ses_client *client,
                              const char *identity, void *opaque, char *err,
                              size_t errlen)
{
    char path[512];

    if (identity[0] == '\0' ||
        identity[strspn(identity, "abcdefghijklmnopqrstuvwxyz"
                                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")]
            != '\0' ||
        strlen(identity) > 253) {
        snprintf(err, errlen, "identity '%s' is not a domain name",
                 identity);
        return -1;
    }
    snprintf(path, sizeof(path), "%s%s", SES_IDENTITY_PATH, identity);
    return ses_client_start(client, "GET", path, NULL, 0, 0, opaque, err,
                            errlen);
}


static struct curl_slist *
ses_slist_add(struct curl_slist *list, const char *name, const char *value)
{
    struct curl_slist *next;
    size_t             nlen = strlen(name), vlen = strlen(value);
    char              *line = xmalloc(nlen + vlen + 3);

    memcpy(line, name, nlen);
    memcpy(line + nlen, ": ", 2);
    memcpy(line + nlen + 2, value, vlen + 1);
    next = curl_slist_append(list, line);
    free(line);
    if (next == NULL) {
        fprintf(stderr, "fatal: out of memory building HTTP headers\n");
        abort();
    }
    return next;
}


/*
 * Signs and starts one request; takes ownership of body. The headers sent
 * are exactly the ones signed, plus Authorization, so curl's own Host and
 * Content-Type never differ from what the signature covers.
 */
static int
ses_client_start(struct ses_client *client, const char *method,
                 const char *path, char *body, size_t body_len, int is_send,
                 void *opaque, char *err, size_t errlen)
{
    struct ses_request      *req = NULL;
    struct sigv4_header      signed_headers[2];
    struct sigv4_request     sreq;
    struct sigv4_signature   sig = { .authorization = NULL };
    struct sigv4_credentials creds;
    char                     url[1024];
    size_t                   nsigned = 0;
    time_t                   when;

    if (client->in_flight >= (size_t)client->max_in_flight) {
        snprintf(err, errlen, "%zu SES requests already in flight",
                 client->in_flight);
        free(body);
        return -1;
    }

    req = xcalloc(1, sizeof(*req));
    req->client = client;
    req->body = body;
    req->is_send = is_send;
    req->opaque = opaque;
    body = NULL;

    /* Sign with the current time, moved by the skew SES showed us. */
    signed_headers[nsigned++] = (struct sigv4_header){ "host", client->host };
    if (req->body != NULL)
        signed_headers[nsigned++] =
            (struct sigv4_header){ "content-type", "application/json" };
    sreq = (struct sigv4_request){
        method, path, NULL, signed_headers, nsigned, req->body,
        req->body != NULL ? body_len : 0
    };
    /* A renewal frees the old keys, so creds must point at the new ones. */
    ses_client_refresh_credentials(client);
    creds = (struct sigv4_credentials){
        client->creds.access_key_id, client->creds.secret_access_key,
        client->creds.session_token
    };
    when = (time_t)((util_now_ms() + client->clock_offset_ms) / 1000);
    if (sigv4_sign(&sreq, &creds, client->region, SES_SERVICE, when, &sig,
                   err, errlen) == -1)
        goto fail;

    req->headers = ses_slist_add(req->headers, "Host", client->host);
    if (req->body != NULL)
        req->headers = ses_slist_add(req->headers, "Content-Type",
                                     "application/json");
    req->headers = ses_slist_add(req->headers, "X-Amz-Date", sig.amz_date);
    if (client->creds.session_token != NULL)
        req->headers = ses_slist_add(req->headers, "X-Amz-Security-Token",
                                     client->creds.session_token);
    req->headers = ses_slist_add(req->headers, "Authorization",
                                 sig.authorization);
    /* An empty value removes the header: no 100-continue round trip. */
    req->headers = curl_slist_append(req->headers, "Expect:");

    snprintf(url, sizeof(url), "%s%s", client->endpoint, path);
    if ((req->easy = curl_easy_init()) == NULL) {
        snprintf(err, errlen, "libcurl failed to create a handle");
        goto fail;
    }
    curl_easy_setopt(req->easy, CURLOPT_URL, url);
    curl_easy_setopt(req->easy, CURLOPT_PRIVATE, req);
    curl_easy_setopt(req->easy, CURLOPT_HTTPHEADER, req->headers);
    curl_easy_setopt(req->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(req->easy, CURLOPT_TIMEOUT_MS,
                     ses_request_timeout_ms(client->timeout_ms, body_len));
    curl_easy_setopt(req->easy, CURLOPT_CONNECTTIMEOUT_MS,
                     client->timeout_ms < 10000 ? client->timeout_ms
                                                : 10000L);
    curl_easy_setopt(req->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(req->easy, CURLOPT_USERAGENT, "ferry-deliver");
    curl_easy_setopt(req->easy, CURLOPT_ERRORBUFFER, req->curl_error);
    curl_easy_setopt(req->easy, CURLOPT_WRITEFUNCTION, ses_on_body);
    curl_easy_setopt(req->easy, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(req->easy, CURLOPT_HEADERFUNCTION, ses_on_header);
    curl_easy_setopt(req->easy, CURLOPT_HEADERDATA, req);
    if (req->body != NULL) {
        curl_easy_setopt(req->easy, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(req->easy, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)body_len);
    }

    /*
     * NOTE: when a kept-alive connection is reset before any response byte,
     * libcurl 7.88 sends the same request once more on a new connection by
     * itself. The signature is then milliseconds old, but a request SES
     * had already accepted is accepted twice, as after our own retry.
     */
    if (curl_multi_add_handle(client->multi, req->easy) != CURLM_OK) {
        snprintf(err, errlen, "libcurl failed to start the request");
        goto fail;
    }
    req->next = client->requests;
    client->requests = req;
    client->in_flight++;
    sigv4_signature_fini(&sig);
    return 0;

fail:
    sigv4_signature_fini(&sig);
    ses_request_free(req);
    return -1;
}


void
ses_client_cancel(struct ses_client *client, void *opaque)
{
    for (struct ses_request *req = client->requests; req != NULL;
         req = req->next) {
        if (req->opaque == opaque) {
            ses_request_unlink(client, req);
            ses_request_free(req);
            return;
        }
    }
}


/*
 * libcurl's socket callback: watch fd for what libcurl waits for. The
 * socket's data pointer marks whether it is in the epoll set already.
 */
static int
ses_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
              void *socketp)
{
    struct ses_client *client = userp;
    struct epoll_event ev = { 0 };

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        /* The socket may be closed already, which removed it anyway. */
        epoll_ctl(client->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
        curl_multi_assign(client->multi, fd, NULL);
        return 0;
    }
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) |
                (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    ev.data.fd = fd;
    if (epoll_ctl(client->epoll_fd,
                  socketp != NULL ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd,
                  &ev) == -1 &&
        epoll_ctl(client->epoll_fd,
                  socketp != NULL ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd,
                  &ev) == -1) {
        log_warn(NULL, "epoll-failed", "region=%s fd=%d error=\"%s\"",
                 client->region, (int)fd, strerror(errno));
        return -1;
    }
    curl_multi_assign(client->multi, fd, client);
    return 0;
}


/* libcurl's timer callback: when it next wants to be called anyway. */
static int
ses_on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct ses_client *client = userp;

    (void)multi;
    client->timer_at_ms = timeout_ms < 0 ? -1
                                         : util_monotonic_ms() + timeout_ms;
    return 0;
}


/*
 * Puts wake_fd in the epoll set in place of the previous one; -1 takes
 * it out, so a readable wake fd does not end every wait while the caller
 * does not want it to.
 */
static int
ses_client_set_wake(struct ses_client *client, int wake_fd)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = wake_fd };

    if (wake_fd == client->wake_fd)
        return 0;
    if (client->wake_fd >= 0)
        epoll_ctl(client->epoll_fd, EPOLL_CTL_DEL, client->wake_fd, NULL);
    client->wake_fd = -1;
    if (wake_fd >= 0 &&
        epoll_ctl(client->epoll_fd, EPOLL_CTL_ADD, wake_fd, &ev) == -1)
        return -1;
    client->wake_fd = wake_fd;
    return 0;
}


long
ses_request_timeout_ms(long timeout_ms, size_t body_len)
{
    return timeout_ms +
           (long)(body_len / (SES_MIN_UPLOAD_BYTES_PER_S / 1000));
}


int
ses_client_run(struct ses_client *client, int wake_fd, int timeout_ms)
{
    struct epoll_event events[64];
    CURLMsg           *msg;
    int64_t            now = util_monotonic_ms();
    int                running, left, n;

    if (ses_client_set_wake(client, wake_fd) == -1)
        return -1;
    if (client->timer_at_ms >= 0 && client->timer_at_ms - now < timeout_ms)
        timeout_ms = client->timer_at_ms <= now
                         ? 0 : (int)(client->timer_at_ms - now);
    if (timeout_ms < 0)
        timeout_ms = 0;
    n = epoll_wait(client->epoll_fd, events, 64, timeout_ms);
    if (n == -1 && errno != EINTR)
        return -1;
    for (int i = 0; i < n; i++) {
        int mask = 0;

        if (events[i].data.fd == client->wake_fd)
            continue;           /* the caller reads it */
        if (events[i].events & (EPOLLIN | EPOLLHUP))
            mask |= CURL_CSELECT_IN;
        if (events[i].events & EPOLLOUT)
            mask |= CURL_CSELECT_OUT;
        if (events[i].events & EPOLLERR)
            mask |= CURL_CSELECT_ERR;
        if (curl_multi_socket_action(client->multi, events[i].data.fd, mask,
                                     &running) != CURLM_OK)
            return -1;
    }
    if (client->timer_at_ms >= 0 &&
        util_monotonic_ms() >= client->timer_at_ms) {
        client->timer_at_ms = -1;
        if (curl_multi_socket_action(client->multi, CURL_SOCKET_TIMEOUT, 0,
                                     &running) != CURLM_OK)
            return -1;
    }

    while ((msg = curl_multi_info_read(client->multi, &left)) != NULL) {
        struct ses_request *req = NULL;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
                          (char **)&req);
        ses_client_finish(client, req, msg->data.result);
    }
    return 0;
}


size_t
ses_client_in_flight(const struct ses_client *client)
{
    return client->in_flight;
}


int64_t
ses_client_clock_offset_ms(const struct ses_client *client)
{
    return client->clock_offset_ms;
}


int
ses_client_measured_offset_ms(const struct ses_client *client,
                              int64_t *offset_ms)
{
    if (!client->measured)
        return -1;
    *offset_ms = client->measured_offset_ms;
    return 0;
}


/* Classifies the response, calls the callback, then frees the request. */
static void
ses_client_finish(struct ses_client *client, struct ses_request *req,
                  CURLcode code)
{
    struct ses_outcome out;
    char               message[512] = "";
    curl_off_t         total_us;

    memset(&out, 0, sizeof(out));
    ses_request_unlink(client, req);

    if (code != CURLE_OK) {
        out.result = ses_classify_transport(code, req->curl_error,
                                            out.reason, sizeof(out.reason));
    } else {
        curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE,
                          &out.http_status);
        ses_client_note_date(client, req->date);
        ses_parse_body(req, &out, message, sizeof(message));
        out.result = ses_classify(out.http_status, out.error_type, message,
                                  !req->is_send || out.message_id[0] != '\0',
                                  out.reason, sizeof(out.reason));
        out.body = req->response;
    }

    if (curl_easy_getinfo(req->easy, CURLINFO_TOTAL_TIME_T, &total_us) ==
        CURLE_OK)
        out.seconds = (double)total_us / 1e6;
    if (client->done != NULL)
        client->done(req->opaque, &out);
    ses_request_free(req);
}


/* Reads MessageId, and for errors the code and message, of rest-json. */
static void
ses_parse_body(const struct ses_request *req, struct ses_outcome *out,
               char *message, size_t messagelen)
{
    json_t      *root = NULL;
    json_error_t jerr;
    const char  *text;
    char         typebuf[128];

    snprintf(out->error_type, sizeof(out->error_type), "%s",
             ses_short_type(req->error_type, typebuf, sizeof(typebuf)));
    if (req->response == NULL)
        return;
    root = json_loadb(req->response, req->response_len, 0, &jerr);
    if (root == NULL || !json_is_object(root)) {
        if (out->http_status >= 300)
            ses_copy_line(message, messagelen, req->response);
        goto out;
    }

    text = json_string_value(json_object_get(root, "MessageId"));
    if (text != NULL)
        snprintf(out->message_id, sizeof(out->message_id), "%s", text);

    text = json_string_value(json_object_get(root, "message"));
    if (text == NULL)
        text = json_string_value(json_object_get(root, "Message"));
    if (text != NULL)
        snprintf(message, messagelen, "%s", text);

    if (out->error_type[0] == '\0') {
        text = json_string_value(json_object_get(root, "__type"));
        if (text == NULL)
            text = json_string_value(json_object_get(root, "code"));
        if (text != NULL)
            snprintf(out->error_type, sizeof(out->error_type), "%s",
                     ses_short_type(text, typebuf, sizeof(typebuf)));
    }

out:
    json_decref(root);
}


/* Fetches web identity keys from STS and sets the next renewal time. */
static int
ses_client_fetch_credentials(struct ses_client *client, char *err,
                             size_t errlen)
{
    int64_t now = util_now_ms();

    if (awscred_fetch_web_identity(&client->creds, client->region,
                                   SES_STS_TIMEOUT_MS, err, errlen) == -1)
        return -1;
    client->refresh_at_ms = awscred_refresh_at(now,
                                               client->creds.expires_at_ms);
    log_info(NULL, "credentials-fetched", "region=%s source=web-identity "
             "role=%s expires_in_s=%lld", client->region,
             client->creds.role_arn,
             (long long)(client->creds.expires_at_ms - now) / 1000);
    return 0;
}


/*
 * Renews web identity keys once their renewal time has come. When STS
 * fails, the old keys are used until they expire. SES then rejects the
 * requests as a local fault, which stops sending without dead-lettering,
 * and the next attempt after SES_STS_RETRY_MS may succeed.
 */
static void
ses_client_refresh_credentials(struct ses_client *client)
{
    char err[512], quoted[600];

    if (client->creds.role_arn == NULL ||
        util_now_ms() < client->refresh_at_ms)
        return;
    if (ses_client_fetch_credentials(client, err, sizeof(err)) == 0)
        return;
    client->refresh_at_ms = util_now_ms() + SES_STS_RETRY_MS;
    log_error(NULL, "credentials-refresh-failed", "region=%s "
              "expires_in_s=%lld retry_in_ms=%d reason=%s", client->region,
              (long long)(client->creds.expires_at_ms - util_now_ms()) /
                  1000,
              SES_STS_RETRY_MS, log_quote(quoted, sizeof(quoted), err));
}


/*
 * Moves the signing clock to SES's when the two differ by more than
 * SES_CLOCK_SKEW_MIN_MS, and back once they agree again.
 *
 * It also keeps an estimate of the difference for reports. A Date header
 * names the second in which SES responded, so one sample is off by up to
 * a second; taking the middle of that second and a moving average over
 * the last 16 or so samples leaves an error of well under a second once
 * the answers come at different phases of the second. A sample more than
 * SES_CLOCK_SKEW_MIN_MS away from the estimate replaces it: the clock
 * jumped.
 */
static void
ses_client_note_date(struct ses_client *client, const char *date)
{
    time_t  server;
    int64_t skew, offset, sample;

    if (date[0] == '\0' || (server = curl_getdate(date, NULL)) == -1)
        return;
    skew = (int64_t)server * 1000 - util_now_ms();
    sample = skew + 500;
    if (!client->measured ||
        llabs(sample - client->measured_offset_ms) > SES_CLOCK_SKEW_MIN_MS)
        client->measured_offset_ms = sample;
    else
        client->measured_offset_ms +=
            (sample - client->measured_offset_ms) / 16;
    client->measured = 1;
    offset = skew > SES_CLOCK_SKEW_MIN_MS || skew < -SES_CLOCK_SKEW_MIN_MS
                 ? skew : 0;
    if ((offset == 0) != (client->clock_offset_ms == 0) ||
        llabs(offset - client->clock_offset_ms) > SES_CLOCK_SKEW_MIN_MS)
        log_warn(NULL, "clock-offset",
                 "region=%s offset_ms=%lld previous_ms=%lld "
                 "reason=\"SES Date header differs from the local clock\"",
                 client->region, (long long)offset,
                 (long long)client->clock_offset_ms);
    client->clock_offset_ms = offset;
}


static size_t
ses_on_body(char *data, size_t size, size_t n, void *arg)
{
    struct ses_request *req = arg;
    size_t              len = size * n;
    size_t              keep = len;

    if (req->response_len + keep > SES_MAX_RESPONSE)
        keep = SES_MAX_RESPONSE - req->response_len;
    if (keep > 0) {
        req->response = xrealloc(req->response, req->response_len + keep + 1);
        memcpy(req->response + req->response_len, data, keep);
        req->response_len += keep;
        req->response[req->response_len] = '\0';
    }
    return len;
}


static size_t
ses_on_header(char *data, size_t size, size_t n, void *arg)
{
    struct ses_request *req = arg;
    size_t              len = size * n;
    char                line[512];
    char               *value;

    if (len >= sizeof(line))
        return len;             /* no header we read is that long */
    memcpy(line, data, len);
    line[len] = '\0';
    line[strcspn(line, "\r\n")] = '\0';

    /* A new status line starts a new header block (after a 100). */
    if (strncmp(line, "HTTP/", 5) == 0) {
        req->error_type[0] = '\0';
        req->date[0] = '\0';
        return len;
    }
    if ((value = strchr(line, ':')) == NULL)
        return len;
    *value++ = '\0';
    value += strspn(value, " \t");

    if (strcasecmp(line, "x-amzn-ErrorType") == 0)
        snprintf(req->error_type, sizeof(req->error_type), "%s", value);
    else if (strcasecmp(line, "Date") == 0)
        snprintf(req->date, sizeof(req->date), "%s", value);
    return len;
}


static void
ses_request_unlink(struct ses_client *client, struct ses_request *req)
{
    struct ses_request **pp;

    for (pp = &client->requests; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == req) {
            *pp = req->next;
            client->in_flight--;
            break;
        }
    }
    if (req->easy != NULL)
        curl_multi_remove_handle(client->multi, req->easy);
}


static void
ses_request_free(struct ses_request *req)
{
    if (req == NULL)
        return;
    if (req->easy != NULL)
        curl_easy_cleanup(req->easy);
    curl_slist_free_all(req->headers);
    free(req->body);
    free(req->response);
    free(req);
}

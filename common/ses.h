/*
 * ses: the Amazon SES v2 client of the delivery worker.
 *
 * Requests run on a libcurl multi handle, up to max_in_flight at once on
 * kept-alive connections. ses_client_run() waits for network events for a
 * bounded time and calls the done callback for every request that ended.
 * Each request is signed with SigV4 when it is started, so a retry is a new
 * request with a new date and signature.
 *
 * Every response, and every failure to get one, is classified into one
 * enum ses_result, which decides what the caller does with the message:
 * record it as delivered, back off, stop the region, stop for a local
 * fault, or dead-letter it.
 */
#ifndef FERRY_SES_H
#define FERRY_SES_H

#include <stddef.h>
#include <stdint.h>

/*
 * SES v2 limit for a raw message, counted after base64 encoding: 40 MiB
 * (Amazon SES developer guide, "Service quotas in Amazon SES").
 */
#define SES_MAX_BASE64_BYTES 41943040

enum ses_result {
    SES_OK,             /* accepted; message_id is set */
    SES_THROTTLED,      /* send rate exceeded: back off, then retry */
    SES_RETRY,          /* 5xx, timeout, reset, refused: back off, retry */
    SES_REGION_DOWN,    /* sending paused, suspended, daily quota used up */
    SES_LOCAL_FAULT,    /* our credentials, clock or setup are wrong */
    SES_REJECTED        /* this message can never be sent: dead-letter it */
};

/* AWS credentials; awscred.h lists where they come from. */
struct ses_credentials {
    char   *access_key_id;
    char   *secret_access_key;
    char   *session_token;          /* NULL when none is set */

    /* Web identity: set when the keys are fetched from STS and renewed. */
    char   *role_arn;               /* NULL for fixed keys */
    char   *web_identity_token_file;
    char   *role_session_name;
    char   *sts_endpoint;           /* NULL: https://sts.REGION.amazonaws.com */
    int64_t expires_at_ms;          /* 0: the keys do not expire */
};

struct ses_email {
    const char          *envelope_id;
    const char          *sender;
    char *const         *recipients;
    size_t               nrecipients;
    const unsigned char *raw;           /* the whole MIME message */
    size_t               raw_len;
};

struct ses_outcome {
    enum ses_result result;
    long            http_status;        /* 0 when no response came */
    char            error_type[128];    /* x-amzn-ErrorType, or "" */
    char            reason[512];        /* one line for logs and headers */
    char            message_id[256];    /* SendEmail: SES MessageId */
    const char     *body;               /* response body, valid in the
                                           callback only; may be NULL */
    double          seconds;            /* request start to its end */
};

/* Called once for every request that ended, from ses_client_run(). */
typedef void ses_done_fn(void *opaque, const struct ses_outcome *outcome);

struct ses_client_options {
    const char                   *region;
    const char                   *endpoint;     /* base URL */
    const struct ses_credentials *creds;
    long                          timeout_ms;   /* for the answer; see
                                                   ses_request_timeout_ms */
    long                          max_in_flight;
    ses_done_fn                  *done;
};

struct ses_client;

/*
 * Loads the credentials from the first configured source: the environment
 * variables, a web identity or the shared credentials file, as
 * awscred_load() in awscred.h describes. Web identity keys are fetched
 * later, by ses_client_new().
 */
int ses_credentials_from_env(struct ses_credentials *creds, char *err,
                             size_t errlen);
void ses_credentials_fini(struct ses_credentials *creds);

/*
 * Creates the client with a copy of opts->creds. With a web identity it
 * fetches the first temporary keys from STS here, and fails when it
 * cannot. Each request started after the renewal time fetches new keys
 * first (see awscred_refresh_at()).
 */
struct ses_client *ses_client_new(const struct ses_client_options *opts,
                                  char *err, size_t errlen);
void ses_client_free(struct ses_client *client);

/*
 * Starts SendEmail for email, signed now. Returns -1 and fills err when
 * the request cannot be started: no free slot, a message too large for SES
 * (see ses_email_fits()), or a sender or recipient that is not UTF-8.
 */
int ses_client_send_email(struct ses_client *client,
                          const struct ses_email *email, void *opaque,
                          char *err, size_t errlen);

/* Starts GetAccount; the callback's outcome carries the JSON body. */
int ses_client_get_account(struct ses_client *client, void *opaque,
                           char *err, size_t errlen);

/*
 * Starts GetEmailIdentity for a domain identity. The callback's outcome
 * carries the JSON body. When the identity does not exist in the region,
 * it has http_status 404 and error_type NotFoundException. Returns -1 and
 * fills err when identity is not a domain name (letters, digits, '-' and
 * '.'), so the URL path never needs percent-encoding.
 */
int ses_client_get_email_identity(struct ses_client *client,
                                  const char *identity, void *opaque,
                                  char *err, size_t errlen);

/*
 * Drops the request started with opaque, without calling its callback.
 * SES may still have received it.
 */
void ses_client_cancel(struct ses_client *client, void *opaque);

/*
 * Waits up to timeout_ms for network activity on the requests or for
 * wake_fd (-1 for none) to become readable, then calls the callbacks of
 * the requests that ended. Returns 0, or -1 when libcurl failed.
 */
int ses_client_run(struct ses_client *client, int wake_fd, int timeout_ms);

/*
 * The slowest upload a request is given time for: 512 KiB/s, so that a
 * message of 31 MB, the largest SES takes, has about a minute on top of
 * the time for the response.
 */
#define SES_MIN_UPLOAD_BYTES_PER_S (512 * 1024)

/*
 * Returns the limit for a whole request with a body of body_len bytes:
 * timeout_ms for SES's response plus the time the body takes at
 * SES_MIN_UPLOAD_BYTES_PER_S. A limit that counted only timeout_ms would
 * cut large messages off while SES still accepts them, and every retry
 * would deliver another copy.
 */
long ses_request_timeout_ms(long timeout_ms, size_t body_len);

size_t ses_client_in_flight(const struct ses_client *client);

/* Milliseconds the signing clock is moved by to match SES's Date header. */
int64_t ses_client_clock_offset_ms(const struct ses_client *client);

/*
 * Sets *offset_ms to SES's clock minus the local one as estimated from
 * the Date headers seen so far, and returns 0; returns -1 before the
 * first one.
 */
int ses_client_measured_offset_ms(const struct ses_client *client,
                                  int64_t *offset_ms);

/* Returns 0 when raw_len bytes fit SES's limit after base64, else -1. */
int ses_email_fits(size_t raw_len);

/*
 * Returns the SendEmail JSON body (a malloc'd string the caller frees) and
 * its length in *len, or NULL when the sender, a recipient or the envelope
 * id is not valid UTF-8.
 */
char *ses_send_email_body(const struct ses_email *email, size_t *len);

/*
 * Writes the Host header value for a base URL as curl sends it: the host,
 * with ":port" only when the URL names a port other than the scheme's
 * default. Returns -1 when the URL cannot be parsed.
 */
int ses_endpoint_host(const char *endpoint, char *host, size_t size);

/*
 * Classifies an HTTP response and writes a one-line reason.
 * error_type is the x-amzn-ErrorType value (namespace and ":..." suffix
 * allowed) or NULL; message is the error body's message or NULL. A 200
 * counts as SES_OK only when has_message_id is set.
 */
enum ses_result ses_classify(long status, const char *error_type,
                             const char *message, int has_message_id,
                             char *reason, size_t reasonlen);

/* Classifies a transfer that got no HTTP response, by its CURLcode. */
enum ses_result ses_classify_transport(int curl_code, const char *detail,
                                       char *reason, size_t reasonlen);

const char *ses_result_name(enum ses_result result);

#endif

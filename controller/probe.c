#include "probe.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "sigv4.h"
#include "util.h"

#define PROBE_IDENTITY_PATH "/v2/email/identities/"
#define PROBE_MAX_BODY      65536

struct probe_body {
    char   data[PROBE_MAX_BODY + 1];
    size_t len;
};

static void probe_on_done(void *opaque, const struct ses_outcome *out);
static size_t probe_on_body(char *data, size_t size, size_t n, void *arg);


struct probe *
probe_new(const struct config *cfg, const struct region *reg,
          const struct ses_credentials *creds, char *err, size_t errlen)
{
    struct probe             *p = xcalloc(1, sizeof(*p));
    struct ses_client_options opts;

    snprintf(p->region, sizeof(p->region), "%s", reg->name);
    verdict_probes_init(&p->verdict);
    memset(&opts, 0, sizeof(opts));
    opts.region = reg->name;
    opts.endpoint = reg->ses_endpoint;
    opts.creds = creds;
    opts.timeout_ms = (long)cfg->controller_probe_timeout_ms;
    opts.max_in_flight = 1;
    opts.done = probe_on_done;
    if ((p->client = ses_client_new(&opts, err, errlen)) == NULL) {
        free(p);
        return NULL;
    }
    return p;
}


void
probe_free(struct probe *p)
{
    if (p == NULL)
        return;
    ses_client_free(p->client);
    free(p);
}


void
probe_start(struct probe *p)
{
    char err[256];

    if (p->in_flight)
        return;
    if (ses_client_get_account(p->client, p, err, sizeof(err)) == -1) {
        log_warn(NULL, "probe-failed", "region=%s error=\"%s\"", p->region,
                 err);
        return;
    }
    p->in_flight = true;
}


void
probe_run(struct probe *p)
{
    if (ses_client_run(p->client, -1, 0) == -1)
        log_warn(NULL, "probe-failed", "region=%s error=\"libcurl failed\"",
                 p->region);
}


enum verdict_probe_outcome
probe_classify(const struct ses_outcome *out)
{
    json_t      *root;
    json_error_t jerr;
    int          enabled;

    switch (out->result) {
    case SES_OK:
        break;
    case SES_REGION_DOWN:
        return VERDICT_PROBE_DISABLED;
    case SES_RETRY:
        return VERDICT_PROBE_FAILED;
    case SES_THROTTLED:
    case SES_LOCAL_FAULT:
    case SES_REJECTED:
        return VERDICT_PROBE_NO_EVIDENCE;
    }

    if (out->body == NULL ||
        (root = json_loads(out->body, 0, &jerr)) == NULL)
        return VERDICT_PROBE_FAILED;
    enabled = json_is_true(json_object_get(root, "SendingEnabled"));
    json_decref(root);
    return enabled ? VERDICT_PROBE_ENABLED : VERDICT_PROBE_DISABLED;
}


static void
probe_on_done(void *opaque, const struct ses_outcome *out)
{
    struct probe              *p = opaque;
    enum verdict_probe_outcome outcome = probe_classify(out);
    char                       reason[512];
    char                       quoted[600];

    p->in_flight = false;
    if (outcome == VERDICT_PROBE_DISABLED && out->result == SES_OK)
        snprintf(reason, sizeof(reason), "SendingEnabled false");
    else
        snprintf(reason, sizeof(reason), "%s", out->reason);

    /*
     * Log a change of outcome once, not every probe. The reason is left
     * out of the comparison: libcurl's texts name timings that differ
     * from one probe to the next.
     */
    if (p->verdict.last != outcome || p->last_result != out->result ||
        p->last_status != out->http_status || p->last_reason[0] == '\0')
        log_info(NULL, "probe", "region=%s outcome=%s status=%ld reason=%s",
                 p->region, ses_result_name(out->result), out->http_status,
                 log_quote(quoted, sizeof(quoted), reason));
    snprintf(p->last_reason, sizeof(p->last_reason), "%s", reason);
    p->last_result = out->result;
    p->last_status = out->http_status;
    verdict_probes_note(&p->verdict, outcome, util_monotonic_ms());
}


static size_t
probe_on_body(char *data, size_t size, size_t n, void *arg)
{
    struct probe_body *body = arg;
    size_t             len = size * n;
    size_t             keep = len;

    if (body->len + keep > PROBE_MAX_BODY)
        keep = PROBE_MAX_BODY - body->len;
    memcpy(body->data + body->len, data, keep);
    body->len += keep;
    body->data[body->len] = '\0';
    return len;
}


/*
 * A blocking, signed GET of one identity. Readiness is checked every
 * controller.readiness_interval_seconds, so these few requests may wait.
 */
int
probe_identity_verified(const struct region *reg,
                        const struct ses_credentials *creds,
                        const char *identity, long timeout_ms, char *why,
                        size_t whylen)
{
    struct sigv4_header      headers[1];
    struct sigv4_request     req;
    struct sigv4_credentials sc;
    struct sigv4_signature   sig = { .authorization = NULL };
    struct curl_slist       *list = NULL;
    struct probe_body       *body = xcalloc(1, sizeof(*body));
    CURL                    *easy = NULL;
    json_t                  *root = NULL;
    json_error_t             jerr;
    CURLcode                 code;
    char                     host[300], path[512], url[1024], line[1400];
    char                     err[256];
    long                     status = 0;
    int                      rc = -1;

    if (ses_endpoint_host(reg->ses_endpoint, host, sizeof(host)) == -1) {
        snprintf(why, whylen, "SES endpoint of %s is not a valid URL",
                 reg->name);
        goto out;
    }
    /* Domain names need no percent-encoding; anything else is refused. */
    if (identity[strspn(identity, "abcdefghijklmnopqrstuvwxyz"
                                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")]
        != '\0') {
        snprintf(why, whylen, "identity '%s' is not a domain name",
                 identity);
        goto out;
    }
    snprintf(path, sizeof(path), "%s%s", PROBE_IDENTITY_PATH, identity);
    headers[0] = (struct sigv4_header){ "host", host };
    req = (struct sigv4_request){ "GET", path, NULL, headers, 1, NULL, 0 };
    sc = (struct sigv4_credentials){ creds->access_key_id,
                                     creds->secret_access_key,
                                     creds->session_token };
    if (sigv4_sign(&req, &sc, reg->name, "ses", time(NULL), &sig, err,
                   sizeof(err)) == -1) {
        snprintf(why, whylen, "signing GetEmailIdentity failed: %s", err);
        goto out;
    }

    snprintf(line, sizeof(line), "Host: %s", host);
    list = curl_slist_append(list, line);
    snprintf(line, sizeof(line), "X-Amz-Date: %s", sig.amz_date);
    list = curl_slist_append(list, line);
    if (creds->session_token != NULL) {
        snprintf(line, sizeof(line), "X-Amz-Security-Token: %s",
                 creds->session_token);
        list = curl_slist_append(list, line);
    }
    snprintf(line, sizeof(line), "Authorization: %s", sig.authorization);
    list = curl_slist_append(list, line);
    snprintf(url, sizeof(url), "%s%s", reg->ses_endpoint, path);

    if ((easy = curl_easy_init()) == NULL || list == NULL) {
        snprintf(why, whylen, "libcurl failed to create a request");
        goto out;
    }
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "ferry-controller");
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, probe_on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, body);
    if ((code = curl_easy_perform(easy)) != CURLE_OK) {
        snprintf(why, whylen, "GetEmailIdentity %s in %s failed: %s",
                 identity, reg->name, curl_easy_strerror(code));
        goto out;
    }
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (status == 404) {
        snprintf(why, whylen, "identity %s not found in %s", identity,
                 reg->name);
        rc = 0;
        goto out;
    }
    if (status != 200 ||
        (root = json_loadb(body->data, body->len, 0, &jerr)) == NULL) {
        snprintf(why, whylen, "GetEmailIdentity %s in %s: HTTP %ld",
                 identity, reg->name, status);
        goto out;
    }
    if (!json_is_true(json_object_get(root, "VerifiedForSendingStatus"))) {
        snprintf(why, whylen, "identity %s not verified for sending in %s",
                 identity, reg->name);
        rc = 0;
        goto out;
    }
    rc = 1;

out:
    json_decref(root);
    if (easy != NULL)
        curl_easy_cleanup(easy);
    curl_slist_free_all(list);
    sigv4_signature_fini(&sig);
    free(body);
    return rc;
}

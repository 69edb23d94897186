#include "sigv4.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"

/* Growable string; data is always NUL-terminated once anything was added. */
struct sigv4_buf {
    char   *data;
    size_t  len;
    size_t  size;
};

/* One header of the canonical set before duplicates are joined. */
struct sigv4_entry {
    char   *name;           /* lowercase */
    char   *value;          /* trimmed, white space collapsed */
    size_t  index;          /* position in the request, keeps sort stable */
};

/* One name=value pair of the query, both percent-encoded the AWS way. */
struct sigv4_param {
    char *name;
    char *value;
};

static void sigv4_buf_add(struct sigv4_buf *b, const char *s, size_t n);
static void sigv4_buf_puts(struct sigv4_buf *b, const char *s);
static void sigv4_buf_putc(struct sigv4_buf *b, char c);
static int sigv4_is_unreserved(unsigned char c);
static int sigv4_is_space(unsigned char c);
static void sigv4_uri_encode(struct sigv4_buf *b, const unsigned char *s,
                             size_t n, int keep_slash);
static char *sigv4_percent_decode(const char *s, size_t n, size_t *len);
static int sigv4_hex_value(char c);
static int sigv4_param_cmp(const void *a, const void *b);
static void sigv4_canonical_query(struct sigv4_buf *b, const char *query);
static char *sigv4_canonical_value(const char *value);
static int sigv4_entry_cmp(const void *a, const void *b);
static void sigv4_entry_add(struct sigv4_entry *e, size_t *n,
                            const char *name, const char *value);
static void sigv4_hmac(const void *key, size_t keylen, const char *data,
                       unsigned char out[32]);
static void sigv4_sha256_hex(const void *data, size_t len, char out[65]);


static void
sigv4_buf_add(struct sigv4_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->size) {
        size_t size = b->size ? b->size : 256;

        while (b->len + n + 1 > size)
            size *= 2;
        b->data = xrealloc(b->data, size);
        b->size = size;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}


static void
sigv4_buf_puts(struct sigv4_buf *b, const char *s)
{
    sigv4_buf_add(b, s, strlen(s));
}


static void
sigv4_buf_putc(struct sigv4_buf *b, char c)
{
    sigv4_buf_add(b, &c, 1);
}


/* RFC 3986 unreserved characters, which SigV4 never percent-encodes. */
static int
sigv4_is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
           c == '~';
}


static int
sigv4_is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}


static void
sigv4_uri_encode(struct sigv4_buf *b, const unsigned char *s, size_t n,
                 int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";

    for (size_t i = 0; i < n; i++) {
        if (sigv4_is_unreserved(s[i]) || (keep_slash && s[i] == '/')) {
            sigv4_buf_putc(b, (char)s[i]);
        } else {
            char esc[3] = { '%', hex[s[i] >> 4], hex[s[i] & 0x0f] };

            sigv4_buf_add(b, esc, 3);
        }
    }
}


/* Decodes %XX escapes; a '%' not followed by two hex digits stays as is. */
static char *
sigv4_percent_decode(const char *s, size_t n, size_t *len)
{
    char  *out = xmalloc(n + 1);
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2])) {
            out[o++] = (char)(sigv4_hex_value(s[i + 1]) << 4 |
                              sigv4_hex_value(s[i + 2]));
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    *len = o;
    return out;
}


static int
sigv4_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return c - 'A' + 10;
}


static int
sigv4_param_cmp(const void *a, const void *b)
{
    const struct sigv4_param *x = a;
    const struct sigv4_param *y = b;
    int                       c = strcmp(x->name, y->name);

    return c != 0 ? c : strcmp(x->value, y->value);
}


/*
 * Writes the query as SigV4 wants it: every name and value decoded, then
 * encoded with only the unreserved characters left bare, a missing value
 * written as empty, the pairs sorted by name and then by value.
 */
static void
sigv4_canonical_query(struct sigv4_buf *b, const char *query)
{
    struct sigv4_param *params = NULL;
    size_t              nparams = 0;
    const char         *p = query;

    if (query == NULL || query[0] == '\0')
        return;

    while (*p != '\0') {
        const char      *end = strchr(p, '&');
        size_t           n = end ? (size_t)(end - p) : strlen(p);
        const char      *eq = memchr(p, '=', n);
        size_t           nlen = eq ? (size_t)(eq - p) : n;
        struct sigv4_buf enc = { NULL, 0, 0 };
        char            *raw;
        size_t           rawlen;

        if (n > 0) {
            params = xrealloc(params, (nparams + 1) * sizeof(*params));

            raw = sigv4_percent_decode(p, nlen, &rawlen);
            sigv4_uri_encode(&enc, (const unsigned char *)raw, rawlen, 0);
            params[nparams].name = enc.data ? enc.data : xstrdup("");
            free(raw);

            enc = (struct sigv4_buf){ NULL, 0, 0 };
            if (eq != NULL) {
                raw = sigv4_percent_decode(eq + 1, n - nlen - 1, &rawlen);
                sigv4_uri_encode(&enc, (const unsigned char *)raw, rawlen, 0);
                free(raw);
            }
            params[nparams].value = enc.data ? enc.data : xstrdup("");
            nparams++;
        }
        p += n;
        if (*p == '&')
            p++;
    }

    qsort(params, nparams, sizeof(*params), sigv4_param_cmp);
    for (size_t i = 0; i < nparams; i++) {
        if (i > 0)
            sigv4_buf_putc(b, '&');
        sigv4_buf_puts(b, params[i].name);
        sigv4_buf_putc(b, '=');
        sigv4_buf_puts(b, params[i].value);
        free(params[i].name);
        free(params[i].value);
    }
    free(params);
}


/*
 * Trims white space at both ends and collapses every inner run of it,
 * folded line breaks included, to one space.
 */
static char *
sigv4_canonical_value(const char *value)
{
    char  *out = xmalloc(strlen(value) + 1);
    size_t n = 0;
    int    pending_space = 0;

    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if (sigv4_is_space(*p)) {
            pending_space = n > 0;
            continue;
        }
        if (pending_space)
            out[n++] = ' ';
        pending_space = 0;
        out[n++] = (char)*p;
    }
    out[n] = '\0';
    return out;
}


static int
sigv4_entry_cmp(const void *a, const void *b)
{
    const struct sigv4_entry *x = a;
    const struct sigv4_entry *y = b;
    int                       c = strcmp(x->name, y->name);

    if (c != 0)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}


static void
sigv4_entry_add(struct sigv4_entry *e, size_t *n, const char *name,
                const char *value)
{
    char *lower = xstrdup(name);

    for (char *p = lower; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    e[*n].name = lower;
    e[*n].value = sigv4_canonical_value(value);
    e[*n].index = *n;
    (*n)++;
}


static void
sigv4_hmac(const void *key, size_t keylen, const char *data,
           unsigned char out[32])
{
    unsigned int len = 32;

    HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)data,
         strlen(data), out, &len);
}


static void
sigv4_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];

    SHA256(data, len, digest);
    util_hex(digest, sizeof(digest), out);
}


int
sigv4_sign(const struct sigv4_request *req,
           const struct sigv4_credentials *creds, const char *region,
           const char *service, time_t when, struct sigv4_signature *sig,
           char *err, size_t errlen)
{
    struct sigv4_entry *entries = NULL;
    struct sigv4_buf    creq = { NULL, 0, 0 };
    struct sigv4_buf    signed_names = { NULL, 0, 0 };
    struct sigv4_buf    sts = { NULL, 0, 0 };
    struct sigv4_buf    auth = { NULL, 0, 0 };
    size_t              n = 0;
    int                 have_host = 0, have_date = 0, have_token = 0;
    int                 use_token;
    struct tm           tm;
    char                date[9];
    char                scope[256];
    char                hash[65];
    char               *secret_key = NULL;
    size_t              secret_len;
    unsigned char       key[32] = { 0 };
    char                hex[65];
    int                 rc = -1;

    memset(sig, 0, sizeof(*sig));
    gmtime_r(&when, &tm);
    strftime(sig->amz_date, sizeof(sig->amz_date), "%Y%m%dT%H%M%SZ", &tm);
    memcpy(date, sig->amz_date, 8);
    date[8] = '\0';
    use_token = creds->session_token != NULL &&
                creds->session_token[0] != '\0';

    /* Collect the headers to sign, with the two the signer owns. */
    entries = xcalloc(req->nheaders + 2, sizeof(*entries));
    for (size_t i = 0; i < req->nheaders; i++) {
        sigv4_entry_add(entries, &n, req->headers[i].name,
                        req->headers[i].value);
        if (strcmp(entries[n - 1].name, "host") == 0)
            have_host = entries[n - 1].value[0] != '\0';
        else if (strcmp(entries[n - 1].name, "x-amz-security-token") == 0)
            have_token = 1;
        else if (strcmp(entries[n - 1].name, "x-amz-date") == 0) {
            if (strcmp(entries[n - 1].value, sig->amz_date) != 0) {
                snprintf(err, errlen, "x-amz-date header '%s' differs from "
                         "the signing time %s", entries[n - 1].value,
                         sig->amz_date);
                goto out;
            }
            have_date = 1;
        }
    }
    if (!have_host) {
        snprintf(err, errlen, "request has no host header or an empty one; "
                 "SigV4 always signs host");
        goto out;
    }
    if (!have_date)
        sigv4_entry_add(entries, &n, "x-amz-date", sig->amz_date);
    if (use_token && !have_token)
        sigv4_entry_add(entries, &n, "x-amz-security-token",
                        creds->session_token);
    qsort(entries, n, sizeof(*entries), sigv4_entry_cmp);

    /* Canonical request: method, URI, query, headers, names, payload. */
    sigv4_buf_puts(&creq, req->method);
    sigv4_buf_putc(&creq, '\n');
    if (req->path == NULL || req->path[0] == '\0')
        sigv4_buf_putc(&creq, '/');
    else
        sigv4_uri_encode(&creq, (const unsigned char *)req->path,
                         strlen(req->path), 1);
    sigv4_buf_putc(&creq, '\n');
    sigv4_canonical_query(&creq, req->query);
    sigv4_buf_putc(&creq, '\n');
    for (size_t i = 0; i < n; i++) {
        int first = i == 0 || strcmp(entries[i].name,
                                     entries[i - 1].name) != 0;

        if (first) {
            if (i > 0)
                sigv4_buf_putc(&creq, '\n');
            sigv4_buf_puts(&creq, entries[i].name);
            sigv4_buf_putc(&creq, ':');
            if (signed_names.len > 0)
                sigv4_buf_putc(&signed_names, ';');
            sigv4_buf_puts(&signed_names, entries[i].name);
        } else {
            sigv4_buf_putc(&creq, ',');
        }
        sigv4_buf_puts(&creq, entries[i].value);
    }
    sigv4_buf_puts(&creq, "\n\n");
    sigv4_buf_puts(&creq, signed_names.data);
    sigv4_buf_putc(&creq, '\n');
    sigv4_sha256_hex(req->payload ? req->payload : "", req->payload_len,
                     hash);
    sigv4_buf_puts(&creq, hash);

    /* String to sign: algorithm, time, scope, hash of the request. */
    snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", date, region,
             service);
    sigv4_sha256_hex(creq.data, creq.len, hash);
    sigv4_buf_puts(&sts, SIGV4_ALGORITHM "\n");
    sigv4_buf_puts(&sts, sig->amz_date);
    sigv4_buf_putc(&sts, '\n');
    sigv4_buf_puts(&sts, scope);
    sigv4_buf_putc(&sts, '\n');
    sigv4_buf_puts(&sts, hash);

    /* Signing key: HMAC chain over date, region, service, terminator. */
    secret_len = strlen(creds->secret_access_key);
    secret_key = xmalloc(secret_len + 5);
    memcpy(secret_key, "AWS4", 4);
    memcpy(secret_key + 4, creds->secret_access_key, secret_len + 1);
    sigv4_hmac(secret_key, strlen(secret_key), date, key);
    sigv4_hmac(key, sizeof(key), region, key);
    sigv4_hmac(key, sizeof(key), service, key);
    sigv4_hmac(key, sizeof(key), "aws4_request", key);
    sigv4_hmac(key, sizeof(key), sts.data, key);
    util_hex(key, sizeof(key), hex);

    sigv4_buf_puts(&auth, SIGV4_ALGORITHM " Credential=");
    sigv4_buf_puts(&auth, creds->access_key_id);
    sigv4_buf_putc(&auth, '/');
    sigv4_buf_puts(&auth, scope);
    sigv4_buf_puts(&auth, ", SignedHeaders=");
    sigv4_buf_puts(&auth, signed_names.data);
    sigv4_buf_puts(&auth, ", Signature=");
    sigv4_buf_puts(&auth, hex);

    sig->canonical_request = creq.data;
    sig->string_to_sign = sts.data;
    sig->authorization = auth.data;
    creq.data = sts.data = auth.data = NULL;
    rc = 0;

out:
    for (size_t i = 0; i < n; i++) {
        free(entries[i].name);
        free(entries[i].value);
    }
    free(entries);
    free(creq.data);
    free(sts.data);
    free(auth.data);
    free(signed_names.data);
    if (secret_key != NULL) {
        OPENSSL_cleanse(secret_key, strlen(secret_key));
        free(secret_key);
    }
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}


void
sigv4_signature_fini(struct sigv4_signature *sig)
{
    if (sig == NULL)
        return;
    free(sig->authorization);
    free(sig->canonical_request);
    free(sig->string_to_sign);
    memset(sig, 0, sizeof(*sig));
}

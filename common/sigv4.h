/*
 * sigv4: AWS Signature Version 4 for one HTTP request, header style.
 *
 * The caller lists the headers it will send, host included. The signer
 * adds x-amz-date and, with a session token, x-amz-security-token to the
 * signed set, and returns the values to send for both. The canonical form
 * follows AWS's "Create a signed AWS API request" page: header names in
 * lowercase and sorted, values trimmed with inner runs of white space
 * collapsed to one space, repeated names joined with commas.
 */
#ifndef FERRY_SIGV4_H
#define FERRY_SIGV4_H

#include <stddef.h>
#include <time.h>

#define SIGV4_AMZ_DATE_LEN 16          /* 20150830T123600Z */

struct sigv4_header {
    const char *name;
    const char *value;
};

struct sigv4_request {
    const char                *method;
    const char                *path;        /* before percent-encoding */
    const char                *query;       /* as sent, without '?'; or NULL */
    const struct sigv4_header *headers;
    size_t                     nheaders;
    const void                *payload;
    size_t                     payload_len;
};

struct sigv4_credentials {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token;              /* NULL or "" when none */
};

struct sigv4_signature {
    char  amz_date[SIGV4_AMZ_DATE_LEN + 1]; /* send as X-Amz-Date */
    char *authorization;                    /* send as Authorization */
    char *canonical_request;
    char *string_to_sign;
};

/*
 * Signs req for region and service at time when. A header named
 * x-amz-date or x-amz-security-token in req is signed as given instead of
 * being added. Returns -1 and fills err when the request has no host
 * header, or an empty one; sig is then left empty.
 */
int sigv4_sign(const struct sigv4_request *req,
               const struct sigv4_credentials *creds, const char *region,
               const char *service, time_t when, struct sigv4_signature *sig,
               char *err, size_t errlen);

/* Frees what sigv4_sign() allocated; accepts a zeroed or freed sig. */
void sigv4_signature_fini(struct sigv4_signature *sig);

#endif

/*
 * awscred: where the delivery worker's AWS credentials come from.
 *
 * awscred_load() looks in this order, like botocore's default chain but
 * without the config file, SSO, containers or an instance metadata
 * service:
 *
 *   1. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, with AWS_SESSION_TOKEN
 *      when set.
 *   2. Web identity: AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE. The token
 *      is exchanged for temporary credentials at STS
 *      (AssumeRoleWithWebIdentity) when the SES client starts, and again
 *      before they expire. AWS_ROLE_SESSION_NAME names the session, and
 *      AWS_STS_ENDPOINT (or AWS_ENDPOINT_URL_STS) replaces the endpoint
 *      https://sts.REGION.amazonaws.com.
 *   3. The shared credentials file: AWS_SHARED_CREDENTIALS_FILE, else
 *      ~/.aws/credentials, section AWS_PROFILE, else "default".
 */
#ifndef FERRY_AWSCRED_H
#define FERRY_AWSCRED_H

#include <stddef.h>
#include <stdint.h>

#include "ses.h"

/* Fills creds from the first source above that is configured. */
int awscred_load(struct ses_credentials *creds, char *err, size_t errlen);

/*
 * Reads the keys of profile from the text of a shared credentials file
 * (INI: "[name]" sections of "key = value" lines, "#" and ";" comments).
 * Returns -1 and fills err when the profile or one of its two keys is
 * missing.
 */
int awscred_parse_file(const char *text, size_t len, const char *profile,
                       struct ses_credentials *creds, char *err,
                       size_t errlen);

/* Copies src into dst, which the caller frees with ses_credentials_fini. */
void awscred_copy(struct ses_credentials *dst,
                  const struct ses_credentials *src);

/*
 * Fetches temporary keys for the web identity in creds from STS in
 * region, blocking for at most timeout_ms, and replaces the keys, the
 * session token and the expiry in creds. On failure creds is unchanged.
 */
int awscred_fetch_web_identity(struct ses_credentials *creds,
                               const char *region, long timeout_ms,
                               char *err, size_t errlen);

/*
 * Reads AccessKeyId, SecretAccessKey, SessionToken and Expiration from an
 * AssumeRoleWithWebIdentity response body into creds.
 */
int awscred_parse_sts_response(const char *body,
                               struct ses_credentials *creds, char *err,
                               size_t errlen);

/*
 * Returns the time, in ms since the epoch, at which credentials valid
 * from now_ms to expires_ms should be renewed: 5 minutes before expiry,
 * or half-way for a shorter lifetime.
 */
int64_t awscred_refresh_at(int64_t now_ms, int64_t expires_ms);

/* Parses "2024-05-01T12:00:00Z" (fractional seconds allowed) as UTC ms. */
int awscred_parse_time(const char *text, int64_t *ms);

#endif

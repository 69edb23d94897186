/*
 * smtp_auth: the SASL mechanisms PLAIN (RFC 4616) and LOGIN of SMTP AUTH
 * (RFC 4954), checked against the crypt(3) hashes of
 * ingress.credentials_file.
 *
 * Passwords are held only in caller buffers, which
 * smtp_auth_wipe() clears once a check is done. Nothing here logs.
 */
#ifndef FERRY_SMTP_AUTH_H
#define FERRY_SMTP_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Maximum decoded length of a user name or password. */
#define SMTP_AUTH_FIELD_MAX  255

/*
 * Decodes base64 text (RFC 4648, with padding, no blanks) into out.
 * Returns the decoded length, or -1 when text is not valid base64 or the
 * result does not fit in size octets.
 */
int smtp_auth_base64_decode(const char *text, unsigned char *out,
                            size_t size);

/*
 * Splits a decoded PLAIN response, authzid NUL authcid NUL password, into
 * user and password, both NUL-terminated. Returns -1 when the response is
 * malformed, or when an authorization identity other than the user is
 * requested, which this server does not allow.
 */
int smtp_auth_split_plain(const unsigned char *response, size_t len,
                          char *user, char *password);

/*
 * Checks a user and password against the configured credentials. Returns
 * the credential, or NULL. An unknown user costs one hash computation
 * too, so the reply time does not reveal which users exist. It blocks for
 * the whole hash computation; the ingress runs checks on the threads of
 * smtp_auth_pool instead, with smtp_auth_hash_for() and
 * smtp_auth_verify().
 */
const struct credential *smtp_auth_check(const struct config *cfg,
                                         const char *user,
                                         const char *password);

/*
 * Returns the crypt(3) hash that a password of user is checked against:
 * the user's own, or the first user's for an unknown user, so that both
 * cost one hash computation. Sets *known to whether user exists. Returns
 * NULL when no credentials are configured. The hash belongs to cfg, which
 * SIGHUP may reload, so a caller that keeps it makes a copy.
 */
const char *smtp_auth_hash_for(const struct config *cfg, const char *user,
                               bool *known);

/*
 * Hashes password with the setting of hash and compares in constant time.
 * Safe to call from any thread, since it touches no shared state.
 */
bool smtp_auth_verify(const char *password, const char *hash);

/*
 * Writes a yescrypt hash of password, for ingress.credentials_file.
 * Returns -1 and fills err on failure.
 */
int smtp_auth_hash_password(const char *password, char *out, size_t size,
                            char *err, size_t errlen);

/* Clears a buffer that held a password or a response containing one. */
void smtp_auth_wipe(void *buf, size_t len);

#endif

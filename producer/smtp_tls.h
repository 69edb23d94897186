/*
 * smtp_tls: the server side of STARTTLS (RFC 3207), an OpenSSL context
 * built from ingress.tls_certificate and ingress.tls_key.
 *
 * Only TLS 1.2 and later are accepted. smtp_tls_reload() reads the files
 * again for SIGHUP. Sessions already encrypted keep the old context, which
 * OpenSSL frees when its last connection ends.
 */
#ifndef FERRY_SMTP_TLS_H
#define FERRY_SMTP_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "config.h"

struct smtp_tls;

/* Returns NULL and fills err when a file cannot be read or used. */
struct smtp_tls *smtp_tls_new(const struct config *cfg, char *err,
                              size_t errlen);
void smtp_tls_free(struct smtp_tls *tls);

/*
 * Loads the certificate and key again. On failure the old ones stay in
 * use, and err contains the reason.
 */
int smtp_tls_reload(struct smtp_tls *tls, char *err, size_t errlen);

/* Returns a new server-side connection object for one session. */
SSL *smtp_tls_ssl_new(struct smtp_tls *tls);

#endif

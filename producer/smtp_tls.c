#include "smtp_tls.h"

#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>

#include "util.h"

struct smtp_tls {
    const struct config *cfg;
    SSL_CTX             *ctx;
};

static SSL_CTX *smtp_tls_ctx_new(const struct config *cfg, char *err,
                                 size_t errlen);
static void smtp_tls_error(char *err, size_t errlen, const char *what,
                           const char *path);


/* Writes what failed, the file and OpenSSL's first queued error. */
static void
smtp_tls_error(char *err, size_t errlen, const char *what, const char *path)
{
    char          reason[256];
    unsigned long code = ERR_get_error();

    if (code != 0)
        ERR_error_string_n(code, reason, sizeof(reason));
    else
        snprintf(reason, sizeof(reason), "unknown error");
    ERR_clear_error();
    snprintf(err, errlen, "%s '%s': %s", what, path, reason);
}


static SSL_CTX *
smtp_tls_ctx_new(const struct config *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL) {
        smtp_tls_error(err, errlen, "cannot create a TLS context for",
                       cfg->ingress_tls_certificate);
        return NULL;
    }

    /* TLS 1.0 and 1.1 are deprecated (RFC 8996). */
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        smtp_tls_error(err, errlen, "cannot require TLS 1.2 for",
                       cfg->ingress_tls_certificate);
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                             SSL_OP_CIPHER_SERVER_PREFERENCE);

    if (SSL_CTX_use_certificate_chain_file(ctx,
                                           cfg->ingress_tls_certificate) !=
        1) {
        smtp_tls_error(err, errlen, "key 'ingress.tls_certificate': cannot "
                       "load", cfg->ingress_tls_certificate);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->ingress_tls_key,
                                    SSL_FILETYPE_PEM) != 1) {
        smtp_tls_error(err, errlen, "key 'ingress.tls_key': cannot load",
                       cfg->ingress_tls_key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        smtp_tls_error(err, errlen, "key 'ingress.tls_key': does not match "
                       "the certificate, in", cfg->ingress_tls_key);
        goto fail;
    }
    return ctx;

fail:
    SSL_CTX_free(ctx);
    return NULL;
}


struct smtp_tls *
smtp_tls_new(const struct config *cfg, char *err, size_t errlen)
{
    struct smtp_tls *tls;
    SSL_CTX         *ctx = smtp_tls_ctx_new(cfg, err, errlen);

    if (ctx == NULL)
        return NULL;
    tls = xcalloc(1, sizeof(*tls));
    tls->cfg = cfg;
    tls->ctx = ctx;
    return tls;
}


void
smtp_tls_free(struct smtp_tls *tls)
{
    if (tls == NULL)
        return;
    SSL_CTX_free(tls->ctx);
    free(tls);
}


int
smtp_tls_reload(struct smtp_tls *tls, char *err, size_t errlen)
{
    SSL_CTX *ctx = smtp_tls_ctx_new(tls->cfg, err, errlen);

    if (ctx == NULL)
        return -1;

    /* Connections hold their own reference to the old context. */
    SSL_CTX_free(tls->ctx);
    tls->ctx = ctx;
    return 0;
}


SSL *
smtp_tls_ssl_new(struct smtp_tls *tls)
{
    return SSL_new(tls->ctx);
}

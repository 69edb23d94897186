#include "smtp_auth.h"

#include <crypt.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static int smtp_auth_base64_value(unsigned char c);


static int
smtp_auth_base64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}


int
smtp_auth_base64_decode(const char *text, unsigned char *out, size_t size)
{
    size_t   len = strlen(text);
    size_t   n = 0;
    unsigned bits = 0;
    int      nbits = 0;
    size_t   pad = 0;

    if (len % 4 != 0)
        return -1;
    while (pad < 2 && pad < len && text[len - 1 - pad] == '=')
        pad++;

    for (size_t i = 0; i < len - pad; i++) {
        int v = smtp_auth_base64_value((unsigned char)text[i]);

        if (v < 0)
            return -1;
        bits = (bits << 6) | (unsigned)v;
        nbits += 6;
        if (nbits >= 8) {
            nbits -= 8;
            if (n == size)
                return -1;
            out[n++] = (unsigned char)(bits >> nbits);
            bits &= (1u << nbits) - 1;
        }
    }

    /* The bits left over by the padding must be zero (RFC 4648 3.5). */
    if (bits != 0)
        return -1;
    return (int)n;
}


int
smtp_auth_split_plain(const unsigned char *response, size_t len,
                      char *user, char *password)
{
    const unsigned char *authzid = response;
    const unsigned char *nul1 = memchr(response, '\0', len);
    const unsigned char *authcid, *nul2, *pass;
    size_t               authzid_len, authcid_len, pass_len;

    if (nul1 == NULL)
        return -1;
    authcid = nul1 + 1;
    nul2 = memchr(authcid, '\0', len - (size_t)(authcid - response));
    if (nul2 == NULL)
        return -1;
    pass = nul2 + 1;

    authzid_len = (size_t)(nul1 - authzid);
    authcid_len = (size_t)(nul2 - authcid);
    pass_len = len - (size_t)(pass - response);
    if (authcid_len == 0 || authcid_len > SMTP_AUTH_FIELD_MAX ||
        pass_len == 0 || pass_len > SMTP_AUTH_FIELD_MAX ||
        memchr(pass, '\0', pass_len) != NULL)
        return -1;

    /* Authorizing as another user is not supported. */
    if (authzid_len > 0 &&
        (authzid_len != authcid_len ||
         memcmp(authzid, authcid, authcid_len) != 0))
        return -1;

    memcpy(user, authcid, authcid_len);
    user[authcid_len] = '\0';
    memcpy(password, pass, pass_len);
    password[pass_len] = '\0';
    return 0;
}


bool
smtp_auth_verify(const char *password, const char *hash)
{
    struct crypt_data *data = xcalloc(1, sizeof(*data));
    const char        *out;
    bool               match = false;

    out = crypt_rn(password, hash, data, (int)sizeof(*data));
    if (out != NULL && strlen(out) == strlen(hash))
        match = CRYPTO_memcmp(out, hash, strlen(hash)) == 0;
    smtp_auth_wipe(data, sizeof(*data));
    free(data);
    return match;
}


const char *
smtp_auth_hash_for(const struct config *cfg, const char *user, bool *known)
{
    const struct credential *cred = config_credential(cfg, user);

    *known = cred != NULL;
    if (cred != NULL)
        return cred->hash;

    /*
     * The first user's hash stands in, so an unknown name takes as long
     * as a wrong password. The caller ignores the result.
     */
    return cfg->ningress_credentials > 0 ? cfg->ingress_credentials[0].hash
                                         : NULL;
}


const struct credential *
smtp_auth_check(const struct config *cfg, const char *user,
                const char *password)
{
    bool        known;
    const char *hash = smtp_auth_hash_for(cfg, user, &known);

    if (hash == NULL)
        return NULL;
    if (!smtp_auth_verify(password, hash) || !known)
        return NULL;
    return config_credential(cfg, user);
}


int
smtp_auth_hash_password(const char *password, char *out, size_t size,
                        char *err, size_t errlen)
{
    char               setting[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *data;
    const char        *hash;
    int                rc = -1;

    /* Count 0 picks libxcrypt's default cost for yescrypt. */
    if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof(setting)) ==
        NULL) {
        snprintf(err, errlen, "cannot make a yescrypt salt: %s",
                 strerror(errno));
        return -1;
    }

    data = xcalloc(1, sizeof(*data));
    hash = crypt_rn(password, setting, data, (int)sizeof(*data));
    if (hash == NULL) {
        snprintf(err, errlen, "cannot hash the password: %s",
                 strerror(errno));
    } else if (strlen(hash) >= size) {
        snprintf(err, errlen, "the hash is longer than %zu characters",
                 size - 1);
    } else {
        memcpy(out, hash, strlen(hash) + 1);
        rc = 0;
    }
    smtp_auth_wipe(data, sizeof(*data));
    free(data);
    return rc;
}


void
smtp_auth_wipe(void *buf, size_t len)
{
    OPENSSL_cleanse(buf, len);
}

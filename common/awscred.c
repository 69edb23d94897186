#include "awscred.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

/* Largest web identity token file and STS response read. */
#define AWSCRED_MAX_TOKEN    65536
#define AWSCRED_MAX_RESPONSE 65536

/* Renew this long before expiry, or half-way for shorter lifetimes. */
#define AWSCRED_REFRESH_MARGIN_MS (5 * 60 * 1000)

/* STS API version of AssumeRoleWithWebIdentity. */
#define AWSCRED_STS_VERSION "2011-06-15"

struct awscred_buffer {
    char  *data;
    size_t len;
};

static int awscred_load_env(struct ses_credentials *creds, char *err,
                            size_t errlen);
static int awscred_load_web_identity(struct ses_credentials *creds,
                                     char *err, size_t errlen);
static int awscred_load_shared_file(struct ses_credentials *creds,
                                    char *err, size_t errlen);
static char *awscred_read_file(const char *path, size_t max, size_t *len,
                               char *err, size_t errlen);
static const char *awscred_env(const char *name);
static void awscred_trim(const char **start, const char **end);
static char *awscred_xml_text(const char *body, const char *tag);
static void awscred_set(char **field, char *value);
static char *awscred_dup_or_null(const char *s);
static size_t awscred_on_body(char *data, size_t size, size_t n,
                              void *arg);


/* Returns the variable's value, or NULL when it is unset or empty. */
static const char *
awscred_env(const char *name)
{
    const char *value = getenv(name);

    return value != NULL && value[0] != '\0' ? value : NULL;
}


static char *
awscred_dup_or_null(const char *s)
{
    return s != NULL ? xstrdup(s) : NULL;
}


/* Frees *field and stores value, which it takes over. */
static void
awscred_set(char **field, char *value)
{
    free(*field);
    *field = value;
}


int
awscred_load(struct ses_credentials *creds, char *err, size_t errlen)
{
    int rc;

    memset(creds, 0, sizeof(*creds));
    if ((rc = awscred_load_env(creds, err, errlen)) != 1)
        return rc;
    if ((rc = awscred_load_web_identity(creds, err, errlen)) != 1)
        return rc;
    if ((rc = awscred_load_shared_file(creds, err, errlen)) != 1)
        return rc;
    snprintf(err, errlen, "no AWS credentials found; set "
             "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_ROLE_ARN "
             "and AWS_WEB_IDENTITY_TOKEN_FILE, or a [default] profile in "
             "~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE and "
             "AWS_PROFILE select another file and profile)");
    return -1;
}


/* Returns 0 when loaded, 1 when not configured, -1 when half set. */
static int
awscred_load_env(struct ses_credentials *creds, char *err, size_t errlen)
{
    const char *id = awscred_env("AWS_ACCESS_KEY_ID");
    const char *secret = awscred_env("AWS_SECRET_ACCESS_KEY");

    if (id == NULL && secret == NULL)
        return 1;
    if (id == NULL || secret == NULL) {
        snprintf(err, errlen, "%s is set in the environment but %s is "
                 "not; set both, or neither to use another source",
                 id != NULL ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                 id != NULL ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
        return -1;
    }
    creds->access_key_id = xstrdup(id);
    creds->secret_access_key = xstrdup(secret);
    creds->session_token = awscred_dup_or_null(
        awscred_env("AWS_SESSION_TOKEN"));
    return 0;
}


/*
 * Records the web identity settings. The SES client fetches the keys,
 * because the default STS endpoint depends on its region.
 */
static int
awscred_load_web_identity(struct ses_credentials *creds, char *err,
                          size_t errlen)
{
    const char *role = awscred_env("AWS_ROLE_ARN");
    const char *token_file = awscred_env("AWS_WEB_IDENTITY_TOKEN_FILE");
    const char *endpoint = awscred_env("AWS_STS_ENDPOINT");
    const char *session = awscred_env("AWS_ROLE_SESSION_NAME");
    char        name[64];

    if (role == NULL && token_file == NULL)
        return 1;
    if (role == NULL || token_file == NULL) {
        snprintf(err, errlen, "%s is set in the environment but %s is "
                 "not; web identity needs both",
                 role != NULL ? "AWS_ROLE_ARN"
                              : "AWS_WEB_IDENTITY_TOKEN_FILE",
                 role != NULL ? "AWS_WEB_IDENTITY_TOKEN_FILE"
                              : "AWS_ROLE_ARN");
        return -1;
    }
    if (endpoint == NULL)
        endpoint = awscred_env("AWS_ENDPOINT_URL_STS");
    if (session == NULL) {
        snprintf(name, sizeof(name), "ferry-deliver-%ld", (long)getpid());
        session = name;
    }
    creds->role_arn = xstrdup(role);
    creds->web_identity_token_file = xstrdup(token_file);
    creds->role_session_name = xstrdup(session);
    creds->sts_endpoint = awscred_dup_or_null(endpoint);
    return 0;
}


static int
awscred_load_shared_file(struct ses_credentials *creds, char *err,
                         size_t errlen)
{
    const char *path = awscred_env("AWS_SHARED_CREDENTIALS_FILE");
    const char *profile = awscred_env("AWS_PROFILE");
    const char *home = awscred_env("HOME");
    char        default_path[4096];
    char       *text;
    size_t      len;
    int         rc;

    /* Only a file or profile named explicitly must exist. */
    int explicit = path != NULL || profile != NULL;

    if (path == NULL) {
        if (home == NULL)
            return 1;
        snprintf(default_path, sizeof(default_path), "%s/.aws/credentials",
                 home);
        path = default_path;
    }
    if (profile == NULL)
        profile = "default";
    if (!explicit && access(path, F_OK) == -1)
        return 1;

    if ((text = awscred_read_file(path, 1024 * 1024, &len, err,
                                  errlen)) == NULL)
        return -1;
    rc = awscred_parse_file(text, len, profile, creds, err, errlen);
    free(text);
    if (rc == -1) {
        char reason[512];

        snprintf(reason, sizeof(reason), "%s", err);
        snprintf(err, errlen, "%s: %s", path, reason);
        return explicit ? -1 : 1;
    }
    return 0;
}


/* Strips blanks and a CR from both ends of [*start, *end). */
static void
awscred_trim(const char **start, const char **end)
{
    while (*start < *end && (**start == ' ' || **start == '\t'))
        (*start)++;
    while (*end > *start && ((*end)[-1] == ' ' || (*end)[-1] == '\t' ||
                             (*end)[-1] == '\r'))
        (*end)--;
}


int
awscred_parse_file(const char *text, size_t len, const char *profile,
                   struct ses_credentials *creds, char *err, size_t errlen)
{
    const char *p = text, *limit = text + len;
    int         in_profile = 0, found = 0;
    char       *id = NULL, *secret = NULL, *token = NULL;

    while (p < limit) {
        const char *line = p, *end = memchr(p, '\n', (size_t)(limit - p));
        const char *eq, *key_end, *value;

        if (end == NULL)
            end = limit;
        p = end < limit ? end + 1 : limit;

        awscred_trim(&line, &end);
        if (line == end || *line == '#' || *line == ';')
            continue;

        if (*line == '[') {
            const char *name = line + 1, *name_end = end;

            if (name_end > name && name_end[-1] == ']')
                name_end--;
            awscred_trim(&name, &name_end);
            in_profile = (size_t)(name_end - name) == strlen(profile) &&
                         memcmp(name, profile, strlen(profile)) == 0;
            found |= in_profile;
            continue;
        }
        if (!in_profile ||
            (eq = memchr(line, '=', (size_t)(end - line))) == NULL)
            continue;

        key_end = eq;
        value = eq + 1;
        awscred_trim(&line, &key_end);
        awscred_trim(&value, &end);

        /* Key names are case-insensitive; a later line wins. */
#define AWSCRED_KEY_IS(name)                                                 \
    ((size_t)(key_end - line) == strlen(name) &&                             \
     strncasecmp(line, name, strlen(name)) == 0)
        if (AWSCRED_KEY_IS("aws_access_key_id"))
            awscred_set(&id, xstrndup(value, (size_t)(end - value)));
        else if (AWSCRED_KEY_IS("aws_secret_access_key"))
            awscred_set(&secret, xstrndup(value, (size_t)(end - value)));
        else if (AWSCRED_KEY_IS("aws_session_token"))
            awscred_set(&token, xstrndup(value, (size_t)(end - value)));
#undef AWSCRED_KEY_IS
    }

    if (!found)
        snprintf(err, errlen, "profile '%s' not found", profile);
    else if (id == NULL || id[0] == '\0')
        snprintf(err, errlen, "profile '%s' has no aws_access_key_id",
                 profile);
    else if (secret == NULL || secret[0] == '\0')
        snprintf(err, errlen, "profile '%s' has no aws_secret_access_key",
                 profile);
    if (!found || id == NULL || id[0] == '\0' || secret == NULL ||
        secret[0] == '\0') {
        free(id);
        free(token);
        if (secret != NULL) {
            memset(secret, 0, strlen(secret));
            free(secret);
        }
        return -1;
    }
    if (token != NULL && token[0] == '\0')
        awscred_set(&token, NULL);
    creds->access_key_id = id;
    creds->secret_access_key = secret;
    creds->session_token = token;
    return 0;
}


/* Reads at most max bytes of path into a NUL-terminated buffer. */
static char *
awscred_read_file(const char *path, size_t max, size_t *len, char *err,
                  size_t errlen)
{
    FILE  *f = fopen(path, "rb");
    char  *text;
    size_t n;

    if (f == NULL) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    text = xmalloc(max + 1);
    n = fread(text, 1, max + 1, f);
    if (ferror(f) || n > max) {
        snprintf(err, errlen, "%s: %s", path,
                 ferror(f) ? strerror(errno) : "file is too large");
        fclose(f);
        free(text);
        return NULL;
    }
    fclose(f);
    text[n] = '\0';
    *len = n;
    return text;
}


void
awscred_copy(struct ses_credentials *dst, const struct ses_credentials *src)
{
    dst->access_key_id = awscred_dup_or_null(src->access_key_id);
    dst->secret_access_key = awscred_dup_or_null(src->secret_access_key);
    dst->session_token = awscred_dup_or_null(src->session_token);
    dst->role_arn = awscred_dup_or_null(src->role_arn);
    dst->web_identity_token_file =
        awscred_dup_or_null(src->web_identity_token_file);
    dst->role_session_name = awscred_dup_or_null(src->role_session_name);
    dst->sts_endpoint = awscred_dup_or_null(src->sts_endpoint);
    dst->expires_at_ms = src->expires_at_ms;
}


int64_t
awscred_refresh_at(int64_t now_ms, int64_t expires_ms)
{
    int64_t margin = (expires_ms - now_ms) / 2;

    if (margin > AWSCRED_REFRESH_MARGIN_MS)
        margin = AWSCRED_REFRESH_MARGIN_MS;
    if (margin < 0)
        margin = 0;
    return expires_ms - margin;
}


int
awscred_parse_time(const char *text, int64_t *ms)
{
    struct tm tm;
    char     *rest;
    long      fraction_ms = 0;

    memset(&tm, 0, sizeof(tm));
    if ((rest = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm)) == NULL)
        return -1;
    if (*rest == '.') {
        int digits = 0;

        for (rest++; *rest >= '0' && *rest <= '9'; rest++, digits++)
            if (digits < 3)
                fraction_ms = fraction_ms * 10 + (*rest - '0');
        for (; digits < 3; digits++)
            fraction_ms *= 10;
    }
    if (strcmp(rest, "Z") != 0 && strcmp(rest, "+00:00") != 0)
        return -1;
    *ms = (int64_t)timegm(&tm) * 1000 + fraction_ms;
    return 0;
}


/*
 * Returns the text of the first <tag> element of an XML body, with the
 * five predefined entities decoded, or NULL. STS responses put each value
 * in its own element without attributes.
 */
static char *
awscred_xml_text(const char *body, const char *tag)
{
    char        open[64], close[64];
    const char *start, *end;
    char       *text;
    size_t      n = 0;

    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    if ((start = strstr(body, open)) == NULL)
        return NULL;
    start += strlen(open);
    if ((end = strstr(start, close)) == NULL)
        return NULL;

    text = xmalloc((size_t)(end - start) + 1);
    while (start < end) {
        static const char *const entities[][2] = {
            { "&amp;", "&" }, { "&lt;", "<" }, { "&gt;", ">" },
            { "&quot;", "\"" }, { "&apos;", "'" },
        };
        size_t i;

        for (i = 0; i < 5; i++) {
            size_t elen = strlen(entities[i][0]);

            if ((size_t)(end - start) >= elen &&
                memcmp(start, entities[i][0], elen) == 0) {
                text[n++] = entities[i][1][0];
                start += elen;
                break;
            }
        }
        if (i == 5)
            text[n++] = *start++;
    }
    text[n] = '\0';
    return text;
}


int
awscred_parse_sts_response(const char *body, struct ses_credentials *creds,
                           char *err, size_t errlen)
{
    char   *id = awscred_xml_text(body, "AccessKeyId");
    char   *secret = awscred_xml_text(body, "SecretAccessKey");
    char   *token = awscred_xml_text(body, "SessionToken");
    char   *expiration = awscred_xml_text(body, "Expiration");
    int64_t expires_ms = 0;
    int     rc = -1;

    if (id == NULL || secret == NULL || token == NULL ||
        expiration == NULL) {
        snprintf(err, errlen, "STS response lacks %s",
                 id == NULL       ? "AccessKeyId"
                 : secret == NULL ? "SecretAccessKey"
                 : token == NULL  ? "SessionToken"
                                  : "Expiration");
        goto out;
    }
    if (awscred_parse_time(expiration, &expires_ms) == -1) {
        snprintf(err, errlen, "STS response has an invalid Expiration "
                 "'%.40s'", expiration);
        goto out;
    }

    awscred_set(&creds->access_key_id, id);
    if (creds->secret_access_key != NULL)
        memset(creds->secret_access_key, 0,
               strlen(creds->secret_access_key));
    awscred_set(&creds->secret_access_key, secret);
    awscred_set(&creds->session_token, token);
    creds->expires_at_ms = expires_ms;
    id = secret = token = NULL;
    rc = 0;

out:
    free(id);
    if (secret != NULL) {
        memset(secret, 0, strlen(secret));
        free(secret);
    }
    free(token);
    free(expiration);
    return rc;
}


static size_t
awscred_on_body(char *data, size_t size, size_t n, void *arg)
{
    struct awscred_buffer *buf = arg;
    size_t                 len = size * n;

    if (buf->len + len > AWSCRED_MAX_RESPONSE)
        return 0;               /* makes curl fail the transfer */
    buf->data = xrealloc(buf->data, buf->len + len + 1);
    memcpy(buf->data + buf->len, data, len);
    buf->len += len;
    buf->data[buf->len] = '\0';
    return len;
}


int
awscred_fetch_web_identity(struct ses_credentials *creds, const char *region,
                           long timeout_ms, char *err, size_t errlen)
{
    struct awscred_buffer response = { NULL, 0 };
    struct curl_slist    *headers = NULL;
    CURL                 *curl = NULL;
    CURLcode              code;
    char                  endpoint[512], curl_error[CURL_ERROR_SIZE] = "";
    char                 *token = NULL, *body = NULL;
    char                 *role = NULL, *session = NULL, *escaped = NULL;
    size_t                token_len, body_len;
    long                  status = 0;
    int                   rc = -1;

    /* The token file is read each time, because it is rotated. */
    if ((token = awscred_read_file(creds->web_identity_token_file,
                                   AWSCRED_MAX_TOKEN, &token_len, err,
                                   errlen)) == NULL)
        return -1;
    while (token_len > 0 && strchr(" \t\r\n", token[token_len - 1]))
        token[--token_len] = '\0';
    if (token_len == 0) {
        snprintf(err, errlen, "web identity token file %s is empty",
                 creds->web_identity_token_file);
        goto out;
    }

    if (creds->sts_endpoint != NULL)
        snprintf(endpoint, sizeof(endpoint), "%s", creds->sts_endpoint);
    else
        snprintf(endpoint, sizeof(endpoint), "https://sts.%s.amazonaws.com",
                 region);

    if ((curl = curl_easy_init()) == NULL) {
        snprintf(err, errlen, "libcurl failed to create a handle");
        goto out;
    }
    role = curl_easy_escape(curl, creds->role_arn, 0);
    session = curl_easy_escape(curl, creds->role_session_name, 0);
    escaped = curl_easy_escape(curl, token, (int)token_len);
    if (role == NULL || session == NULL || escaped == NULL) {
        snprintf(err, errlen, "libcurl failed to encode the STS request");
        goto out;
    }
    body_len = strlen(role) + strlen(session) + strlen(escaped) + 128;
    body = xmalloc(body_len);
    snprintf(body, body_len, "Action=AssumeRoleWithWebIdentity&Version="
             AWSCRED_STS_VERSION "&RoleArn=%s&RoleSessionName=%s"
             "&WebIdentityToken=%s", role, session, escaped);

    /* AssumeRoleWithWebIdentity is not signed: the token authenticates. */
    headers = curl_slist_append(headers, "Content-Type: "
                                "application/x-www-form-urlencoded");
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(curl, CURLOPT_URL, endpoint);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "ferry-deliver");
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, awscred_on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);

    if ((code = curl_easy_perform(curl)) != CURLE_OK) {
        snprintf(err, errlen, "STS request to %s failed: %s", endpoint,
                 curl_error[0] ? curl_error : curl_easy_strerror(code));
        goto out;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        char *error_code = response.data != NULL
                               ? awscred_xml_text(response.data, "Code")
                               : NULL;
        char *message = response.data != NULL
                            ? awscred_xml_text(response.data, "Message")
                            : NULL;

        snprintf(err, errlen, "STS AssumeRoleWithWebIdentity at %s failed "
                 "with HTTP %ld %s: %.200s", endpoint, status,
                 error_code != NULL ? error_code : "",
                 message != NULL ? message : "");
        free(error_code);
        free(message);
        goto out;
    }
    if (response.data == NULL) {
        snprintf(err, errlen, "STS at %s returned an empty body", endpoint);
        goto out;
    }
    rc = awscred_parse_sts_response(response.data, creds, err, errlen);

out:
    if (token != NULL) {
        memset(token, 0, token_len);
        free(token);
    }
    if (escaped != NULL) {
        memset(escaped, 0, strlen(escaped));
        curl_free(escaped);
    }
    if (body != NULL) {
        memset(body, 0, strlen(body));
        free(body);
    }
    curl_free(role);
    curl_free(session);
    curl_slist_free_all(headers);
    if (curl != NULL)
        curl_easy_cleanup(curl);
    free(response.data);
    return rc;
}

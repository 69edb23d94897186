/*
 * Unit tests of the SigV4 signer.
 *
 * The vectors in tests/unit/data/sigv4/ are requests of our own, signed by
 * botocore's SigV4Auth, the signer our local SES endpoint verifies with.
 * make-vectors.py there writes, per case listed in cases.list, the request
 * (CASE.req.json) and botocore's canonical request, string to sign and
 * Authorization value (CASE.creq, CASE.sts, CASE.authz). Its docstring
 * lists the cases botocore cannot express and why they are left out.
 * ses-send-email.* is a SendEmail request made by make-ses-vector.py.
 *
 * Paths are relative to the repository root, where make test-unit runs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigv4.h"

#define VECTOR_DIR         "tests/unit/data/sigv4/"
#define VECTOR_MAX_HEADERS 16
#define SES_VECTOR_TIME    1772357415       /* 2026-03-01T09:30:15Z */

/* One botocore vector: the request to sign and the expected outputs. */
struct vector {
    json_t                  *root;          /* owns the strings below */
    struct sigv4_header      headers[VECTOR_MAX_HEADERS];
    struct sigv4_request     req;
    struct sigv4_credentials creds;
    const char              *region;
    const char              *service;
    time_t                   when;
    const char              *amz_date;
    char                    *canonical_request;
    char                    *string_to_sign;
    char                    *authorization;
};


/* Reads a whole file of the vector folder, or fails the test. */
static char *
read_vector_file(const char *name, const char *suffix, size_t *len)
{
    char  path[256];
    FILE *f;
    char *data;
    long  size;

    snprintf(path, sizeof(path), "%s%s%s", VECTOR_DIR, name, suffix);
    f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s (run the tests from the repository root)",
                 path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size >= 0);
    rewind(f);
    data = malloc((size_t)size + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)size, f), (size_t)size);
    data[size] = '\0';
    fclose(f);
    if (len != NULL)
        *len = (size_t)size;
    return data;
}


/*
 * Reads an expected output. It must contain no NUL byte, so that comparing
 * it as a string compares every byte of the file.
 */
static char *
read_expected(const char *name, const char *suffix)
{
    size_t len;
    char  *text = read_vector_file(name, suffix, &len);

    assert_int_equal(strlen(text), len);
    return text;
}


static const char *
json_text(json_t *root, const char *key)
{
    json_t *value = json_object_get(root, key);

    if (!json_is_string(value))
        fail_msg("key '%s' is missing or not a string", key);
    return json_string_value(value);
}


static void
vector_load(const char *name, struct vector *v)
{
    char        *text = read_vector_file(name, ".req.json", NULL);
    json_error_t jerr;
    json_t      *headers, *query, *token, *body, *pair;
    size_t       i;

    memset(v, 0, sizeof(*v));
    v->root = json_loads(text, 0, &jerr);
    free(text);
    if (v->root == NULL)
        fail_msg("%s.req.json: line %d: %s", name, jerr.line, jerr.text);

    headers = json_object_get(v->root, "headers");
    assert_true(json_is_array(headers));
    assert_true(json_array_size(headers) <= VECTOR_MAX_HEADERS);
    json_array_foreach(headers, i, pair) {
        v->headers[i].name = json_string_value(json_array_get(pair, 0));
        v->headers[i].value = json_string_value(json_array_get(pair, 1));
        assert_non_null(v->headers[i].name);
        assert_non_null(v->headers[i].value);
    }
    query = json_object_get(v->root, "query");
    body = json_object_get(v->root, "body");
    assert_true(json_is_string(body));
    v->req = (struct sigv4_request){
        json_text(v->root, "method"), json_text(v->root, "path"),
        json_is_string(query) ? json_string_value(query) : NULL,
        v->headers, json_array_size(headers), json_string_value(body),
        json_string_length(body)
    };

    token = json_object_get(v->root, "session_token");
    v->creds = (struct sigv4_credentials){
        json_text(v->root, "access_key_id"),
        json_text(v->root, "secret_access_key"),
        json_is_string(token) ? json_string_value(token) : NULL
    };
    v->region = json_text(v->root, "region");
    v->service = json_text(v->root, "service");
    v->when = (time_t)json_integer_value(json_object_get(v->root, "time"));
    v->amz_date = json_text(v->root, "amz_date");

    v->canonical_request = read_expected(name, ".creq");
    v->string_to_sign = read_expected(name, ".sts");
    v->authorization = read_expected(name, ".authz");
}


static void
vector_free(struct vector *v)
{
    json_decref(v->root);
    free(v->canonical_request);
    free(v->string_to_sign);
    free(v->authorization);
}


static int
vector_sign(const struct vector *v, const struct sigv4_request *req,
            struct sigv4_signature *sig)
{
    char err[256] = "";
    int  rc = sigv4_sign(req, &v->creds, v->region, v->service, v->when,
                         sig, err, sizeof(err));

    if (rc != 0)
        print_message("sigv4_sign: %s\n", err);
    return rc;
}


static void
botocore_vectors_match(void **state)
{
    char  *list = read_vector_file("cases", ".list", NULL);
    size_t ncases = 0;

    (void)state;
    for (char *name = strtok(list, "\n"); name != NULL;
         name = strtok(NULL, "\n")) {
        struct vector          v;
        struct sigv4_signature sig;

        print_message("case %s\n", name);
        vector_load(name, &v);
        assert_int_equal(vector_sign(&v, &v.req, &sig), 0);
        assert_string_equal(sig.amz_date, v.amz_date);
        assert_string_equal(sig.canonical_request, v.canonical_request);
        assert_string_equal(sig.string_to_sign, v.string_to_sign);
        assert_string_equal(sig.authorization, v.authorization);
        sigv4_signature_fini(&sig);
        vector_free(&v);
        ncases++;
    }
    assert_true(ncases > 0);
    free(list);
}


/*
 * The token's trailing space and the double space in the content type are
 * signed trimmed and collapsed. The signer adds x-amz-date and
 * x-amz-security-token itself, as botocore does.
 */
static void
ses_send_email_matches_botocore(void **state)
{
    size_t                   body_len;
    char                    *body = read_vector_file("ses-send-email",
                                                     ".body", &body_len);
    char                    *creq = read_expected("ses-send-email", ".creq");
    char                    *sts = read_expected("ses-send-email", ".sts");
    char                    *authz = read_expected("ses-send-email",
                                                   ".authz");
    struct sigv4_header      headers[] = {
        { "Host", "127.0.0.1:4581" },
        { "Content-Type", "application/json;  charset=utf-8" },
    };
    struct sigv4_credentials creds = {
        "AKIDFERRYLOCAL", "ferry-local-secret",
        "FerrySessionToken/EXAMPLE+token== "
    };
    struct sigv4_request     req = {
        "POST", "/v2/email/outbound-emails", NULL, headers, 2, body, body_len
    };
    struct sigv4_signature   sig;
    char                     err[256] = "";

    (void)state;
    assert_int_equal(sigv4_sign(&req, &creds, "us-east-1", "ses",
                                SES_VECTOR_TIME, &sig, err, sizeof(err)), 0);
    assert_string_equal(sig.amz_date, "20260301T093015Z");
    assert_string_equal(sig.canonical_request, creq);
    assert_string_equal(sig.string_to_sign, sts);
    assert_string_equal(sig.authorization, authz);

    sigv4_signature_fini(&sig);
    free(body);
    free(creq);
    free(sts);
    free(authz);
}


/* An X-Amz-Date header equal to the signing time is signed as given. */
static void
listed_amz_date_signs_alike(void **state)
{
    struct vector          v;
    struct sigv4_header    headers[2];
    struct sigv4_request   req;
    struct sigv4_signature sig;

    (void)state;
    vector_load("get-vanilla", &v);
    assert_int_equal(v.req.nheaders, 1);
    headers[0] = v.headers[0];
    headers[1] = (struct sigv4_header){ "X-Amz-Date", v.amz_date };
    req = v.req;
    req.headers = headers;
    req.nheaders = 2;

    assert_int_equal(vector_sign(&v, &req, &sig), 0);
    assert_string_equal(sig.canonical_request, v.canonical_request);
    assert_string_equal(sig.authorization, v.authorization);
    sigv4_signature_fini(&sig);
    vector_free(&v);
}


/*
 * An X-Amz-Security-Token header equal to the credentials' token is signed
 * as given, not added a second time.
 */
static void
listed_token_signs_alike(void **state)
{
    struct vector          v;
    struct sigv4_header    headers[2];
    struct sigv4_request   req;
    struct sigv4_signature sig;

    (void)state;
    vector_load("get-session-token", &v);
    assert_non_null(v.creds.session_token);
    assert_int_equal(v.req.nheaders, 1);
    headers[0] = (struct sigv4_header){ "X-Amz-Security-Token",
                                        v.creds.session_token };
    headers[1] = v.headers[0];
    req = v.req;
    req.headers = headers;
    req.nheaders = 2;

    assert_int_equal(vector_sign(&v, &req, &sig), 0);
    assert_string_equal(sig.canonical_request, v.canonical_request);
    assert_string_equal(sig.authorization, v.authorization);
    sigv4_signature_fini(&sig);
    vector_free(&v);
}


static void
missing_host_fails(void **state)
{
    struct sigv4_header      headers[] = { { "Content-Type", "text/plain" } };
    struct sigv4_credentials creds = { "AKIDFERRY", "secret", NULL };
    struct sigv4_request     req = { "GET", "/", NULL, headers, 1, "", 0 };
    struct sigv4_signature   sig;
    char                     err[256] = "";

    (void)state;
    assert_int_equal(sigv4_sign(&req, &creds, "eu-west-1", "ses",
                                SES_VECTOR_TIME, &sig, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "host"));
    assert_null(sig.authorization);
}


static void
empty_host_fails(void **state)
{
    struct sigv4_header      headers[] = { { "Host", "  " } };
    struct sigv4_credentials creds = { "AKIDFERRY", "secret", NULL };
    struct sigv4_request     req = { "GET", "/", NULL, headers, 1, "", 0 };
    struct sigv4_signature   sig;
    char                     err[256] = "";

    (void)state;
    assert_int_equal(sigv4_sign(&req, &creds, "eu-west-1", "ses",
                                SES_VECTOR_TIME, &sig, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "host"));
    assert_null(sig.authorization);
}


static void
mismatched_amz_date_fails(void **state)
{
    struct sigv4_header      headers[] = {
        { "Host", "email.eu-west-1.amazonaws.com" },
        { "X-Amz-Date", "20260301T093115Z" },
    };
    struct sigv4_credentials creds = { "AKIDFERRY", "secret", NULL };
    struct sigv4_request     req = { "GET", "/", NULL, headers, 2, "", 0 };
    struct sigv4_signature   sig;
    char                     err[256] = "";

    (void)state;
    assert_int_equal(sigv4_sign(&req, &creds, "eu-west-1", "ses",
                                SES_VECTOR_TIME, &sig, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "x-amz-date"));
    assert_null(sig.authorization);
}


/* A retry one second later carries a new date and a new signature. */
static void
later_time_signs_anew(void **state)
{
    struct sigv4_header      headers[] = {
        { "Host", "email.eu-west-1.amazonaws.com" }
    };
    struct sigv4_credentials creds = { "AKIDFERRY", "secret", NULL };
    struct sigv4_request     req = { "GET", "/", NULL, headers, 1, "", 0 };
    struct sigv4_signature   first, second;
    char                     err[256] = "";

    (void)state;
    assert_int_equal(sigv4_sign(&req, &creds, "eu-west-1", "ses",
                                SES_VECTOR_TIME, &first, err, sizeof(err)),
                     0);
    assert_int_equal(sigv4_sign(&req, &creds, "eu-west-1", "ses",
                                SES_VECTOR_TIME + 1, &second, err,
                                sizeof(err)), 0);
    assert_string_equal(first.amz_date, "20260301T093015Z");
    assert_string_equal(second.amz_date, "20260301T093016Z");
    assert_string_not_equal(first.authorization, second.authorization);
    sigv4_signature_fini(&first);
    sigv4_signature_fini(&second);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(botocore_vectors_match),
        cmocka_unit_test(ses_send_email_matches_botocore),
        cmocka_unit_test(listed_amz_date_signs_alike),
        cmocka_unit_test(listed_token_signs_alike),
        cmocka_unit_test(missing_host_fails),
        cmocka_unit_test(empty_host_fails),
        cmocka_unit_test(mismatched_amz_date_fails),
        cmocka_unit_test(later_time_signs_anew),
    };

    return cmocka_run_group_tests_name("sigv4", tests, NULL, NULL);
}

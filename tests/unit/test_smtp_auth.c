/* Unit tests of the SASL decoding and password checks of SMTP AUTH. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "smtp_auth.h"

#define CREDENTIALS "tests/smtp/credentials"


static void
base64_decodes_valid(void **state)
{
    static const struct {
        const char *text;
        const char *decoded;
        int         len;
    } cases[] = {
        { "", "", 0 },
        { "YQ==", "a", 1 },
        { "YWI=", "ab", 2 },
        { "YWJj", "abc", 3 },
        { "AGFsaWNlAHB3", "\0alice\0pw", 9 },
        { "+/+/", "\xfb\xff\xbf", 3 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        unsigned char out[16];
        int           n = smtp_auth_base64_decode(cases[i].text, out,
                                                  sizeof(out));

        if (n != cases[i].len)
            fail_msg("case %zu ('%s'): length %d, expected %d", i,
                     cases[i].text, n, cases[i].len);
        assert_memory_equal(out, cases[i].decoded, (size_t)n);
    }
}


static void
base64_rejects_invalid(void **state)
{
    static const char *const cases[] = {
        "YQ",           /* not a multiple of 4 */
        "YQ=",
        "Y===",         /* too much padding */
        "YQ=A",         /* padding inside */
        "Y Q=",         /* blank */
        "YR==",         /* bits left over by the padding are not zero */
        "YW!j",
        "=",
    };
    unsigned char out[16];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++)
        if (smtp_auth_base64_decode(cases[i], out, sizeof(out)) != -1)
            fail_msg("case %zu ('%s') decoded", i, cases[i]);

    /* Output that does not fit is rejected, not cut. */
    assert_int_equal(smtp_auth_base64_decode("YWJj", out, 2), -1);
}


static void
plain_response_splits(void **state)
{
    char user[SMTP_AUTH_FIELD_MAX + 1];
    char password[SMTP_AUTH_FIELD_MAX + 1];

    (void)state;
    assert_int_equal(smtp_auth_split_plain(
                         (const unsigned char *)"\0alice\0pw", 9, user,
                         password), 0);
    assert_string_equal(user, "alice");
    assert_string_equal(password, "pw");

    /* An authorization identity equal to the user is the same request. */
    assert_int_equal(smtp_auth_split_plain(
                         (const unsigned char *)"alice\0alice\0pw", 14,
                         user, password), 0);
    assert_string_equal(user, "alice");
}


static void
plain_response_rejects_invalid(void **state)
{
    static const struct {
        const char *response;
        size_t      len;
    } cases[] = {
        { "alice", 5 },                 /* no NUL */
        { "\0alice", 6 },               /* one NUL */
        { "\0\0pw", 4 },                /* empty user */
        { "\0alice\0", 7 },             /* empty password */
        { "\0alice\0p\0w", 10 },        /* NUL in the password */
        { "bob\0alice\0pw", 12 },       /* acting as another user */
    };
    char user[SMTP_AUTH_FIELD_MAX + 1];
    char password[SMTP_AUTH_FIELD_MAX + 1];
    unsigned char long_password[300] = { 0, 'a', 0 };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++)
        if (smtp_auth_split_plain((const unsigned char *)cases[i].response,
                                  cases[i].len, user, password) != -1)
            fail_msg("case %zu accepted", i);

    memset(long_password + 3, 'x', sizeof(long_password) - 3);
    assert_int_equal(smtp_auth_split_plain(long_password,
                                           sizeof(long_password), user,
                                           password), -1);
}


static struct config *
load_config(void)
{
    char           path[] = "/tmp/ferry-auth-test-XXXXXX";
    char           err[512];
    FILE          *f;
    struct config *cfg;
    int            fd = mkstemp(path);

    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fprintf(f, "kafka:\n  bootstrap_servers: 127.0.0.1:19092\n"
            "ingress:\n  tls_certificate: c.pem\n  tls_key: k.pem\n"
            "  credentials_file: " CREDENTIALS "\n"
            "regions:\n  us-east-1:\n"
            "organizations:\n"
            "  - name: acme\n    home_region: us-east-1\n"
            "    domains: [acme.example]\n"
            "  - name: globex\n    home_region: us-east-1\n"
            "    domains: [globex.example]\n");
    fclose(f);
    cfg = config_load(path, err, sizeof(err));
    unlink(path);
    if (cfg == NULL)
        fail_msg("%s", err);
    return cfg;
}


static void
check_accepts_right_password(void **state)
{
    struct config           *cfg = load_config();
    const struct credential *cred;

    (void)state;
    cred = smtp_auth_check(cfg, "alice", "correct horse");
    assert_non_null(cred);
    assert_string_equal(cred->org->name, "acme");
    cred = smtp_auth_check(cfg, "gina", "gina-password");
    assert_non_null(cred);
    assert_string_equal(cred->org->name, "globex");
    config_free(cfg);
}


static void
check_rejects_wrong_password(void **state)
{
    struct config *cfg = load_config();

    (void)state;
    assert_null(smtp_auth_check(cfg, "alice", "correct horse "));
    assert_null(smtp_auth_check(cfg, "alice", "gina-password"));
    assert_null(smtp_auth_check(cfg, "gina", "correct horse"));
    assert_null(smtp_auth_check(cfg, "Alice", "correct horse"));
    assert_null(smtp_auth_check(cfg, "nobody", "correct horse"));
    config_free(cfg);
}


static void
hash_password_round_trip(void **state)
{
    char hash[256];
    char again[256];
    char err[256];

    (void)state;
    assert_int_equal(smtp_auth_hash_password("s3cret", hash, sizeof(hash),
                                             err, sizeof(err)), 0);
    assert_memory_equal(hash, "$y$", 3);
    assert_null(strstr(hash, "s3cret"));

    /* A fresh salt each time. */
    assert_int_equal(smtp_auth_hash_password("s3cret", again,
                                             sizeof(again), err,
                                             sizeof(err)), 0);
    assert_string_not_equal(hash, again);

    assert_int_equal(smtp_auth_hash_password("s3cret", hash, 10, err,
                                             sizeof(err)), -1);
    assert_non_null(strstr(err, "longer than"));
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(base64_decodes_valid),
        cmocka_unit_test(base64_rejects_invalid),
        cmocka_unit_test(plain_response_splits),
        cmocka_unit_test(plain_response_rejects_invalid),
        cmocka_unit_test(check_accepts_right_password),
        cmocka_unit_test(check_rejects_wrong_password),
        cmocka_unit_test(hash_password_round_trip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests of awscred: the shared credentials file parser, the order of
 * the credential sources, the STS response parser and the renewal time.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "awscred.h"
#include "ses.h"

struct file_case {
    const char *name;
    const char *text;
    const char *profile;
    const char *id;             /* expected; NULL: parse fails */
    const char *secret;
    const char *token;          /* expected; NULL: none */
    const char *error;          /* part of the error when it fails */
};

static const struct file_case file_cases[] = {
    { "default profile",
      "[default]\naws_access_key_id = AKID1\n"
      "aws_secret_access_key = secret1\n",
      "default", "AKID1", "secret1", NULL, NULL },
    { "named profile after default",
      "[default]\naws_access_key_id=AKID1\naws_secret_access_key=s1\n"
      "[ses]\naws_access_key_id=AKID2\naws_secret_access_key=s2\n"
      "aws_session_token=tok2\n",
      "ses", "AKID2", "s2", "tok2", NULL },
    { "keys of other profiles do not leak",
      "[ses]\naws_access_key_id=AKID2\n"
      "[default]\naws_secret_access_key=s1\n",
      "ses", NULL, NULL, NULL, "no aws_secret_access_key" },
    { "comments, blank lines and CRLF",
      "# written by hand\r\n\r\n; another comment\r\n[default]\r\n"
      "aws_access_key_id = AKID3\r\naws_secret_access_key = s3\r\n",
      "default", "AKID3", "s3", NULL, NULL },
    { "spaces around names and values",
      "  [ default ]  \n\taws_access_key_id\t=\tAKID4  \n"
      "aws_secret_access_key =s4\n",
      "default", "AKID4", "s4", NULL, NULL },
    { "key names ignore case",
      "[default]\nAWS_ACCESS_KEY_ID=AKID5\nAws_Secret_Access_Key=s5\n",
      "default", "AKID5", "s5", NULL, NULL },
    { "later line wins",
      "[default]\naws_access_key_id=old\naws_secret_access_key=s6\n"
      "aws_access_key_id=AKID6\n",
      "default", "AKID6", "s6", NULL, NULL },
    { "repeated section adds keys",
      "[default]\naws_access_key_id=AKID7\n[other]\nx=y\n"
      "[default]\naws_secret_access_key=s7\n",
      "default", "AKID7", "s7", NULL, NULL },
    { "value keeps inner spaces and equals signs",
      "[default]\naws_access_key_id=AKID8\n"
      "aws_secret_access_key=a b==c\n",
      "default", "AKID8", "a b==c", NULL, NULL },
    { "empty session token is none",
      "[default]\naws_access_key_id=AKID9\naws_secret_access_key=s9\n"
      "aws_session_token=\n",
      "default", "AKID9", "s9", NULL, NULL },
    { "no newline at the end",
      "[default]\naws_access_key_id=AKIDA\naws_secret_access_key=sA",
      "default", "AKIDA", "sA", NULL, NULL },
    { "profile names are case-sensitive",
      "[Default]\naws_access_key_id=AKID\naws_secret_access_key=s\n",
      "default", NULL, NULL, NULL, "profile 'default' not found" },
    { "config file prefix is not a profile name",
      "[profile ses]\naws_access_key_id=AKID\naws_secret_access_key=s\n",
      "ses", NULL, NULL, NULL, "profile 'ses' not found" },
    { "missing access key id",
      "[default]\naws_secret_access_key=s\n",
      "default", NULL, NULL, NULL, "no aws_access_key_id" },
    { "empty file", "", "default", NULL, NULL, NULL, "not found" },
};


static void
parse_file_cases(void **state)
{
    for (size_t i = 0; i < sizeof(file_cases) / sizeof(*file_cases); i++) {
        const struct file_case *c = &file_cases[i];
        struct ses_credentials  creds;
        char                    err[256] = "";
        int                     rc;

        memset(&creds, 0, sizeof(creds));
        rc = awscred_parse_file(c->text, strlen(c->text), c->profile,
                                &creds, err, sizeof(err));
        print_message("  %s: rc=%d %s\n", c->name, rc, err);
        if (c->id == NULL) {
            assert_int_equal(rc, -1);
            assert_non_null(strstr(err, c->error));
            assert_null(creds.access_key_id);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_string_equal(creds.access_key_id, c->id);
        assert_string_equal(creds.secret_access_key, c->secret);
        if (c->token == NULL)
            assert_null(creds.session_token);
        else
            assert_string_equal(creds.session_token, c->token);
        ses_credentials_fini(&creds);
    }
}


static const char *const credential_variables[] = {
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_SESSION_NAME",
    "AWS_STS_ENDPOINT", "AWS_ENDPOINT_URL_STS",
    "AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE", "HOME",
};


static int
clear_environment(void **state)
{
    for (size_t i = 0; i < sizeof(credential_variables) /
                           sizeof(*credential_variables); i++)
        unsetenv(credential_variables[i]);
    return 0;
}


/* Writes text to a new temporary file and returns its path. */
static char *
write_temporary(const char *text)
{
    static char path[64];
    int         fd;

    snprintf(path, sizeof(path), "/tmp/ferry-awscred-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}


static void
load_environment_first(void **state)
{
    struct ses_credentials creds;
    char                   err[512] = "";
    char                  *path = write_temporary(
        "[default]\naws_access_key_id=FILE\naws_secret_access_key=f\n");

    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    setenv("AWS_ACCESS_KEY_ID", "ENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "e", 1);
    setenv("AWS_SESSION_TOKEN", "token ", 1);
    assert_int_equal(awscred_load(&creds, err, sizeof(err)), 0);
    assert_string_equal(creds.access_key_id, "ENV");
    assert_string_equal(creds.session_token, "token ");
    assert_null(creds.role_arn);
    ses_credentials_fini(&creds);
    unlink(path);
}


static void
load_half_set_environment(void **state)
{
    struct ses_credentials creds;
    char                   err[512] = "";

    setenv("AWS_ACCESS_KEY_ID", "ENV", 1);
    assert_int_equal(awscred_load(&creds, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "AWS_SECRET_ACCESS_KEY"));
}


static void
load_shared_file_profile(void **state)
{
    struct ses_credentials creds;
    char                   err[512] = "";
    char                  *path = write_temporary(
        "[default]\naws_access_key_id=D\naws_secret_access_key=d\n"
        "[ses]\naws_access_key_id=S\naws_secret_access_key=s\n");

    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    setenv("AWS_PROFILE", "ses", 1);
    assert_int_equal(awscred_load(&creds, err, sizeof(err)), 0);
    assert_string_equal(creds.access_key_id, "S");
    ses_credentials_fini(&creds);

    /* A profile named explicitly must exist. */
    setenv("AWS_PROFILE", "absent", 1);
    assert_int_equal(awscred_load(&creds, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "profile 'absent' not found"));
    assert_non_null(strstr(err, path));
    unlink(path);
}


static void
load_home_file(void **state)
{
    struct ses_credentials creds;
    char                   home[] = "/tmp/ferry-awscred-home-XXXXXX";
    char                   dir[128], file[160], err[512] = "";
    FILE                  *f;

    assert_non_null(mkdtemp(home));
    snprintf(dir, sizeof(dir), "%s/.aws", home);
    snprintf(file, sizeof(file), "%s/credentials", dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    f = fopen(file, "w");
    assert_non_null(f);
    fputs("[default]\naws_access_key_id=HOME\naws_secret_access_key=h\n", f);
    fclose(f);

    setenv("HOME", home, 1);
    assert_int_equal(awscred_load(&creds, err, sizeof(err)), 0);
    assert_string_equal(creds.access_key_id, "HOME");
    ses_credentials_fini(&creds);
    unlink(file);
    rmdir(dir);
    rmdir(home);
}


static void
load_nothing_configured(void **state)
{
    struct ses_credentials creds;
    char                   err[512] = "";

    setenv("HOME", "/nonexistent-ferry-home", 1);
    assert_int_equal(awscred_load(&creds, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no AWS credentials found"));
}


static void
load_web_identity(void **state)
{
    struct ses_credentials creds;
    char                   err[512] = "";

    setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/ferry", 1);
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token", 1);
    setenv("AWS_STS_ENDPOINT", "http://127.0.0.1:1", 1);
    setenv("AWS_ROLE_SESSION_NAME", "worker-1", 1);
    assert_int_equal(awscred_load(&creds, err, sizeof(err)), 0);
    assert_null(creds.access_key_id);
    assert_string_equal(creds.role_arn,
                        "arn:aws:iam::123456789012:role/ferry");
    assert_string_equal(creds.web_identity_token_file, "/var/run/token");
    assert_string_equal(creds.sts_endpoint, "http://127.0.0.1:1");
    assert_string_equal(creds.role_session_name, "worker-1");
    ses_credentials_fini(&creds);

    unsetenv("AWS_WEB_IDENTITY_TOKEN_FILE");
    assert_int_equal(awscred_load(&creds, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "AWS_WEB_IDENTITY_TOKEN_FILE"));
}


static void
sts_response(void **state)
{
    static const char body[] =
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws."
        "com/doc/2011-06-15/\">\n<AssumeRoleWithWebIdentityResult>\n"
        "<Credentials>\n<SessionToken>tok&amp;en/+=</SessionToken>\n"
        "<SecretAccessKey>secret&lt;1&gt;</SecretAccessKey>\n"
        "<Expiration>2030-01-02T03:04:05Z</Expiration>\n"
        "<AccessKeyId>ASIAFERRY</AccessKeyId>\n</Credentials>\n"
        "</AssumeRoleWithWebIdentityResult>\n"
        "</AssumeRoleWithWebIdentityResponse>\n";
    struct ses_credentials creds;
    char                   err[256] = "";

    memset(&creds, 0, sizeof(creds));
    assert_int_equal(awscred_parse_sts_response(body, &creds, err,
                                                 sizeof(err)), 0);
    assert_string_equal(creds.access_key_id, "ASIAFERRY");
    assert_string_equal(creds.secret_access_key, "secret<1>");
    assert_string_equal(creds.session_token, "tok&en/+=");
    assert_int_equal(creds.expires_at_ms, 1893553445000LL);
    ses_credentials_fini(&creds);

    memset(&creds, 0, sizeof(creds));
    assert_int_equal(awscred_parse_sts_response(
                         "<AccessKeyId>A</AccessKeyId>", &creds, err,
                         sizeof(err)), -1);
    assert_non_null(strstr(err, "SecretAccessKey"));
    assert_null(creds.access_key_id);
}


struct time_case {
    const char *text;
    int         rc;
    int64_t     ms;
};

static const struct time_case time_cases[] = {
    { "1970-01-01T00:00:00Z", 0, 0 },
    { "2030-01-02T03:04:05Z", 0, 1893553445000LL },
    { "2030-01-02T03:04:05.5Z", 0, 1893553445500LL },
    { "2030-01-02T03:04:05.123456Z", 0, 1893553445123LL },
    { "2030-01-02T03:04:05+00:00", 0, 1893553445000LL },
    { "2030-01-02T03:04:05", -1, 0 },
    { "2030-01-02 03:04:05Z", -1, 0 },
    { "tomorrow", -1, 0 },
};


static void
parse_time_cases(void **state)
{
    for (size_t i = 0; i < sizeof(time_cases) / sizeof(*time_cases); i++) {
        int64_t ms = -1;

        print_message("  %s\n", time_cases[i].text);
        assert_int_equal(awscred_parse_time(time_cases[i].text, &ms),
                         time_cases[i].rc);
        if (time_cases[i].rc == 0)
            assert_int_equal(ms, time_cases[i].ms);
    }
}


static void
refresh_at(void **state)
{
    /* An hour: 5 minutes before expiry. */
    assert_int_equal(awscred_refresh_at(0, 3600000), 3300000);
    /* Four minutes: half-way. */
    assert_int_equal(awscred_refresh_at(0, 240000), 120000);
    /* Already expired: at once. */
    assert_int_equal(awscred_refresh_at(5000, 1000), 1000);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_file_cases),
        cmocka_unit_test_setup(load_environment_first,
                               clear_environment),
        cmocka_unit_test_setup(load_half_set_environment,
                               clear_environment),
        cmocka_unit_test_setup(load_shared_file_profile,
                               clear_environment),
        cmocka_unit_test_setup(load_home_file, clear_environment),
        cmocka_unit_test_setup(load_nothing_configured,
                               clear_environment),
        cmocka_unit_test_setup(load_web_identity, clear_environment),
        cmocka_unit_test(sts_response),
        cmocka_unit_test(parse_time_cases),
        cmocka_unit_test(refresh_at),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests of ferryctl identities: its command line, the reading of
 * GetEmailIdentity responses, and the SPF and DKIM record checks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "ctl_dns.h"
#include "ctl_identities.h"

#define MAX_ARGS 8

struct parse_case {
    const char *argv[MAX_ARGS];     /* NULL-terminated */
    int         rc;
    const char *resolver;           /* expected, NULL: none */
    bool        json;
    const char *error;              /* part of err when rc is -1 */
};

static const struct parse_case parse_cases[] = {
    { { "identities", "check", "-c", "f.yaml", NULL }, 0, NULL, false,
      NULL },
    { { "identities", "check", "-c", "f.yaml", "--json", "--resolver",
        "127.0.0.1:5353", NULL }, 0, "127.0.0.1:5353", true, NULL },
    { { "identities", "--resolver=10.0.0.2", "check", "-c", "f.yaml",
        NULL }, 0, "10.0.0.2", false, NULL },
    { { "identities", NULL }, -1, NULL, false, "missing the action" },
    { { "identities", "verify", "-c", "f.yaml", NULL }, -1, NULL, false,
      "unknown action 'verify'" },
    { { "identities", "check", NULL }, -1, NULL, false, "missing -c" },
    { { "identities", "check", "extra", "-c", "f.yaml", NULL }, -1, NULL,
      false, "unexpected argument 'extra'" },
    { { "identities", "check", "-c", "f.yaml", "--resolver",
        "ns.example:53", NULL }, -1, NULL, false, "not an IPv4 address" },
    { { "identities", "check", "-c", "f.yaml", "--resolver",
        "127.0.0.1:0", NULL }, -1, NULL, false, "from 1 to 65535" },
    { { "identities", "check", "-c", "f.yaml", "--resolver",
        "127.0.0.1:", NULL }, -1, NULL, false, "from 1 to 65535" },
    { { "identities", "check", "-c", "f.yaml", "--resolver",
        "127.0.0.1:53x", NULL }, -1, NULL, false, "from 1 to 65535" },
    { { "identities", "check", "-c", NULL }, -1, NULL, false,
      "needs a value" },
};


static void
parse_command_lines(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]);
         i++) {
        const struct parse_case   *c = &parse_cases[i];
        struct ctl_identities_args args;
        char                      *argv[MAX_ARGS];
        char                       err[256] = "";
        int                        argc = 0;

        while (c->argv[argc] != NULL) {
            argv[argc] = (char *)c->argv[argc];
            argc++;
        }
        argv[argc] = NULL;
        assert_int_equal(ctl_identities_parse(argc, argv, &args, err,
                                              sizeof(err)),
                         c->rc);
        if (c->rc == -1) {
            assert_non_null(strstr(err, c->error));
            continue;
        }
        if (c->resolver == NULL)
            assert_null(args.resolver);
        else
            assert_string_equal(args.resolver, c->resolver);
        assert_int_equal(args.json, c->json);
        assert_string_equal(args.config_path, "f.yaml");
    }
}


static void
dns_server_default_port(void **state)
{
    char     host[64], err[256];
    unsigned port = 0;

    (void)state;
    assert_int_equal(ctl_dns_parse_server("192.0.2.1", host, sizeof(host),
                                          &port, err, sizeof(err)),
                     0);
    assert_string_equal(host, "192.0.2.1");
    assert_int_equal(port, 53);
}


static void
identity_with_easy_dkim(void **state)
{
    static const char        body[] =
        "{\"IdentityType\":\"DOMAIN\",\"VerifiedForSendingStatus\":true,"
        "\"VerificationStatus\":\"SUCCESS\",\"DkimAttributes\":{"
        "\"SigningEnabled\":true,\"Status\":\"SUCCESS\",\"Tokens\":["
        "\"aaaa\",\"bbbb\",7,\"cccc\"],\"SigningAttributesOrigin\":"
        "\"AWS_SES\"},\"MailFromAttributes\":{\"MailFromDomain\":"
        "\"bounce.acme.example\",\"MailFromDomainStatus\":\"SUCCESS\"}}";
    struct ctl_identity_info info;
    char                     err[256];

    (void)state;
    assert_int_equal(ctl_identities_parse_identity(body, sizeof(body) - 1,
                                                   &info, err, sizeof(err)),
                     0);
    assert_true(info.verified);
    assert_string_equal(info.verification_status, "SUCCESS");
    assert_string_equal(info.dkim_origin, "AWS_SES");
    assert_int_equal(info.ntokens, 3);
    assert_string_equal(info.tokens[0], "aaaa");
    assert_string_equal(info.tokens[2], "cccc");
    assert_string_equal(info.mail_from_domain, "bounce.acme.example");
}


static void
identity_pending_without_dkim(void **state)
{
    static const char        body[] =
        "{\"VerifiedForSendingStatus\":false,\"VerificationStatus\":"
        "\"PENDING\",\"DkimAttributes\":{\"SigningEnabled\":false,"
        "\"Status\":\"NOT_STARTED\"}}";
    struct ctl_identity_info info;
    char                     err[256];

    (void)state;
    assert_int_equal(ctl_identities_parse_identity(body, sizeof(body) - 1,
                                                   &info, err, sizeof(err)),
                     0);
    assert_false(info.verified);
    assert_string_equal(info.verification_status, "PENDING");
    assert_int_equal(info.ntokens, 0);
    assert_string_equal(info.dkim_status, "NOT_STARTED");
    assert_string_equal(info.mail_from_domain, "");
}


static void
identity_body_not_json(void **state)
{
    struct ctl_identity_info info;
    char                     err[256] = "";

    (void)state;
    assert_int_equal(ctl_identities_parse_identity("[1]", 3, &info, err,
                                                   sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "not a JSON object"));
    assert_int_equal(ctl_identities_parse_identity("<html>", 6, &info, err,
                                                   sizeof(err)),
                     -1);
}


struct spf_case {
    const char *txt;
    bool        is_spf;
    bool        allows_ses;
};

static const struct spf_case spf_cases[] = {
    { "v=spf1 include:amazonses.com ~all", true, true },
    { "V=SPF1 mx +include:AmazonSES.com -all", true, true },
    { "v=spf1  ip4:192.0.2.0/24   include:amazonses.com", true, true },
    { "v=spf1 include:amazonses.com", true, true },
    { "v=spf1 mx -all", true, false },
    { "v=spf1 -include:amazonses.com ~all", true, false },
    { "v=spf1 ~include:amazonses.com", true, false },
    { "v=spf1 include:amazonses.com.evil.example", true, false },
    { "v=spf1 include:mail.amazonses.com", true, false },
    { "v=spf10 include:amazonses.com", false, false },
    { "google-site-verification=include:amazonses.com", false, false },
    { "v=spf1", true, false },
    { "", false, false },
};


static void
spf_records(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(spf_cases) / sizeof(spf_cases[0]); i++) {
        const struct spf_case *c = &spf_cases[i];

        assert_int_equal(ctl_identities_is_spf(c->txt), c->is_spf);
        assert_int_equal(ctl_identities_spf_allows_ses(c->txt),
                         c->allows_ses);
    }
}


static void
dkim_targets(void **state)
{
    (void)state;
    assert_true(ctl_identities_dkim_target_ok("tok1.dkim.amazonses.com",
                                              "tok1", "us-east-1"));
    assert_true(ctl_identities_dkim_target_ok(
        "TOK1.dkim.af-south-1.amazonses.com", "tok1", "af-south-1"));
    assert_false(ctl_identities_dkim_target_ok("tok2.dkim.amazonses.com",
                                               "tok1", "us-east-1"));
    assert_false(ctl_identities_dkim_target_ok(
        "tok1.dkim.eu-west-1.amazonses.com", "tok1", "us-east-1"));
    assert_false(ctl_identities_dkim_target_ok("tok1.amazonses.com",
                                               "tok1", "us-east-1"));
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_command_lines),
        cmocka_unit_test(dns_server_default_port),
        cmocka_unit_test(identity_with_easy_dkim),
        cmocka_unit_test(identity_pending_without_dkim),
        cmocka_unit_test(identity_body_not_json),
        cmocka_unit_test(spf_records),
        cmocka_unit_test(dkim_targets),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

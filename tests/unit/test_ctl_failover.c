/* Unit tests of how ferryctl failover parses its command line. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "ctl_failover.h"

#define MAX_ARGS 8

struct parse_case {
    const char               *argv[MAX_ARGS];   /* NULL-terminated */
    int                       rc;
    enum ctl_failover_action  action;
    enum control_command_kind command;          /* when action is COMMAND */
    const char               *region;           /* NULL: none expected */
    const char               *reason;
    const char               *error;            /* part of err when rc -1 */
};

static const char long_region[] =
    "a123456789b123456789c123456789d123456789e123456789f123456789xyzw";

static const struct parse_case parse_cases[] = {
    { { "failover", "status", NULL }, 0, CTL_FAILOVER_STATUS, 0, NULL,
      NULL, NULL },
    { { "failover", "status", "--region", "us-east-1", NULL }, 0,
      CTL_FAILOVER_STATUS, 0, "us-east-1", NULL, NULL },
    { { "failover", "force", "--region", "us-east-1", NULL }, 0,
      CTL_FAILOVER_COMMAND, CONTROL_FORCE_FAILOVER, "us-east-1", NULL,
      NULL },
    { { "failover", "--region=eu-west-1", "failback", NULL }, 0,
      CTL_FAILOVER_COMMAND, CONTROL_FORCE_FAILBACK, "eu-west-1", NULL,
      NULL },
    { { "failover", "hold", "--region", "us-east-1", "--reason",
        "SES maintenance", NULL }, 0, CTL_FAILOVER_COMMAND, CONTROL_HOLD,
      "us-east-1", "SES maintenance", NULL },
    { { "failover", "release", "--region", "us-east-1", "-c", "f.yaml",
        NULL }, 0, CTL_FAILOVER_COMMAND, CONTROL_RELEASE, "us-east-1",
      NULL, NULL },
    { { "failover", NULL }, -1, 0, 0, NULL, NULL, "missing the action" },
    { { "failover", "promote", "--region", "us-east-1", NULL }, -1, 0, 0,
      NULL, NULL, "unknown action 'promote'" },
    { { "failover", "force", NULL }, -1, 0, 0, NULL, NULL,
      "force needs --region R" },
    { { "failover", "force", "--region", NULL }, -1, 0, 0, NULL, NULL,
      "needs a value" },
    { { "failover", "force", "--region", "", NULL }, -1, 0, 0, NULL, NULL,
      "invalid region ''" },
    { { "failover", "force", "--region", "us/east", NULL }, -1, 0, 0, NULL,
      NULL, "invalid region 'us/east'" },
    { { "failover", "force", "--region", long_region, NULL }, -1, 0, 0,
      NULL, NULL, "invalid region" },
    { { "failover", "force", "failback", "--region", "us-east-1", NULL },
      -1, 0, 0, NULL, NULL, "unexpected argument 'failback'" },
    { { "failover", "status", "--reason", "x", NULL }, -1, 0, 0, NULL, NULL,
      "--reason applies only to commands" },
    { { "failover", "status", "--json", NULL }, -1, 0, 0, NULL, NULL,
      "unknown option '--json'" },
};


static int
count_args(const char *const *argv)
{
    int argc = 0;

    while (argv[argc] != NULL)
        argc++;
    return argc;
}


static void
failover_parse_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]);
         i++) {
        const struct parse_case *c = &parse_cases[i];
        struct ctl_failover_args args;
        char                    *argv[MAX_ARGS];
        char                     err[256] = "";
        int                      argc = count_args(c->argv), rc;

        memcpy(argv, c->argv, sizeof(argv));
        rc = ctl_failover_parse(argc, argv, &args, err, sizeof(err));
        if (rc != c->rc)
            fail_msg("case %zu: returned %d, expected %d (error '%s')", i,
                     rc, c->rc, err);
        if (rc == -1) {
            if (strstr(err, c->error) == NULL)
                fail_msg("case %zu: error '%s' lacks '%s'", i, err,
                         c->error);
            continue;
        }
        assert_int_equal(args.action, c->action);
        if (c->action == CTL_FAILOVER_COMMAND)
            assert_int_equal(args.command, c->command);
        if (c->region == NULL)
            assert_null(args.region);
        else
            assert_string_equal(args.region, c->region);
        if (c->reason == NULL)
            assert_null(args.reason);
        else
            assert_string_equal(args.reason, c->reason);
    }
}


static void
failover_parse_help(void **state)
{
    struct ctl_failover_args args;
    char                     err[256] = "";
    char                    *argv[] = { "failover", "--help", NULL };

    (void)state;
    assert_int_equal(ctl_failover_parse(2, argv, &args, err, sizeof(err)), 0);
    assert_true(args.help);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(failover_parse_table),
        cmocka_unit_test(failover_parse_help),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

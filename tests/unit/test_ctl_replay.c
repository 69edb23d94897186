/* Unit tests of the delivery topic that ferryctl replay chooses. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ctl_replay.h"

struct target_case {
    const char *dead_topic;
    const char *header;         /* ferry-source-topic, or NULL */
    int         rc;
    const char *target;
};

static const struct target_case target_cases[] = {
    { "mail.us-east-1.dead", NULL, 0, "mail.us-east-1" },
    { "mail.us-east-1.dead", "mail.us-east-1", 0, "mail.us-east-1" },
    { "mail.us-east-1.dead", "mail.us-east-1.pinned", 0,
      "mail.us-east-1.pinned" },
    /* A header naming another region or topic is not trusted. */
    { "mail.us-east-1.dead", "mail.eu-west-1", 0, "mail.us-east-1" },
    { "mail.us-east-1.dead", "mail.us-east-1.dead", 0, "mail.us-east-1" },
    { "mail.us-east-1.dead", "mail.us-east-1x", 0, "mail.us-east-1" },
    { "mail.us-east-1.dead", "", 0, "mail.us-east-1" },
    { "mail.us-east-1", NULL, -1, NULL },
    { "ferry.delivered", NULL, -1, NULL },
    { "mail..dead", NULL, -1, NULL },
    { "other.us-east-1.dead", NULL, -1, NULL },
};


static void
replay_target_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(target_cases) / sizeof(target_cases[0]);
         i++) {
        const struct target_case *c = &target_cases[i];
        char                      buf[64] = "";

        assert_int_equal(ctl_replay_target(c->dead_topic, c->header, buf,
                                           sizeof(buf)), c->rc);
        if (c->target != NULL)
            assert_string_equal(buf, c->target);
    }
}


static void
replay_target_small_buffer(void **state)
{
    char buf[8];

    (void)state;
    assert_int_equal(ctl_replay_target("mail.us-east-1.dead", NULL, buf,
                                       sizeof(buf)), -1);
    assert_int_equal(ctl_replay_target("mail.us-east-1.dead",
                                       "mail.us-east-1.pinned", buf,
                                       sizeof(buf)), -1);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(replay_target_table),
        cmocka_unit_test(replay_target_small_buffer),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of how ferryctl trace reads ids and Message-ID headers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "ctl_trace.h"

struct message_id_case {
    const char *message;
    const char *expected;       /* NULL when none is found */
};

static const struct message_id_case message_id_cases[] = {
    { "Subject: x\r\nMessage-ID: <a@b.example>\r\n\r\nbody\r\n",
      "a@b.example" },
    { "message-id:<a@b.example>\r\n\r\n", "a@b.example" },
    { "MESSAGE-ID:   <a@b.example>   \r\n\r\n", "a@b.example" },
    { "Message-ID:\r\n <folded@b.example>\r\nTo: x\r\n\r\n",
      "folded@b.example" },
    { "Message-ID: <lf@b.example>\nTo: x\n\nbody\n", "lf@b.example" },
    { "Message-ID: <last@b.example>", "last@b.example" },
    /* In the body, not the header section. */
    { "Subject: x\r\n\r\nMessage-ID: <body@b.example>\r\n", NULL },
    { "Subject: x\r\nX-Message-ID: <other@b.example>\r\n\r\n", NULL },
    { "Subject: x\r\nMessage-ID:\r\n\r\n", NULL },
    { "", NULL },
};


static void
trace_message_id_table(void **state)
{
    (void)state;
    for (size_t i = 0;
         i < sizeof(message_id_cases) / sizeof(message_id_cases[0]); i++) {
        const struct message_id_case *c = &message_id_cases[i];
        char                          out[256] = "";
        int                           rc;

        rc = ctl_trace_message_id((const unsigned char *)c->message,
                                  strlen(c->message), out, sizeof(out));
        if (c->expected == NULL) {
            if (rc != -1)
                fail_msg("case %zu: found '%s', expected none", i, out);
        } else {
            if (rc != 0)
                fail_msg("case %zu: none found, expected '%s'", i,
                         c->expected);
            assert_string_equal(out, c->expected);
        }
    }
}


static void
trace_normalize_id(void **state)
{
    char out[64];

    (void)state;
    ctl_trace_normalize_id(" <a@b> ", out, sizeof(out));
    assert_string_equal(out, "a@b");
    ctl_trace_normalize_id("a@b", out, sizeof(out));
    assert_string_equal(out, "a@b");
    ctl_trace_normalize_id("<>", out, sizeof(out));
    assert_string_equal(out, "");
    ctl_trace_normalize_id("<abcdefghij@example>", out, 6);
    assert_string_equal(out, "abcde");
}


static void
trace_envelope_id_shape(void **state)
{
    (void)state;
    assert_true(ctl_trace_is_envelope_id("01M90ZYKG5N4XJK3CJQH1EVBCK"));
    assert_false(ctl_trace_is_envelope_id("01M90ZYKG5N4XJK3CJQH1EVBC"));
    assert_false(ctl_trace_is_envelope_id("01M90ZYKG5N4XJK3CJQH1EVBCKK"));
    /* I, L, O and U are not in Crockford's alphabet; lower case is not
       what envelope_id_new() writes. */
    assert_false(ctl_trace_is_envelope_id("01M90ZYKG5N4XJK3CJQH1EVBCI"));
    assert_false(ctl_trace_is_envelope_id("01m90zykg5n4xjk3cjqh1evbck"));
    assert_false(ctl_trace_is_envelope_id("someone@example.org"));
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(trace_message_id_table),
        cmocka_unit_test(trace_normalize_id),
        cmocka_unit_test(trace_envelope_id_shape),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

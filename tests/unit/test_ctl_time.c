/* Unit tests of ferryctl's time parsing and formatting. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "ctl_lag.h"
#include "ctl_time.h"

/* 2026-12-04T15:00:00Z */
#define NOW_MS INT64_C(1796396400000)

struct valid_case {
    const char *text;
    int64_t     ms;
};

static const struct valid_case valid_cases[] = {
    { "1970-01-01T00:00:00Z", 0 },
    { "2026-12-04T15:00:00Z", NOW_MS },
    { "2026-12-04t15:00:00z", NOW_MS },
    { "2026-12-04 15:00:00Z", NOW_MS },
    { "2026-12-04T16:00:00+01:00", NOW_MS },
    { "2026-12-04T09:30:00-05:30", NOW_MS },
    { "2026-12-04T15:00:00.250Z", NOW_MS + 250 },
    { "2026-12-04T15:00:00.1Z", NOW_MS + 100 },
    { "2026-12-04T15:00:00.123456789Z", NOW_MS + 123 },
    { "2024-02-29T00:00:00Z", INT64_C(1709164800000) },
    { "2000-03-01T00:00:00Z", INT64_C(951868800000) },
    { "1969-12-31T23:59:59Z", -1000 },
    { "2016-12-31T23:59:60Z", INT64_C(1483228800000) },
    { "now", NOW_MS },
    { "-2h", NOW_MS - 2 * 3600000 },
    { "-30m", NOW_MS - 30 * 60000 },
    { "-45s", NOW_MS - 45000 },
    { "-1d", NOW_MS - 86400000 },
    { "-1h30m", NOW_MS - 90 * 60000 },
    { "+10m", NOW_MS + 10 * 60000 },
    { "-0s", NOW_MS },
};

static const char *const invalid_cases[] = {
    "",
    "-",
    "+",
    "-2",
    "-h",
    "-2x",
    "-2h-",
    "2h",
    "yesterday",
    "2026-12-04",
    "2026-12-04T15:00:00",
    "2026-12-04T15:00Z",
    "2026-12-04T15:00:00.Z",
    "2026-12-04T15:00:00+0100",
    "2026-12-04T15:00:00+24:00",
    "2026-12-04T15:00:00Z ",
    "2026-13-01T00:00:00Z",
    "2026-00-01T00:00:00Z",
    "2026-02-29T00:00:00Z",
    "2100-02-29T00:00:00Z",
    "2026-04-31T00:00:00Z",
    "2026-12-04T24:00:00Z",
    "2026-12-04T15:60:00Z",
    "2026-12-04T15:00:61Z",
    "-999999999999h",
};


static void
time_parse_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]);
         i++) {
        int64_t ms = -42;
        char    err[256] = "";
        int     rc = ctl_time_parse(valid_cases[i].text, NOW_MS, &ms, err,
                                    sizeof(err));

        if (rc != 0 || ms != valid_cases[i].ms)
            fail_msg("'%s': rc %d, %lld ms, expected %lld ms (%s)",
                     valid_cases[i].text, rc, (long long)ms,
                     (long long)valid_cases[i].ms, err);
    }
}


static void
time_parse_invalid(void **state)
{
    (void)state;
    for (size_t i = 0;
         i < sizeof(invalid_cases) / sizeof(invalid_cases[0]); i++) {
        int64_t ms = -42;
        char    err[256] = "";
        int     rc = ctl_time_parse(invalid_cases[i], NOW_MS, &ms, err,
                                    sizeof(err));

        if (rc != -1)
            fail_msg("'%s' parsed as %lld ms", invalid_cases[i],
                     (long long)ms);
        if (strstr(err, invalid_cases[i]) == NULL || err[0] == '\0')
            fail_msg("'%s': message does not name the value: %s",
                     invalid_cases[i], err);
        assert_int_equal(ms, -42);
    }
}


static void
time_format_utc(void **state)
{
    char buf[CTL_TIME_LEN];

    (void)state;
    assert_string_equal(ctl_time_format(0, buf), "1970-01-01T00:00:00.000Z");
    assert_string_equal(ctl_time_format(NOW_MS + 7, buf),
                        "2026-12-04T15:00:00.007Z");
    assert_string_equal(ctl_time_format(-1, buf), "1969-12-31T23:59:59.999Z");
    assert_string_equal(ctl_time_format(INT64_C(1709164800000), buf),
                        "2024-02-29T00:00:00.000Z");
}


static void
time_format_round_trip(void **state)
{
    char buf[CTL_TIME_LEN], err[256];

    (void)state;
    for (int64_t ms = -86400000; ms < INT64_C(4102444800000);
         ms += INT64_C(86399999) * 37) {
        int64_t back = 0;

        assert_int_equal(ctl_time_parse(ctl_time_format(ms, buf), 0, &back,
                                        err, sizeof(err)), 0);
        assert_int_equal(back, ms);
    }
}


static void
lag_messages_committed(void **state)
{
    (void)state;
    assert_int_equal(ctl_lag_messages(10, 0, 15), 5);
    assert_int_equal(ctl_lag_messages(15, 0, 15), 0);
    /* Committed below the low watermark after retention deleted records. */
    assert_int_equal(ctl_lag_messages(3, 8, 15), 12);
    /* A committed offset past the end, as after a truncation. */
    assert_int_equal(ctl_lag_messages(20, 0, 15), 0);
    assert_int_equal(ctl_lag_oldest_offset(10, 0), 10);
    assert_int_equal(ctl_lag_oldest_offset(3, 8), 8);
}


static void
lag_messages_never_committed(void **state)
{
    (void)state;
    assert_int_equal(ctl_lag_messages(CTL_LAG_NONE, 0, 500), 500);
    assert_int_equal(ctl_lag_messages(CTL_LAG_NONE, 200, 500), 300);
    assert_int_equal(ctl_lag_messages(CTL_LAG_NONE, 7, 7), 0);
    assert_int_equal(ctl_lag_oldest_offset(CTL_LAG_NONE, 200), 200);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(time_parse_valid),
        cmocka_unit_test(time_parse_invalid),
        cmocka_unit_test(time_format_utc),
        cmocka_unit_test(time_format_round_trip),
        cmocka_unit_test(lag_messages_committed),
        cmocka_unit_test(lag_messages_never_committed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

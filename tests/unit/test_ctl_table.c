/* Unit tests of ferryctl's plain-text tables. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "ctl_table.h"


static void
table_aligns_columns(void **state)
{
    static const char *const headers[] = { "TOPIC", "PARTITION", "LAG" };
    static const bool        right[] = { false, true, true };
    struct ctl_table        *t = ctl_table_new(headers, right, 3);
    char                    *text;

    (void)state;
    ctl_table_row(t);
    ctl_table_cell(t, "mail.us-east-1");
    ctl_table_cell(t, "%d", 0);
    ctl_table_cell(t, "%d", 1200);
    ctl_table_row(t);
    ctl_table_cell(t, "mail.eu-west-1.pinned");
    ctl_table_cell(t, "%d", 12);
    ctl_table_cell(t, "none");
    text = ctl_table_format(t);
    assert_string_equal(text,
        "TOPIC                  PARTITION   LAG\n"
        "--------------------------------------\n"
        "mail.us-east-1                 0  1200\n"
        "mail.eu-west-1.pinned         12  none\n");
    assert_int_equal(ctl_table_rows(t), 2);
    free(text);
    ctl_table_free(t);
}


static void
table_last_column_unpadded(void **state)
{
    static const char *const headers[] = { "N", "MEMBER" };
    static const bool        right[] = { true, false };
    struct ctl_table        *t = ctl_table_new(headers, right, 2);
    char                    *text;

    (void)state;
    ctl_table_row(t);
    ctl_table_cell(t, "1");
    ctl_table_cell(t, "ferry-local");
    ctl_table_row(t);
    ctl_table_cell(t, "2");
    ctl_table_cell(t, "-");
    text = ctl_table_format(t);
    assert_string_equal(text,
        "N  MEMBER\n"
        "--------------\n"
        "1  ferry-local\n"
        "2  -\n");
    free(text);
    ctl_table_free(t);
}


static void
table_counts_utf8_characters(void **state)
{
    static const char *const headers[] = { "NAME", "X" };
    struct ctl_table        *t = ctl_table_new(headers, NULL, 2);
    char                    *text;

    (void)state;
    ctl_table_row(t);
    ctl_table_cell(t, "Lumière");
    ctl_table_cell(t, "a");
    ctl_table_row(t);
    ctl_table_cell(t, "acme");
    ctl_table_cell(t, "b");
    text = ctl_table_format(t);
    assert_string_equal(text,
        "NAME     X\n"
        "----------\n"
        "Lumière  a\n"
        "acme     b\n");
    free(text);
    ctl_table_free(t);
}


static void
table_missing_and_extra_cells(void **state)
{
    static const char *const headers[] = { "A", "B" };
    struct ctl_table        *t = ctl_table_new(headers, NULL, 2);
    char                    *text;

    (void)state;
    assert_int_equal(ctl_table_cell(t, "before any row"), -1);
    ctl_table_row(t);
    assert_int_equal(ctl_table_cell(t, "x"), 0);
    ctl_table_row(t);
    assert_int_equal(ctl_table_cell(t, "y"), 0);
    assert_int_equal(ctl_table_cell(t, "z"), 0);
    assert_int_equal(ctl_table_cell(t, "one too many"), -1);
    text = ctl_table_format(t);
    assert_string_equal(text,
        "A  B\n"
        "----\n"
        "x  \n"
        "y  z\n");
    free(text);
    ctl_table_free(t);
}


static void
table_without_rows(void **state)
{
    static const char *const headers[] = { "TOPIC", "LAG" };
    struct ctl_table        *t = ctl_table_new(headers, NULL, 2);
    char                    *text;

    (void)state;
    text = ctl_table_format(t);
    assert_string_equal(text, "TOPIC  LAG\n----------\n");
    free(text);
    ctl_table_free(t);
    ctl_table_free(NULL);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(table_aligns_columns),
        cmocka_unit_test(table_last_column_unpadded),
        cmocka_unit_test(table_counts_utf8_characters),
        cmocka_unit_test(table_missing_and_extra_cells),
        cmocka_unit_test(table_without_rows),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

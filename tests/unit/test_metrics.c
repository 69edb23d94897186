/* Unit tests of the metrics registry and its text format. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"


static char *
render(struct metrics *reg)
{
    return metrics_render(reg, NULL);
}


static void
counter_renders_help_type_value(void **state)
{
    struct metrics *reg = metrics_new();
    struct metric  *m = metrics_counter(reg, "ferry_test_total",
                                        "Tests run.", "");
    char           *text;

    (void)state;
    metric_add(m, 1);
    metric_add(m, 2);
    metric_add(m, -5);     /* a counter never goes down */
    text = render(reg);
    assert_string_equal(text, "# HELP ferry_test_total Tests run.\n"
                              "# TYPE ferry_test_total counter\n"
                              "ferry_test_total 3\n");
    free(text);
    metrics_free(reg);
}


static void
unlabelled_family_starts_at_zero(void **state)
{
    struct metrics *reg = metrics_new();
    char           *text;

    (void)state;
    metrics_gauge(reg, "ferry_up", "Up.", "");
    metrics_gauge(reg, "ferry_labelled", "Labelled.", "region");
    text = render(reg);
    assert_non_null(strstr(text, "\nferry_up 0\n"));
    assert_null(strstr(text, "ferry_labelled{"));
    free(text);
    metrics_free(reg);
}


static void
label_values_are_escaped(void **state)
{
    struct metrics *reg = metrics_new();
    struct metric  *m = metrics_gauge(reg, "ferry_g", "Help with \\ and\n"
                                      "a second line.", "a,b");
    char           *text;

    (void)state;
    metric_set(m, 1.5, "back\\slash", "quote\"new\nline");
    text = render(reg);
    assert_non_null(strstr(text, "# HELP ferry_g Help with \\\\ and\\n"
                                 "a second line.\n"));
    assert_non_null(strstr(text, "ferry_g{a=\"back\\\\slash\","
                                 "b=\"quote\\\"new\\nline\"} 1.5\n"));
    free(text);
    metrics_free(reg);
}


static void
gauge_keeps_one_series_per_labels(void **state)
{
    struct metrics *reg = metrics_new();
    struct metric  *m = metrics_gauge(reg, "ferry_g", "G.", "region");
    char           *text;

    (void)state;
    metric_set(m, 1, "eu-west-1");
    metric_set(m, 2, "us-east-1");
    metric_set(m, 7, "eu-west-1");
    metric_add(m, -1, "us-east-1");
    text = render(reg);
    assert_string_equal(text, "# HELP ferry_g G.\n"
                              "# TYPE ferry_g gauge\n"
                              "ferry_g{region=\"eu-west-1\"} 7\n"
                              "ferry_g{region=\"us-east-1\"} 1\n");
    free(text);
    metrics_free(reg);
}


static void
special_values_render(void **state)
{
    struct metrics *reg = metrics_new();
    struct metric  *m = metrics_gauge(reg, "ferry_g", "G.", "k");
    char           *text;

    (void)state;
    metric_set(m, INFINITY, "inf");
    metric_set(m, -INFINITY, "minf");
    metric_set(m, NAN, "nan");
    metric_set(m, 0.1, "tenth");
    metric_set(m, 1e20, "big");
    metric_set(m, -3, "neg");
    text = render(reg);
    assert_non_null(strstr(text, "ferry_g{k=\"inf\"} +Inf\n"));
    assert_non_null(strstr(text, "ferry_g{k=\"minf\"} -Inf\n"));
    assert_non_null(strstr(text, "ferry_g{k=\"nan\"} NaN\n"));
    assert_non_null(strstr(text, "ferry_g{k=\"tenth\"} 0.1\n"));
    assert_non_null(strstr(text, "ferry_g{k=\"big\"} 1e+20\n"));
    assert_non_null(strstr(text, "ferry_g{k=\"neg\"} -3\n"));
    free(text);
    metrics_free(reg);
}


static void
histogram_buckets_are_cumulative(void **state)
{
    static const double buckets[] = { 0.1, 1, 10 };
    struct metrics     *reg = metrics_new();
    struct metric      *m = metrics_histogram(reg, "ferry_h_seconds", "H.",
                                              "region", buckets, 3);
    char               *text;

    (void)state;
    metric_observe(m, 0.05, "r1");
    metric_observe(m, 0.1, "r1");     /* le is inclusive */
    metric_observe(m, 0.5, "r1");
    metric_observe(m, 100, "r1");
    text = render(reg);
    assert_string_equal(
        text, "# HELP ferry_h_seconds H.\n"
              "# TYPE ferry_h_seconds histogram\n"
              "ferry_h_seconds_bucket{region=\"r1\",le=\"0.1\"} 2\n"
              "ferry_h_seconds_bucket{region=\"r1\",le=\"1\"} 3\n"
              "ferry_h_seconds_bucket{region=\"r1\",le=\"10\"} 3\n"
              "ferry_h_seconds_bucket{region=\"r1\",le=\"+Inf\"} 4\n"
              "ferry_h_seconds_sum{region=\"r1\"} 100.65\n"
              "ferry_h_seconds_count{region=\"r1\"} 4\n");
    free(text);
    metrics_free(reg);
}


static void
histogram_without_labels_starts_empty(void **state)
{
    static const double buckets[] = { 1 };
    struct metrics     *reg = metrics_new();
    char               *text;

    (void)state;
    metrics_histogram(reg, "ferry_h", "H.", "", buckets, 1);
    text = render(reg);
    assert_non_null(strstr(text, "ferry_h_bucket{le=\"1\"} 0\n"
                                 "ferry_h_bucket{le=\"+Inf\"} 0\n"
                                 "ferry_h_sum 0\n"
                                 "ferry_h_count 0\n"));
    free(text);
    metrics_free(reg);
}


static void
sweep_drops_untouched_series(void **state)
{
    struct metrics *reg = metrics_new();
    struct metric  *m = metrics_gauge(reg, "ferry_lag", "L.", "partition");
    char           *text;

    (void)state;
    metric_set(m, 5, "0");
    metric_set(m, 6, "1");
    metric_sweep_begin(m);
    metric_set(m, 9, "1");
    metric_sweep_end(m);
    text = render(reg);
    assert_null(strstr(text, "partition=\"0\""));
    assert_non_null(strstr(text, "ferry_lag{partition=\"1\"} 9\n"));
    free(text);
    metrics_free(reg);
}


static void
null_family_is_ignored(void **state)
{
    (void)state;
    metric_add(NULL, 1);
    metric_set(NULL, 1, "x");
    metric_observe(NULL, 1);
    metric_sweep_begin(NULL);
    metric_sweep_end(NULL);
}


static void
build_info_names_daemon(void **state)
{
    struct metrics *reg = metrics_new();
    char           *text, expected[256];

    (void)state;
    metrics_add_process(reg, "ingress");
    text = render(reg);
    snprintf(expected, sizeof(expected),
             "ferry_build_info{daemon=\"ingress\",version=\"%s\"} 1\n",
             metrics_version());
    assert_non_null(strstr(text, expected));
    assert_non_null(strstr(text, "# TYPE process_start_time_seconds "
                                 "gauge\nprocess_start_time_seconds 1"));
    free(text);
    metrics_free(reg);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counter_renders_help_type_value),
        cmocka_unit_test(unlabelled_family_starts_at_zero),
        cmocka_unit_test(label_values_are_escaped),
        cmocka_unit_test(gauge_keeps_one_series_per_labels),
        cmocka_unit_test(special_values_render),
        cmocka_unit_test(histogram_buckets_are_cumulative),
        cmocka_unit_test(histogram_without_labels_starts_empty),
        cmocka_unit_test(sweep_drops_untouched_series),
        cmocka_unit_test(null_family_is_ignored),
        cmocka_unit_test(build_info_names_daemon),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

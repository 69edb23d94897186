/*
 * Unit tests of the librdkafka defaults Ferry sets: a property given in
 * kafka.properties, under either of its names, keeps its value.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "kafka.h"

struct default_case {
    const char *configured_name;    /* in kafka.properties, or NULL */
    const char *configured_value;
    const char *name;               /* default set by the caller */
    const char *value;
    const char *expected;           /* value of name afterwards */
};

static const struct default_case default_cases[] = {
    { NULL, NULL, "linger.ms", "20", "20" },
    { "linger.ms", "7", "linger.ms", "20", "7" },
    { "queue.buffering.max.ms", "9", "linger.ms", "20", "9" },
    { "linger.ms", "11", "queue.buffering.max.ms", "20", "11" },
    { "fetch.wait.max.ms", "500", "fetch.wait.max.ms", "50", "500" },
    { "client.id", "ferry-test", "fetch.wait.max.ms", "50", "50" },
};


static void
default_keeps_given_property(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(default_cases) / sizeof(*default_cases);
         i++) {
        const struct default_case *c = &default_cases[i];
        struct kafka_property      property = {
            (char *)c->configured_name, (char *)c->configured_value
        };
        struct config              cfg;
        rd_kafka_conf_t           *conf;
        char                       err[256], value[64];
        size_t                     size = sizeof(value);

        memset(&cfg, 0, sizeof(cfg));
        cfg.path = (char *)"test.yaml";
        cfg.bootstrap_servers = (char *)"127.0.0.1:9092";
        if (c->configured_name != NULL) {
            cfg.kafka_properties = &property;
            cfg.nkafka_properties = 1;
        }
        conf = kafka_conf_new(&cfg, err, sizeof(err));
        assert_non_null(conf);
        assert_int_equal(kafka_conf_default(conf, &cfg, c->name, c->value,
                                            err, sizeof(err)), 0);
        assert_int_equal(rd_kafka_conf_get(conf, c->name, value, &size),
                         RD_KAFKA_CONF_OK);
        assert_string_equal(value, c->expected);
        rd_kafka_conf_destroy(conf);
    }
}


static void
default_rejects_invalid_value(void **state)
{
    struct config    cfg;
    rd_kafka_conf_t *conf;
    char             err[256];

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.path = (char *)"test.yaml";
    cfg.bootstrap_servers = (char *)"127.0.0.1:9092";
    conf = kafka_conf_new(&cfg, err, sizeof(err));
    assert_non_null(conf);
    assert_int_equal(kafka_conf_default(conf, &cfg, "linger.ms", "soon",
                                        err, sizeof(err)), -1);
    assert_non_null(strstr(err, "linger.ms=soon"));
    rd_kafka_conf_destroy(conf);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(default_keeps_given_property),
        cmocka_unit_test(default_rejects_invalid_value),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

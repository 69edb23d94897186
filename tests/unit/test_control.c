/* Unit tests of the ferry.control record codec. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "control.h"

static const struct control control_cases[] = {
    { "us-east-1", CONTROL_PRIMARY, 1, 1764866000000, "start", "ctl-a:1",
      false, -1 },
    { "us-east-1", CONTROL_DRAINING_PRIMARY, 2, 1764866001000,
      "SES down by probes and worker reports", "ctl-a:1", false, -1 },
    { "eu-west-1", CONTROL_SECONDARY, 77, 1764866002000, "offsets copied",
      "ctl-b:9", true, 4711 },
    { "eu-west-1", CONTROL_DRAINING_SECONDARY, UINT64_MAX, INT64_MAX, "",
      "", true, INT64_MAX },
};

static const struct control_command command_cases[] = {
    { "us-east-1", CONTROL_FORCE_FAILOVER, 1764866000000, "ops@host",
      "maintenance" },
    { "eu-west-1", CONTROL_FORCE_FAILBACK, 0, "", "" },
    { "eu-west-1", CONTROL_HOLD, INT64_MIN, "a", "b" },
    { "us-east-1", CONTROL_RELEASE, 1, "x", "y" },
};


static void
state_round_trip_keeps_fields(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(control_cases) / sizeof(*control_cases);
         i++) {
        const struct control    *in = &control_cases[i];
        struct control           out;
        struct control_command   cmd;
        enum control_record_kind kind = CONTROL_RECORD_COMMAND;
        size_t                   len;
        unsigned char           *buf = control_encode(in, &len);

        assert_int_equal(control_decode(buf, len, &kind, &out, &cmd), 0);
        assert_int_equal(kind, CONTROL_RECORD_STATE);
        assert_string_equal(out.region, in->region);
        assert_int_equal(out.state, in->state);
        assert_true(out.epoch == in->epoch);
        assert_true(out.since_ms == in->since_ms);
        assert_string_equal(out.reason, in->reason);
        assert_string_equal(out.controller_id, in->controller_id);
        assert_int_equal(out.hold, in->hold);
        assert_true(out.command_offset == in->command_offset);
        free(buf);
    }
}


static void
command_round_trip_keeps_fields(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(command_cases) / sizeof(*command_cases);
         i++) {
        const struct control_command *in = &command_cases[i];
        struct control_command        out;
        struct control                c;
        enum control_record_kind      kind = CONTROL_RECORD_STATE;
        size_t                        len;
        unsigned char                *buf = control_command_encode(in, &len);

        assert_int_equal(control_decode(buf, len, &kind, &c, &out), 0);
        assert_int_equal(kind, CONTROL_RECORD_COMMAND);
        assert_string_equal(out.region, in->region);
        assert_int_equal(out.kind, in->kind);
        assert_true(out.issued_ms == in->issued_ms);
        assert_string_equal(out.issued_by, in->issued_by);
        assert_string_equal(out.reason, in->reason);
        free(buf);
    }
}


/* Field numbers are the wire contract with the delivery workers. */
static void
wire_uses_proto_field_numbers(void **state)
{
    struct control c;
    size_t         len;
    unsigned char *buf;

    (void)state;
    memset(&c, 0, sizeof(c));
    strcpy(c.region, "eu");
    c.state = CONTROL_SECONDARY;
    c.epoch = 5;
    buf = control_encode(&c, &len);

    /*
     * ControlRecord field 1 (state), length 8: field 1 (region) "eu",
     * field 2 varint 3, field 3 varint 5. hold false and command_offset 0
     * are proto3 defaults and not written.
     */
    static const unsigned char expected[] = {
        0x0a, 0x08, 0x0a, 0x02, 'e', 'u', 0x10, 0x03, 0x18, 0x05
    };
    assert_int_equal(len, sizeof(expected));
    assert_memory_equal(buf, expected, sizeof(expected));
    free(buf);
}


static void
decode_rejects_invalid_records(void **state)
{
    static const unsigned char truncated[] = { 0x0a, 0x09, 0x0a, 0x02 };
    static const unsigned char empty[] = { 0 };
    /* A state record of region "eu" with state 0 and one with state 9. */
    static const unsigned char no_state[] = { 0x0a, 0x04, 0x0a, 0x02, 'e',
                                              'u' };
    static const unsigned char state_9[] = { 0x0a, 0x06, 0x0a, 0x02, 'e',
                                             'u', 0x10, 0x09 };
    /* A state record without a region. */
    static const unsigned char no_region[] = { 0x0a, 0x02, 0x10, 0x01 };
    /* A command record of region "eu" with kind 7. */
    static const unsigned char kind_7[] = { 0x12, 0x06, 0x0a, 0x02, 'e',
                                            'u', 0x10, 0x07 };
    struct control             c;
    struct control_command     cmd;
    enum control_record_kind   kind;

    (void)state;
    assert_int_equal(control_decode(truncated, sizeof(truncated), &kind, &c,
                                    &cmd), -1);
    assert_int_equal(control_decode(empty, 0, &kind, &c, &cmd), -1);
    assert_int_equal(control_decode(no_state, sizeof(no_state), &kind, &c,
                                    &cmd), -1);
    assert_int_equal(control_decode(state_9, sizeof(state_9), &kind, &c,
                                    &cmd), -1);
    assert_int_equal(control_decode(no_region, sizeof(no_region), &kind, &c,
                                    &cmd), -1);
    assert_int_equal(control_decode(kind_7, sizeof(kind_7), &kind, &c,
                                    &cmd), -1);
}


static void
decode_rejects_long_region(void **state)
{
    struct control           out;
    struct control_command   cmd;
    enum control_record_kind kind;
    size_t                   len;
    unsigned char           *buf;
    char                     region[80];

    (void)state;
    memset(region, 'r', sizeof(region) - 1);
    region[sizeof(region) - 1] = '\0';

    /*
     * control_encode() cannot write a region of 79 bytes, so build the
     * record by hand: a state record with that region and state PRIMARY.
     */
    buf = malloc(2 + 2 + sizeof(region) - 1 + 2);
    assert_non_null(buf);
    buf[0] = 0x0a;
    buf[1] = (unsigned char)(2 + sizeof(region) - 1 + 2);
    buf[2] = 0x0a;
    buf[3] = (unsigned char)(sizeof(region) - 1);
    memcpy(buf + 4, region, sizeof(region) - 1);
    buf[4 + sizeof(region) - 1] = 0x10;
    buf[5 + sizeof(region) - 1] = 0x01;
    len = 6 + sizeof(region) - 1;
    assert_int_equal(control_decode(buf, len, &kind, &out, &cmd), -1);
    free(buf);
}


static void
names_parse_back(void **state)
{
    enum control_command_kind kind;
    char                      key[32];

    (void)state;
    assert_string_equal(control_state_name(CONTROL_PRIMARY), "PRIMARY");
    assert_string_equal(control_state_name(CONTROL_DRAINING_SECONDARY),
                        "DRAINING_SECONDARY");
    assert_string_equal(control_state_name((enum control_state)0),
                        "UNKNOWN");
    for (int i = CONTROL_FORCE_FAILOVER; i <= CONTROL_RELEASE; i++) {
        assert_int_equal(control_command_parse(
                             control_command_name(
                                 (enum control_command_kind)i), &kind), 0);
        assert_int_equal(kind, i);
    }
    assert_int_equal(control_command_parse("force", &kind), -1);
    assert_int_equal(control_command_key("us-east-1", key, sizeof(key)), 0);
    assert_string_equal(key, "us-east-1/command");
    assert_int_equal(control_command_key("us-east-1", key, 10), -1);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(state_round_trip_keeps_fields),
        cmocka_unit_test(command_round_trip_keeps_fields),
        cmocka_unit_test(wire_uses_proto_field_numbers),
        cmocka_unit_test(decode_rejects_invalid_records),
        cmocka_unit_test(decode_rejects_long_region),
        cmocka_unit_test(names_parse_back),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

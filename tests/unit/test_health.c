/* Unit tests of the ferry.health record codec. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "health.h"

static const struct health health_cases[] = {
    { "us-east-1", "deliver-a:4242", 1764866000000, 5000,
      120, 3, 2, 0, 0, 1, 0, "", 14.0, 14.0, 250, 1 },
    { "eu-west-1", "deliver-b:7", 1764866005000, 5012,
      0, 0, 0, 4, 0, 0, 0, "region_down", 7.5, 14.0, 0, 0 },
    { "us-west-2", "host:1", 1764866010000, 4999,
      0, 0, 0, 0, 9, 0, -360000, "local_fault", 1.0, 0.0, -360400, 1 },
    { "", "", 0, 0, 0, 0, 0, 0, 0, 0, 0, "", 0.0, 0.0, 0, 0 },
    { "us-east-1", "big:1", INT64_MAX, INT64_MAX, UINT64_MAX, UINT64_MAX,
      UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, INT64_MIN, "",
      1e6, 1e6, INT64_MIN, 1 },
};


static void
round_trip_keeps_fields(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(health_cases) / sizeof(*health_cases);
         i++) {
        const struct health *in = &health_cases[i];
        struct health        out;
        size_t               len;
        unsigned char       *buf = health_encode(in, &len);

        assert_int_equal(health_decode(buf, len, &out), 0);
        assert_string_equal(out.region, in->region);
        assert_string_equal(out.worker_id, in->worker_id);
        assert_true(out.interval_start_ms == in->interval_start_ms);
        assert_true(out.interval_ms == in->interval_ms);
        assert_true(out.delivered == in->delivered);
        assert_true(out.throttled == in->throttled);
        assert_true(out.transient == in->transient);
        assert_true(out.region_down == in->region_down);
        assert_true(out.local_fault == in->local_fault);
        assert_true(out.rejected == in->rejected);
        assert_true(out.clock_offset_ms == in->clock_offset_ms);
        assert_string_equal(out.stop_class, in->stop_class);
        assert_true(out.send_rate == in->send_rate);
        assert_true(out.max_send_rate == in->max_send_rate);
        assert_true(out.clock_measured_offset_ms ==
                    in->clock_measured_offset_ms);
        assert_int_equal(out.clock_measured, in->clock_measured);
        free(buf);
    }
}


/* Field numbers are the wire contract with the failover controller. */
static void
wire_uses_proto_field_numbers(void **state)
{
    struct health h;
    size_t        len;
    unsigned char *buf;

    (void)state;
    memset(&h, 0, sizeof(h));
    strcpy(h.region, "eu");
    h.delivered = 3;
    h.rejected = 1;
    buf = health_encode(&h, &len);

    /* Field 1 (region), length 2; field 5 varint 3; field 10 varint 1. */
    static const unsigned char expected[] = {
        0x0a, 0x02, 'e', 'u', 0x28, 0x03, 0x50, 0x01
    };
    assert_int_equal(len, sizeof(expected));
    assert_memory_equal(buf, expected, sizeof(expected));
    free(buf);
}


static void
decode_rejects_garbage(void **state)
{
    static const unsigned char truncated[] = { 0x0a, 0x09, 'u', 's' };
    static const unsigned char bad_wire_type[] = { 0x2f, 0x01 };
    struct health              h;

    (void)state;
    assert_int_equal(health_decode(truncated, sizeof(truncated), &h), -1);
    assert_int_equal(health_decode(bad_wire_type, sizeof(bad_wire_type),
                                   &h), -1);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_keeps_fields),
        cmocka_unit_test(wire_uses_proto_field_numbers),
        cmocka_unit_test(decode_rejects_garbage),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of the envelope and delivered-record codecs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "delivered.h"
#include "envelope.h"


static void
id_shape(void **state)
{
    char a[ENVELOPE_ID_LEN + 1];
    char b[ENVELOPE_ID_LEN + 1];

    (void)state;
    envelope_id_new(a);
    envelope_id_new(b);
    assert_int_equal(strlen(a), ENVELOPE_ID_LEN);
    assert_string_not_equal(a, b);
    for (size_t i = 0; i < ENVELOPE_ID_LEN; i++)
        assert_non_null(strchr("0123456789ABCDEFGHJKMNPQRSTVWXYZ", a[i]));
}


static void
id_sorts_by_time(void **state)
{
    char first[ENVELOPE_ID_LEN + 1];
    char later[ENVELOPE_ID_LEN + 1];

    (void)state;
    envelope_id_new(first);
    usleep(3000);
    envelope_id_new(later);
    /* The first ten digits hold the milliseconds. */
    assert_true(strncmp(first, later, 10) < 0);
}


static void
round_trip(void **state)
{
    static char     *rcpts[] = { "bob@example.org", "carol@example.org" };
    static const unsigned char body[] = "Subject: x\r\n\r\n\0\xff\r\n";
    struct envelope  in;
    struct envelope *out;
    unsigned char   *buf;
    size_t           len;
    char             err[256];

    (void)state;
    memset(&in, 0, sizeof(in));
    envelope_id_new(in.id);
    in.org = "acme";
    in.home_region = "us-east-1";
    in.multi_region = true;
    in.integration = INTEGRATION_JOURNALING;
    in.sender = "alice@acme.example";
    in.recipients = rcpts;
    in.nrecipients = 2;
    in.client_address = "127.0.0.1";
    in.helo = "client.example";
    in.tls = "";
    in.received_at_ms = 1764000000123;
    in.size = sizeof(body);
    memset(in.sha256, 0xab, sizeof(in.sha256));
    in.chunk_index = 0;
    in.chunk_count = 1;
    in.message = (unsigned char *)body;
    in.message_len = sizeof(body);

    buf = envelope_encode(&in, &len);
    out = envelope_decode(buf, len, err, sizeof(err));
    free(buf);

    assert_non_null(out);
    assert_string_equal(out->id, in.id);
    assert_string_equal(out->org, "acme");
    assert_string_equal(out->home_region, "us-east-1");
    assert_true(out->multi_region);
    assert_int_equal(out->integration, INTEGRATION_JOURNALING);
    assert_string_equal(out->sender, "alice@acme.example");
    assert_int_equal(out->nrecipients, 2);
    assert_string_equal(out->recipients[1], "carol@example.org");
    assert_int_equal(out->received_at_ms, 1764000000123);
    assert_memory_equal(out->sha256, in.sha256, 32);
    assert_int_equal(out->chunk_count, 1);
    assert_int_equal(out->message_len, sizeof(body));
    assert_memory_equal(out->message, body, sizeof(body));
    envelope_free(out);
}


static void
decode_rejects_garbage(void **state)
{
    static const struct {
        const char *bytes;
        size_t      len;
        const char *expected;
    } cases[] = {
        { "\xff\xff\xff", 3, "not a valid envelope" },
        /* field 1 (id) = "short", no sha256 */
        { "\x0a\x05short", 7, "is not 26 characters" },
    };
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        err[0] = '\0';
        assert_null(envelope_decode(cases[i].bytes, cases[i].len, err,
                                    sizeof(err)));
        if (strstr(err, cases[i].expected) == NULL)
            fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].expected);
    }
}


static void
decode_rejects_bad_chunk(void **state)
{
    struct envelope  in;
    unsigned char   *buf;
    size_t           len;
    char             err[256] = "";

    (void)state;
    memset(&in, 0, sizeof(in));
    envelope_id_new(in.id);
    in.chunk_index = 2;
    in.chunk_count = 2;
    buf = envelope_encode(&in, &len);
    assert_null(envelope_decode(buf, len, err, sizeof(err)));
    assert_non_null(strstr(err, "chunk 2 of 2 is invalid"));
    free(buf);
}


static void
delivered_round_trip(void **state)
{
    struct delivered in;
    struct delivered out;
    unsigned char   *buf;
    size_t           len;

    (void)state;
    memset(&in, 0, sizeof(in));
    envelope_id_new(in.envelope_id);
    strcpy(in.source_topic, "mail.eu-west-1.pinned");
    in.source_partition = 2;
    in.source_offset = 123456789012;
    strcpy(in.region, "eu-west-1");
    strcpy(in.ses_message_id, "0100019a-abc");
    in.delivered_at_ms = 1764000000999;

    buf = delivered_encode(&in, &len);
    assert_int_equal(delivered_decode(buf, len, &out), 0);
    free(buf);
    assert_string_equal(out.envelope_id, in.envelope_id);
    assert_string_equal(out.source_topic, "mail.eu-west-1.pinned");
    assert_int_equal(out.source_partition, 2);
    assert_int_equal(out.source_offset, 123456789012);
    assert_string_equal(out.region, "eu-west-1");
    assert_string_equal(out.ses_message_id, "0100019a-abc");
    assert_int_equal(out.delivered_at_ms, 1764000000999);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(id_shape),
        cmocka_unit_test(id_sorts_by_time),
        cmocka_unit_test(round_trip),
        cmocka_unit_test(decode_rejects_garbage),
        cmocka_unit_test(decode_rejects_bad_chunk),
        cmocka_unit_test(delivered_round_trip),
    };

    return cmocka_run_group_tests_name("envelope", tests, NULL, NULL);
}

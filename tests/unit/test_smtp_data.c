/*
 * Unit tests of the DATA reader: the same octets fed in one piece, one
 * octet at a time and in random pieces must give the same text, faults and
 * end, whatever the segment size and the size limit.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "smtp_data.h"

#define INPUT_MAX 6000

struct outcome {
    unsigned char text[INPUT_MAX];
    size_t        len;
    size_t        consumed;
    uint64_t      size;
    bool          done;
    int           fault;
};

/*
 * Feeds input in pieces: piece 0 means all at once, otherwise pieces of
 * random length up to piece octets.
 */
static void
feed(const unsigned char *input, size_t len, size_t piece, size_t max_size,
     size_t segment_size, struct outcome *out)
{
    struct smtp_data d;
    size_t           at = 0;

    smtp_data_init(&d, max_size, segment_size);
    while (at < len && !smtp_data_done(&d)) {
        size_t n = piece == 0 ? len - at : 1 + (size_t)rand() % piece;
        size_t used;

        if (n > len - at)
            n = len - at;
        used = smtp_data_feed(&d, input + at, n);
        assert_true(used <= n);
        at += used;
        if (used < n)
            assert_true(smtp_data_done(&d));
    }
    if (!smtp_data_done(&d))
        smtp_data_finish(&d);

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < d.nsegments; i++) {
        size_t               seg_len;
        const unsigned char *seg = smtp_data_segment(&d, i, &seg_len);

        assert_true(seg_len <= segment_size);
        assert_true(out->len + seg_len <= sizeof(out->text));
        memcpy(out->text + out->len, seg, seg_len);
        out->len += seg_len;
    }
    assert_int_equal(out->len, d.len);
    assert_true(out->len <= max_size);
    out->consumed = at;
    out->size = d.size;
    out->done = d.state == SMTP_DATA_DONE;
    out->fault = smtp_data_fault(&d);
    smtp_data_fini(&d);
}


/* Random text weighted towards the octets the reader treats specially. */
static size_t
random_input(unsigned char *buf, size_t max)
{
    static const unsigned char special[] = { '\r', '\n', '.', '\0' };
    size_t                     len = (size_t)rand() % max;

    for (size_t i = 0; i < len; i++) {
        int roll = rand() % 100;

        if (roll < 12)
            buf[i] = special[rand() % 4];
        else if (roll < 30 && i + 1 < len) {
            buf[i++] = '\r';
            buf[i] = '\n';
        } else
            buf[i] = (unsigned char)('a' + rand() % 26);
    }
    return len;
}


static void
assert_same(const struct outcome *a, const struct outcome *b)
{
    assert_int_equal(a->len, b->len);
    assert_memory_equal(a->text, b->text, a->len);
    assert_int_equal(a->consumed, b->consumed);
    assert_int_equal(a->size, b->size);
    assert_int_equal(a->done, b->done);
    assert_int_equal(a->fault, b->fault);
}


static void
pieces_give_same_result(void **state)
{
    static unsigned char input[INPUT_MAX];
    static struct outcome whole, piecewise;
    static const size_t   limits[] = { 50, 700, 4096, INPUT_MAX };
    static const size_t   segments[] = { 7, 100, 4096, 65536 };

    srand(20261204);
    for (int round = 0; round < 3000; round++) {
        size_t len = random_input(input, INPUT_MAX);
        size_t max_size = limits[round % 4];
        size_t segment = segments[(round / 4) % 4];

        feed(input, len, 0, max_size, segment, &whole);
        feed(input, len, 1, max_size, segment, &piecewise);
        assert_same(&whole, &piecewise);
        feed(input, len, 37, max_size, segment, &piecewise);
        assert_same(&whole, &piecewise);
    }
}


/*
 * Writes a message of a header line, a blank line and one body line of
 * count octets of fill, then the terminator. Returns its length.
 */
static size_t
one_line_message(unsigned char *input, const char *header, int fill,
                 size_t count)
{
    size_t len = strlen(header);

    memcpy(input, header, len);
    memcpy(input + len, "\r\n\r\n", 4);
    len += 4;
    memset(input + len, fill, count);
    len += count;
    memcpy(input + len, "\r\n.\r\n", 5);
    return len + 5;
}


static void
long_plain_line_spans_segments(void **state)
{
    static unsigned char  input[INPUT_MAX];
    static struct outcome out;
    size_t                len = one_line_message(input, "Subject: x", 'y',
                                                 2500);

    feed(input, len, 0, INPUT_MAX, 1000, &out);
    assert_true(out.done);
    assert_int_equal(out.consumed, len);
    assert_int_equal(out.len, len - 3);
    assert_memory_equal(out.text, input, len - 3);
    assert_int_equal(out.fault, SMTP_DATA_FAULT_LONG_LINE);
}


static void
size_limit_cuts_inside_a_run(void **state)
{
    static unsigned char  input[INPUT_MAX];
    static struct outcome out;
    size_t                len = one_line_message(input, "a: b", 'z', 500);

    feed(input, len, 0, 100, 4096, &out);
    assert_true(out.done);
    assert_int_equal(out.len, 100);
    assert_int_equal(out.size, len - 3);
    assert_int_equal(out.fault, SMTP_DATA_FAULT_TOO_LARGE);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pieces_give_same_result),
        cmocka_unit_test(long_plain_line_spans_segments),
        cmocka_unit_test(size_limit_cuts_inside_a_run),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

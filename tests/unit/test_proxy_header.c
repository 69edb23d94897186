/*
 * Unit tests of the PROXY protocol header parser: versions 1 and 2, whole
 * and split at every octet, truncated, oversized and garbage input.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_header.h"

#define V2_SIGNATURE "\r\n\r\n\0\r\nQUIT\n"

struct valid_case {
    const char *name;
    const char *data;
    size_t      len;
    int         version;
    bool        local;
    int         family;
    const char *address;
    unsigned    port;
};

static const unsigned char v2_tcp4[] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
    0x21, 0x11, 0x00, 0x0c,
    198, 51, 100, 7,            /* source */
    10, 0, 0, 1,                /* destination */
    0xc3, 0x50,                 /* source port 50000 */
    0x00, 0x19,                 /* destination port 25 */
};

static const unsigned char v2_tcp6_tlv[] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
    0x21, 0x21, 0x00, 0x2a,
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42,
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
    0x04, 0xd2,                 /* source port 1234 */
    0x00, 0x19,
    0x04, 0x00, 0x03, 'a', 'b', 'c',    /* a TLV, skipped */
};

static const unsigned char v2_local[] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
    0x20, 0x00, 0x00, 0x00,
};

static const unsigned char v2_unspec[] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
    0x21, 0x00, 0x00, 0x00,
};

#define TEXT(s) s, sizeof(s) - 1
#define BYTES(a) (const char *)(a), sizeof(a)

static const struct valid_case valid_cases[] = {
    { "v1 TCP4", TEXT("PROXY TCP4 192.0.2.10 10.0.0.1 40000 25\r\n"), 1,
      false, AF_INET, "192.0.2.10", 40000 },
    { "v1 TCP6", TEXT("PROXY TCP6 2001:db8::42 2001:db8::1 65535 25\r\n"),
      1, false, AF_INET6, "2001:db8::42", 65535 },
    { "v1 UNKNOWN", TEXT("PROXY UNKNOWN\r\n"), 1, true, 0, NULL, 0 },
    { "v1 UNKNOWN with addresses",
      TEXT("PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n"), 1, true, 0, NULL,
      0 },
    { "v2 PROXY TCP4", BYTES(v2_tcp4), 2, false, AF_INET, "198.51.100.7",
      50000 },
    { "v2 PROXY TCP6 with TLV", BYTES(v2_tcp6_tlv), 2, false, AF_INET6,
      "2001:db8::42", 1234 },
    { "v2 LOCAL", BYTES(v2_local), 2, true, 0, NULL, 0 },
    { "v2 PROXY UNSPEC", BYTES(v2_unspec), 2, true, 0, NULL, 0 },
};


static void
check_valid(const struct valid_case *c, const struct proxy_header *h)
{
    char text[INET6_ADDRSTRLEN];

    assert_int_equal(h->version, c->version);
    assert_int_equal(h->length, c->len);
    assert_int_equal(h->local, c->local);
    if (c->local)
        return;
    assert_int_equal(h->source.ss_family, c->family);
    if (c->family == AF_INET) {
        const struct sockaddr_in *sin =
            (const struct sockaddr_in *)(const void *)&h->source;

        inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
        assert_int_equal(ntohs(sin->sin_port), c->port);
    } else {
        const struct sockaddr_in6 *sin6 =
            (const struct sockaddr_in6 *)(const void *)&h->source;

        inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
        assert_int_equal(ntohs(sin6->sin6_port), c->port);
    }
    assert_string_equal(text, c->address);
}


static void
valid_headers_parse(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(valid_cases) / sizeof(*valid_cases);
         i++) {
        const struct valid_case *c = &valid_cases[i];
        struct proxy_header      h;

        if (proxy_header_parse((const unsigned char *)c->data, c->len, &h) !=
            PROXY_HEADER_OK)
            fail_msg("%s: not parsed", c->name);
        check_valid(c, &h);
    }
}


/*
 * Every prefix of a valid header is incomplete, as when it arrives split
 * across reads, and the SMTP octets after it are not part of it.
 */
static void
split_headers_incomplete(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(valid_cases) / sizeof(*valid_cases);
         i++) {
        const struct valid_case *c = &valid_cases[i];
        unsigned char            buf[256];
        struct proxy_header      h;

        for (size_t n = 0; n < c->len; n++)
            if (proxy_header_parse((const unsigned char *)c->data, n, &h) !=
                PROXY_HEADER_INCOMPLETE)
                fail_msg("%s: prefix of %zu octets is not incomplete",
                         c->name, n);

        memcpy(buf, c->data, c->len);
        memcpy(buf + c->len, "EHLO x\r\n", 8);
        assert_int_equal(proxy_header_parse(buf, c->len + 8, &h),
                         PROXY_HEADER_OK);
        check_valid(c, &h);
    }
}


static void
invalid_headers_rejected(void **state)
{
    static const struct {
        const char *name;
        const char *data;
        size_t      len;
    } cases[] = {
        { "SMTP command", TEXT("EHLO client.test\r\n") },
        { "lower case", TEXT("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n") },
        { "unknown protocol", TEXT("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n") },
        { "TCP4 with IPv6", TEXT("PROXY TCP4 ::1 ::1 1 2\r\n") },
        { "TCP6 with IPv4", TEXT("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n") },
        { "bad address", TEXT("PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n") },
        { "port too large", TEXT("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n") },
        { "signed port", TEXT("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n") },
        { "missing port", TEXT("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n") },
        { "extra field", TEXT("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n") },
        { "double space", TEXT("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n") },
        { "bare LF", TEXT("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n") },
        { "NUL inside", TEXT("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n") },
        { "empty", TEXT("PROXY \r\n") },
        { "v2 bad signature", TEXT("\r\n\r\n\0\r\nQUIX\n\x21\x11\0\0") },
        { "v2 version 1", TEXT(V2_SIGNATURE "\x11\x11\0\0") },
        { "v2 command 2", TEXT(V2_SIGNATURE "\x22\x11\0\0") },
        { "v2 TCP4 too short", TEXT(V2_SIGNATURE "\x21\x11\0\x04"
                                    "\1\2\3\4") },
        { "v2 TCP6 too short", TEXT(V2_SIGNATURE "\x21\x21\0\x0c"
                                    "\1\2\3\4\5\6\7\x08\x09\x0a\x0b\x0c") },
        { "v2 UDP", TEXT(V2_SIGNATURE "\x21\x12\0\x0c"
                         "\1\2\3\4\5\6\7\x08\x09\x0a\x0b\x0c") },
        { "v2 oversized", TEXT(V2_SIGNATURE "\x21\x11\xff\xff") },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        struct proxy_header h;

        if (proxy_header_parse((const unsigned char *)cases[i].data,
                               cases[i].len, &h) != PROXY_HEADER_INVALID)
            fail_msg("%s: not rejected", cases[i].name);
    }
}


/* A version 1 line without CRLF within 107 octets is rejected. */
static void
v1_overlong_line_rejected(void **state)
{
    unsigned char       buf[PROXY_HEADER_V1_MAX + 20];
    struct proxy_header h;

    (void)state;
    memcpy(buf, "PROXY UNKNOWN ", 14);
    memset(buf + 14, 'x', sizeof(buf) - 14);
    assert_int_equal(proxy_header_parse(buf, PROXY_HEADER_V1_MAX - 1, &h),
                     PROXY_HEADER_INCOMPLETE);
    assert_int_equal(proxy_header_parse(buf, PROXY_HEADER_V1_MAX, &h),
                     PROXY_HEADER_INVALID);
    assert_int_equal(proxy_header_parse(buf, sizeof(buf), &h),
                     PROXY_HEADER_INVALID);

    /* A line of the maximum length, 107 octets with CRLF, is accepted. */
    buf[PROXY_HEADER_V1_MAX - 2] = '\r';
    buf[PROXY_HEADER_V1_MAX - 1] = '\n';
    assert_int_equal(proxy_header_parse(buf, PROXY_HEADER_V1_MAX, &h),
                     PROXY_HEADER_OK);
    assert_int_equal(h.length, PROXY_HEADER_V1_MAX);
}


/* Garbage fails at its first octet that cannot start a header. */
static void
garbage_rejected_early(void **state)
{
    struct proxy_header h;

    (void)state;
    assert_int_equal(proxy_header_parse((const unsigned char *)"G", 1, &h),
                     PROXY_HEADER_INVALID);
    assert_int_equal(proxy_header_parse((const unsigned char *)"PRX", 3, &h),
                     PROXY_HEADER_INVALID);
    assert_int_equal(proxy_header_parse((const unsigned char *)"\r\n\r\nX",
                                        5, &h),
                     PROXY_HEADER_INVALID);
    assert_int_equal(proxy_header_parse((const unsigned char *)"", 0, &h),
                     PROXY_HEADER_INCOMPLETE);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_headers_parse),
        cmocka_unit_test(split_headers_incomplete),
        cmocka_unit_test(invalid_headers_rejected),
        cmocka_unit_test(v1_overlong_line_rejected),
        cmocka_unit_test(garbage_rejected_early),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

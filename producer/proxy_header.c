#include "proxy_header.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const unsigned char proxy_header_v2_signature[12] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

static enum proxy_header_status
proxy_header_parse_v1(const unsigned char *buf, size_t len,
                      struct proxy_header *out);
static enum proxy_header_status
proxy_header_parse_v2(const unsigned char *buf, size_t len,
                      struct proxy_header *out);
static int proxy_header_port(const char *text, unsigned *port);


enum proxy_header_status
proxy_header_parse(const unsigned char *buf, size_t len,
                   struct proxy_header *out)
{
    memset(out, 0, sizeof(*out));
    if (len == 0)
        return PROXY_HEADER_INCOMPLETE;
    if (buf[0] == 'P')
        return proxy_header_parse_v1(buf, len, out);
    if (buf[0] == proxy_header_v2_signature[0])
        return proxy_header_parse_v2(buf, len, out);
    return PROXY_HEADER_INVALID;
}


/* Parses a decimal port from 0 to 65535, with no sign or blank. */
static int
proxy_header_port(const char *text, unsigned *port)
{
    size_t   n = strlen(text);
    unsigned value = 0;

    if (n == 0 || n > 5 || strspn(text, "0123456789") != n)
        return -1;
    for (size_t i = 0; i < n; i++)
        value = value * 10 + (unsigned)(text[i] - '0');
    if (value > 65535)
        return -1;
    *port = value;
    return 0;
}


/*
 * Version 1: "PROXY TCP4|TCP6 source destination sport dport\r\n" or
 * "PROXY UNKNOWN ...\r\n", single spaces between fields.
 */
static enum proxy_header_status
proxy_header_parse_v1(const unsigned char *buf, size_t len,
                      struct proxy_header *out)
{
    static const char prefix[] = "PROXY ";
    char              line[PROXY_HEADER_V1_MAX + 1];
    char             *fields[6];
    char             *save = NULL;
    size_t            nfields = 0;
    size_t            line_len;
    size_t            check = len < sizeof(prefix) - 1 ? len
                                                       : sizeof(prefix) - 1;
    const unsigned char *lf;
    unsigned          sport, dport;
    int               family;

    if (memcmp(buf, prefix, check) != 0)
        return PROXY_HEADER_INVALID;

    lf = memchr(buf, '\n', len < PROXY_HEADER_V1_MAX ? len
                                                      : PROXY_HEADER_V1_MAX);
    if (lf == NULL)
        return len >= PROXY_HEADER_V1_MAX ? PROXY_HEADER_INVALID
                                          : PROXY_HEADER_INCOMPLETE;
    line_len = (size_t)(lf - buf);
    if (line_len < sizeof(prefix) || buf[line_len - 1] != '\r')
        return PROXY_HEADER_INVALID;
    line_len--;
    memcpy(line, buf, line_len);
    line[line_len] = '\0';
    if (memchr(line, '\0', line_len) != NULL || strstr(line, "  ") != NULL)
        return PROXY_HEADER_INVALID;

    out->version = 1;
    out->length = line_len + 2;
    for (char *tok = strtok_r(line + sizeof(prefix) - 1, " ", &save);
         tok != NULL && nfields < 6; tok = strtok_r(NULL, " ", &save))
        fields[nfields++] = tok;
    if (nfields == 0)
        return PROXY_HEADER_INVALID;

    /* A proxy that does not know the client address sends UNKNOWN. */
    if (strcmp(fields[0], "UNKNOWN") == 0) {
        out->local = true;
        return PROXY_HEADER_OK;
    }
    if (strcmp(fields[0], "TCP4") == 0)
        family = AF_INET;
    else if (strcmp(fields[0], "TCP6") == 0)
        family = AF_INET6;
    else
        return PROXY_HEADER_INVALID;
    if (nfields != 5 || proxy_header_port(fields[3], &sport) == -1 ||
        proxy_header_port(fields[4], &dport) == -1)
        return PROXY_HEADER_INVALID;

    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&out->source;
        struct in_addr      dst;

        if (inet_pton(AF_INET, fields[1], &sin->sin_addr) != 1 ||
            inet_pton(AF_INET, fields[2], &dst) != 1)
            return PROXY_HEADER_INVALID;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)sport);
    } else {
        struct sockaddr_in6 *sin6 =
            (struct sockaddr_in6 *)(void *)&out->source;
        struct in6_addr      dst;

        if (inet_pton(AF_INET6, fields[1], &sin6->sin6_addr) != 1 ||
            inet_pton(AF_INET6, fields[2], &dst) != 1)
            return PROXY_HEADER_INVALID;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)sport);
    }
    return PROXY_HEADER_OK;
}


/*
 * Version 2: the 12-octet signature, version and command, family and
 * transport, the length of the rest (big-endian), then the addresses and
 * optional TLVs, which are skipped.
 */
static enum proxy_header_status
proxy_header_parse_v2(const unsigned char *buf, size_t len,
                      struct proxy_header *out)
{
    size_t        check = len < sizeof(proxy_header_v2_signature)
                              ? len
                              : sizeof(proxy_header_v2_signature);
    unsigned      version, command, family;
    size_t        body_len;
    const unsigned char *body;

    if (memcmp(buf, proxy_header_v2_signature, check) != 0)
        return PROXY_HEADER_INVALID;
    if (len < 13)
        return PROXY_HEADER_INCOMPLETE;

    version = buf[12] >> 4;
    command = buf[12] & 0x0f;
    if (version != 2 || command > 1)
        return PROXY_HEADER_INVALID;
    if (len < 16)
        return PROXY_HEADER_INCOMPLETE;

    family = buf[13];
    body_len = ((size_t)buf[14] << 8) | buf[15];
    if (body_len > PROXY_HEADER_V2_BODY_MAX)
        return PROXY_HEADER_INVALID;
    if (len < 16 + body_len)
        return PROXY_HEADER_INCOMPLETE;

    out->version = 2;
    out->length = 16 + body_len;
    body = buf + 16;

    /* LOCAL: the proxy's own connection, such as a health check. */
    if (command == 0) {
        out->local = true;
        return PROXY_HEADER_OK;
    }

    switch (family) {
    case 0x11: {        /* TCP over IPv4 */
        struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&out->source;

        if (body_len < 12)
            return PROXY_HEADER_INVALID;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, body, 4);
        memcpy(&sin->sin_port, body + 8, 2);
        return PROXY_HEADER_OK;
    }
    case 0x21: {        /* TCP over IPv6 */
        struct sockaddr_in6 *sin6 =
            (struct sockaddr_in6 *)(void *)&out->source;

        if (body_len < 36)
            return PROXY_HEADER_INVALID;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, body, 16);
        memcpy(&sin6->sin6_port, body + 32, 2);
        return PROXY_HEADER_OK;
    }
    case 0x00:          /* unspecified */
    case 0x31:          /* UNIX stream socket */
        out->local = true;
        return PROXY_HEADER_OK;
    default:            /* UDP, UNIX datagram or unknown: not SMTP */
        return PROXY_HEADER_INVALID;
    }
}

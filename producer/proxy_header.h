/*
 * proxy_header: the PROXY protocol header, versions 1 (text) and 2
 * (binary), that a load balancer sends before the client's first octet to
 * pass on the client's address. The format is HAProxy's specification
 * "The PROXY protocol", versions 1 and 2.
 *
 * proxy_header_parse() reads from the start of the connection's input
 * and may be called again as more arrives. It never reads past len, and
 * rejects a header longer than PROXY_HEADER_MAX.
 */
#ifndef FERRY_PROXY_HEADER_H
#define FERRY_PROXY_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Maximum length of a version 1 header, CRLF included. */
#define PROXY_HEADER_V1_MAX  107

/*
 * Maximum length of the address and TLV part of a version 2 header.
 * Addresses take at most 216 octets; the rest is room for TLVs such as
 * those of cloud load balancers.
 */
#define PROXY_HEADER_V2_BODY_MAX  2048

/* Maximum length of any header this parser accepts. */
#define PROXY_HEADER_MAX  (16 + PROXY_HEADER_V2_BODY_MAX)

enum proxy_header_status {
    PROXY_HEADER_INCOMPLETE,    /* valid so far, more octets needed */
    PROXY_HEADER_OK,
    PROXY_HEADER_INVALID        /* not a header, malformed or too long */
};

struct proxy_header {
    int                     version;    /* 1 or 2 */
    size_t                  length;     /* octets of the header */

    /*
     * True when the header carries no client address: version 1
     * UNKNOWN, version 2 LOCAL (a health check of the proxy itself),
     * or an unspecified or UNIX socket address. The connection's own
     * address then applies.
     */
    bool                    local;
    struct sockaddr_storage source;     /* the client, unless local */
};

enum proxy_header_status proxy_header_parse(const unsigned char *buf,
                                            size_t len,
                                            struct proxy_header *out);

#endif

/*
 * ctl_dns: DNS lookups for ferryctl through libresolv, against the
 * system's resolvers (/etc/resolv.conf) or one IPv4 server given as
 * HOST:PORT.
 *
 * Queries go out over UDP with a fallback to TCP for truncated answers,
 * as res_nquery() does. Only the answer section is read, and only its
 * records of the requested type. A CNAME is not chased here, so a record
 * behind one is found only when the resolver returns both.
 */
#ifndef FERRY_CTL_DNS_H
#define FERRY_CTL_DNS_H

#include <stddef.h>

/* At most this many records of one type are kept per name. */
#define CTL_DNS_MAX_RECORDS 16

/* The longest TXT record kept, its strings joined, with the NUL. */
#define CTL_DNS_MAX_TEXT 1024

enum ctl_dns_type {
    CTL_DNS_TXT,
    CTL_DNS_CNAME,
    CTL_DNS_MX
};

enum ctl_dns_status {
    CTL_DNS_FOUND,          /* at least one record of the type */
    CTL_DNS_NO_RECORD,      /* NXDOMAIN, or the name has no such record */
    CTL_DNS_FAILED          /* timeout, SERVFAIL, or a malformed answer */
};

/*
 * Records of one type at one name. TXT: the record's character-strings
 * joined without separators (RFC 7208 section 3.3). CNAME: the target.
 * MX: the exchange. Names are lowercase and without the final dot.
 */
struct ctl_dns_answer {
    char   records[CTL_DNS_MAX_RECORDS][CTL_DNS_MAX_TEXT];
    size_t count;
};

struct ctl_dns;

/*
 * Creates a resolver. server is NULL for the system's resolvers, or
 * "HOST" or "HOST:PORT" with an IPv4 address (port 53 by default).
 * Returns NULL and fills err when server is invalid or libresolv fails to
 * initialise.
 */
struct ctl_dns *ctl_dns_new(const char *server, char *err, size_t errlen);
void ctl_dns_free(struct ctl_dns *dns);

/*
 * Checks that server is "IPV4" or "IPV4:PORT" with a port from 1 to
 * 65535. Returns -1 and fills err otherwise.
 */
int ctl_dns_parse_server(const char *server, char *host, size_t hostlen,
                         unsigned *port, char *err, size_t errlen);

/*
 * Looks up the records of type at name. Fills answer on CTL_DNS_FOUND,
 * and err with the reason on CTL_DNS_FAILED.
 */
enum ctl_dns_status ctl_dns_lookup(struct ctl_dns *dns, const char *name,
                                   enum ctl_dns_type type,
                                   struct ctl_dns_answer *answer, char *err,
                                   size_t errlen);

const char *ctl_dns_type_name(enum ctl_dns_type type);

#endif

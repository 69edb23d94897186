#include "ctl_dns.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/*
 * Seconds to wait for one answer, and attempts per server. glibc's
 * defaults (5 s, 2 attempts) would let one dead server stall the check
 * for 10 s per name.
 */
#define CTL_DNS_TIMEOUT_S 2
#define CTL_DNS_ATTEMPTS  2

/* Largest answer read, the TCP maximum. */
#define CTL_DNS_MAX_ANSWER 65535

struct ctl_dns {
    struct __res_state res;
    unsigned char      buf[CTL_DNS_MAX_ANSWER];
};

static int ctl_dns_read_record(const ns_msg *msg, const ns_rr *rr,
                               enum ctl_dns_type type, char *out,
                               size_t size);
static void ctl_dns_lowercase(char *s);


int
ctl_dns_parse_server(const char *server, char *host, size_t hostlen,
                     unsigned *port, char *err, size_t errlen)
{
    const char    *colon = strchr(server, ':');
    size_t         len = colon != NULL ? (size_t)(colon - server)
                                       : strlen(server);
    struct in_addr addr;
    char           buf[INET_ADDRSTRLEN];
    char          *end;
    unsigned long  value;

    if (len == 0 || len >= sizeof(buf) || len >= hostlen) {
        snprintf(err, errlen, "invalid resolver '%s': expected an IPv4 "
                 "address, optionally with :PORT", server);
        return -1;
    }
    memcpy(buf, server, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, &addr) != 1) {
        snprintf(err, errlen, "invalid resolver '%s': '%s' is not an IPv4 "
                 "address", server, buf);
        return -1;
    }
    *port = 53;
    if (colon != NULL) {
        errno = 0;
        value = strtoul(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end != '\0' || errno != 0 || value == 0 ||
            value > 65535 || !isdigit((unsigned char)colon[1])) {
            snprintf(err, errlen, "invalid resolver '%s': the port must "
                     "be from 1 to 65535", server);
            return -1;
        }
        *port = (unsigned)value;
    }
    memcpy(host, buf, len + 1);
    return 0;
}


struct ctl_dns *
ctl_dns_new(const char *server, char *err, size_t errlen)
{
    struct ctl_dns    *dns;
    struct sockaddr_in sin;
    char               host[INET_ADDRSTRLEN];
    unsigned           port = 53;

    memset(&sin, 0, sizeof(sin));
    if (server != NULL) {
        if (ctl_dns_parse_server(server, host, sizeof(host), &port, err,
                                 errlen) == -1)
            return NULL;
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, host, &sin.sin_addr);
    }

    dns = xcalloc(1, sizeof(*dns));
    if (res_ninit(&dns->res) != 0) {
        snprintf(err, errlen, "libresolv failed to initialise (res_ninit)");
        free(dns);
        return NULL;
    }
    dns->res.retrans = CTL_DNS_TIMEOUT_S;
    dns->res.retry = CTL_DNS_ATTEMPTS;
    /*
     * res_nsend() reads the public server list of the res_state on every
     * query. glibc (2.36 here) notices the change and closes the sockets
     * it kept for the servers of resolv.conf.
     */
    if (server != NULL) {
        dns->res.nscount = 1;
        dns->res.nsaddr_list[0] = sin;
    }
    return dns;
}


void
ctl_dns_free(struct ctl_dns *dns)
{
    if (dns == NULL)
        return;
    res_nclose(&dns->res);
    free(dns);
}


enum ctl_dns_status
ctl_dns_lookup(struct ctl_dns *dns, const char *name,
               enum ctl_dns_type type, struct ctl_dns_answer *answer,
               char *err, size_t errlen)
{
    static const int qtypes[] = { ns_t_txt, ns_t_cname, ns_t_mx };
    ns_msg           msg;
    ns_rr            rr;
    int              len;

    answer->count = 0;
    len = res_nquery(&dns->res, name, ns_c_in, qtypes[type], dns->buf,
                     sizeof(dns->buf));
    if (len < 0) {
        switch (dns->res.res_h_errno) {
        case HOST_NOT_FOUND:
        case NO_DATA:
            return CTL_DNS_NO_RECORD;
        case TRY_AGAIN:
            snprintf(err, errlen, "%s lookup of %s failed: no answer or "
                     "SERVFAIL", ctl_dns_type_name(type), name);
            return CTL_DNS_FAILED;
        default:
            snprintf(err, errlen, "%s lookup of %s failed: %s",
                     ctl_dns_type_name(type), name,
                     hstrerror(dns->res.res_h_errno));
            return CTL_DNS_FAILED;
        }
    }
    if (len > (int)sizeof(dns->buf))
        len = (int)sizeof(dns->buf);
    if (ns_initparse(dns->buf, len, &msg) == -1) {
        snprintf(err, errlen, "%s lookup of %s: malformed answer",
                 ctl_dns_type_name(type), name);
        return CTL_DNS_FAILED;
    }

    for (int i = 0; i < ns_msg_count(msg, ns_s_an); i++) {
        if (ns_parserr(&msg, ns_s_an, i, &rr) == -1) {
            snprintf(err, errlen, "%s lookup of %s: malformed record",
                     ctl_dns_type_name(type), name);
            return CTL_DNS_FAILED;
        }
        if ((int)ns_rr_type(rr) != qtypes[type] ||
            ns_rr_class(rr) != ns_c_in)
            continue;
        if (answer->count == CTL_DNS_MAX_RECORDS)
            break;
        if (ctl_dns_read_record(&msg, &rr, type,
                                answer->records[answer->count],
                                CTL_DNS_MAX_TEXT) == -1) {
            snprintf(err, errlen, "%s lookup of %s: malformed record data",
                     ctl_dns_type_name(type), name);
            return CTL_DNS_FAILED;
        }
        answer->count++;
    }
    return answer->count > 0 ? CTL_DNS_FOUND : CTL_DNS_NO_RECORD;
}


const char *
ctl_dns_type_name(enum ctl_dns_type type)
{
    static const char *const names[] = { "TXT", "CNAME", "MX" };

    return names[type];
}


/*
 * Writes one record's data into out: a TXT record's strings joined (cut
 * at size - 1 bytes), or a CNAME target or MX exchange in lowercase.
 */
static int
ctl_dns_read_record(const ns_msg *msg, const ns_rr *rr,
                    enum ctl_dns_type type, char *out, size_t size)
{
    const unsigned char *rdata = ns_rr_rdata(*rr);
    size_t               rdlen = ns_rr_rdlen(*rr);
    size_t               used = 0;

    if (type == CTL_DNS_TXT) {
        for (size_t pos = 0; pos < rdlen;) {
            size_t n = rdata[pos++];

            if (pos + n > rdlen)
                return -1;
            if (used + n >= size)
                n = size - 1 - used;
            memcpy(out + used, rdata + pos, n);
            used += n;
            pos += rdata[pos - 1];
        }
        out[used] = '\0';
        return 0;
    }

    /* An MX record's exchange follows its 16-bit preference. */
    if (type == CTL_DNS_MX) {
        if (rdlen < 3)
            return -1;
        rdata += 2;
    }
    if (dn_expand(ns_msg_base(*msg), ns_msg_end(*msg), rdata, out,
                  (int)size) < 0)
        return -1;
    ctl_dns_lowercase(out);
    return 0;
}


static void
ctl_dns_lowercase(char *s)
{
    for (; *s != '\0'; s++)
        *s = (char)tolower((unsigned char)*s);
}

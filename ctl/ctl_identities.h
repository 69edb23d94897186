/*
 * ctl_identities: "ferryctl identities check". For every organization and
 * every region it sends from, it checks that each of its domains is a
 * verified identity in SES there (GetEmailIdentity). It also checks the
 * DNS records that sending from that region needs: the SPF TXT record of
 * the MAIL FROM domain, the Easy DKIM CNAME records, and the MX record of
 * a custom MAIL FROM domain.
 */
#ifndef FERRY_CTL_IDENTITIES_H
#define FERRY_CTL_IDENTITIES_H

#include <stdbool.h>
#include <stddef.h>

/* Easy DKIM tokens kept per identity; SES issues three. */
#define CTL_IDENTITY_MAX_TOKENS 8

/* The parsed command line of "ferryctl identities". */
struct ctl_identities_args {
    const char *config_path;
    const char *resolver;       /* NULL: the system's resolvers */
    bool        json;
    bool        help;
};

/* The parts of a GetEmailIdentity response the checks use. */
struct ctl_identity_info {
    bool   verified;                /* VerifiedForSendingStatus */
    char   verification_status[32]; /* VerificationStatus, "" if absent */
    char   dkim_origin[32];         /* AWS_SES, EXTERNAL or "" */
    char   dkim_status[32];
    char   tokens[CTL_IDENTITY_MAX_TOKENS][64];
    size_t ntokens;
    char   mail_from_domain[256];   /* "" without a custom MAIL FROM */
};

/*
 * Parses argv (argv[0] is "identities") into args. Returns -1 and fills
 * err on a usage error: a missing or unknown action, a missing -c, an
 * invalid --resolver, or an unknown option. Resets getopt's state first.
 */
int ctl_identities_parse(int argc, char **argv,
                         struct ctl_identities_args *args, char *err,
                         size_t errlen);

/*
 * Reads a GetEmailIdentity response body into info. Returns -1 and fills
 * err when the body is not a JSON object.
 */
int ctl_identities_parse_identity(const char *body, size_t len,
                                  struct ctl_identity_info *info, char *err,
                                  size_t errlen);

/*
 * True when txt is an SPF record: "v=spf1" followed by a space or the end
 * (RFC 7208 section 4.5), compared case-insensitively.
 */
bool ctl_identities_is_spf(const char *txt);

/*
 * True when the SPF record txt has the mechanism include:amazonses.com
 * with the pass qualifier ("+" or none), compared case-insensitively.
 */
bool ctl_identities_spf_allows_ses(const char *txt);

/*
 * True when target is the CNAME target Easy DKIM expects for token:
 * TOKEN.dkim.amazonses.com, or TOKEN.dkim.REGION.amazonses.com.
 */
bool ctl_identities_dkim_target_ok(const char *target, const char *token,
                                   const char *region);

int ctl_identities_main(int argc, char **argv);

#endif

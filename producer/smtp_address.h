/*
 * smtp_address: the path argument of MAIL FROM and RCPT TO.
 *
 * Parses "<local@domain>" as RFC 5321 section 4.1.2 defines a Path, and
 * classifies the shapes an open-relay probe uses, so the session can reject
 * them by name instead of handing them to a later hop that might route on
 * them. Without SMTPUTF8 an address must be ASCII.
 */
#ifndef FERRY_SMTP_ADDRESS_H
#define FERRY_SMTP_ADDRESS_H

#include <stddef.h>

/* Maximum lengths; a Path is at most 256 octets with its brackets. */
#define SMTP_ADDRESS_MAX        254
#define SMTP_ADDRESS_LOCAL_MAX  64
#define SMTP_ADDRESS_DOMAIN_MAX 253

enum smtp_address_status {
    SMTP_ADDRESS_OK,
    SMTP_ADDRESS_NULL,          /* "<>", the null reverse-path */
    SMTP_ADDRESS_SYNTAX,        /* not a mailbox in angle brackets */
    SMTP_ADDRESS_TOO_LONG,      /* local part, domain or path too long */
    SMTP_ADDRESS_NON_ASCII,     /* an octet >= 0x80 without SMTPUTF8 */
    SMTP_ADDRESS_SOURCE_ROUTE,  /* "<@relay:user@domain>" */
    SMTP_ADDRESS_PERCENT_HACK,  /* "user%other@domain" */
    SMTP_ADDRESS_BANG_PATH,     /* "host!user@domain" */
    SMTP_ADDRESS_QUOTED_AT,     /* "\"user@other\"@domain" */
    SMTP_ADDRESS_LITERAL        /* "user@[192.0.2.1]" */
};

/*
 * Parses the path at the start of text. On SMTP_ADDRESS_OK writes the
 * mailbox without brackets into mailbox, which must hold
 * SMTP_ADDRESS_MAX + 1 octets. Whenever the closing bracket was found,
 * *rest points just past it, at the ESMTP parameters. Otherwise *rest is
 * NULL.
 */
enum smtp_address_status smtp_address_parse(const char *text, char *mailbox,
                                            size_t size, const char **rest);

/* Returns the domain of a parsed mailbox: the part after its last '@'. */
const char *smtp_address_domain(const char *mailbox);

#endif

#include "smtp_address.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

/* Maximum length of a domain label (RFC 1035 section 2.3.4). */
#define SMTP_ADDRESS_LABEL_MAX 63

static bool smtp_address_is_atext(unsigned char c);
static const char *smtp_address_find_close(const char *open);
static enum smtp_address_status smtp_address_check_quoted(const char *p,
                                                           size_t len,
                                                           size_t *used);
static enum smtp_address_status smtp_address_check_dot_string(const char *p,
                                                              size_t len,
                                                              size_t *used);
static enum smtp_address_status smtp_address_check_domain(const char *p,
                                                          size_t len);


/* RFC 5322 atext: the characters of an atom. */
static bool
smtp_address_is_atext(unsigned char c)
{
    return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c));
}


/*
 * Finds the '>' that closes the path opened at open, skipping over a quoted
 * local part, which may contain '>'.
 */
static const char *
smtp_address_find_close(const char *open)
{
    bool        quoted = false;
    const char *p;

    for (p = open + 1; *p != '\0'; p++) {
        if (quoted && *p == '\\') {
            if (p[1] == '\0')
                return NULL;
            p++;
        } else if (*p == '"') {
            quoted = !quoted;
        } else if (!quoted && *p == '>') {
            return p;
        }
    }
    return NULL;
}


/* Checks a Quoted-string local part. *used counts both quotes. */
static enum smtp_address_status
smtp_address_check_quoted(const char *p, size_t len, size_t *used)
{
    bool   at = false, percent = false, bang = false;
    size_t i;

    for (i = 1; i < len && p[i] != '"'; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c == '\\') {
            if (++i == len)
                return SMTP_ADDRESS_SYNTAX;
            c = (unsigned char)p[i];
        }
        if (c < 0x20 || c > 0x7e)
            return SMTP_ADDRESS_SYNTAX;
        at |= c == '@';
        percent |= c == '%';
        bang |= c == '!';
    }
    if (i == len)
        return SMTP_ADDRESS_SYNTAX;
    *used = i + 1;

    if (at)
        return SMTP_ADDRESS_QUOTED_AT;
    if (percent)
        return SMTP_ADDRESS_PERCENT_HACK;
    if (bang)
        return SMTP_ADDRESS_BANG_PATH;
    return SMTP_ADDRESS_OK;
}


/* Checks a Dot-string local part, which ends at the first '@'. */
static enum smtp_address_status
smtp_address_check_dot_string(const char *p, size_t len, size_t *used)
{
    bool   percent = false, bang = false;
    size_t i;

    for (i = 0; i < len && p[i] != '@'; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c == '.') {
            if (i == 0 || p[i - 1] == '.')
                return SMTP_ADDRESS_SYNTAX;
        } else if (!smtp_address_is_atext(c)) {
            return SMTP_ADDRESS_SYNTAX;
        }
        percent |= c == '%';
        bang |= c == '!';
    }
    if (i == 0 || p[i - 1] == '.')
        return SMTP_ADDRESS_SYNTAX;
    *used = i;

    if (percent)
        return SMTP_ADDRESS_PERCENT_HACK;
    if (bang)
        return SMTP_ADDRESS_BANG_PATH;
    return SMTP_ADDRESS_OK;
}


/* Checks a Domain: dot-separated labels of letters, digits and hyphens. */
static enum smtp_address_status
smtp_address_check_domain(const char *p, size_t len)
{
    size_t label = 0;

    if (len == 0)
        return SMTP_ADDRESS_SYNTAX;
    if (p[0] == '[')
        return p[len - 1] == ']' ? SMTP_ADDRESS_LITERAL : SMTP_ADDRESS_SYNTAX;
    if (len > SMTP_ADDRESS_DOMAIN_MAX)
        return SMTP_ADDRESS_TOO_LONG;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c == '.') {
            if (label == 0 || p[i - 1] == '-')
                return SMTP_ADDRESS_SYNTAX;
            label = 0;
        } else if (isalnum(c) || c == '-') {
            if (label == 0 && c == '-')
                return SMTP_ADDRESS_SYNTAX;
            if (++label > SMTP_ADDRESS_LABEL_MAX)
                return SMTP_ADDRESS_TOO_LONG;
        } else {
            return SMTP_ADDRESS_SYNTAX;
        }
    }
    if (label == 0 || p[len - 1] == '-')
        return SMTP_ADDRESS_SYNTAX;
    return SMTP_ADDRESS_OK;
}


enum smtp_address_status
smtp_address_parse(const char *text, char *mailbox, size_t size,
                   const char **rest)
{
    enum smtp_address_status status;
    enum smtp_address_status domain;
    const char              *close;
    const char              *inner;
    size_t                   len;
    size_t                   local = 0;

    *rest = NULL;
    if (text[0] != '<' || (close = smtp_address_find_close(text)) == NULL)
        return SMTP_ADDRESS_SYNTAX;
    *rest = close + 1;
    inner = text + 1;
    len = (size_t)(close - inner);

    if (len == 0)
        return SMTP_ADDRESS_NULL;

    /* Checked first, because any other verdict on 8-bit bytes would mislead. */
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)inner[i] >= 0x80)
            return SMTP_ADDRESS_NON_ASCII;

    /* An A-d-l ("@one,@two:") before the mailbox is a source route. */
    if (inner[0] == '@')
        return memchr(inner, ':', len) != NULL ? SMTP_ADDRESS_SOURCE_ROUTE
                                               : SMTP_ADDRESS_SYNTAX;

    if (len > SMTP_ADDRESS_MAX || len >= size)
        return SMTP_ADDRESS_TOO_LONG;

    if (inner[0] == '"')
        status = smtp_address_check_quoted(inner, len, &local);
    else
        status = smtp_address_check_dot_string(inner, len, &local);
    if (status == SMTP_ADDRESS_SYNTAX)
        return status;
    if (local == len || inner[local] != '@')
        return SMTP_ADDRESS_SYNTAX;
    if (local > SMTP_ADDRESS_LOCAL_MAX)
        return SMTP_ADDRESS_TOO_LONG;

    /*
     * A relay-probe shape is reported only when the domain is valid too, so
     * plain junk gets a syntax error rather than a policy one.
     */
    domain = smtp_address_check_domain(inner + local + 1, len - local - 1);
    if (domain == SMTP_ADDRESS_SYNTAX || domain == SMTP_ADDRESS_TOO_LONG)
        return domain;
    if (status != SMTP_ADDRESS_OK)
        return status;
    if (domain != SMTP_ADDRESS_OK)
        return domain;

    memcpy(mailbox, inner, len);
    mailbox[len] = '\0';
    return SMTP_ADDRESS_OK;
}


const char *
smtp_address_domain(const char *mailbox)
{
    const char *at = strrchr(mailbox, '@');

    return at != NULL ? at + 1 : "";
}

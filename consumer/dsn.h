/*
 * dsn: the delivery status notification (RFC 3464) that goes back to the
 * sender of a message SES rejected for good, when deliver.dsn_from is set.
 *
 * The worker does not send it to SES itself. It produces the notification
 * as a new envelope to the topic the rejected message came from, together
 * with the dead-letter records, so the notification is delivered through
 * the same path, retries and region as any other message.
 */
#ifndef FERRY_DSN_H
#define FERRY_DSN_H

#include <stddef.h>
#include <stdint.h>

#include "envelope.h"

/* Maximum octets quoted from the rejected message's header section. */
#define DSN_MAX_HEADERS 65536

struct dsn_report {
    const struct envelope *env;         /* the rejected message, whole */
    const char            *dsn_from;    /* From and envelope sender */
    const char            *reporting_mta;   /* host name */
    const char            *region;      /* SES region that rejected it */
    const char            *error_code;  /* e.g. MessageRejected */
    const char            *reason;      /* SES's message, one line */
    const char            *dsn_id;      /* envelope id of the DSN */
    int64_t                now_ms;      /* wall clock, for Date */
};

/*
 * Returns 1 when a rejection of env should be reported to its sender: a
 * sender is set, and it is neither dsn_from nor the sender of a delivery
 * status notification (Content-Type multipart/report with
 * report-type=delivery-status), so notifications never loop.
 */
int dsn_wanted(const struct envelope *env, const char *dsn_from);

/* Returns the enhanced status code (RFC 3463) reported for error_code. */
const char *dsn_status(const char *error_code);

/*
 * Returns the notification as a malloc'd message with CRLF line ends, and
 * its length in *len.
 */
unsigned char *dsn_format(const struct dsn_report *r, size_t *len);

/*
 * Returns the envelope that carries the notification to the rejected
 * message's sender, from r->dsn_from, in the message's organization and
 * region. The caller frees it with envelope_free().
 */
struct envelope *dsn_envelope(const struct dsn_report *r);

#endif

/*
 * ctl_trace: "ferryctl trace", which finds one message by envelope id or
 * Message-ID in the mail topics of a bounded time window and reports
 * whether it was delivered, dead-lettered or is still waiting.
 */
#ifndef FERRY_CTL_TRACE_H
#define FERRY_CTL_TRACE_H

#include <stdbool.h>
#include <stddef.h>

/* True when text has the shape of an envelope id (26 Crockford base32). */
bool ctl_trace_is_envelope_id(const char *text);

/*
 * Writes the Message-ID of a message's header section into out, unfolded
 * and without angle brackets or surrounding spaces. Returns -1 when the
 * header section, which ends at the first empty line, has none.
 */
int ctl_trace_message_id(const unsigned char *message, size_t len,
                         char *out, size_t size);

/* Writes value without surrounding spaces and angle brackets into out. */
void ctl_trace_normalize_id(const char *value, char *out, size_t size);

int ctl_trace_main(int argc, char **argv);

#endif

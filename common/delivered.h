/*
 * delivered: the ferry.delivered record written after SES accepted a
 * message, and its wire codec (proto/delivered.proto).
 */
#ifndef FERRY_DELIVERED_H
#define FERRY_DELIVERED_H

#include <stddef.h>
#include <stdint.h>

#include "envelope.h"

/* The topic of these records. */
#define DELIVERED_TOPIC "ferry.delivered"

struct delivered {
    char    envelope_id[ENVELOPE_ID_LEN + 1];
    char    source_topic[256];
    int32_t source_partition;
    int64_t source_offset;
    char    region[64];
    char    ses_message_id[256];
    int64_t delivered_at_ms;
};

/* Returns a malloc'd buffer the caller frees, and its length in *len. */
unsigned char *delivered_encode(const struct delivered *d, size_t *len);
int delivered_decode(const void *buf, size_t len, struct delivered *d);

#endif

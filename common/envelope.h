/*
 * envelope: one accepted message (or one chunk of it) and its wire codec.
 *
 * This is the only interface to proto/envelope.proto; no other file includes
 * the generated protobuf-c types.
 */
#ifndef FERRY_ENVELOPE_H
#define FERRY_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define ENVELOPE_ID_LEN 26

struct envelope {
    char                  id[ENVELOPE_ID_LEN + 1];
    char                 *org;
    char                 *home_region;
    bool                  multi_region;
    enum integration_mode integration;

    char                 *sender;
    char                **recipients;
    size_t                nrecipients;

    char                 *client_address;
    char                 *helo;
    char                 *tls;              /* "" when not encrypted */
    int64_t               received_at_ms;

    uint64_t              size;             /* whole message */
    unsigned char         sha256[32];       /* of the whole message */

    uint32_t              chunk_index;
    uint32_t              chunk_count;
    unsigned char        *message;          /* this chunk's bytes */
    size_t                message_len;
};

/*
 * Writes a new id: 48 bits of milliseconds since the epoch and 80 random
 * bits, in Crockford base32, so ids sort by time and are valid SES tag
 * values.
 */
void envelope_id_new(char id[ENVELOPE_ID_LEN + 1]);

/* Returns a malloc'd buffer the caller frees, and its length in *len. */
unsigned char *envelope_encode(const struct envelope *env, size_t *len);

/* Returns NULL and fills err when buf is not a valid envelope. */
struct envelope *envelope_decode(const void *buf, size_t len, char *err,
                                 size_t errlen);

void envelope_free(struct envelope *env);

#endif

#include "envelope.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.pb-c.h"
#include "util.h"

static const char envelope_base32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";


void
envelope_id_new(char id[ENVELOPE_ID_LEN + 1])
{
    unsigned char bytes[16];
    uint64_t      ms = (uint64_t)util_now_ms();
    unsigned      acc = 0;
    int           bits = 0;
    size_t        n = 0;

    for (int i = 0; i < 6; i++)
        bytes[i] = (unsigned char)(ms >> (40 - 8 * i));
    if (RAND_bytes(bytes + 6, 10) != 1) {
        /* The id only needs to be unique, not secret. */
        for (int i = 6; i < 16; i++)
            bytes[i] = (unsigned char)random();
    }

    /* 128 bits make 26 base32 digits, the first one holding 3 bits. */
    acc = bytes[0] >> 5;
    id[n++] = envelope_base32[acc];
    acc = bytes[0] & 0x1f;
    bits = 5;
    for (int i = 1; i < 16; i++) {
        acc = (acc << 8) | bytes[i];
        bits += 8;
        while (bits >= 5) {
            id[n++] = envelope_base32[(acc >> (bits - 5)) & 0x1f];
            bits -= 5;
        }
    }
    id[n] = '\0';
}


unsigned char *
envelope_encode(const struct envelope *env, size_t *len)
{
    Ferry__Envelope pb = FERRY__ENVELOPE__INIT;
    unsigned char  *buf;

    pb.id = (char *)env->id;
    pb.org = env->org ? env->org : "";
    pb.home_region = env->home_region ? env->home_region : "";
    pb.multi_region = env->multi_region;
    pb.integration = (Ferry__Integration)env->integration;
    pb.sender = env->sender ? env->sender : "";
    pb.n_recipients = env->nrecipients;
    pb.recipients = env->recipients;
    pb.client_address = env->client_address ? env->client_address : "";
    pb.helo = env->helo ? env->helo : "";
    pb.tls = env->tls ? env->tls : "";
    pb.received_at_ms = env->received_at_ms;
    pb.size = env->size;
    pb.sha256.data = (uint8_t *)env->sha256;
    pb.sha256.len = sizeof(env->sha256);
    pb.chunk_index = env->chunk_index;
    pb.chunk_count = env->chunk_count;
    pb.message.data = env->message;
    pb.message.len = env->message_len;

    *len = ferry__envelope__get_packed_size(&pb);
    buf = xmalloc(*len);
    ferry__envelope__pack(&pb, buf);
    return buf;
}


struct envelope *
envelope_decode(const void *buf, size_t len, char *err, size_t errlen)
{
    Ferry__Envelope *pb;
    struct envelope *env;

    pb = ferry__envelope__unpack(NULL, len, buf);
    if (pb == NULL) {
        snprintf(err, errlen, "record is not a valid envelope (%zu bytes)",
                 len);
        return NULL;
    }
    if (strlen(pb->id) != ENVELOPE_ID_LEN) {
        snprintf(err, errlen, "envelope id '%.40s' is not %d characters",
                 pb->id, ENVELOPE_ID_LEN);
        goto fail;
    }
    if (pb->sha256.len != 32) {
        snprintf(err, errlen, "envelope %s: sha256 has %zu bytes, not 32",
                 pb->id, pb->sha256.len);
        goto fail;
    }
    if (pb->chunk_count == 0 || pb->chunk_index >= pb->chunk_count) {
        snprintf(err, errlen, "envelope %s: chunk %u of %u is invalid",
                 pb->id, pb->chunk_index, pb->chunk_count);
        goto fail;
    }
    if (pb->integration > FERRY__INTEGRATION__INTEGRATION_JOURNALING) {
        snprintf(err, errlen, "envelope %s: unknown integration %d",
                 pb->id, (int)pb->integration);
        goto fail;
    }

    env = xcalloc(1, sizeof(*env));
    memcpy(env->id, pb->id, ENVELOPE_ID_LEN + 1);
    env->org = xstrdup(pb->org);
    env->home_region = xstrdup(pb->home_region);
    env->multi_region = pb->multi_region;
    env->integration = (enum integration_mode)pb->integration;
    env->sender = xstrdup(pb->sender);
    env->nrecipients = pb->n_recipients;
    env->recipients = xcalloc(pb->n_recipients + 1, sizeof(char *));
    for (size_t i = 0; i < pb->n_recipients; i++)
        env->recipients[i] = xstrdup(pb->recipients[i]);
    env->client_address = xstrdup(pb->client_address);
    env->helo = xstrdup(pb->helo);
    env->tls = xstrdup(pb->tls);
    env->received_at_ms = pb->received_at_ms;
    env->size = pb->size;
    memcpy(env->sha256, pb->sha256.data, 32);
    env->chunk_index = pb->chunk_index;
    env->chunk_count = pb->chunk_count;
    env->message_len = pb->message.len;
    env->message = xmalloc(pb->message.len);
    if (pb->message.len > 0)
        memcpy(env->message, pb->message.data, pb->message.len);

    ferry__envelope__free_unpacked(pb, NULL);
    return env;

fail:
    ferry__envelope__free_unpacked(pb, NULL);
    return NULL;
}


void
envelope_free(struct envelope *env)
{
    if (env == NULL)
        return;

    free(env->org);
    free(env->home_region);
    free(env->sender);
    for (size_t i = 0; i < env->nrecipients; i++)
        free(env->recipients[i]);
    free(env->recipients);
    free(env->client_address);
    free(env->helo);
    free(env->tls);
    free(env->message);
    free(env);
}

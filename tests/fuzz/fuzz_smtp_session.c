/*
 * libFuzzer target over the SMTP session: arbitrary client octets, fed in
 * arbitrary splits, with produce outcomes, AUTH check outcomes, timeouts,
 * shutdowns and TLS handshakes at arbitrary points.
 *
 * Input layout: octet 0 selects the configuration and the events that may
 * happen, octet 1 seeds the generator of split sizes and outcomes, and
 * the rest is what the client sends. The seed corpus, made from the
 * dialogues in tests/smtp by tests/fuzz/make_seeds.py, starts with two
 * such octets.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "envelope.h"
#include "log.h"
#include "smtp_session.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Event flags of octet 0. */
#define FUZZ_TLS_CONFIG   0x01  /* STARTTLS offered, then AUTH */
#define FUZZ_IPV6_CLIENT  0x02
#define FUZZ_TIMEOUTS     0x04  /* smtp_session_timeout() between feeds */
#define FUZZ_SHUTDOWN     0x08  /* smtp_session_shutdown() between feeds */
#define FUZZ_REJECT       0x10  /* produce() and auth() may fail at once */

static const char *fuzz_yaml =
    "kafka:\n"
    "  bootstrap_servers: 127.0.0.1:19092\n"
    "ingress:\n"
    "  hostname: mx.test\n"
    "  regions: [us-east-1, eu-west-1]\n"
    "  max_message_size: 300000\n"
    "  chunk_size: 1024\n"
    "  max_recipients: 3\n"
    "  max_commands: 200\n"
    "  max_errors: 30\n"
    "%s"
    "regions:\n"
    "  us-east-1:\n"
    "  eu-west-1:\n"
    "organizations:\n"
    "  - name: acme\n"
    "    home_region: us-east-1\n"
    "    domains: [acme.example, example.com]\n"
    "    networks: [127.0.0.0/8, \"::1/128\"]\n"
    "    multi_region: true\n"
    "  - name: bergmann\n"
    "    home_region: eu-west-1\n"
    "    domains: [bergmann.example]\n"
    "    networks: [127.0.0.0/8]\n"
    "    multi_region: false\n";

static struct config *fuzz_cfg;
static struct config *fuzz_tls_cfg;

struct fuzz_run {
    uint32_t rng;
    uint8_t  flags;
    size_t   records;
};


/* A small xorshift generator, so a run depends on its input only. */
static uint32_t
fuzz_next(struct fuzz_run *run)
{
    run->rng ^= run->rng << 13;
    run->rng ^= run->rng >> 17;
    run->rng ^= run->rng << 5;
    return run->rng;
}


static void
fuzz_send(void *arg, const char *data, size_t len)
{
    (void)arg;

    /* Every reply is one or more whole CRLF lines. */
    if (len < 2 || data[len - 2] != '\r' || data[len - 1] != '\n')
        abort();
}


static enum smtp_produce_status
fuzz_produce(void *arg, const char *topic, const struct envelope *env)
{
    struct fuzz_run *run = arg;
    unsigned char   *buf;
    size_t           len;
    char             err[256];
    struct envelope *back;

    (void)topic;
    if ((run->flags & FUZZ_REJECT) && fuzz_next(run) % 8 == 0)
        return SMTP_PRODUCE_FAILED;

    /* The envelope must survive the codec, as it does on its way to Kafka. */
    buf = envelope_encode(env, &len);
    back = envelope_decode(buf, len, err, sizeof(err));
    if (back == NULL)
        abort();
    envelope_free(back);
    free(buf);
    run->records++;
    return SMTP_PRODUCE_PENDING;
}


/*
 * Starts no real check: its outcome is picked by the generator in the
 * loop below, so no run spends time computing a hash.
 */
static int
fuzz_auth(void *arg, const char *password, const char *hash)
{
    struct fuzz_run *run = arg;

    if (password == NULL || hash == NULL)
        abort();
    if ((run->flags & FUZZ_REJECT) && fuzz_next(run) % 8 == 0)
        return -1;
    return 0;
}


static const struct smtp_session_ops fuzz_ops = {
    .send = fuzz_send,
    .produce = fuzz_produce,
    .auth = fuzz_auth,
};


static struct config *
fuzz_load(const char *extra)
{
    char           path[] = "/tmp/ferry-fuzz-config-XXXXXX";
    char           text[2048];
    char           err[512];
    int            fd = mkstemp(path);
    struct config *cfg;
    int            n = snprintf(text, sizeof(text), fuzz_yaml, extra);

    if (fd < 0 || write(fd, text, (size_t)n) != n)
        abort();
    close(fd);
    cfg = config_load(path, err, sizeof(err));
    unlink(path);
    if (cfg == NULL) {
        fprintf(stderr, "fuzz configuration: %s\n", err);
        abort();
    }
    return cfg;
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_init("ingress", LOG_LEVEL_ERROR + 1);
    fuzz_cfg = fuzz_load("");
    fuzz_tls_cfg = fuzz_load("  tls_certificate: /nonexistent.pem\n"
                             "  tls_key: /nonexistent.key\n"
                             "  credentials_file: tests/fuzz/credentials\n");
    return 0;
}


/* Reports the outcome of a pending produce, picked by the generator. */
static void
fuzz_report(struct smtp_session *s, struct fuzz_run *run)
{
    static const enum smtp_produce_status outcomes[] = {
        SMTP_PRODUCE_OK, SMTP_PRODUCE_OK, SMTP_PRODUCE_FAILED,
        SMTP_PRODUCE_TIMEOUT, SMTP_PRODUCE_TOO_LARGE
    };

    smtp_session_produce_done(s, outcomes[fuzz_next(run) % 5]);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_run      run = { 0, 0, 0 };
    struct sockaddr_in   sin = { .sin_family = AF_INET };
    struct sockaddr_in6  sin6 = { .sin6_family = AF_INET6 };
    struct smtp_session *s;
    size_t               off = 2;

    if (size < 2)
        return 0;
    run.flags = data[0];
    run.rng = 0x9e3779b9u ^ ((uint32_t)data[1] << 8) ^ (uint32_t)size;

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin6.sin6_addr = in6addr_loopback;
    s = smtp_session_new(run.flags & FUZZ_TLS_CONFIG ? fuzz_tls_cfg
                                                     : fuzz_cfg,
                         run.flags & FUZZ_IPV6_CLIENT
                             ? (struct sockaddr *)&sin6
                             : (struct sockaddr *)&sin,
                         &fuzz_ops, &run);
    smtp_session_start(s);

    while (smtp_session_state(s) != SMTP_STATE_CLOSED) {
        size_t n, used;

        if (smtp_session_state(s) == SMTP_STATE_PRODUCING) {
            fuzz_report(s, &run);
            continue;
        }
        if (smtp_session_state(s) == SMTP_STATE_AUTH_CHECK &&
            fuzz_next(&run) % 8 != 0) {
            smtp_session_auth_done(s, fuzz_next(&run) % 2 == 0);
            continue;
        }
        if (smtp_session_state(s) == SMTP_STATE_STARTTLS)
            smtp_session_tls_started(s, "TLSv1.3", "TLS_AES_128_GCM_SHA256");
        if (off == size)
            break;

        /* Splits of 1 to 64 octets, or the whole rest now and then. */
        n = fuzz_next(&run) % 16 == 0 ? size - off
                                      : 1 + fuzz_next(&run) % 64;
        if (n > size - off)
            n = size - off;
        used = smtp_session_feed(s, data + off, n);
        if (used > n)
            abort();
        off += used;

        if ((run.flags & FUZZ_TIMEOUTS) && fuzz_next(&run) % 64 == 0)
            smtp_session_timeout(s);
        if ((run.flags & FUZZ_SHUTDOWN) && fuzz_next(&run) % 64 == 0)
            smtp_session_shutdown(s);
    }

    /* A message may still wait for Kafka when the input ends. */
    if (smtp_session_state(s) == SMTP_STATE_PRODUCING && run.records % 2)
        fuzz_report(s, &run);
    smtp_session_free(s);
    return 0;
}

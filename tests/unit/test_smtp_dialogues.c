/*
 * Runs the SMTP dialogues, the .txt files in tests/smtp, through the
 * session, once with each client write whole and once one octet per
 * write. The format is described in tests/smtp/README.md.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <glob.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "envelope.h"
#include "log.h"
#include "smtp_auth.h"
#include "smtp_session.h"

#define DIALOGUE_DIR  "tests/smtp"
#define RECORDS_MAX   16

/* What the fake password check does, set by A: lines. */
enum auth_mode {
    AUTH_CHECK,     /* runs the check when the session waits for it */
    AUTH_BUSY,      /* rejects the check, as a full queue does */
    AUTH_HOLD       /* starts the check and never reports it */
};

static const char *config_head =
    "kafka:\n"
    "  bootstrap_servers: 127.0.0.1:19092\n"
    "ingress:\n"
    "  hostname: mx.test\n"
    "  regions: [us-east-1, eu-west-1]\n";

static const char *config_tail =
    "regions:\n"
    "  us-east-1:\n"
    "  eu-west-1:\n"
    "organizations:\n"
    "  - name: acme\n"
    "    home_region: us-east-1\n"
    "    domains: [acme.example, example.com]\n"
    "    networks: [127.0.0.0/8, \"::1/128\"]\n"
    "    multi_region: true\n"
    "  - name: globex\n"
    "    home_region: us-east-1\n"
    "    domains: [globex.example]\n"
    "    multi_region: true\n";

/* Keys of the configuration that a dialogue's O: lines may override. */
static const char *config_defaults[] = {
    "max_message_size: 300000", "max_recipients: 3", NULL
};

struct buffer {
    unsigned char *data;
    size_t         len;
    size_t         cap;
};

struct dialogue_run {
    const char          *path;
    size_t               chunk;         /* octets per feed */
    struct config       *cfg;
    struct smtp_session *s;
    struct buffer        out;           /* replies sent */
    struct buffer        expected;      /* S: lines so far */
    struct buffer        pending;       /* client octets not consumed */
    enum smtp_produce_status outcome;   /* P: */
    enum auth_mode       auth_mode;     /* A: */
    char                *auth_password; /* copies of a started check */
    char                *auth_hash;
    struct envelope     *records[RECORDS_MAX];
    size_t               nrecords;
    int                  line;
};


static void
buffer_add(struct buffer *b, const void *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        b->cap = (b->len + len + 1) * 2;
        b->data = realloc(b->data, b->cap);
        assert_non_null(b->data);
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}


static int
hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}


/*
 * Decodes the escapes of text[0..len) into out. Returns -1 on a broken
 * escape, which fails the dialogue.
 */
static int
unescape(const char *text, size_t len, struct buffer *out)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];

        if (c != '\\') {
            buffer_add(out, &c, 1);
            continue;
        }
        if (++i == len)
            return -1;
        switch (text[i]) {
        case 'r': c = '\r'; break;
        case 'n': c = '\n'; break;
        case 't': c = '\t'; break;
        case '0': c = '\0'; break;
        case '\\': c = '\\'; break;
        case 'x':
            if (i + 2 >= len || hex_value(text[i + 1]) < 0 ||
                hex_value(text[i + 2]) < 0)
                return -1;
            c = (unsigned char)(hex_value(text[i + 1]) * 16 +
                                hex_value(text[i + 2]));
            i += 2;
            break;
        case '{': {
            const char   *end = memchr(text + i, '}', len - i);
            const char   *star;
            struct buffer unit = { NULL, 0, 0 };
            long          count;

            if (end == NULL)
                return -1;
            star = end;
            while (star > text + i && *star != '*')
                star--;
            if (*star != '*')
                return -1;
            count = strtol(star + 1, NULL, 10);
            if (count < 0 ||
                unescape(text + i + 1, (size_t)(star - text - i - 1),
                         &unit) == -1) {
                free(unit.data);
                return -1;
            }
            for (long k = 0; k < count; k++)
                buffer_add(out, unit.data, unit.len);
            free(unit.data);
            i = (size_t)(end - text);
            continue;
        }
        default:
            return -1;
        }
        buffer_add(out, &c, 1);
    }
    return 0;
}


static void
fake_send(void *arg, const char *data, size_t len)
{
    struct dialogue_run *run = arg;

    buffer_add(&run->out, data, len);
}


static enum smtp_produce_status
fake_produce(void *arg, const char *topic, const struct envelope *env)
{
    struct dialogue_run *run = arg;
    unsigned char       *buf;
    size_t               len;
    char                 err[256];

    (void)topic;
    if (run->nrecords == RECORDS_MAX)
        fail_msg("%s: more than %d records", run->path, RECORDS_MAX);
    buf = envelope_encode(env, &len);
    run->records[run->nrecords] = envelope_decode(buf, len, err,
                                                  sizeof(err));
    free(buf);
    if (run->records[run->nrecords] == NULL)
        fail_msg("%s: produced envelope does not decode: %s", run->path,
                 err);
    run->nrecords++;
    return SMTP_PRODUCE_PENDING;
}


static int
fake_auth(void *arg, const char *password, const char *hash)
{
    struct dialogue_run *run = arg;

    if (run->auth_password != NULL)
        fail_msg("%s:%d: a second password check started", run->path,
                 run->line);
    if (run->auth_mode == AUTH_BUSY)
        return -1;
    run->auth_password = strdup(password);
    run->auth_hash = strdup(hash);
    assert_non_null(run->auth_password);
    assert_non_null(run->auth_hash);
    return 0;
}


static void
fake_auth_clear(struct dialogue_run *run)
{
    if (run->auth_password != NULL)
        smtp_auth_wipe(run->auth_password, strlen(run->auth_password));
    free(run->auth_password);
    free(run->auth_hash);
    run->auth_password = NULL;
    run->auth_hash = NULL;
}


static const struct smtp_session_ops fake_ops = {
    .send = fake_send,
    .produce = fake_produce,
    .auth = fake_auth,
};


/* Feeds the pending octets as a server does, reporting produce outcomes. */
static void
dialogue_pump(struct dialogue_run *run)
{
    size_t off = 0;

    for (;;) {
        size_t n, used;

        if (smtp_session_state(run->s) == SMTP_STATE_PRODUCING) {
            smtp_session_produce_done(run->s, run->outcome);
            continue;
        }
        if (smtp_session_state(run->s) == SMTP_STATE_AUTH_CHECK &&
            run->auth_mode == AUTH_CHECK) {
            bool match = smtp_auth_verify(run->auth_password,
                                          run->auth_hash);

            fake_auth_clear(run);
            smtp_session_auth_done(run->s, match);
            continue;
        }
        if (!smtp_session_wants_input(run->s) || off == run->pending.len)
            break;
        n = run->pending.len - off;
        if (n > run->chunk)
            n = run->chunk;
        used = smtp_session_feed(run->s, run->pending.data + off, n);
        assert_true(used <= n);
        off += used;
    }
    memmove(run->pending.data, run->pending.data + off,
            run->pending.len - off);
    run->pending.len -= off;
}


/* Writes text with control octets visible, for failure messages. */
static char *
visible(const unsigned char *text, size_t len)
{
    char  *out = malloc(len * 4 + 1);
    size_t n = 0;

    assert_non_null(out);
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\n') {
            memcpy(out + n, "\\n\n", 3);
            n += 3;
        } else if (text[i] == '\r') {
            memcpy(out + n, "\\r", 2);
            n += 2;
        } else if (text[i] < 0x20 || text[i] >= 0x7f) {
            n += (size_t)sprintf(out + n, "\\x%02x", text[i]);
        } else {
            out[n++] = (char)text[i];
        }
    }
    out[n] = '\0';
    return out;
}


/* Compares the replies with the S: lines. "<ID>" matches an envelope id. */
static void
dialogue_check_replies(struct dialogue_run *run)
{
    static const char base32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    const unsigned char *want = run->expected.data;
    size_t               wlen = run->expected.len;
    size_t               i = 0, j = 0;

    while (j < wlen) {
        if (wlen - j >= 4 && memcmp(want + j, "<ID>", 4) == 0) {
            for (int k = 0; k < ENVELOPE_ID_LEN; k++, i++)
                if (i >= run->out.len ||
                    strchr(base32, run->out.data[i]) == NULL ||
                    run->out.data[i] == '\0')
                    goto differ;
            j += 4;
            continue;
        }
        if (i >= run->out.len || run->out.data[i] != want[j])
            goto differ;
        i++;
        j++;
    }
    if (i == run->out.len)
        return;

differ:
    fail_msg("%s:%d (write size %zu): replies differ\n--- expected\n%s\n"
             "--- actual\n%s", run->path, run->line, run->chunk,
             visible(want, wlen), visible(run->out.data, run->out.len));
}


/* Returns the stored message of record i after its Received header. */
static const unsigned char *
record_body(const struct envelope *env, size_t *len)
{
    const unsigned char *m = env->message;
    size_t               n = env->message_len;

    for (size_t i = 0; i + 2 < n; i++) {
        if (m[i] == '\r' && m[i + 1] == '\n' && m[i + 2] != '\t') {
            *len = n - i - 2;
            return m + i + 2;
        }
    }
    *len = 0;
    return m + n;
}


static struct envelope *
dialogue_record(struct dialogue_run *run, const char *text,
                const char **rest)
{
    char *end;
    long  i = strtol(text, &end, 10);

    if (end == text || i < 0 || (size_t)i >= run->nrecords)
        fail_msg("%s:%d: record '%s' does not exist (%zu records)",
                 run->path, run->line, text, run->nrecords);
    *rest = *end == ' ' ? end + 1 : end;
    return run->records[i];
}


static void
dialogue_check_body(struct dialogue_run *run, const char *text)
{
    const char          *rest;
    struct envelope     *env = dialogue_record(run, text, &rest);
    struct buffer        want = { NULL, 0, 0 };
    const unsigned char *got;
    size_t               len;

    if (unescape(rest, strlen(rest), &want) == -1)
        fail_msg("%s:%d: invalid escape", run->path, run->line);
    got = record_body(env, &len);
    if (len != want.len || (len > 0 && memcmp(got, want.data, len) != 0))
        fail_msg("%s:%d (write size %zu): stored body differs\n"
                 "--- expected\n%s\n--- actual\n%s", run->path, run->line,
                 run->chunk, visible(want.data, want.len),
                 visible(got, len));
    free(want.data);
}


static void
dialogue_check_envelope(struct dialogue_run *run, const char *text)
{
    const char      *rest;
    struct envelope *env = dialogue_record(run, text, &rest);
    char             sender[300], rcpts[2048];
    char            *save = NULL;
    size_t           n = 0;

    if (sscanf(rest, "%299s %2047s", sender, rcpts) != 2)
        fail_msg("%s:%d: expected 'M: i sender rcpt,rcpt'", run->path,
                 run->line);
    assert_string_equal(env->sender, sender);
    for (char *r = strtok_r(rcpts, ",", &save); r != NULL;
         r = strtok_r(NULL, ",", &save), n++) {
        assert_true(n < env->nrecipients);
        assert_string_equal(env->recipients[n], r);
    }
    assert_int_equal(env->nrecipients, n);
}


static struct config *
dialogue_config(const char *options)
{
    char           path[] = "/tmp/ferry-dialogue-test-XXXXXX";
    char           err[512];
    struct buffer  text = { NULL, 0, 0 };
    int            fd = mkstemp(path);
    struct config *cfg;

    buffer_add(&text, config_head, strlen(config_head));
    buffer_add(&text, options, strlen(options));
    for (size_t i = 0; config_defaults[i] != NULL; i++) {
        size_t key = strcspn(config_defaults[i], ":");
        char   probe[64];

        snprintf(probe, sizeof(probe), "  %.*s:", (int)key,
                 config_defaults[i]);
        if (strstr(options, probe) == NULL) {
            buffer_add(&text, "  ", 2);
            buffer_add(&text, config_defaults[i],
                       strlen(config_defaults[i]));
            buffer_add(&text, "\n", 1);
        }
    }
    buffer_add(&text, config_tail, strlen(config_tail));

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text.data, text.len), (ssize_t)text.len);
    close(fd);
    cfg = config_load(path, err, sizeof(err));
    unlink(path);
    free(text.data);
    if (cfg == NULL)
        fail_msg("dialogue configuration: %s", err);
    return cfg;
}


/* Reads the O: lines, which come before the dialogue itself. */
static char *
dialogue_options(FILE *f)
{
    struct buffer options = { NULL, 0, 0 };
    char          line[4096];

    buffer_add(&options, "", 0);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "O: ", 3) != 0)
            continue;
        buffer_add(&options, "  ", 2);
        buffer_add(&options, line + 3, strlen(line + 3));
    }
    rewind(f);
    return (char *)options.data;
}


static void
dialogue_directive(struct dialogue_run *run, char kind, const char *text)
{
    struct buffer octets = { NULL, 0, 0 };

    if (kind != 'S' && kind != 'O' && kind != 'P' && kind != 'A')
        dialogue_check_replies(run);

    switch (kind) {
    case 'C':
    case 'W':
        if (run->s == NULL)
            fail_msg("%s:%d: write after close", run->path, run->line);
        if (unescape(text, strlen(text), &octets) == -1)
            fail_msg("%s:%d: invalid escape", run->path, run->line);
        if (kind == 'C')
            buffer_add(&octets, "\r\n", 2);
        buffer_add(&run->pending, octets.data, octets.len);
        dialogue_pump(run);
        break;
    case 'S':
        if (unescape(text, strlen(text), &octets) == -1)
            fail_msg("%s:%d: invalid escape", run->path, run->line);
        buffer_add(&run->expected, octets.data, octets.len);
        buffer_add(&run->expected, "\r\n", 2);
        break;
    case 'T':
        if (smtp_session_state(run->s) != SMTP_STATE_STARTTLS)
            fail_msg("%s:%d: T: outside a STARTTLS handshake", run->path,
                     run->line);
        smtp_session_tls_started(run->s, "TLSv1.3", "TLS_AES_256_GCM_SHA384");
        run->pending.len = 0;
        break;
    case 'X':
        smtp_session_free(run->s);
        run->s = NULL;
        break;
    case 'R':
        if (run->nrecords != (size_t)atoi(text))
            fail_msg("%s:%d (write size %zu): %zu records, expected %s",
                     run->path, run->line, run->chunk, run->nrecords, text);
        break;
    case 'B':
        dialogue_check_body(run, text);
        break;
    case 'M':
        dialogue_check_envelope(run, text);
        break;
    case 'P':
        if (strcmp(text, "ok") == 0)
            run->outcome = SMTP_PRODUCE_OK;
        else if (strcmp(text, "fail") == 0)
            run->outcome = SMTP_PRODUCE_FAILED;
        else if (strcmp(text, "timeout") == 0)
            run->outcome = SMTP_PRODUCE_TIMEOUT;
        else
            fail_msg("%s:%d: unknown outcome '%s'", run->path, run->line,
                     text);
        break;
    case 'A':
        if (strcmp(text, "check") == 0)
            run->auth_mode = AUTH_CHECK;
        else if (strcmp(text, "busy") == 0)
            run->auth_mode = AUTH_BUSY;
        else if (strcmp(text, "hold") == 0)
            run->auth_mode = AUTH_HOLD;
        else
            fail_msg("%s:%d: unknown AUTH mode '%s'", run->path, run->line,
                     text);
        break;
    case 'O':
        break;
    default:
        fail_msg("%s:%d: unknown directive '%c:'", run->path, run->line,
                 kind);
    }
    free(octets.data);
}


static void
dialogue_run_file(const char *path, size_t chunk)
{
    struct dialogue_run run;
    struct sockaddr_in  sin = { .sin_family = AF_INET };
    FILE               *f = fopen(path, "r");
    char               *options;
    char               *line = NULL;
    size_t              cap = 0;
    ssize_t             n;

    if (f == NULL)
        fail_msg("%s: cannot open", path);
    memset(&run, 0, sizeof(run));
    run.path = path;
    run.chunk = chunk;
    run.outcome = SMTP_PRODUCE_OK;
    options = dialogue_options(f);
    run.cfg = dialogue_config(options);
    free(options);

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    run.s = smtp_session_new(run.cfg, (struct sockaddr *)&sin, &fake_ops,
                             &run);
    smtp_session_start(run.s);

    while ((n = getline(&line, &cap, f)) != -1) {
        run.line++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        if (n < 2 || line[1] != ':' || (n > 2 && line[2] != ' '))
            fail_msg("%s:%d: expected 'X: text'", path, run.line);
        dialogue_directive(&run, line[0], n > 3 ? line + 3 : "");
    }
    run.line++;
    dialogue_check_replies(&run);

    free(line);
    fclose(f);
    smtp_session_free(run.s);
    fake_auth_clear(&run);
    for (size_t i = 0; i < run.nrecords; i++)
        envelope_free(run.records[i]);
    free(run.out.data);
    free(run.expected.data);
    free(run.pending.data);
    config_free(run.cfg);
}


static void
dialogue_one_write(void **state)
{
    dialogue_run_file(*state, SIZE_MAX);
}


static void
dialogue_octet_per_write(void **state)
{
    dialogue_run_file(*state, 1);
}


int
main(void)
{
    glob_t             files;
    struct CMUnitTest *tests;
    char             (*names)[160];
    int                rc;

    log_init("ingress", LOG_LEVEL_ERROR);
    if (glob(DIALOGUE_DIR "/*.txt", 0, NULL, &files) != 0 ||
        files.gl_pathc == 0) {
        fprintf(stderr, "no dialogues in %s/ (run from the repository "
                "root)\n", DIALOGUE_DIR);
        return 1;
    }

    tests = calloc(2 * files.gl_pathc, sizeof(*tests));
    names = calloc(2 * files.gl_pathc, sizeof(*names));
    assert_non_null(tests);
    assert_non_null(names);
    for (size_t i = 0; i < files.gl_pathc; i++) {
        snprintf(names[2 * i], sizeof(names[0]), "%s, one write",
                 files.gl_pathv[i]);
        snprintf(names[2 * i + 1], sizeof(names[0]), "%s, octet by octet",
                 files.gl_pathv[i]);
        tests[2 * i] = (struct CMUnitTest){ names[2 * i], dialogue_one_write,
                                            NULL, NULL, files.gl_pathv[i] };
        tests[2 * i + 1] = (struct CMUnitTest){ names[2 * i + 1],
                                                dialogue_octet_per_write,
                                                NULL, NULL,
                                                files.gl_pathv[i] };
    }
    rc = _cmocka_run_group_tests("smtp_dialogues", tests,
                                 2 * files.gl_pathc, NULL, NULL);
    free(tests);
    free(names);
    globfree(&files);
    return rc;
}

#include "smtp_data.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

static void smtp_data_flag(struct smtp_data *d, enum smtp_data_fault fault);
static void smtp_data_store(struct smtp_data *d, unsigned char c);
static void smtp_data_store_run(struct smtp_data *d, const unsigned char *p,
                                size_t count);
static size_t smtp_data_plain_span(const unsigned char *p, size_t len);
static void smtp_data_end_line(struct smtp_data *d);
static void smtp_data_text(struct smtp_data *d, unsigned char c);
static void smtp_data_after_cr(struct smtp_data *d, unsigned char c);


void
smtp_data_init(struct smtp_data *d, size_t max_size, size_t segment_size)
{
    memset(d, 0, sizeof(*d));
    d->state = SMTP_DATA_LINE_START;
    d->max_size = max_size;
    d->segment_size = segment_size > 0 ? segment_size : max_size;
    d->in_header = true;
}


void
smtp_data_fini(struct smtp_data *d)
{
    for (size_t i = 0; i < d->nsegments; i++)
        free(d->segments[i].buf);
    free(d->segments);
    memset(d, 0, sizeof(*d));
}


void
smtp_data_set_raw(struct smtp_data *d)
{
    d->raw = true;
}


void
smtp_data_finish(struct smtp_data *d)
{
    if (d->state == SMTP_DATA_CR) {
        smtp_data_flag(d, SMTP_DATA_FAULT_BARE_CR);
        smtp_data_store(d, '\r');
        d->line_len++;
    }
    if (d->line_len > SMTP_DATA_LINE_MAX)
        smtp_data_flag(d, SMTP_DATA_FAULT_LONG_LINE);
    d->state = SMTP_DATA_DONE;
}


static void
smtp_data_flag(struct smtp_data *d, enum smtp_data_fault fault)
{
    d->faults |= 1u << fault;
}


/* Appends one octet of unstuffed text, counting past the size limit. */
static void
smtp_data_store(struct smtp_data *d, unsigned char c)
{
    smtp_data_store_run(d, &c, 1);
}


/*
 * Appends count octets of unstuffed text. Octets past the size limit are
 * counted but not kept.
 */
static void
smtp_data_store_run(struct smtp_data *d, const unsigned char *p, size_t count)
{
    uint64_t room = d->size < d->max_size ? d->max_size - d->size : 0;

    d->size += count;
    if (d->in_header) {
        d->header_len += count;
        if (d->header_len > SMTP_DATA_HEADER_MAX)
            smtp_data_flag(d, SMTP_DATA_FAULT_HEADER_TOO_LARGE);
    }
    if (d->size > d->max_size) {
        smtp_data_flag(d, SMTP_DATA_FAULT_TOO_LARGE);
        count = (size_t)room;
    }

    while (count > 0) {
        struct smtp_data_segment *seg;
        size_t                    chunk;

        seg = d->nsegments > 0 ? &d->segments[d->nsegments - 1] : NULL;
        if (seg == NULL || seg->len == d->segment_size) {
            d->segments = xrealloc(d->segments, (d->nsegments + 1) *
                                                sizeof(*d->segments));
            seg = &d->segments[d->nsegments++];
            memset(seg, 0, sizeof(*seg));
        }

        /*
         * A segment grows by doubling up to its full size, so a small
         * message takes little memory and a large one is copied at most
         * within the first segment.
         */
        if (seg->len == seg->cap) {
            size_t cap = seg->cap ? seg->cap * 2 : 4096;

            seg->cap = cap < d->segment_size ? cap : d->segment_size;
            seg->buf = xrealloc(seg->buf, seg->cap);
        }
        chunk = seg->cap - seg->len < count ? seg->cap - seg->len : count;
        memcpy(seg->buf + seg->len, p, chunk);
        seg->len += chunk;
        d->len += chunk;
        p += chunk;
        count -= chunk;
    }
}


/* Returns how many octets from p on are plain text: no CR, LF or NUL. */
static size_t
smtp_data_plain_span(const unsigned char *p, size_t len)
{
    size_t n = 0;

    while (n < len && p[n] != '\r' && p[n] != '\n' && p[n] != '\0')
        n++;
    return n;
}


/* Ends a line whose CRLF was just stored. */
static void
smtp_data_end_line(struct smtp_data *d)
{
    if (d->line_len > SMTP_DATA_LINE_MAX)
        smtp_data_flag(d, SMTP_DATA_FAULT_LONG_LINE);
    if (d->line_len == 0)
        d->in_header = false;
    d->line_len = 0;
    d->state = SMTP_DATA_LINE_START;
}


/* Handles an octet inside a line. */
static void
smtp_data_text(struct smtp_data *d, unsigned char c)
{
    switch (c) {
    case '\r':
        d->state = SMTP_DATA_CR;
        return;
    case '\n':
        /*
         * A bare LF does not start a new line here, so "\n.\r\n" can never
         * end the data.
         */
        smtp_data_flag(d, SMTP_DATA_FAULT_BARE_LF);
        break;
    case '\0':
        smtp_data_flag(d, SMTP_DATA_FAULT_NUL);
        break;
    }
    smtp_data_store(d, c);
    d->line_len++;
    d->state = SMTP_DATA_TEXT;
}


/* Handles the octet after a '\r' that is still held back. */
static void
smtp_data_after_cr(struct smtp_data *d, unsigned char c)
{
    if (c == '\n') {
        smtp_data_store(d, '\r');
        smtp_data_store(d, '\n');
        smtp_data_end_line(d);
        return;
    }

    smtp_data_flag(d, SMTP_DATA_FAULT_BARE_CR);
    smtp_data_store(d, '\r');
    d->line_len++;
    smtp_data_text(d, c);
}


size_t
smtp_data_feed(struct smtp_data *d, const unsigned char *p, size_t len)
{
    size_t i;

    for (i = 0; i < len && d->state != SMTP_DATA_DONE; i++) {
        unsigned char c = p[i];

        switch (d->state) {
        case SMTP_DATA_LINE_START:
            if (c == '.' && !d->raw)
                d->state = SMTP_DATA_DOT;
            else
                smtp_data_text(d, c);
            break;

        case SMTP_DATA_DOT:
            /* A leading dot is either the terminator or stuffing. */
            if (c == '\r')
                d->state = SMTP_DATA_DOT_CR;
            else
                smtp_data_text(d, c);
            break;

        case SMTP_DATA_DOT_CR:
            if (c == '\n')
                d->state = SMTP_DATA_DONE;
            else
                smtp_data_after_cr(d, c);
            break;

        case SMTP_DATA_TEXT: {
            /* Most octets are plain text, stored as one run. */
            size_t n = smtp_data_plain_span(p + i, len - i);

            if (n == 0) {
                smtp_data_text(d, c);
                break;
            }
            smtp_data_store_run(d, p + i, n);
            d->line_len += n;
            i += n - 1;
            break;
        }

        case SMTP_DATA_CR:
            smtp_data_after_cr(d, c);
            break;

        case SMTP_DATA_DONE:
            break;
        }
    }
    return i;
}


bool
smtp_data_done(const struct smtp_data *d)
{
    return d->state == SMTP_DATA_DONE;
}


enum smtp_data_fault
smtp_data_fault(const struct smtp_data *d)
{
    for (int f = SMTP_DATA_FAULT_TOO_LARGE; f <= SMTP_DATA_FAULT_LONG_LINE;
         f++)
        if (d->faults & (1u << f))
            return (enum smtp_data_fault)f;
    return SMTP_DATA_FAULT_NONE;
}


const unsigned char *
smtp_data_segment(const struct smtp_data *d, size_t i, size_t *len)
{
    *len = d->segments[i].len;
    return d->segments[i].buf;
}


void
smtp_data_release(struct smtp_data *d, size_t i)
{
    free(d->segments[i].buf);
    d->segments[i].buf = NULL;
    d->segments[i].cap = 0;
}

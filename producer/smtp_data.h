/*
 * smtp_data: the message text that follows a 354 reply.
 *
 * Removes dot-stuffing (RFC 5321 section 4.5.2) and finds the end of data,
 * <CRLF>.<CRLF>, at any read boundary. The first line counts as following
 * a CRLF. Lines are stored exactly as sent, CRLF included, minus the
 * stuffed dot. Only CRLF.CRLF ends the data: a bare LF followed by ".\r\n"
 * is message text, so no other parser can be made to see a different end.
 *
 * Faults (NUL, bare CR or LF, a long line, a message or header section
 * over its limit) do not stop the reading. They are recorded, and the
 * caller rejects the message once the terminator has arrived, so the
 * session stays in step with the client. Storage stops at the size limit,
 * so memory stays bounded whatever the client sends.
 *
 * The text is stored in segments of a fixed size, one per Kafka record of
 * the message. A large message is thus never copied to grow a buffer, and
 * each segment is freed as soon as its record has been encoded.
 */
#ifndef FERRY_SMTP_DATA_H
#define FERRY_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Maximum line length, CRLF excluded (RFC 5321 section 4.5.3.1.6). */
#define SMTP_DATA_LINE_MAX   998

/*
 * Maximum size of the header section, the blank line included. A larger
 * header is rejected as a whole, because cutting it short would turn the
 * header lines after the cut into body text.
 */
#define SMTP_DATA_HEADER_MAX (256 * 1024)

/* Faults, most severe first. smtp_data_fault() returns the first present. */
enum smtp_data_fault {
    SMTP_DATA_FAULT_NONE,
    SMTP_DATA_FAULT_TOO_LARGE,
    SMTP_DATA_FAULT_HEADER_TOO_LARGE,
    SMTP_DATA_FAULT_NUL,
    SMTP_DATA_FAULT_BARE_CR,
    SMTP_DATA_FAULT_BARE_LF,
    SMTP_DATA_FAULT_LONG_LINE
};

enum smtp_data_state {
    SMTP_DATA_LINE_START,   /* after CRLF, or at the first octet */
    SMTP_DATA_DOT,          /* a line began with '.' */
    SMTP_DATA_DOT_CR,       /* a line began with ".\r" */
    SMTP_DATA_TEXT,         /* inside a line */
    SMTP_DATA_CR,           /* '\r' seen inside a line */
    SMTP_DATA_DONE          /* <CRLF>.<CRLF> seen */
};

struct smtp_data_segment {
    unsigned char *buf;                 /* NULL once released */
    size_t         len;
    size_t         cap;
};

struct smtp_data {
    enum smtp_data_state      state;
    bool                      raw;       /* BDAT: no dot, no terminator */
    struct smtp_data_segment *segments;  /* unstuffed message, in order */
    size_t                    nsegments;
    size_t                    segment_size;
    size_t                    len;       /* octets stored */
    size_t                    max_size;
    uint64_t                  size;      /* counted on past max_size */
    size_t                    line_len;  /* octets of this line, no CRLF */
    size_t                    header_len;
    bool                      in_header;
    unsigned                  faults;    /* bit 1 << enum smtp_data_fault */
};

/* Stores at most max_size octets, in segments of segment_size octets. */
void smtp_data_init(struct smtp_data *d, size_t max_size,
                    size_t segment_size);
void smtp_data_fini(struct smtp_data *d);

/*
 * Switches to the text of BDAT chunks (RFC 3030), right after init: a
 * leading dot is text, nothing ends the data, and smtp_data_finish()
 * ends it. The faults are the same as for DATA.
 */
void smtp_data_set_raw(struct smtp_data *d);

/*
 * Ends raw text after the last chunk: a CR held back at the end is
 * stored as a bare CR, and the last line's length is checked.
 */
void smtp_data_finish(struct smtp_data *d);

/*
 * Reads message text up to and including the terminator. Returns the
 * number of octets used; fewer than len only when the terminator was
 * among them. Raw text is used whole.
 */
size_t smtp_data_feed(struct smtp_data *d, const unsigned char *p,
                      size_t len);

bool smtp_data_done(const struct smtp_data *d);

/*
 * Returns segment i of the stored text and its length in *len. Every
 * segment but the last is full. Returns NULL after a release.
 */
const unsigned char *smtp_data_segment(const struct smtp_data *d, size_t i,
                                       size_t *len);

/* Frees the octets of segment i; its length stays counted in d->len. */
void smtp_data_release(struct smtp_data *d, size_t i);

enum smtp_data_fault smtp_data_fault(const struct smtp_data *d);

#endif

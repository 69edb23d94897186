/*
 * window: the offsets of one partition that were consumed and are not yet
 * committed, in offset order, each marked done or not.
 *
 * The offset to commit is the first one not done, so a message that is
 * still being sent, retried or recorded holds back the commit of every
 * later offset of its partition, even those already done. Those done
 * offsets travel in the commit's metadata as "ferry-done=A-B,C", and the
 * next owner of the partition loads them with window_load_done() and does
 * not send those messages again.
 */
#ifndef FERRY_WINDOW_H
#define FERRY_WINDOW_H

#include <stddef.h>
#include <stdint.h>

struct window_entry {
    int64_t offset;
    int     done;
};

/* Offsets first..last, both included. */
struct window_range {
    int64_t first;
    int64_t last;
};

struct window {
    struct window_entry *entries;       /* ring buffer */
    size_t               head;
    size_t               len;
    size_t               cap;
    int64_t              next_offset;   /* one past the last pushed, or -1 */
    struct window_range *done_before;   /* done by an earlier owner */
    size_t               ndone_before;
};

void window_init(struct window *w);
void window_fini(struct window *w);

/*
 * Appends offset. Returns -1 without appending when offset is not past the
 * last one pushed, which happens when a fetch restarts after a pause, and
 * 1 when an earlier owner recorded it as done: it is then appended as done.
 */
int window_push(struct window *w, int64_t offset);

/* Marks every offset in [first, last] done. */
void window_mark_done(struct window *w, int64_t first, int64_t last);

/*
 * Drops the done offsets at the front and returns the offset to commit:
 * the first one not done, or next_offset when every offset is done.
 * Returns -1 when nothing was pushed yet.
 */
int64_t window_commit_offset(struct window *w);

/*
 * Writes the commit metadata: the done offsets after the first one not
 * done, as ranges. Returns the number of done offsets left out because
 * buf was too small; their messages would be sent again by a next owner.
 */
size_t window_format_done(struct window *w, char *buf, size_t size);

/* Loads the metadata of the committed offset; returns -1 if malformed. */
int window_load_done(struct window *w, const void *metadata, size_t len);

size_t window_len(const struct window *w);

#endif

#include "window.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define WINDOW_DONE_PREFIX "ferry-done="

static struct window_entry *window_at(const struct window *w, size_t i);
static int window_done_before(const struct window *w, int64_t offset);


static struct window_entry *
window_at(const struct window *w, size_t i)
{
    return &w->entries[(w->head + i) % w->cap];
}


void
window_init(struct window *w)
{
    memset(w, 0, sizeof(*w));
    w->next_offset = -1;
}


void
window_fini(struct window *w)
{
    free(w->entries);
    free(w->done_before);
    window_init(w);
}


static int
window_done_before(const struct window *w, int64_t offset)
{
    for (size_t i = 0; i < w->ndone_before; i++)
        if (offset >= w->done_before[i].first &&
            offset <= w->done_before[i].last)
            return 1;
    return 0;
}


int
window_push(struct window *w, int64_t offset)
{
    int done;

    if (w->next_offset >= 0 && offset < w->next_offset)
        return -1;

    if (w->len == w->cap) {
        size_t               cap = w->cap ? w->cap * 2 : 64;
        struct window_entry *entries = xcalloc(cap, sizeof(*entries));

        for (size_t i = 0; i < w->len; i++)
            entries[i] = *window_at(w, i);
        free(w->entries);
        w->entries = entries;
        w->cap = cap;
        w->head = 0;
    }
    done = window_done_before(w, offset);
    *window_at(w, w->len) = (struct window_entry){ offset, done };
    w->len++;
    w->next_offset = offset + 1;
    return done;
}


void
window_mark_done(struct window *w, int64_t first, int64_t last)
{
    for (size_t i = 0; i < w->len; i++) {
        struct window_entry *e = window_at(w, i);

        if (e->offset > last)
            break;
        if (e->offset >= first)
            e->done = 1;
    }
}


int64_t
window_commit_offset(struct window *w)
{
    while (w->len > 0 && window_at(w, 0)->done) {
        w->head = (w->head + 1) % w->cap;
        w->len--;
    }
    if (w->len > 0)
        return window_at(w, 0)->offset;
    return w->next_offset;
}


size_t
window_format_done(struct window *w, char *buf, size_t size)
{
    size_t n, left_out = 0;
    int    written;

    window_commit_offset(w);
    written = snprintf(buf, size, "%s", WINDOW_DONE_PREFIX);
    n = written > 0 ? (size_t)written : 0;

    for (size_t i = 0; i < w->len; i++) {
        struct window_entry *e = window_at(w, i);
        int64_t              first = e->offset, last = e->offset;
        size_t               count = 1;
        char                 item[48];

        if (!e->done)
            continue;
        while (i + 1 < w->len && window_at(w, i + 1)->done &&
               window_at(w, i + 1)->offset == last + 1) {
            last++;
            count++;
            i++;
        }
        if (first == last)
            written = snprintf(item, sizeof(item), "%s%" PRId64,
                               n > strlen(WINDOW_DONE_PREFIX) ? "," : "",
                               first);
        else
            written = snprintf(item, sizeof(item), "%s%" PRId64 "-%" PRId64,
                               n > strlen(WINDOW_DONE_PREFIX) ? "," : "",
                               first, last);
        if (left_out > 0 || n + (size_t)written + 1 > size) {
            left_out += count;
            continue;
        }
        memcpy(buf + n, item, (size_t)written + 1);
        n += (size_t)written;
    }
    return left_out;
}


int
window_load_done(struct window *w, const void *metadata, size_t len)
{
    size_t      plen = strlen(WINDOW_DONE_PREFIX);
    char       *text, *p, *end;
    int         rc = -1;

    free(w->done_before);
    w->done_before = NULL;
    w->ndone_before = 0;
    if (metadata == NULL || len < plen ||
        memcmp(metadata, WINDOW_DONE_PREFIX, plen) != 0)
        return metadata == NULL || len == 0 ? 0 : -1;

    text = xstrndup((const char *)metadata + plen, len - plen);
    for (p = text; *p != '\0'; p = *end == ',' ? end + 1 : end) {
        struct window_range r;

        errno = 0;
        r.first = strtoll(p, &end, 10);
        if (end == p || errno != 0)
            goto out;
        r.last = r.first;
        if (*end == '-') {
            p = end + 1;
            r.last = strtoll(p, &end, 10);
            if (end == p || errno != 0 || r.last < r.first)
                goto out;
        }
        if (*end != ',' && *end != '\0')
            goto out;
        w->done_before = xrealloc(w->done_before, (w->ndone_before + 1) *
                                                      sizeof(r));
        w->done_before[w->ndone_before++] = r;
    }
    rc = 0;

out:
    if (rc == -1) {
        free(w->done_before);
        w->done_before = NULL;
        w->ndone_before = 0;
    }
    free(text);
    return rc;
}


size_t
window_len(const struct window *w)
{
    return w->len;
}

#include "ctl_table.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct ctl_table {
    size_t  ncols;
    char  **headers;
    bool   *right;
    char  **cells;          /* nrows * ncols, row-major, NULL when unset */
    size_t  nrows;
    size_t  ncells;         /* cells filled in the current row */
};

static size_t ctl_table_width(const char *s);
static void ctl_table_append(char **buf, size_t *len, size_t *cap,
                             const char *s, size_t n);
static void ctl_table_pad(char **buf, size_t *len, size_t *cap,
                          size_t count, char c);
static void ctl_table_line(const struct ctl_table *t, char *const *line,
                           const size_t *widths, char **buf, size_t *len,
                           size_t *cap);


struct ctl_table *
ctl_table_new(const char *const *headers, const bool *right, size_t ncols)
{
    struct ctl_table *t = xcalloc(1, sizeof(*t));

    t->ncols = ncols;
    t->headers = xcalloc(ncols, sizeof(*t->headers));
    t->right = xcalloc(ncols, sizeof(*t->right));
    for (size_t i = 0; i < ncols; i++) {
        t->headers[i] = xstrdup(headers[i]);
        t->right[i] = right != NULL && right[i];
    }
    return t;
}


void
ctl_table_free(struct ctl_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->ncols; i++)
        free(t->headers[i]);
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->headers);
    free(t->right);
    free(t->cells);
    free(t);
}


void
ctl_table_row(struct ctl_table *t)
{
    t->cells = xrealloc(t->cells,
                        (t->nrows + 1) * t->ncols * sizeof(*t->cells));
    memset(&t->cells[t->nrows * t->ncols], 0, t->ncols * sizeof(*t->cells));
    t->nrows++;
    t->ncells = 0;
}


int
ctl_table_cell(struct ctl_table *t, const char *fmt, ...)
{
    va_list ap;
    char   *text;

    if (t->nrows == 0 || t->ncells >= t->ncols)
        return -1;
    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) == -1)
        abort();
    va_end(ap);
    t->cells[(t->nrows - 1) * t->ncols + t->ncells++] = text;
    return 0;
}


size_t
ctl_table_rows(const struct ctl_table *t)
{
    return t->nrows;
}


char *
ctl_table_format(const struct ctl_table *t)
{
    size_t *widths = xcalloc(t->ncols, sizeof(*widths));
    char   *buf = NULL;
    size_t  len = 0, cap = 0, total = 0;

    for (size_t c = 0; c < t->ncols; c++) {
        widths[c] = ctl_table_width(t->headers[c]);
        for (size_t r = 0; r < t->nrows; r++) {
            const char *cell = t->cells[r * t->ncols + c];
            size_t      w = cell != NULL ? ctl_table_width(cell) : 0;

            if (w > widths[c])
                widths[c] = w;
        }
        total += widths[c] + (c > 0 ? 2 : 0);
    }

    ctl_table_line(t, t->headers, widths, &buf, &len, &cap);
    ctl_table_pad(&buf, &len, &cap, total, '-');
    ctl_table_append(&buf, &len, &cap, "\n", 1);
    for (size_t r = 0; r < t->nrows; r++)
        ctl_table_line(t, &t->cells[r * t->ncols], widths, &buf, &len, &cap);

    free(widths);
    return buf;
}


void
ctl_table_print(const struct ctl_table *t, FILE *out)
{
    char *text = ctl_table_format(t);

    fputs(text, out);
    free(text);
}


/* Counts UTF-8 characters: every byte that is not a continuation byte. */
static size_t
ctl_table_width(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}


/* Writes one line; trailing spaces of the last column are left out. */
static void
ctl_table_line(const struct ctl_table *t, char *const *line,
               const size_t *widths, char **buf, size_t *len, size_t *cap)
{
    for (size_t c = 0; c < t->ncols; c++) {
        const char *cell = line[c] != NULL ? line[c] : "";
        size_t      pad = widths[c] - ctl_table_width(cell);

        if (c > 0)
            ctl_table_pad(buf, len, cap, 2, ' ');
        if (t->right[c])
            ctl_table_pad(buf, len, cap, pad, ' ');
        ctl_table_append(buf, len, cap, cell, strlen(cell));
        if (!t->right[c] && c + 1 < t->ncols)
            ctl_table_pad(buf, len, cap, pad, ' ');
    }
    ctl_table_append(buf, len, cap, "\n", 1);
}


static void
ctl_table_append(char **buf, size_t *len, size_t *cap, const char *s,
                 size_t n)
{
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *buf = xrealloc(*buf, *cap);
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
}


static void
ctl_table_pad(char **buf, size_t *len, size_t *cap, size_t count, char c)
{
    for (size_t i = 0; i < count; i++)
        ctl_table_append(buf, len, cap, &c, 1);
}

/*
 * util: allocation that aborts on failure, clocks, and hex encoding.
 *
 * Running out of memory is not a peer's doing, so the x* allocators print
 * one line and abort rather than hand NULL to every caller.
 */
#ifndef FERRY_UTIL_H
#define FERRY_UTIL_H

#include <stddef.h>
#include <stdint.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

int64_t util_now_ms(void);          /* wall clock, milliseconds */
int64_t util_monotonic_ms(void);

/* Writes 2 * len hex digits and a NUL into out. */
void util_hex(const unsigned char *in, size_t len, char *out);

#endif

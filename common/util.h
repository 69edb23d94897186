/*
 * util: allocation that aborts on failure, clocks, and hex encoding.
 *
 * Running out of memory is not a peer's doing, so the x* allocators print
 * one line and abort rather than hand NULL to every caller.
 */
#ifndef FERRY_UTIL_H
#define FERRY_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define UTIL_ALLOC __attribute__((returns_nonnull, warn_unused_result))

void *xmalloc(size_t size) UTIL_ALLOC;
void *xcalloc(size_t n, size_t size) UTIL_ALLOC;
void *xrealloc(void *p, size_t size) UTIL_ALLOC;
char *xstrdup(const char *s) UTIL_ALLOC;
char *xstrndup(const char *s, size_t n) UTIL_ALLOC;

int64_t util_now_ms(void);          /* wall clock, milliseconds */
int64_t util_monotonic_ms(void);

/*
 * Starts a thread with every signal blocked, so signals go to the main
 * thread, whose event loop handles them. Returns pthread_create()'s code.
 */
int util_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg);

/* Writes 2 * len hex digits and a NUL into out. */
void util_hex(const unsigned char *in, size_t len, char *out);

#endif

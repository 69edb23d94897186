/*
 * log: one line per event on stderr.
 *
 *   2026-12-04T15:52:53.123Z info ingress msgid=01J... accepted size=812 rcpts=1
 *
 * The caller writes the key=value part. Values that may hold spaces or
 * quotes go through log_quote() first.
 */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include <stddef.h>

enum log_level {
    LOG_LEVEL_TRACE,
    LOG_LEVEL_DEBUG,
    LOG_LEVEL_INFO,
    LOG_LEVEL_WARN,
    LOG_LEVEL_ERROR
};

void log_init(const char *component, enum log_level level);
int log_level_parse(const char *name, enum log_level *level);
int log_enabled(enum log_level level);

/* msgid may be NULL for events that belong to no message. */
void log_write(enum log_level level, const char *msgid, const char *event,
               const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Writes value into buf as a log field value: unchanged when it has no
 * space, quote, backslash or control byte, otherwise in double quotes with
 * those escaped. Truncates to fit; returns buf.
 */
const char *log_quote(char *buf, size_t size, const char *value);

#define log_trace(id, ev, ...) log_write(LOG_LEVEL_TRACE, id, ev, __VA_ARGS__)
#define log_debug(id, ev, ...) log_write(LOG_LEVEL_DEBUG, id, ev, __VA_ARGS__)
#define log_info(id, ev, ...) log_write(LOG_LEVEL_INFO, id, ev, __VA_ARGS__)
#define log_warn(id, ev, ...) log_write(LOG_LEVEL_WARN, id, ev, __VA_ARGS__)
#define log_error(id, ev, ...) log_write(LOG_LEVEL_ERROR, id, ev, __VA_ARGS__)

#endif

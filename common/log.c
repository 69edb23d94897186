#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *log_component = "ferry";
static enum log_level log_threshold = LOG_LEVEL_INFO;

static const char *const log_level_names[] = {
    "trace", "debug", "info", "warn", "error"
};


void
log_init(const char *component, enum log_level level)
{
    log_component = component;
    log_threshold = level;
}


int
log_level_parse(const char *name, enum log_level *level)
{
    for (size_t i = 0; i < sizeof(log_level_names) / sizeof(*log_level_names);
         i++) {
        if (strcmp(name, log_level_names[i]) == 0) {
            *level = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}


int
log_enabled(enum log_level level)
{
    return level >= log_threshold;
}


void
log_write(enum log_level level, const char *msgid, const char *event,
          const char *fmt, ...)
{
    char            line[4096];
    char            stamp[32];
    struct timespec ts;
    struct tm       tm;
    size_t          n;
    va_list         ap;

    if (level < log_threshold)
        return;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);

    n = (size_t)snprintf(line, sizeof(line), "%s.%03ldZ %s %s ", stamp,
                         ts.tv_nsec / 1000000, log_level_names[level],
                         log_component);
    if (msgid != NULL && n < sizeof(line))
        n += (size_t)snprintf(line + n, sizeof(line) - n, "msgid=%s ", msgid);
    if (n < sizeof(line))
        n += (size_t)snprintf(line + n, sizeof(line) - n, "%s", event);
    if (fmt != NULL && fmt[0] != '\0' && n + 1 < sizeof(line)) {
        line[n++] = ' ';
        va_start(ap, fmt);
        n += (size_t)vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
    }
    if (n >= sizeof(line) - 1)
        n = sizeof(line) - 2;
    line[n++] = '\n';

    /* One write per line, so lines of concurrent threads do not mix. */
    fwrite(line, 1, n, stderr);
    fflush(stderr);
}


const char *
log_quote(char *buf, size_t size, const char *value)
{
    size_t      n = 0;
    int         plain = 1;
    const char *p;

    if (size == 0)
        return buf;
    if (value == NULL)
        value = "";

    for (p = value; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;

        if (c <= ' ' || c == '"' || c == '\\' || c == 0x7f) {
            plain = 0;
            break;
        }
    }
    if (plain && value[0] != '\0') {
        snprintf(buf, size, "%s", value);
        return buf;
    }

    buf[n++] = '"';
    for (p = value; *p != '\0' && n + 5 < size; p++) {
        unsigned char c = (unsigned char)*p;

        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c < ' ' || c == 0x7f) {
            n += (size_t)snprintf(buf + n, size - n, "\\x%02x", c);
        } else {
            buf[n++] = (char)c;
        }
    }
    if (n + 1 < size)
        buf[n++] = '"';
    buf[n < size ? n : size - 1] = '\0';
    return buf;
}

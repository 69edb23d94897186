/*
 * ctl_time: the times ferryctl accepts on its command line, and how it
 * prints them.
 *
 * A time is either RFC 3339 ("2026-12-04T15:52:53Z",
 * "2026-12-04T16:52:53.250+01:00") or relative to now: a sign followed by
 * one or more amounts with a unit s, m, h or d ("-2h", "-1h30m", "+10m"),
 * or "now".
 */
#ifndef FERRY_CTL_TIME_H
#define FERRY_CTL_TIME_H

#include <stddef.h>
#include <stdint.h>

/*
 * Buffer size for ctl_time_format(). The output, "YYYY-MM-DDTHH:MM:SS.mmmZ",
 * takes 25 bytes; the rest quiets the compiler's worst-case estimate.
 */
#define CTL_TIME_LEN 48

/*
 * Parses text into milliseconds since the epoch, with now_ms as the base
 * of a relative time. Returns -1 and writes a one-line reason into err
 * when text is neither form or names a date that does not exist.
 */
int ctl_time_parse(const char *text, int64_t now_ms, int64_t *ms, char *err,
                   size_t errlen);

/* Writes ms as RFC 3339 in UTC with milliseconds; returns buf. */
const char *ctl_time_format(int64_t ms, char buf[CTL_TIME_LEN]);

#endif

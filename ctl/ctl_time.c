#include "ctl_time.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static int ctl_time_parse_relative(const char *text, int64_t now_ms,
                                   int64_t *ms, char *err, size_t errlen);
static int ctl_time_parse_rfc3339(const char *text, int64_t *ms, char *err,
                                  size_t errlen);
static int ctl_time_digits(const char **p, int count, int *value);
static int64_t ctl_time_days_from_civil(int64_t year, int month, int day);
static int ctl_time_days_in_month(int year, int month);


int
ctl_time_parse(const char *text, int64_t now_ms, int64_t *ms, char *err,
               size_t errlen)
{
    if (strcmp(text, "now") == 0) {
        *ms = now_ms;
        return 0;
    }
    if (text[0] == '-' || text[0] == '+')
        return ctl_time_parse_relative(text, now_ms, ms, err, errlen);
    return ctl_time_parse_rfc3339(text, ms, err, errlen);
}


const char *
ctl_time_format(int64_t ms, char buf[CTL_TIME_LEN])
{
    int64_t   days = ms / 86400000, rest = ms % 86400000;
    int64_t   era, doe, yoe, doy, mp, year;
    unsigned  month, day;

    if (rest < 0) {
        rest += 86400000;
        days--;
    }

    /* Civil date from a day count (proleptic Gregorian calendar). */
    days += 719468;
    era = (days >= 0 ? days : days - 146096) / 146097;
    doe = days - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    day = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    month = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    year = yoe + era * 400 + (month <= 2);

    snprintf(buf, CTL_TIME_LEN, "%04lld-%02u-%02uT%02d:%02d:%02d.%03dZ",
             (long long)(year % 10000), month, day,
             (int)(rest / 3600000), (int)(rest / 60000 % 60),
             (int)(rest / 1000 % 60), (int)(rest % 1000));
    return buf;
}


/* "-1h30m": a sign, then amounts with units, at least one. */
static int
ctl_time_parse_relative(const char *text, int64_t now_ms, int64_t *ms,
                        char *err, size_t errlen)
{
    int         sign = text[0] == '-' ? -1 : 1;
    const char *p = text + 1;
    int64_t     total = 0;

    if (*p == '\0')
        goto invalid;
    while (*p != '\0') {
        int64_t amount = 0, unit;

        if (!isdigit((unsigned char)*p))
            goto invalid;
        while (isdigit((unsigned char)*p)) {
            amount = amount * 10 + (*p++ - '0');
            if (amount > 100000000)
                goto invalid;
        }
        switch (*p++) {
        case 's': unit = 1000; break;
        case 'm': unit = 60000; break;
        case 'h': unit = 3600000; break;
        case 'd': unit = 86400000; break;
        default: goto invalid;
        }
        total += amount * unit;
        if (total > (int64_t)100000 * 86400000)
            goto invalid;
    }
    *ms = now_ms + sign * total;
    return 0;

invalid:
    snprintf(err, errlen, "invalid relative time '%s': expected a sign and "
             "amounts with units s, m, h or d, such as -2h or -1h30m", text);
    return -1;
}


static int
ctl_time_parse_rfc3339(const char *text, int64_t *ms, char *err,
                       size_t errlen)
{
    const char *p = text;
    int         year, month, day, hour, minute, second, millis = 0;
    int         offset_min = 0;

    if (ctl_time_digits(&p, 4, &year) == -1 || *p++ != '-' ||
        ctl_time_digits(&p, 2, &month) == -1 || *p++ != '-' ||
        ctl_time_digits(&p, 2, &day) == -1)
        goto invalid;

    /* RFC 3339 section 5.6 lets "T" be lower case or a space. */
    if (*p != 'T' && *p != 't' && *p != ' ')
        goto invalid;
    p++;
    if (ctl_time_digits(&p, 2, &hour) == -1 || *p++ != ':' ||
        ctl_time_digits(&p, 2, &minute) == -1 || *p++ != ':' ||
        ctl_time_digits(&p, 2, &second) == -1)
        goto invalid;

    /* Fractional seconds: digits past the millisecond are dropped. */
    if (*p == '.') {
        int scale = 100;

        p++;
        if (!isdigit((unsigned char)*p))
            goto invalid;
        for (; isdigit((unsigned char)*p); p++) {
            millis += (*p - '0') * scale;
            scale /= 10;
        }
    }

    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;

        if (ctl_time_digits(&p, 2, &oh) == -1 || *p++ != ':' ||
            ctl_time_digits(&p, 2, &om) == -1 || oh > 23 || om > 59)
            goto invalid;
        offset_min = sign * (oh * 60 + om);
    } else {
        goto invalid;
    }
    if (*p != '\0')
        goto invalid;

    /* A leap second (:60) counts as the first second of the next minute. */
    if (month < 1 || month > 12 || day < 1 ||
        day > ctl_time_days_in_month(year, month) || hour > 23 ||
        minute > 59 || second > 60) {
        snprintf(err, errlen, "invalid time '%s': no such date or time of "
                 "day", text);
        return -1;
    }

    *ms = ((ctl_time_days_from_civil(year, month, day) * 86400 +
            hour * 3600 + minute * 60 + second - offset_min * 60) * 1000) +
          millis;
    return 0;

invalid:
    snprintf(err, errlen, "invalid time '%s': expected RFC 3339 such as "
             "2026-12-04T15:00:00Z, or a relative time such as -2h", text);
    return -1;
}


static int
ctl_time_digits(const char **p, int count, int *value)
{
    *value = 0;
    for (int i = 0; i < count; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        *value = *value * 10 + ((*p)[i] - '0');
    }
    *p += count;
    return 0;
}


/* Days since 1970-01-01 in the proleptic Gregorian calendar. */
static int64_t
ctl_time_days_from_civil(int64_t year, int month, int day)
{
    int64_t era, yoe, doy, doe;

    year -= month <= 2;
    era = (year >= 0 ? year : year - 399) / 400;
    yoe = year - era * 400;
    doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}


static int
ctl_time_days_in_month(int year, int month)
{
    static const int days[] = { 31, 28, 31, 30, 31, 30,
                                31, 31, 30, 31, 30, 31 };
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

    return days[month - 1] + (month == 2 && leap);
}

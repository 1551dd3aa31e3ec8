/*  clock: wall and monotonic time (see clock.h). */
#include "clock.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*  The hook's file, looked up once (getenv walks the whole environment,
    and the time is read for every request): 0 not yet, 1 none, 2 s_path. */
static atomic_int s_state;
static char s_path[4096];
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;

void
clock_test_reload (void)
{
    pthread_mutex_lock (&s_lock);
    atomic_store (&s_state, 0);
    pthread_mutex_unlock (&s_lock);
}

static int64_t
s_test_offset (void)
{
    int state = atomic_load (&s_state);
    if (state == 0) {
        pthread_mutex_lock (&s_lock);
        state = atomic_load (&s_state);
        if (state == 0) {
            const char *path = getenv ("PARTA_TEST_CLOCK_FILE");
            state = path && *path && strlen (path) < sizeof s_path ? 2 : 1;
            if (state == 2)
                memcpy (s_path, path, strlen (path) + 1);
            atomic_store (&s_state, state);
        }
        pthread_mutex_unlock (&s_lock);
    }
    if (state != 2)
        return 0;
    FILE *f = fopen (s_path, "r");
    if (!f)
        return 0;
    long long off = 0;
    if (fscanf (f, "%lld", &off) != 1)
        off = 0;
    fclose (f);
    return off;
}

int64_t
clock_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + s_test_offset ();
}

int64_t
clock_mono_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
clock_mono_ms (void)
{
    return clock_mono_us () / 1000;
}

void
clock_format_rfc3339 (int64_t unix_ms, char *out, size_t len)
{
    /*  Years 0000..9999 only: what RFC 3339 can write (and no overflow
        below for values that come from outside). */
    if (unix_ms < CLOCK_RFC3339_MIN_MS)
        unix_ms = CLOCK_RFC3339_MIN_MS;
    if (unix_ms > CLOCK_RFC3339_MAX_MS)
        unix_ms = CLOCK_RFC3339_MAX_MS;
    time_t secs = (time_t) (unix_ms >= 0 ? unix_ms / 1000 : (unix_ms - 999) / 1000);
    int ms = (int) (unix_ms - (int64_t) secs * 1000);
    struct tm tm;
    gmtime_r (&secs, &tm);
    if (ms)
        snprintf (out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    else
        snprintf (out, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int
s_digits (const char *p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit ((unsigned char) p[i]))
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 0;
}

/*  Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
    civil-from-days inverse), so no timezone state is touched. */
static int64_t
s_days_from_civil (int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int
clock_parse_rfc3339 (const char *t, int64_t *unix_ms)
{
    int Y, M, D, h, m, s;
    if (!t || strlen (t) < 20)
        return -1;
    if (s_digits (t, 4, &Y) || t[4] != '-' || s_digits (t + 5, 2, &M) || t[7] != '-'
        || s_digits (t + 8, 2, &D) || (t[10] != 'T' && t[10] != 't')
        || s_digits (t + 11, 2, &h) || t[13] != ':' || s_digits (t + 14, 2, &m)
        || t[16] != ':' || s_digits (t + 17, 2, &s))
        return -1;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1] || h > 23 || m > 59 || s > 60)
        return -1;
    int leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
    if (M == 2 && D == 29 && !leap)
        return -1;
    const char *p = t + 19;
    int ms = 0;
    if (*p == '.') {
        p++;
        int digits = 0;
        while (isdigit ((unsigned char) *p)) {
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
            digits++;
            p++;
        }
        if (digits == 0)
            return -1;
        for (; digits < 3; digits++)
            ms *= 10;
    }
    int64_t offset_min = 0;
    if (*p == 'Z' || *p == 'z')
        p++;
    else if (*p == '+' || *p == '-') {
        int oh, om;
        if (s_digits (p + 1, 2, &oh) || p[3] != ':' || s_digits (p + 4, 2, &om) || oh > 23
            || om > 59)
            return -1;
        offset_min = (oh * 60 + om) * (*p == '+' ? 1 : -1);
        p += 6;
    }
    else
        return -1;
    if (*p)
        return -1;
    if (s == 60)
        s = 59;
    int64_t secs = s_days_from_civil (Y, M, D) * 86400 + h * 3600 + m * 60 + s - offset_min * 60;
    *unix_ms = secs * 1000 + ms;
    return 0;
}

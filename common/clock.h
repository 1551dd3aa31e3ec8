/*  clock: wall time in unix milliseconds, with a test hook. When the
    environment variable PARTA_TEST_CLOCK_FILE names a file, its content (a
    signed integer, milliseconds) is added to the time, so tests can move a
    running service's clock forward (code expiry, session age). Monotonic time
    for timeouts comes from clock_mono_ms and is never shifted. */
#ifndef PARTA_CLOCK_H
#define PARTA_CLOCK_H

#include <stddef.h>
#include <stdint.h>

int64_t clock_now_ms (void);
/*  Looks PARTA_TEST_CLOCK_FILE up again: for tests that change it in their
    own process (it is otherwise read once). Call it only while no other
    thread reads the clock. */
void clock_test_reload (void);
int64_t clock_mono_ms (void);
int64_t clock_mono_us (void);

#define CLOCK_RFC3339_MIN_MS (-62167219200000LL)  /* 0000-01-01T00:00:00Z */
#define CLOCK_RFC3339_MAX_MS 253402300799999LL      /* 9999-12-31T23:59:59.999Z */

/*  RFC 3339 UTC with millisecond precision when not whole seconds:
    "2026-11-28T09:00:00Z" or "2026-11-28T09:00:00.250Z". Times outside
    years 0000..9999 are written as the nearest end of that range. */
void clock_format_rfc3339 (int64_t unix_ms, char *out, size_t len);
/*  Parses RFC 3339 (Z or ±hh:mm offset, optional fraction). 0 on success. */
int clock_parse_rfc3339 (const char *text, int64_t *unix_ms);

#endif

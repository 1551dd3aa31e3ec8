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
int64_t clock_mono_ms (void);
int64_t clock_mono_us (void);

/*  RFC 3339 UTC with millisecond precision when not whole seconds:
    "2026-11-28T09:00:00Z" or "2026-11-28T09:00:00.250Z". */
void clock_format_rfc3339 (int64_t unix_ms, char *out, size_t len);
/*  Parses RFC 3339 (Z or ±hh:mm offset, optional fraction). 0 on success. */
int clock_parse_rfc3339 (const char *text, int64_t *unix_ms);

#endif

/*  Unit tests of clock: RFC 3339 formatting and parsing (offsets,
    fractions, impossible dates, garbage) and the test clock file that moves
    wall time but never monotonic time. */
#include "clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

/*  2026-11-28T09:00:00Z */
#define T0 1795856400000LL

static int64_t
s_parse_ok (const char *text)
{
    int64_t ms = -12345;
    if (clock_parse_rfc3339 (text, &ms) != 0)
        fail_msg ("refused: %s", text);
    return ms;
}

static void
s_parse_bad (const char *text)
{
    int64_t ms = 0;
    if (clock_parse_rfc3339 (text, &ms) == 0)
        fail_msg ("accepted: %s", text ? text : "(null)");
}

static void
test_format (void **state)
{
    (void) state;
    char out[64];
    clock_format_rfc3339 (0, out, sizeof out);
    assert_string_equal (out, "1970-01-01T00:00:00Z");
    clock_format_rfc3339 (T0, out, sizeof out);
    assert_string_equal (out, "2026-11-28T09:00:00Z");
    clock_format_rfc3339 (T0 + 250, out, sizeof out);
    assert_string_equal (out, "2026-11-28T09:00:00.250Z");
    clock_format_rfc3339 (T0 + 1, out, sizeof out);
    assert_string_equal (out, "2026-11-28T09:00:00.001Z");
    clock_format_rfc3339 (T0 + 59999, out, sizeof out);
    assert_string_equal (out, "2026-11-28T09:00:59.999Z");
    /*  before the epoch the fraction still counts forward within the second */
    clock_format_rfc3339 (-1, out, sizeof out);
    assert_string_equal (out, "1969-12-31T23:59:59.999Z");
    clock_format_rfc3339 (-1000, out, sizeof out);
    assert_string_equal (out, "1969-12-31T23:59:59Z");
    /*  leap day */
    clock_format_rfc3339 (1709164800000LL, out, sizeof out);
    assert_string_equal (out, "2024-02-29T00:00:00Z");
    /*  values from outside (a peer's) cannot overflow: the range's ends */
    clock_format_rfc3339 (INT64_MIN, out, sizeof out);
    assert_string_equal (out, "0000-01-01T00:00:00Z");
    clock_format_rfc3339 (INT64_MAX, out, sizeof out);
    assert_string_equal (out, "9999-12-31T23:59:59.999Z");
    /*  a short buffer is cut, not overrun */
    char small[11];
    memset (small, 'x', sizeof small);
    clock_format_rfc3339 (T0, small, sizeof small);
    assert_string_equal (small, "2026-11-28");
}

static void
test_parse_basic (void **state)
{
    (void) state;
    assert_int_equal (s_parse_ok ("2026-11-28T09:00:00Z"), T0);
    assert_int_equal (s_parse_ok ("1970-01-01T00:00:00Z"), 0);
    assert_int_equal (s_parse_ok ("1969-12-31T23:59:59.999Z"), -1);
    assert_int_equal (s_parse_ok ("2024-02-29T00:00:00Z"), 1709164800000LL);
    assert_int_equal (s_parse_ok ("2000-02-29T12:00:00Z"), 951825600000LL);
    assert_int_equal (s_parse_ok ("2026-12-31T23:59:59Z"), 1798761599000LL);
    /*  RFC 3339 allows lower-case t and z */
    assert_int_equal (s_parse_ok ("2026-11-28t09:00:00z"), T0);
}

static void
test_parse_offsets (void **state)
{
    (void) state;
    assert_int_equal (s_parse_ok ("2026-11-28T12:00:00+03:00"), T0);
    assert_int_equal (s_parse_ok ("2026-11-28T03:30:00-05:30"), T0);
    assert_int_equal (s_parse_ok ("2026-11-28T09:00:00+00:00"), T0);
    assert_int_equal (s_parse_ok ("2026-11-28T09:00:00-00:00"), T0);
    /*  offsets that cross midnight, a month and a year */
    assert_int_equal (s_parse_ok ("2026-11-29T02:00:00+17:00"), T0);
    assert_int_equal (s_parse_ok ("2026-01-01T01:00:00+03:00"),
                      s_parse_ok ("2025-12-31T22:00:00Z"));
    assert_int_equal (s_parse_ok ("2026-02-28T23:00:00-02:00"),
                      s_parse_ok ("2026-03-01T01:00:00Z"));
    assert_int_equal (s_parse_ok ("2026-11-28T12:00:00.250+03:00"), T0 + 250);
}

static void
test_parse_fractions (void **state)
{
    (void) state;
    assert_int_equal (s_parse_ok ("2026-11-28T09:00:00.5Z"), T0 + 500);
    assert_int_equal (s_parse_ok ("2026-11-28T09:00:00.25Z"), T0 + 250);
    assert_int_equal (s_parse_ok ("2026-11-28T09:00:00.250Z"), T0 + 250);
    assert_int_equal (s_parse_ok ("2026-11-28T09:00:00.007Z"), T0 + 7);
    assert_int_equal (s_parse_ok ("2026-11-28T09:00:00.000Z"), T0);
    /*  digits past milliseconds are dropped, not rounded */
    assert_int_equal (s_parse_ok ("2026-11-28T09:00:00.123999Z"), T0 + 123);
    assert_int_equal (s_parse_ok ("2026-11-28T09:00:00.999999999Z"), T0 + 999);
    s_parse_bad ("2026-11-28T09:00:00.Z");
    s_parse_bad ("2026-11-28T09:00:00.+03:00");
    s_parse_bad ("2026-11-28T09:00:00,5Z");
}

static void
test_round_trip (void **state)
{
    (void) state;
    /*  every formatted time parses back to itself, whole seconds or not */
    srand (12345);
    for (int i = 0; i < 20000; i++) {
        int64_t ms = ((int64_t) rand () << 20 ^ rand ()) % 4102444800000LL;   /* < 2100 */
        if (i % 3 == 0)
            ms -= ms % 1000;
        if (i % 7 == 0)
            ms = -ms;
        char out[64];
        clock_format_rfc3339 (ms, out, sizeof out);
        int64_t back = 0;
        if (clock_parse_rfc3339 (out, &back) != 0 || back != ms)
            fail_msg ("%lld -> %s -> %lld", (long long) ms, out, (long long) back);
    }
}

static void
test_invalid_dates (void **state)
{
    (void) state;
    s_parse_bad ("2026-02-29T00:00:00Z");       /* not a leap year */
    s_parse_bad ("1900-02-29T00:00:00Z");       /* divisible by 100 */
    s_parse_bad ("2026-02-30T00:00:00Z");
    s_parse_bad ("2026-04-31T00:00:00Z");
    s_parse_bad ("2026-11-31T00:00:00Z");
    s_parse_bad ("2026-01-32T00:00:00Z");
    s_parse_bad ("2026-13-01T00:00:00Z");
    s_parse_bad ("2026-00-01T00:00:00Z");
    s_parse_bad ("2026-11-00T00:00:00Z");
    s_parse_bad ("2026-11-28T24:00:00Z");
    s_parse_bad ("2026-11-28T09:60:00Z");
    s_parse_bad ("2026-11-28T09:00:61Z");
    s_parse_bad ("2026-11-28T09:00:00+24:00");
    s_parse_bad ("2026-11-28T09:00:00+03:60");
}

static void
test_garbage (void **state)
{
    (void) state;
    s_parse_bad (NULL);
    s_parse_bad ("");
    s_parse_bad ("now");
    s_parse_bad ("2026-11-28");
    s_parse_bad ("2026-11-28T09:00:00");        /* no zone */
    s_parse_bad ("2026-11-28T09:00Z");
    s_parse_bad ("2026-11-28 09:00:00Z");
    s_parse_bad ("2026-1-28T09:00:00Z");
    s_parse_bad ("26-11-28T09:00:00Z");
    s_parse_bad ("2026/11/28T09:00:00Z");
    s_parse_bad (" 2026-11-28T09:00:00Z");
    s_parse_bad ("2026-11-28T09:00:00Z ");
    s_parse_bad ("2026-11-28T09:00:00ZZ");
    s_parse_bad ("2026-11-28T09:00:00+03");
    s_parse_bad ("2026-11-28T09:00:00+0300");
    s_parse_bad ("2026-11-28T09:00:00+03:00x");
    s_parse_bad ("2026-11-28T09:00:00+");
    s_parse_bad ("2026-11-28T09:00:00+3:00");
    s_parse_bad ("2026-11-28T09:00:00UTC");
    s_parse_bad ("+026-11-28T09:00:00Z");
    s_parse_bad ("2026-11-28T-9:00:00Z");
    s_parse_bad ("2026-11-28T09:00:0aZ");
    s_parse_bad ("2026-11-28T09:00:00.5");
    s_parse_bad ("\xff\xff\xff\xff-11-28T09:00:00Z");
}

/* --- the test clock file --- */

static char s_dir[256];
static char s_file[300];

static int
s_clock_setup (void **state)
{
    (void) state;
    const char *tmp = getenv ("TMPDIR");
    snprintf (s_dir, sizeof s_dir, "%s/parta-clock-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp (s_dir))
        return -1;
    snprintf (s_file, sizeof s_file, "%s/offset", s_dir);
    return 0;
}

static int
s_clock_teardown (void **state)
{
    (void) state;
    unsetenv ("PARTA_TEST_CLOCK_FILE");
    clock_test_reload ();
    unlink (s_file);
    return rmdir (s_dir);
}

static void
s_write_offset (const char *text)
{
    FILE *f = fopen (s_file, "w");
    assert_non_null (f);
    fputs (text, f);
    assert_int_equal (fclose (f), 0);
}

static int64_t
s_real_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*  clock_now_ms must lie between the real time read before and after it,
    shifted by `offset`: a bracket, so no assumption about speed. */
static void
s_assert_shifted (int64_t offset)
{
    int64_t before = s_real_ms ();
    int64_t now = clock_now_ms ();
    int64_t after = s_real_ms ();
    if (now < before + offset || now > after + offset)
        fail_msg ("now %lld not in [%lld, %lld] + %lld", (long long) now, (long long) before,
                  (long long) after, (long long) offset);
}

static void
test_clock_file_offset (void **state)
{
    (void) state;
    unsetenv ("PARTA_TEST_CLOCK_FILE");
    clock_test_reload ();
    s_assert_shifted (0);

    setenv ("PARTA_TEST_CLOCK_FILE", s_file, 1);
    clock_test_reload ();
    s_write_offset ("86400000\n");
    s_assert_shifted (86400000);
    /*  the file is read each time: a running service follows it */
    s_write_offset ("-5000");
    s_assert_shifted (-5000);
    s_write_offset ("31536000000000");      /* a thousand years: no overflow */
    s_assert_shifted (31536000000000LL);
    /*  garbage or an empty file means no shift */
    s_write_offset ("soon");
    s_assert_shifted (0);
    s_write_offset ("");
    s_assert_shifted (0);
    /*  so does a file that does not exist (yet) */
    unlink (s_file);
    s_assert_shifted (0);
    setenv ("PARTA_TEST_CLOCK_FILE", "", 1);
    clock_test_reload ();
    s_assert_shifted (0);
}

static void
test_mono_not_shifted (void **state)
{
    (void) state;
    setenv ("PARTA_TEST_CLOCK_FILE", s_file, 1);
    clock_test_reload ();
    s_write_offset ("86400000");
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    int64_t before = (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    int64_t mono = clock_mono_ms ();
    int64_t mono_us = clock_mono_us ();
    clock_gettime (CLOCK_MONOTONIC, &ts);
    int64_t after = (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    assert_true (mono >= before && mono <= after);
    assert_true (mono_us / 1000 >= before && mono_us / 1000 <= after);
    /*  monotonic time never goes back */
    int64_t prev = clock_mono_us ();
    for (int i = 0; i < 10000; i++) {
        int64_t next = clock_mono_us ();
        assert_true (next >= prev);
        prev = next;
    }
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_format),
        cmocka_unit_test (test_parse_basic),
        cmocka_unit_test (test_parse_offsets),
        cmocka_unit_test (test_parse_fractions),
        cmocka_unit_test (test_round_trip),
        cmocka_unit_test (test_invalid_dates),
        cmocka_unit_test (test_garbage),
        cmocka_unit_test_setup_teardown (test_clock_file_offset, s_clock_setup, s_clock_teardown),
        cmocka_unit_test_setup_teardown (test_mono_not_shifted, s_clock_setup, s_clock_teardown),
    };
    return cmocka_run_group_tests_name ("clock", tests, NULL, NULL);
}

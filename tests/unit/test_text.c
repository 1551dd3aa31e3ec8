/*  text: what people type, as every service checks it. */
#include "text.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

static void
test_utf8 (void **state)
{
    (void) state;
    const char *good[] = {"", "abc", "Привет", "ёЁ", "日本", "\xF0\x9F\x98\x80", "tab\there"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        assert_true (text_utf8_valid (good[i], strlen (good[i])));
    const char *bad[] = {
        "\xC0\xAF",             /* overlong '/' */
        "\xE0\x80\xAF",         /* overlong, three bytes */
        "\xED\xA0\x80",         /* a surrogate */
        "\xF4\x90\x80\x80",     /* above U+10FFFF */
        "\xD0",                 /* cut short */
        "a\x80z",               /* a lone continuation byte */
        "\xFF",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false (text_utf8_valid (bad[i], strlen (bad[i])));
    assert_int_equal (text_utf8_length ("Привет"), 6);
    assert_int_equal (text_utf8_length ("a\xF0\x9F\x98\x80z"), 3);
}

static void
test_trim (void **state)
{
    (void) state;
    char out[64];
    size_t len = 99;
    assert_int_equal (text_trim ("  a b \t\n", out, sizeof out, &len), 0);
    assert_int_equal (len, 3);
    assert_string_equal (out, "a b");
    /*  U+00A0 (no-break space) counts as space at either end only. */
    assert_int_equal (text_trim ("\xC2\xA0x\xC2\xA0y\xC2\xA0", out, sizeof out, &len), 0);
    assert_int_equal (len, 4);
    assert_string_equal (out, "x\xC2\xA0y");
    assert_int_equal (text_trim (" \r\n ", out, sizeof out, &len), 0);
    assert_int_equal (len, 0);
    assert_string_equal (out, "");
    /*  A text that does not fit is refused, never cut: the buffer is left
        empty. What fits exactly (with its NUL) is taken. */
    assert_int_equal (text_trim ("abcdef", out, 4, &len), -1);
    assert_string_equal (out, "");
    assert_int_equal (text_trim ("  abc  ", out, 4, &len), 0);
    assert_string_equal (out, "abc");
    assert_int_equal (text_trim ("abc", out, 0, &len), -1);
}

static void
test_line (void **state)
{
    (void) state;
    char out[256];
    assert_null (text_check_line ("  Иван Петров ", 2, 200, out, sizeof out));
    assert_string_equal (out, "Иван Петров");
    assert_non_null (text_check_line ("   ", 1, 200, out, sizeof out));
    assert_non_null (text_check_line ("Я", 2, 200, out, sizeof out));
    assert_non_null (text_check_line ("a\nb", 1, 200, out, sizeof out));
    assert_non_null (text_check_line ("a\tb", 1, 200, out, sizeof out));
    assert_non_null (text_check_line ("a\x7F" "b", 1, 200, out, sizeof out));
    assert_non_null (text_check_line ("a\xC2\x85" "b", 1, 200, out, sizeof out));    /* U+0085 */
    assert_non_null (text_check_line ("\xC0\xAF", 1, 200, out, sizeof out));
    assert_non_null (text_check_line (NULL, 1, 200, out, sizeof out));
    /*  Lengths are in code points: 200 Cyrillic letters are 400 bytes. */
    char big[1024];
    for (int i = 0; i < 200; i++)
        memcpy (big + 2 * i, "Я", 2);
    big[400] = 0;
    char wide[1024];
    assert_null (text_check_line (big, 1, 200, wide, sizeof wide));
    memcpy (big + 400, "Я", 3);
    assert_non_null (text_check_line (big, 1, 200, wide, sizeof wide));
}

static void
test_multiline (void **state)
{
    (void) state;
    char out[256];
    assert_null (text_check_multiline ("\n строка 1\n\tстрока 2 \n", 1, 4096, out, sizeof out));
    assert_string_equal (out, "строка 1\n\tстрока 2");
    /*  Windows and old Mac line breaks become "\n". */
    assert_null (text_check_multiline ("a\r\nb\rc\r\n\r\nd", 1, 4096, out, sizeof out));
    assert_string_equal (out, "a\nb\nc\n\nd");
    assert_non_null (text_check_multiline ("a\x01" "b", 1, 4096, out, sizeof out));
    assert_non_null (text_check_multiline ("a\x1B[31mred", 1, 4096, out, sizeof out));
    assert_non_null (text_check_multiline ("a\xC2\x9F" "b", 1, 4096, out, sizeof out));
    assert_non_null (text_check_multiline ("\r\n\t ", 1, 4096, out, sizeof out));
    assert_non_null (text_check_multiline ("abcde", 1, 4, out, sizeof out));
    assert_null (text_check_multiline ("abcd", 1, 4, out, sizeof out));
}

/*  A buffer of max * 4 + 1 bytes (what every service gives) holds any text
    of max characters, four bytes each; one character more is "too long",
    not a text cut to fit and counted as max. */
static void
test_four_byte_limit (void **state)
{
    (void) state;
    const char *smile = "\xF0\x9F\x98\x80";     /* U+1F600, four bytes */
    enum { MAX = 200 };
    char in[MAX * 4 + 16], out[MAX * 4 + 1];
    for (int i = 0; i < MAX; i++)
        memcpy (in + 4 * i, smile, 4);
    in[MAX * 4] = 0;
    assert_null (text_check_line (in, 1, MAX, out, sizeof out));
    assert_int_equal (text_utf8_length (out), MAX);
    assert_string_equal (out, in);
    /*  One more character, of any width, is too long. */
    strcpy (in + MAX * 4, "a");
    assert_string_equal (text_check_line (in, 1, MAX, out, sizeof out), "is too long");
    assert_string_equal (text_check_multiline (in, 1, MAX, out, sizeof out), "is too long");
    memcpy (in + MAX * 4, smile, 4);
    in[MAX * 4 + 4] = 0;
    assert_string_equal (text_check_line (in, 1, MAX, out, sizeof out), "is too long");
    /*  Spaces around a text of max characters are trimmed, not counted. */
    char padded[MAX * 4 + 16];
    snprintf (padded, sizeof padded, "  %.*s \n", MAX * 4, in);
    assert_null (text_check_multiline (padded, 1, MAX, out, sizeof out));
    assert_int_equal (text_utf8_length (out), MAX);
    /*  A buffer too small for a text within max is refused the same way
        (a caller's mistake, but never a silently shortened text). */
    char small[16];
    assert_string_equal (text_check_line ("abcdefghijklmnopqrstuvwxyz", 1, MAX, small, sizeof small),
                         "is too long");
}

static void
test_phone (void **state)
{
    (void) state;
    char out[17];
    const char *same[] = {"+7 (999) 123-45-67", "8 999 123-45-67", "8-999-123-45-67",
                          "79991234567", "9991234567", " +79991234567", "8(999)123.45.67"};
    for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
        assert_int_equal (text_phone_normalize (same[i], out, sizeof out), 0);
        assert_string_equal (out, "+79991234567");
    }
    assert_int_equal (text_phone_normalize ("+44 20 7946 0958", out, sizeof out), 0);
    assert_string_equal (out, "+442079460958");
    const char *bad[] = {"", "abc", "+7 999 123 45 6", "+7999123456789", "12345",
                         "+0123456789", "8 999 123 45 67 ext 1", "+79991234567+",
                         "1234567890123456"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal (text_phone_normalize (bad[i], out, sizeof out), -1);
    assert_int_equal (text_phone_normalize ("+79991234567", out, 16), -1);
    assert_int_equal (text_phone_normalize (NULL, out, sizeof out), -1);
}

static void
test_fold_date_email (void **state)
{
    (void) state;
    char out[64];
    text_fold ("УРОК Ёлка ABC ёж", out, sizeof out);
    assert_string_equal (out, "урок елка abc еж");
    assert_true (text_date_valid ("2026-02-28"));
    assert_true (text_date_valid ("2024-02-29"));
    assert_false (text_date_valid ("2026-02-29"));
    assert_false (text_date_valid ("2026-13-01"));
    assert_false (text_date_valid ("26-01-01"));
    assert_false (text_date_valid ("1899-12-31"));
    assert_true (text_email_valid ("dean@college.ru"));
    assert_false (text_email_valid ("dean@college"));
    assert_false (text_email_valid ("dean college@x.ru"));
    assert_false (text_email_valid ("a@b@c.ru"));
    assert_false (text_email_valid ("@college.ru"));
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_utf8),
        cmocka_unit_test (test_trim),
        cmocka_unit_test (test_line),
        cmocka_unit_test (test_multiline),
        cmocka_unit_test (test_four_byte_limit),
        cmocka_unit_test (test_phone),
        cmocka_unit_test (test_fold_date_email),
    };
    return cmocka_run_group_tests_name ("text", tests, NULL, NULL);
}

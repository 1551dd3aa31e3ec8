/*  text: see text.h. */
#include "text.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
text_utf8_valid (const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *) str;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned int cp;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        }
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        }
        else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        }
        else
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF))
            || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n + 1;
    }
    return 1;
}

size_t
text_utf8_length (const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char) *s & 0xC0) != 0x80)
            n++;
    return n;
}

static int
s_space_at (const char *s, size_t *width)
{
    if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\v' || *s == '\f') {
        *width = 1;
        return 1;
    }
    if ((unsigned char) s[0] == 0xC2 && (unsigned char) s[1] == 0xA0) {
        *width = 2;
        return 1;
    }
    return 0;
}

int
text_trim (const char *s, char *out, size_t outlen, size_t *trimmed)
{
    *trimmed = 0;
    if (outlen == 0)
        return -1;
    out[0] = 0;
    size_t w;
    while (*s && s_space_at (s, &w))
        s += w;
    size_t len = strlen (s);
    /*  Trim from the end: step back over trailing spaces. */
    for (;;) {
        if (len >= 1 && strchr (" \t\n\r\v\f", s[len - 1]) && s[len - 1])
            len--;
        else if (len >= 2 && (unsigned char) s[len - 2] == 0xC2 && (unsigned char) s[len - 1] == 0xA0)
            len -= 2;
        else
            break;
    }
    if (len >= outlen)
        return -1;
    memcpy (out, s, len);
    out[len] = 0;
    *trimmed = len;
    return 0;
}

static const char *
s_check (const char *s, size_t min, size_t max, int multiline, char *out, size_t outlen)
{
    if (!s)
        s = "";
    size_t raw = strlen (s);
    if (!text_utf8_valid (s, raw))
        return "must be valid UTF-8 text";
    /*  Bound the work before trimming: max code points are at most 4 bytes. */
    if (raw > max * 4 + 64)
        return "is too long";
    size_t len;
    if (text_trim (s, out, outlen, &len))
        return "is too long";
    if (multiline) {
        /*  Line breaks as Windows and old Macs write them become "\n". */
        size_t j = 0;
        for (size_t i = 0; i < len; i++) {
            if (out[i] == '\r') {
                out[j++] = '\n';
                if (i + 1 < len && out[i + 1] == '\n')
                    i++;
            }
            else
                out[j++] = out[i];
        }
        out[j] = 0;
        len = j;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) out[i];
        if (c < 0x20 || c == 0x7F) {
            if (multiline && (c == '\n' || c == '\t'))
                continue;
            return multiline ? "must not contain control characters other than newline and tab"
                             : "must not contain control characters or line breaks";
        }
        /*  C1 controls U+0080..U+009F are C2 80..C2 9F. */
        if (c == 0xC2 && i + 1 < len && (unsigned char) out[i + 1] >= 0x80
            && (unsigned char) out[i + 1] <= 0x9F)
            return "must not contain control characters";
    }
    size_t n = text_utf8_length (out);
    if (n < min)
        return min <= 1 ? "must not be empty" : "is too short";
    if (n > max)
        return "is too long";
    return NULL;
}

const char *
text_check_line (const char *s, size_t min, size_t max, char *out, size_t outlen)
{
    return s_check (s, min, max, 0, out, outlen);
}

const char *
text_check_multiline (const char *s, size_t min, size_t max, char *out, size_t outlen)
{
    return s_check (s, min, max, 1, out, outlen);
}

int
text_phone_normalize (const char *in, char *out, size_t outlen)
{
    if (!in || outlen < 17)
        return -1;
    char digits[32];
    size_t n = 0;
    int plus = 0;
    const char *p = in;
    while (*p == ' ')
        p++;
    if (*p == '+') {
        plus = 1;
        p++;
    }
    for (; *p; p++) {
        if (isdigit ((unsigned char) *p)) {
            if (n >= 15)
                return -1;
            digits[n++] = *p;
        }
        else if (!strchr (" -().", *p))
            return -1;
    }
    digits[n] = 0;
    if (plus) {
        if (n < 8 || n > 15 || digits[0] == '0')
            return -1;
        if (digits[0] == '7' && n != 11)
            return -1;      /* Russia and Kazakhstan: +7 and ten digits */
        snprintf (out, outlen, "+%s", digits);
        return 0;
    }
    if (n == 11 && (digits[0] == '8' || digits[0] == '7')) {
        snprintf (out, outlen, "+7%s", digits + 1);
        return 0;
    }
    if (n == 10 && digits[0] == '9') {
        snprintf (out, outlen, "+7%s", digits);
        return 0;
    }
    return -1;
}

int
text_email_valid (const char *s)
{
    if (!s)
        return 0;
    size_t len = strlen (s);
    if (len < 3 || len > 254)
        return 0;
    const char *at = strchr (s, '@');
    if (!at || at == s || strchr (at + 1, '@'))
        return 0;
    const char *dot = strrchr (at + 1, '.');
    if (!dot || dot == at + 1 || dot[1] == 0)
        return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char) *p <= ' ' || *p == 0x7F)
            return 0;
    return 1;
}

size_t
text_fold (const char *in, char *out, size_t outlen)
{
    const unsigned char *s = (const unsigned char *) in;
    size_t j = 0;
    if (outlen == 0)
        return 0;
    while (*s && j + 4 < outlen) {
        unsigned char c = s[0];
        if (c < 0x80) {
            out[j++] = (char) tolower (c);
            s++;
            continue;
        }
        if ((c == 0xD0 || c == 0xD1) && s[1]) {
            unsigned int cp = ((c & 0x1F) << 6) | (s[1] & 0x3F);
            if (cp >= 0x410 && cp <= 0x42F)
                cp += 0x20;             /* А..Я -> а..я */
            else if (cp >= 0x400 && cp <= 0x40F)
                cp += 0x50;             /* Ѐ..Џ -> ѐ..џ */
            if (cp == 0x451)
                cp = 0x435;             /* ё -> е */
            out[j++] = (char) (0xC0 | (cp >> 6));
            out[j++] = (char) (0x80 | (cp & 0x3F));
            s += 2;
            continue;
        }
        out[j++] = (char) c;
        s++;
    }
    out[j] = 0;
    return j;
}

int
text_date_valid (const char *s)
{
    if (!s || strlen (s) != 10 || s[4] != '-' || s[7] != '-')
        return 0;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && !isdigit ((unsigned char) s[i]))
            return 0;
    int y = atoi (s), m = atoi (s + 5), d = atoi (s + 8);
    static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1900 || y > 2999 || m < 1 || m > 12 || d < 1 || d > days[m - 1])
        return 0;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return !(m == 2 && d == 29 && !leap);
}

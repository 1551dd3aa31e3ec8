/*  text: validation and normalisation of what people type: UTF-8, names,
    phones. Every service applies the same rules (API.md, Conventions). */
#ifndef PARTA_TEXT_H
#define PARTA_TEXT_H

#include <stddef.h>

/*  1 if `s` is valid UTF-8 (no overlongs, no surrogates). */
int text_utf8_valid (const char *s, size_t len);
/*  Code points in valid UTF-8. */
size_t text_utf8_length (const char *s);

/*  Trims leading and trailing white space (ASCII and U+00A0) into `out`
    and sets *trimmed to its length in bytes. Returns 0, or -1 when the
    trimmed text and its NUL do not fit in outlen bytes: then `out` is
    left empty, never a cut copy, so a text too long is refused, not
    shortened. */
int text_trim (const char *s, char *out, size_t outlen, size_t *trimmed);

/*  Checks a single-line text field: valid UTF-8, no control characters,
    trimmed length in code points within [min, max]. Writes the trimmed
    text to out (max * 4 + 1 bytes hold any text that passes). Returns
    NULL when fine, else a message for the user; a text that does not fit
    in out is "too long". */
const char *text_check_line (const char *s, size_t min, size_t max, char *out, size_t outlen);

/*  Checks a multi-line text (messages): like text_check_line but newline
    and tab are allowed. */
const char *text_check_multiline (const char *s, size_t min, size_t max, char *out,
                                  size_t outlen);

/*  Normalises a phone number to E.164: "+79991234567" from "+7 (999)
    123-45-67", "8 999 123-45-67", "8-999-123-45-67", "79991234567",
    "9991234567"; other countries as "+<8..15 digits>". Separators allowed:
    space, '-', '(', ')', '.'. Returns 0, or -1 for anything else. `out`
    needs 17 bytes. */
int text_phone_normalize (const char *in, char *out, size_t outlen);

/*  Folds text for case-insensitive search: ASCII and Cyrillic letters to
    lower case, "ё" to "е". Other characters are kept. Returns the length. */
size_t text_fold (const char *in, char *out, size_t outlen);

/*  1 if `s` is a calendar date "YYYY-MM-DD" (years 1900..2999). */
int text_date_valid (const char *s);

/*  A plausible e-mail address (one '@', a dot in the domain, no spaces,
    at most 254 bytes). */
int text_email_valid (const char *s);

#endif

/*  ulid: 128-bit sortable identifiers, 26 characters of Crockford base32:
    48 bits of unix milliseconds then 80 random bits (libsodium). Ids made by
    one process within one millisecond increase too (monotonic random part). */
#ifndef PARTA_ULID_H
#define PARTA_ULID_H

#include <stdint.h>

#define ULID_LEN 26

/*  Writes 26 characters and a NUL into out (ULID_LEN + 1 bytes). */
void ulid_make (char *out);
/*  Same with an explicit time (tests). */
void ulid_make_at (char *out, int64_t unix_ms);
/*  1 if `text` is a well-formed ULID (26 chars, Crockford alphabet, no overflow). */
int ulid_valid (const char *text);
/*  The timestamp part of a valid ULID. */
int64_t ulid_time (const char *text);

#endif

/*  ulid: see ulid.h. */
#include "ulid.h"
#include "clock.h"

#include <pthread.h>
#include <sodium.h>
#include <string.h>

static const char s_alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t s_last_ms = -1;
static uint8_t s_last_rand[10];

static void
s_encode (const uint8_t bytes[16], char *out)
{
    /*  128 bits -> 26 base32 digits; the first digit carries 3 bits. */
    int bit = -2;               /* virtual leading zeros: 130 bits in all */
    for (int i = 0; i < 26; i++) {
        int v = 0;
        for (int b = 0; b < 5; b++, bit++) {
            v <<= 1;
            if (bit >= 0)
                v |= (bytes[bit / 8] >> (7 - bit % 8)) & 1;
        }
        out[i] = s_alphabet[v];
    }
    out[26] = 0;
}

void
ulid_make_at (char *out, int64_t unix_ms)
{
    uint8_t bytes[16];
    for (int i = 0; i < 6; i++)
        bytes[i] = (uint8_t) (unix_ms >> (8 * (5 - i)));
    pthread_mutex_lock (&s_lock);
    if (unix_ms == s_last_ms) {
        /*  Same millisecond: increment the previous random part. */
        for (int i = 9; i >= 0; i--)
            if (++s_last_rand[i] != 0)
                break;
    }
    else {
        randombytes_buf (s_last_rand, sizeof s_last_rand);
        s_last_ms = unix_ms;
    }
    memcpy (bytes + 6, s_last_rand, 10);
    pthread_mutex_unlock (&s_lock);
    s_encode (bytes, out);
}

void
ulid_make (char *out)
{
    ulid_make_at (out, clock_now_ms ());
}

static int
s_value (char c)
{
    const char *p = c ? strchr (s_alphabet, c) : NULL;
    return p ? (int) (p - s_alphabet) : -1;
}

int
ulid_valid (const char *text)
{
    if (!text || strlen (text) != 26)
        return 0;
    for (int i = 0; i < 26; i++)
        if (s_value (text[i]) < 0)
            return 0;
    return s_value (text[0]) <= 7;
}

int64_t
ulid_time (const char *text)
{
    int64_t t = 0;
    for (int i = 0; i < 10; i++)
        t = t * 32 + s_value (text[i]);
    return t;
}

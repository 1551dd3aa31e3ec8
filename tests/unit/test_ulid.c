/*  Unit tests of ulid: the text form (26 Crockford characters, time first),
    the time part, monotonic ids within one millisecond, and what ulid_valid
    refuses. Ids are decoded here independently of ulid.c. */
#include "ulid.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

static const char s_crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/*  Decodes 26 characters into 128 bits (hi: first 64 bits). Fails the test
    on a character outside the alphabet or a first digit above 7. */
static void
s_decode (const char *text, uint64_t *hi, uint64_t *lo)
{
    *hi = *lo = 0;
    for (int i = 0; i < ULID_LEN; i++) {
        assert_true (text[i] != 0);
        const char *p = strchr (s_crockford, text[i]);
        assert_non_null (p);
        uint64_t v = (uint64_t) (p - s_crockford);
        if (i == 0)
            assert_true (v <= 7);
        /*  shift the 128-bit value left by 5 and add v */
        *hi = (*hi << 5) | (*lo >> 59);
        *lo = (*lo << 5) | v;
    }
}

static void
test_make_shape (void **state)
{
    (void) state;
    for (int n = 0; n < 1000; n++) {
        char id[ULID_LEN + 1];
        memset (id, 'x', sizeof id);
        ulid_make (id);
        assert_int_equal (strlen (id), ULID_LEN);
        for (int i = 0; i < ULID_LEN; i++)
            assert_non_null (strchr (s_crockford, id[i]));
        assert_true (id[0] <= '7');
        assert_true (ulid_valid (id));
    }
}

static void
test_time_round_trip (void **state)
{
    (void) state;
    const int64_t times[] = {0,           1,           31,          32,
                             1000,        1469918176385LL, 1795856400000LL,
                             1795856400250LL, (1LL << 47), (1LL << 48) - 1};
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        char id[ULID_LEN + 1];
        ulid_make_at (id, times[i]);
        assert_true (ulid_valid (id));
        assert_int_equal (ulid_time (id), times[i]);
        /*  the first 48 bits are the time, big-endian */
        uint64_t hi, lo;
        s_decode (id, &hi, &lo);
        assert_int_equal ((int64_t) (hi >> 16), times[i]);
    }
}

static void
test_known_encoding (void **state)
{
    (void) state;
    /*  The time prefixes from the ULID specification's examples. */
    char id[ULID_LEN + 1];
    ulid_make_at (id, 1469918176385LL);
    assert_memory_equal (id, "01ARYZ6S41", 10);
    ulid_make_at (id, (1LL << 48) - 1);
    assert_memory_equal (id, "7ZZZZZZZZZ", 10);
    ulid_make_at (id, 0);
    assert_memory_equal (id, "0000000000", 10);
    assert_int_equal (ulid_time ("01ARYZ6S41ZZZZZZZZZZZZZZZZ"), 1469918176385LL);
}

static void
test_monotonic_same_ms (void **state)
{
    (void) state;
    const int64_t t = 1795856400000LL;
    char prev[ULID_LEN + 1];
    ulid_make_at (prev, t);
    for (int n = 0; n < 10000; n++) {
        char next[ULID_LEN + 1];
        ulid_make_at (next, t);
        assert_true (strcmp (prev, next) < 0);
        assert_int_equal (ulid_time (next), t);
        /*  the random part of the next id is the previous one plus one */
        uint64_t phi, plo, nhi, nlo;
        s_decode (prev, &phi, &plo);
        s_decode (next, &nhi, &nlo);
        uint64_t ehi = phi + (plo == UINT64_MAX ? 1 : 0);
        uint64_t elo = plo + 1;
        assert_true (nhi == ehi && nlo == elo);
        memcpy (prev, next, sizeof prev);
    }
}

static void
test_later_ms_sorts_after (void **state)
{
    (void) state;
    char a[ULID_LEN + 1], b[ULID_LEN + 1];
    ulid_make_at (a, 1795856400000LL);
    ulid_make_at (a, 1795856400000LL);
    ulid_make_at (b, 1795856400001LL);
    assert_true (strcmp (a, b) < 0);
    /*  A new millisecond draws a new random part: ids of different
        milliseconds differ after the time part as well (2^-80 chance not). */
    char c[ULID_LEN + 1];
    ulid_make_at (c, 1795856400002LL);
    assert_memory_not_equal (b + 10, c + 10, 16);
}

#define THREADS 4
#define PER_THREAD 2000

typedef struct {
    char ids[PER_THREAD][ULID_LEN + 1];
} batch_t;

static void *
s_make_batch (void *arg)
{
    batch_t *batch = arg;
    for (int i = 0; i < PER_THREAD; i++)
        ulid_make_at (batch->ids[i], 1795856400000LL);
    return NULL;
}

static int
s_cmp_id (const void *a, const void *b)
{
    return strcmp (a, b);
}

static void
test_threads_unique (void **state)
{
    (void) state;
    batch_t *batches = calloc (THREADS, sizeof *batches);
    assert_non_null (batches);
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++)
        assert_int_equal (pthread_create (&threads[t], NULL, s_make_batch, &batches[t]), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join (threads[t], NULL);
    /*  each thread sees its own ids increase */
    for (int t = 0; t < THREADS; t++)
        for (int i = 1; i < PER_THREAD; i++)
            assert_true (strcmp (batches[t].ids[i - 1], batches[t].ids[i]) < 0);
    /*  and no id is made twice across threads */
    char (*all)[ULID_LEN + 1] = (char (*)[ULID_LEN + 1]) batches;
    qsort (all, THREADS * PER_THREAD, ULID_LEN + 1, s_cmp_id);
    for (int i = 1; i < THREADS * PER_THREAD; i++)
        assert_true (strcmp (all[i - 1], all[i]) < 0);
    free (batches);
}

static void
test_valid_rejects (void **state)
{
    (void) state;
    assert_true (ulid_valid ("01ARYZ6S41TSV4RRFFQ69G5FAV"));
    assert_true (ulid_valid ("7ZZZZZZZZZZZZZZZZZZZZZZZZZ"));
    assert_true (ulid_valid ("00000000000000000000000000"));

    assert_false (ulid_valid (NULL));
    assert_false (ulid_valid (""));
    assert_false (ulid_valid ("01ARYZ6S41TSV4RRFFQ69G5FA"));     /* 25 */
    assert_false (ulid_valid ("01ARYZ6S41TSV4RRFFQ69G5FAVX"));   /* 27 */
    /*  Crockford leaves out I, L, O and U */
    assert_false (ulid_valid ("01ARYZ6S41TSV4RRFFQ69G5FAI"));
    assert_false (ulid_valid ("01ARYZ6S41TSV4RRFFQ69G5FAL"));
    assert_false (ulid_valid ("01ARYZ6S41TSV4RRFFQ69G5FAO"));
    assert_false (ulid_valid ("01ARYZ6S41TSV4RRFFQ69G5FAU"));
    /*  Ids are compared and looked up as text, so only the canonical
        upper-case spelling is accepted. */
    assert_false (ulid_valid ("01aryz6s41tsv4rrffq69g5fav"));
    assert_false (ulid_valid ("01ARYZ6S41TSV4RRFFQ69G5FAv"));
    /*  more than 128 bits: the first digit carries only 3 */
    assert_false (ulid_valid ("8ZZZZZZZZZZZZZZZZZZZZZZZZZ"));
    assert_false (ulid_valid ("Z0000000000000000000000000"));
    /*  punctuation, spaces, bytes above ASCII */
    assert_false (ulid_valid ("01ARYZ6S41-SV4RRFFQ69G5FAV"));
    assert_false (ulid_valid (" 1ARYZ6S41TSV4RRFFQ69G5FAV"));
    assert_false (ulid_valid ("01ARYZ6S41TSV4RRFFQ69G5FA\xc3"));
    /*  a NUL inside: strlen is short */
    assert_false (ulid_valid ("01ARYZ6S41TSV4\0RRFFQ69G5FAV"));
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_make_shape),        cmocka_unit_test (test_time_round_trip),
        cmocka_unit_test (test_known_encoding),    cmocka_unit_test (test_monotonic_same_ms),
        cmocka_unit_test (test_later_ms_sorts_after), cmocka_unit_test (test_threads_unique),
        cmocka_unit_test (test_valid_rejects),
    };
    return cmocka_run_group_tests_name ("ulid", tests, NULL, NULL);
}

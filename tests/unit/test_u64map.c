/*  Unit tests of u64map: put, get, replace, remove, growth, iteration, and
    long random runs of inserts and removals checked against a plain array,
    with keys chosen to collide and wrap around the table's end so that
    backward-shift deletion has to move entries across the wrap. */
#include "u64map.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

/*  A value that names its key, so a wrong value is told from a right one. */
static void *
s_value (uint64_t key)
{
    return (void *) (uintptr_t) (key * 2654435761u + 1);
}

static void
test_empty (void **state)
{
    (void) state;
    u64map_t *map = u64map_new ();
    assert_non_null (map);
    assert_int_equal (u64map_size (map), 0);
    assert_null (u64map_get (map, 1));
    assert_null (u64map_get (map, 0));
    assert_null (u64map_remove (map, 1));
    assert_null (u64map_remove (map, 0));
    size_t cursor = 0;
    uint64_t key;
    void *value;
    assert_int_equal (u64map_next (map, &cursor, &key, &value), 0);
    u64map_destroy (&map);
    assert_null (map);
    u64map_destroy (&map);
}

static void
test_put_get_replace_remove (void **state)
{
    (void) state;
    u64map_t *map = u64map_new ();
    assert_int_equal (u64map_put (map, 1, s_value (1)), 0);
    assert_int_equal (u64map_put (map, UINT64_MAX, s_value (UINT64_MAX)), 0);
    assert_int_equal (u64map_put (map, 1ULL << 63, s_value (1ULL << 63)), 0);
    assert_int_equal (u64map_size (map), 3);
    assert_ptr_equal (u64map_get (map, 1), s_value (1));
    assert_ptr_equal (u64map_get (map, UINT64_MAX), s_value (UINT64_MAX));
    assert_ptr_equal (u64map_get (map, 1ULL << 63), s_value (1ULL << 63));
    assert_null (u64map_get (map, 2));

    /*  put on an existing key replaces, and the size stays */
    int other;
    assert_int_equal (u64map_put (map, 1, &other), 0);
    assert_int_equal (u64map_size (map), 3);
    assert_ptr_equal (u64map_get (map, 1), &other);

    /*  remove returns the value once */
    assert_ptr_equal (u64map_remove (map, 1), &other);
    assert_null (u64map_remove (map, 1));
    assert_null (u64map_get (map, 1));
    assert_int_equal (u64map_size (map), 2);
    assert_ptr_equal (u64map_get (map, UINT64_MAX), s_value (UINT64_MAX));

    /*  and the key can come back */
    assert_int_equal (u64map_put (map, 1, s_value (1)), 0);
    assert_ptr_equal (u64map_get (map, 1), s_value (1));
    assert_int_equal (u64map_size (map), 3);
    u64map_destroy (&map);
}

static void
test_growth_and_iteration (void **state)
{
    (void) state;
    enum { N = 20000 };
    u64map_t *map = u64map_new ();
    /*  sequential ids, as the bus client makes them, from a random start */
    const uint64_t base = 0x00007f3a12345679ULL;
    for (uint64_t i = 0; i < N; i++) {
        assert_int_equal (u64map_put (map, base + i, s_value (base + i)), 0);
        if (i % 997 == 0)       /* earlier keys survive every growth */
            for (uint64_t j = 0; j <= i; j += 101)
                assert_ptr_equal (u64map_get (map, base + j), s_value (base + j));
    }
    assert_int_equal (u64map_size (map), N);
    for (uint64_t i = 0; i < N; i++)
        assert_ptr_equal (u64map_get (map, base + i), s_value (base + i));
    assert_null (u64map_get (map, base + N));
    assert_null (u64map_get (map, base - 1));

    /*  iteration visits every entry once */
    unsigned char *seen = calloc (N, 1);
    assert_non_null (seen);
    size_t cursor = 0, visits = 0;
    uint64_t key;
    void *value;
    while (u64map_next (map, &cursor, &key, &value)) {
        assert_true (key >= base && key < base + N);
        assert_ptr_equal (value, s_value (key));
        assert_int_equal (seen[key - base], 0);
        seen[key - base] = 1;
        visits++;
    }
    assert_int_equal (visits, N);
    /*  and stays done */
    assert_int_equal (u64map_next (map, &cursor, &key, &value), 0);

    /*  remove every other key, then the rest */
    for (uint64_t i = 0; i < N; i += 2)
        assert_ptr_equal (u64map_remove (map, base + i), s_value (base + i));
    assert_int_equal (u64map_size (map), N / 2);
    for (uint64_t i = 0; i < N; i++)
        assert_ptr_equal (u64map_get (map, base + i), i % 2 ? s_value (base + i) : NULL);
    for (uint64_t i = 1; i < N; i += 2)
        assert_ptr_equal (u64map_remove (map, base + i), s_value (base + i));
    assert_int_equal (u64map_size (map), 0);
    cursor = 0;
    assert_int_equal (u64map_next (map, &cursor, &key, &value), 0);
    free (seen);
    u64map_destroy (&map);
}

/* --- against a reference --- */

typedef struct {
    uint64_t keys[4096];
    size_t n;
} ref_t;

static long
s_ref_find (const ref_t *ref, uint64_t key)
{
    for (size_t i = 0; i < ref->n; i++)
        if (ref->keys[i] == key)
            return (long) i;
    return -1;
}

/*  Every key of the reference maps to its value, the size agrees, and an
    iteration yields exactly the reference's keys. */
static void
s_check_all (u64map_t *map, const ref_t *ref, const uint64_t *pool, size_t pool_n)
{
    assert_int_equal (u64map_size (map), ref->n);
    for (size_t i = 0; i < pool_n; i++) {
        void *got = u64map_get (map, pool[i]);
        if (s_ref_find (ref, pool[i]) >= 0) {
            if (got != s_value (pool[i]))
                fail_msg ("key %llx lost", (unsigned long long) pool[i]);
        }
        else if (got)
            fail_msg ("key %llx present after removal", (unsigned long long) pool[i]);
    }
    size_t cursor = 0, visits = 0;
    uint64_t key;
    void *value;
    while (u64map_next (map, &cursor, &key, &value)) {
        assert_true (s_ref_find (ref, key) >= 0);
        assert_ptr_equal (value, s_value (key));
        visits++;
    }
    assert_int_equal (visits, ref->n);
}

/*  Random inserts and removals over `pool`, checked after every step. */
static void
s_random_run (const uint64_t *pool, size_t pool_n, size_t max_live, int steps, unsigned seed)
{
    u64map_t *map = u64map_new ();
    ref_t *ref = calloc (1, sizeof *ref);
    assert_non_null (ref);
    srand (seed);
    for (int step = 0; step < steps; step++) {
        uint64_t key = pool[(size_t) rand () % pool_n];
        long at = s_ref_find (ref, key);
        int insert = ref->n < max_live && (at < 0 ? rand () % 3 != 0 : rand () % 4 == 0);
        if (insert) {
            assert_int_equal (u64map_put (map, key, s_value (key)), 0);
            if (at < 0)
                ref->keys[ref->n++] = key;
        }
        else {
            void *got = u64map_remove (map, key);
            if (at >= 0) {
                assert_ptr_equal (got, s_value (key));
                ref->keys[at] = ref->keys[--ref->n];
            }
            else
                assert_null (got);
        }
        /*  the key just touched, and now and then everything */
        assert_ptr_equal (u64map_get (map, key), s_ref_find (ref, key) >= 0 ? s_value (key) : NULL);
        if (step % 50 == 0)
            s_check_all (map, ref, pool, pool_n);
    }
    s_check_all (map, ref, pool, pool_n);
    /*  empty it in random order */
    while (ref->n) {
        size_t at = (size_t) rand () % ref->n;
        assert_ptr_equal (u64map_remove (map, ref->keys[at]), s_value (ref->keys[at]));
        ref->keys[at] = ref->keys[--ref->n];
        s_check_all (map, ref, pool, pool_n);
    }
    free (ref);
    u64map_destroy (&map);
}

static void
test_random_against_reference (void **state)
{
    (void) state;
    enum { POOL = 600 };
    uint64_t pool[POOL];
    srand (1);
    for (size_t i = 0; i < POOL; i++)
        pool[i] = ((uint64_t) rand () << 40) ^ ((uint64_t) rand () << 20) ^ (uint64_t) rand () ^ 1;
    /*  a small live set keeps the table at its first size, a larger one
        makes it grow while entries are being removed */
    s_random_run (pool, POOL, 40, 20000, 11);
    s_random_run (pool, POOL, 500, 20000, 12);
    /*  sequential keys */
    for (size_t i = 0; i < POOL; i++)
        pool[i] = 1000 + i;
    s_random_run (pool, POOL, 45, 20000, 13);
}

/*  The map's hash (u64map.c) for the table of 64 slots the map starts
    with. Used only to pick keys that collide; if the hash changes the
    test still checks correctness, just less sharply. */
static size_t
s_home (uint64_t key, size_t cap)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t) key & (cap - 1);
}

static void
test_collisions_across_wrap (void **state)
{
    (void) state;
    /*  Keys whose home is one of the last three slots or the first two:
        their probe runs cross the end of the table, where backward-shift
        must compare positions cyclically. */
    enum { CAP = 64, PER_HOME = 6 };
    const size_t homes[] = {61, 62, 63, 0, 1};
    uint64_t pool[5 * PER_HOME];
    size_t n = 0;
    for (size_t h = 0; h < 5; h++) {
        int found = 0;
        for (uint64_t key = 1; found < PER_HOME; key++)
            if (s_home (key, CAP) == homes[h]) {
                pool[n++] = key;
                found++;
            }
    }
    /*  30 keys stay under the 3/4 load that would grow a 64-slot table */
    u64map_t *map = u64map_new ();
    ref_t *ref = calloc (1, sizeof *ref);
    assert_non_null (ref);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal (u64map_put (map, pool[i], s_value (pool[i])), 0);
        ref->keys[ref->n++] = pool[i];
    }
    s_check_all (map, ref, pool, n);
    /*  remove from the front of each run, from the middle, from the end */
    const size_t order[] = {0, 6, 12, 18, 24, 3, 9, 15, 21, 27, 5, 11, 17, 23, 29};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        uint64_t key = pool[order[i]];
        assert_ptr_equal (u64map_remove (map, key), s_value (key));
        long at = s_ref_find (ref, key);
        assert_true (at >= 0);
        ref->keys[at] = ref->keys[--ref->n];
        s_check_all (map, ref, pool, n);
    }
    /*  put them back and remove everything in another order */
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        uint64_t key = pool[order[i]];
        assert_int_equal (u64map_put (map, key, s_value (key)), 0);
        ref->keys[ref->n++] = key;
        s_check_all (map, ref, pool, n);
    }
    for (size_t i = n; i-- > 0;) {
        assert_ptr_equal (u64map_remove (map, pool[i]), s_value (pool[i]));
        long at = s_ref_find (ref, pool[i]);
        assert_true (at >= 0);
        ref->keys[at] = ref->keys[--ref->n];
        s_check_all (map, ref, pool, n);
    }
    assert_int_equal (u64map_size (map), 0);
    free (ref);
    u64map_destroy (&map);

    /*  the same keys in random runs */
    s_random_run (pool, n, 30, 30000, 21);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_empty),
        cmocka_unit_test (test_put_get_replace_remove),
        cmocka_unit_test (test_growth_and_iteration),
        cmocka_unit_test (test_random_against_reference),
        cmocka_unit_test (test_collisions_across_wrap),
    };
    return cmocka_run_group_tests_name ("u64map", tests, NULL, NULL);
}

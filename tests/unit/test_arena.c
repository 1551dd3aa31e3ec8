/*  Unit tests of arena: zeroed, aligned, non-overlapping memory across
    blocks and for sizes larger than a block, the string helpers, reset, and
    the arena as a protobuf-c allocator. */
#include "arena.h"
#include "bus.pb-c.h"
#include "events.pb-c.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

static int
s_all_bytes (const void *p, int byte, size_t size)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < size; i++)
        if (c[i] != (unsigned char) byte)
            return 0;
    return 1;
}

static void
test_alloc_zeroed_aligned (void **state)
{
    (void) state;
    arena_t *arena = arena_new ();
    assert_non_null (arena);
    const size_t sizes[] = {0, 1, 7, 15, 16, 17, 31, 100, 4096, 65535, 65536, 200000, 3};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = arena_alloc (arena, sizes[i]);
        assert_non_null (p);
        assert_int_equal ((uintptr_t) p % 16, 0);
        assert_true (s_all_bytes (p, 0, sizes[i]));
        memset (p, 0xAB, sizes[i]);
    }
    arena_destroy (&arena);
    assert_null (arena);
    arena_destroy (&arena);     /* safe twice */
}

/*  Many allocations of varied sizes, each filled with its own byte: none
    may overlap another, whichever block it landed in. */
static void
test_no_overlap (void **state)
{
    (void) state;
    enum { N = 5000 };
    arena_t *arena = arena_new ();
    unsigned char **ptrs = calloc (N, sizeof *ptrs);
    size_t *sizes = calloc (N, sizeof *sizes);
    assert_non_null (ptrs);
    assert_non_null (sizes);
    srand (7);
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        sizes[i] = (size_t) (i % 500 == 0 ? 70000 + rand () % 1000 : rand () % 300);
        ptrs[i] = arena_alloc (arena, sizes[i]);
        assert_true (s_all_bytes (ptrs[i], 0, sizes[i]));
        memset (ptrs[i], i % 251 + 1, sizes[i]);
        total += sizes[i];
    }
    for (int i = 0; i < N; i++)
        if (!s_all_bytes (ptrs[i], i % 251 + 1, sizes[i]))
            fail_msg ("allocation %d was overwritten", i);
    /*  arena_used counts at least what was asked for */
    assert_true (arena_used (arena) >= total);
    free (ptrs);
    free (sizes);
    arena_destroy (&arena);
}

static void
test_strings (void **state)
{
    (void) state;
    arena_t *arena = arena_new ();
    const char *text = "Привет, school";
    char *copy = arena_strdup (arena, text);
    assert_string_equal (copy, text);
    assert_ptr_not_equal (copy, text);
    assert_null (arena_strdup (arena, NULL));
    assert_string_equal (arena_strdup (arena, ""), "");

    /*  strndup stops at len, even inside a longer string */
    char *part = arena_strndup (arena, "abcdef", 3);
    assert_string_equal (part, "abc");
    assert_string_equal (arena_strndup (arena, "abc", 0), "");
    /*  and copies embedded bytes as they are */
    char *bin = arena_strndup (arena, "a\0b", 3);
    assert_memory_equal (bin, "a\0b", 4);

    char *line = arena_printf (arena, "%s=%d %05.1f %%", "key", -42, 3.14159);
    assert_string_equal (line, "key=-42 003.1 %");
    assert_string_equal (arena_printf (arena, "%s", ""), "");

    /*  a formatted string longer than a block */
    char *big = malloc (100001);
    assert_non_null (big);
    memset (big, 'z', 100000);
    big[100000] = 0;
    char *out = arena_printf (arena, "<%s>", big);
    assert_int_equal (strlen (out), 100002);
    assert_int_equal (out[0], '<');
    assert_int_equal (out[100001], '>');
    assert_true (s_all_bytes (out + 1, 'z', 100000));
    char *long_copy = arena_strdup (arena, big);
    assert_string_equal (long_copy, big);
    free (big);
    /*  earlier strings are untouched by later blocks */
    assert_string_equal (copy, text);
    assert_string_equal (line, "key=-42 003.1 %");
    arena_destroy (&arena);
}

static void
test_reset (void **state)
{
    (void) state;
    arena_t *arena = arena_new ();
    assert_int_equal (arena_used (arena), 0);
    for (int round = 0; round < 50; round++) {
        /*  spill over several blocks, then reset */
        for (int i = 0; i < 100; i++) {
            unsigned char *p = arena_alloc (arena, 3000);
            assert_true (s_all_bytes (p, 0, 3000));
            memset (p, 0xFF, 3000);
        }
        unsigned char *big = arena_alloc (arena, 300000);
        assert_true (s_all_bytes (big, 0, 300000));
        memset (big, 0xFF, 300000);
        assert_true (arena_used (arena) >= 100 * 3000 + 300000);
        arena_reset (arena);
        assert_int_equal (arena_used (arena), 0);
        /*  memory handed out again is zeroed again */
        unsigned char *p = arena_alloc (arena, 3000);
        assert_true (s_all_bytes (p, 0, 3000));
        assert_int_equal ((uintptr_t) p % 16, 0);
        memset (p, 0xFF, 3000);
        arena_reset (arena);
    }
    /*  reset of a fresh arena, and twice in a row */
    arena_reset (arena);
    arena_reset (arena);
    assert_string_equal (arena_strdup (arena, "still works"), "still works");
    arena_destroy (&arena);
}

static void
test_messages (void **state)
{
    (void) state;
    arena_t *arena = arena_new ();
    Ev__Event *event = arena_msg (arena, &ev__event__descriptor);
    assert_non_null (event);
    assert_ptr_equal (event->base.descriptor, &ev__event__descriptor);
    assert_string_equal (event->type, "");
    assert_int_equal (event->seq, 0);
    assert_int_equal (event->payload.len, 0);

    /*  build, pack, and unpack into the arena */
    event->type = arena_strdup (arena, "chat.message.posted");
    event->seq = 77;
    event->org_id = arena_printf (arena, "org-%d", 5);
    event->payload.data = arena_alloc (arena, 3);
    memcpy (event->payload.data, "\x01\x02\x03", 3);
    event->payload.len = 3;
    size_t len = ev__event__get_packed_size (event);
    uint8_t *buf = arena_alloc (arena, len);
    assert_int_equal (ev__event__pack (event, buf), len);

    arena_t *other = arena_new ();
    size_t before = arena_used (other);
    Ev__Event *back = ev__event__unpack (arena_allocator (other), len, buf);
    assert_non_null (back);
    /*  the unpacked message lives in the arena */
    assert_true (arena_used (other) > before);
    assert_string_equal (back->type, "chat.message.posted");
    assert_string_equal (back->org_id, "org-5");
    assert_int_equal (back->seq, 77);
    assert_memory_equal (back->payload.data, "\x01\x02\x03", 3);
    /*  freeing through the allocator is a no-op, the arena frees it all */
    ev__event__free_unpacked (back, arena_allocator (other));

    /*  garbage does not unpack, and leaves nothing to free */
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    assert_null (ev__event__unpack (arena_allocator (other), sizeof garbage, garbage));

    /*  a message with repeated fields */
    Bus__ReplayReply *reply = arena_msg (arena, &bus__replay_reply__descriptor);
    reply->n_events = 2;
    reply->events = arena_alloc (arena, 2 * sizeof (ProtobufCBinaryData));
    reply->events[0].data = buf;
    reply->events[0].len = len;
    reply->events[1].data = buf;
    reply->events[1].len = len;
    reply->head = 9;
    reply->epoch = arena_strdup (arena, "E");
    size_t rlen = bus__replay_reply__get_packed_size (reply);
    uint8_t *rbuf = arena_alloc (arena, rlen);
    bus__replay_reply__pack (reply, rbuf);
    arena_reset (other);
    Bus__ReplayReply *rback = bus__replay_reply__unpack (arena_allocator (other), rlen, rbuf);
    assert_non_null (rback);
    assert_int_equal (rback->n_events, 2);
    assert_int_equal (rback->events[1].len, len);
    assert_memory_equal (rback->events[1].data, buf, len);
    assert_string_equal (rback->epoch, "E");
    arena_destroy (&other);
    arena_destroy (&arena);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_alloc_zeroed_aligned),
        cmocka_unit_test (test_no_overlap),
        cmocka_unit_test (test_strings),
        cmocka_unit_test (test_reset),
        cmocka_unit_test (test_messages),
    };
    return cmocka_run_group_tests_name ("arena", tests, NULL, NULL);
}

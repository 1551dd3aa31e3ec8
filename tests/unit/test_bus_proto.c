/*  Unit tests of bus_proto: every header layout built and parsed back,
    the parser's refusals, and batches (docs/bus.md §2.5): entries added,
    checked and walked back byte for byte; every truncation, a count that
    disagrees with the entries, bytes after the last entry and lengths out
    of range refused; the limits that tell a sender to send first; and the
    memory a reset batch keeps. */
#include "bus_proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

static const uint8_t s_id[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 9};
static const uint8_t s_address[5] = {0, 0x6b, 0x8b, 0x45, 0x67};

/*  A REQUEST header of `side` with `id_byte` as the id's last byte. */
static size_t
s_request (uint8_t *buf, bus_side_t side, uint8_t id_byte)
{
    uint8_t id[12];
    memcpy (id, s_id, sizeof id);
    id[11] = id_byte;
    bus_header_t h = {.side = side,
                      .command = side == BUS_CLIENT ? BUS_CLIENT_REQUEST : BUS_WORKER_REQUEST,
                      .number = 5000,
                      .id = id,
                      .id_len = sizeof id,
                      .service = (const uint8_t *) "echo",
                      .service_len = 4,
                      .address = s_address,
                      .address_len = sizeof s_address};
    return bus_header_build (buf, &h,
                             side == BUS_CLIENT ? BUS_TO_BROKER : BUS_FROM_BROKER);
}

static void
test_headers_round_trip (void **state)
{
    (void) state;
    uint8_t buf[BUS_HEADER_MAX];
    bus_header_t h;
    size_t size = s_request (buf, BUS_CLIENT, 7);
    assert_int_equal (size, 12 + 12 + 4);
    assert_memory_equal (buf, "PBC03\x01", 6);
    assert_null (bus_header_parse (buf, size, BUS_TO_BROKER, &h));
    assert_int_equal (h.side, BUS_CLIENT);
    assert_int_equal (h.command, BUS_CLIENT_REQUEST);
    assert_int_equal (h.number, 5000);
    assert_int_equal (h.id_len, 12);
    assert_int_equal (h.id[11], 7);
    assert_int_equal (h.service_len, 4);
    assert_memory_equal (h.service, "echo", 4);
    assert_int_equal (h.frames, 2);
    /*  A client REQUEST never comes from the broker. */
    assert_non_null (bus_header_parse (buf, size, BUS_FROM_BROKER, &h));

    size = s_request (buf, BUS_WORKER, 8);
    assert_memory_equal (buf, "PBW03\x02", 6);
    assert_null (bus_header_parse (buf, size, BUS_FROM_BROKER, &h));
    assert_int_equal (h.address_len, sizeof s_address);
    assert_memory_equal (h.address, s_address, sizeof s_address);

    /*  BATCH: both sides, both directions, a count and a payload frame. */
    for (int side = 0; side < 2; side++)
        for (int dir = 0; dir < 2; dir++) {
            size = bus_batch_header (buf, side ? BUS_WORKER : BUS_CLIENT, 0x01020304);
            assert_int_equal (size, BUS_BATCH_HEADER_LEN);
            assert_null (bus_header_parse (buf, size, (bus_direction_t) dir, &h));
            assert_int_equal (h.command, side ? BUS_WORKER_BATCH : BUS_CLIENT_BATCH);
            assert_int_equal (h.number, 0x01020304);
            assert_int_equal (h.frames, 2);
            /*  Built from the table too, the same bytes. */
            bus_header_t b = {.side = side ? BUS_WORKER : BUS_CLIENT, .command = 0x06,
                              .number = 0x01020304};
            uint8_t again[BUS_HEADER_MAX];
            assert_int_equal (bus_header_build (again, &b, (bus_direction_t) dir), size);
            assert_memory_equal (again, buf, size);
        }
}

static void
test_headers_refused (void **state)
{
    (void) state;
    uint8_t buf[BUS_HEADER_MAX + 8];
    bus_header_t h;
    size_t size = s_request (buf, BUS_CLIENT, 1);
    /*  Every truncation, and one byte too many. */
    for (size_t cut = 0; cut < size; cut++)
        assert_non_null (bus_header_parse (buf, cut, BUS_TO_BROKER, &h));
    buf[size] = 0;
    assert_non_null (bus_header_parse (buf, size + 1, BUS_TO_BROKER, &h));
    /*  Earlier versions and unknown commands. */
    memcpy (buf, "PBC02", 5);
    assert_non_null (bus_header_parse (buf, size, BUS_TO_BROKER, &h));
    memcpy (buf, "PBC03", 5);
    buf[5] = 0x07;
    assert_non_null (bus_header_parse (buf, size, BUS_TO_BROKER, &h));
    /*  A BATCH header without its count, or with more. */
    size = bus_batch_header (buf, BUS_CLIENT, 2);
    assert_non_null (bus_header_parse (buf, size - 1, BUS_TO_BROKER, &h));
    assert_non_null (bus_header_parse (buf, size + 1, BUS_TO_BROKER, &h));
}

/*  Three entries: two requests and one with an empty payload. */
static void
s_fill (bus_batch_t *b)
{
    uint8_t header[BUS_HEADER_MAX];
    for (uint8_t i = 0; i < 3; i++) {
        size_t size = s_request (header, BUS_CLIENT, i);
        const char *payload = i == 2 ? "" : i == 1 ? "second payload" : "first";
        assert_int_equal (bus_batch_add (b, header, size, payload, strlen (payload)), 0);
    }
}

static void
test_batch_round_trip (void **state)
{
    (void) state;
    bus_batch_t b = {0};
    s_fill (&b);
    assert_int_equal (b.count, 3);
    assert_null (bus_batch_check (b.data, b.len, 3));
    size_t at = 0, header_len, len;
    const uint8_t *header, *payload;
    const char *payloads[] = {"first", "second payload", ""};
    for (uint8_t i = 0; i < 3; i++) {
        assert_int_equal (bus_batch_next (b.data, b.len, &at, &header, &header_len, &payload, &len),
                          1);
        uint8_t expect[BUS_HEADER_MAX];
        size_t size = s_request (expect, BUS_CLIENT, i);
        assert_int_equal (header_len, size);
        assert_memory_equal (header, expect, size);
        assert_int_equal (len, strlen (payloads[i]));
        if (len)
            assert_memory_equal (payload, payloads[i], len);
        bus_header_t h;
        assert_null (bus_batch_entry (header, header_len, BUS_TO_BROKER, BUS_CLIENT,
                                      BUS_CLIENT_REQUEST, &h));
        assert_int_equal (h.id[11], i);
        /*  Not what a client's batch to the broker may carry otherwise. */
        assert_non_null (bus_batch_entry (header, header_len, BUS_TO_BROKER, BUS_WORKER,
                                          BUS_WORKER_REPLY, &h));
        assert_non_null (bus_batch_entry (header, header_len, BUS_FROM_BROKER, BUS_CLIENT,
                                          BUS_CLIENT_REPLY, &h));
    }
    assert_int_equal (bus_batch_next (b.data, b.len, &at, &header, &header_len, &payload, &len),
                      0);
    assert_int_equal (at, b.len);
    bus_batch_fini (&b);
    assert_null (b.data);
    assert_int_equal (b.count, 0);
}

static void
test_batch_refused (void **state)
{
    (void) state;
    bus_batch_t b = {0};
    s_fill (&b);
    /*  The count must match the entries. */
    assert_non_null (bus_batch_check (b.data, b.len, 2));
    assert_non_null (bus_batch_check (b.data, b.len, 4));
    assert_non_null (bus_batch_check (b.data, b.len, 0));
    assert_non_null (bus_batch_check (b.data, b.len, BUS_BATCH_MAX + 1));
    /*  Cut anywhere but at the end of an entry, the frame is refused; cut
        at the end of an entry, the count no longer matches. */
    for (size_t cut = 0; cut < b.len; cut++)
        assert_non_null (bus_batch_check (b.data, cut, 3));
    /*  A byte after the last entry. */
    uint8_t *longer = malloc (b.len + 1);
    memcpy (longer, b.data, b.len);
    longer[b.len] = 0;
    assert_non_null (bus_batch_check (longer, b.len + 1, 3));
    /*  A header length over BUS_HEADER_MAX, and a payload length running
        past the end. */
    memcpy (longer, b.data, b.len);
    longer[0] = 0x02, longer[1] = 0x01;     /* 513 */
    assert_non_null (bus_batch_check (longer, b.len, 3));
    memcpy (longer, b.data, b.len);
    size_t header_len = (size_t) longer[0] << 8 | longer[1];
    longer[2 + header_len] = 0x7f;
    assert_non_null (bus_batch_check (longer, b.len, 3));
    free (longer);
    /*  An empty frame holds no entry. */
    assert_non_null (bus_batch_check ("", 0, 1));
    /*  Adding refuses what no receiver would take. */
    uint8_t header[BUS_HEADER_MAX + 1] = {0};
    uint32_t count = b.count;
    assert_int_equal (bus_batch_add (&b, header, BUS_HEADER_MAX + 1, "x", 1), -1);
    assert_int_equal (b.count, count);
    bus_batch_fini (&b);
}

static void
test_batch_limits (void **state)
{
    (void) state;
    bus_batch_t b = {0};
    uint8_t header[BUS_HEADER_MAX];
    size_t size = s_request (header, BUS_WORKER, 0);
    /*  Empty: anything joins, however large. */
    assert_int_equal (bus_batch_full (&b, BUS_BATCH_BYTES * 2), 0);
    for (int i = 0; i < BUS_BATCH_SEND; i++) {
        assert_int_equal (bus_batch_full (&b, 10), 0);
        assert_int_equal (bus_batch_add (&b, header, size, "0123456789", 10), 0);
    }
    /*  BUS_BATCH_SEND entries: send first. */
    assert_int_equal (bus_batch_full (&b, 10), 1);
    bus_batch_reset (&b);
    assert_int_equal (b.count, 0);
    assert_int_equal (b.len, 0);
    assert_non_null (b.data);   /* small: kept for the next batch */
    /*  About BUS_BATCH_BYTES: an entry that would go past it waits. */
    static uint8_t big[BUS_BATCH_PAYLOAD];
    while (!bus_batch_full (&b, sizeof big))
        assert_int_equal (bus_batch_add (&b, header, size, big, sizeof big), 0);
    assert_true (b.len + sizeof big > BUS_BATCH_BYTES);
    assert_true (b.len <= BUS_BATCH_BYTES);
    assert_null (bus_batch_check (b.data, b.len, b.count));
    /*  A receiver takes up to BUS_BATCH_MAX entries; a batch holds no more. */
    bus_batch_reset (&b);
    for (int i = 0; i < BUS_BATCH_MAX; i++)
        assert_int_equal (bus_batch_add (&b, header, size, "", 0), 0);
    assert_int_equal (bus_batch_add (&b, header, size, "", 0), -1);
    assert_null (bus_batch_check (b.data, b.len, BUS_BATCH_MAX));
    /*  A burst's large buffer is given back on reset. */
    bus_batch_reset (&b);
    static uint8_t huge[2 * 1024 * 1024];
    assert_int_equal (bus_batch_add (&b, header, size, huge, sizeof huge), 0);
    bus_batch_reset (&b);
    assert_null (b.data);
    assert_int_equal (b.cap, 0);
    bus_batch_fini (&b);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_headers_round_trip),
        cmocka_unit_test (test_headers_refused),
        cmocka_unit_test (test_batch_round_trip),
        cmocka_unit_test (test_batch_refused),
        cmocka_unit_test (test_batch_limits),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}

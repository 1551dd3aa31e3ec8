/*  Bus tests: the broker, workers and clients as separate processes on unix
    sockets, and what a user of the bus relies on: load is shared, a killed
    worker loses no idempotent request, a restarted broker is found again,
    garbage does not hurt the broker, a consumer catches up on events, and
    CURVE keeps strangers out. */
#include "bus_proto.h"
#include "clock.h"
#include "curve.h"
#include "db.h"
#include "echo_service.h"
#include "event_consumer.h"
#include "harness.h"
#include "log.h"
#include "outbox.h"

#include <czmq.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

static int
s_setup (void **state)
{
    harness_t *h = calloc (1, sizeof *h);
    assert_int_equal (harness_init (h), 0);
    *state = h;
    return 0;
}

static int
s_teardown (void **state)
{
    harness_t *h = *state;
    harness_fini (h);
    free (h);
    return 0;
}

static void
s_start_broker (harness_t *h)
{
    harness_spawn (h, "parta-broker", NULL);
}

static status_t
s_echo (bus_client_t *client, const char *text, int timeout_ms, int flags, char *instance_out)
{
    Echo__EchoRequest req = ECHO__ECHO_REQUEST__INIT;
    req.text = (char *) text;
    bus_call_opts_t opts = {.timeout_ms = timeout_ms, .flags = flags};
    arena_t *arena = arena_new ();
    Echo__EchoReply *reply = NULL;
    status_t st = bus_client_call (client, "echo", "echo.echo", &req.base, &opts,
                                   &echo__echo_reply__descriptor, arena,
                                   (ProtobufCMessage **) &reply, NULL);
    if (st == ST_OK) {
        assert_string_equal (reply->text, text);
        if (instance_out)
            snprintf (instance_out, 64, "%s", reply->instance);
    }
    arena_destroy (&arena);
    return st;
}

/* --- 3 workers share 3,000 requests --- */

typedef struct {
    int done, ok;
    char instances[8][64];
    int per_instance[8];
    int n_instances;
} share_t;

static void
s_share_reply (void *arg, const Bus__Reply *reply)
{
    share_t *s = arg;
    s->done++;
    if (reply->status != ST_OK)
        return;
    Echo__EchoReply *r = echo__echo_reply__unpack (NULL, reply->body.len, reply->body.data);
    if (!r)
        return;
    s->ok++;
    int i;
    for (i = 0; i < s->n_instances; i++)
        if (strcmp (s->instances[i], r->instance) == 0)
            break;
    if (i == s->n_instances && i < 8)
        snprintf (s->instances[s->n_instances++], 64, "%s", r->instance);
    if (i < 8)
        s->per_instance[i]++;
    echo__echo_reply__free_unpacked (r, NULL);
}

/*  Runs `total` echo calls with `window` in flight. */
static void
s_pump (bus_client_t *client, int total, int window, bus_reply_fn *cb, void *arg, int *done)
{
    int sent = 0;
    Echo__EchoRequest req = ECHO__ECHO_REQUEST__INIT;
    req.text = "share";
    bus_call_opts_t opts = {.timeout_ms = 10000};
    int64_t until = clock_mono_ms () + 60000;
    while (*done < total && clock_mono_ms () < until) {
        while (sent < total && sent - *done < window) {
            assert_true (bus_client_send (client, "echo", "echo.echo", &req.base, &opts, cb, arg));
            sent++;
        }
        int wait = bus_client_process (client);
        zmq_pollitem_t item = {NULL, bus_client_fd (client), ZMQ_POLLIN, 0};
        zmq_poll (&item, 1, wait < 0 || wait > 50 ? 50 : wait);
    }
}

static void
test_three_workers_share_load (void **state)
{
    harness_t *h = *state;
    s_start_broker (h);
    for (int i = 0; i < 3; i++)
        harness_spawn (h, "parta-echo-worker", NULL);
    assert_int_equal (harness_wait_workers (h, "echo", 3, 5000), 0);
    bus_client_t *client = harness_client (h);
    share_t share = {0};
    s_pump (client, 3000, 100, s_share_reply, &share, &share.done);
    assert_int_equal (share.done, 3000);
    assert_int_equal (share.ok, 3000);
    assert_int_equal (share.n_instances, 3);
    for (int i = 0; i < 3; i++)
        assert_true (share.per_instance[i] > 0);
    bus_client_destroy (&client);
}

/* --- a killed worker loses no idempotent request --- */

typedef struct {
    int done, ok;
    int64_t values[2000];
    int n_values;
} count_t;

static void
s_count_reply (void *arg, const Bus__Reply *reply)
{
    count_t *c = arg;
    c->done++;
    if (reply->status != ST_OK)
        return;
    Echo__CountReply *r = echo__count_reply__unpack (NULL, reply->body.len, reply->body.data);
    if (!r)
        return;
    c->ok++;
    if (c->n_values < 2000)
        c->values[c->n_values++] = r->value;
    echo__count_reply__free_unpacked (r, NULL);
}

static int
s_cmp64 (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

static void
test_killed_worker_loses_no_idempotent_request (void **state)
{
    harness_t *h = *state;
    s_start_broker (h);
    pid_t victim = harness_spawn (h, "parta-echo-worker", NULL);
    harness_spawn (h, "parta-echo-worker", NULL);
    assert_int_equal (harness_wait_workers (h, "echo", 2, 5000), 0);
    bus_client_t *client = harness_client (h);
    count_t c = {0};
    const int total = 600;
    int sent = 0, killed = 0;
    /*  Idempotency keys are scoped to a signed-in caller. */
    Bus__Caller caller = BUS__CALLER__INIT;
    caller.user_id = "01M8H8TESTUSER000000000000";
    Echo__CountRequest req = ECHO__COUNT_REQUEST__INIT;
    req.name = "orders";
    int64_t until = clock_mono_ms () + 60000;
    while (c.done < total && clock_mono_ms () < until) {
        while (sent < total && sent - c.done < 20) {
            char key[32];
            snprintf (key, sizeof key, "order-%d", sent);
            bus_call_opts_t opts = {.timeout_ms = 15000, .idempotency_key = key, .caller = &caller};
            assert_true (bus_client_send (client, "echo", "echo.count", &req.base, &opts,
                                          s_count_reply, &c));
            sent++;
        }
        if (!killed && c.done >= 200) {
            kill (victim, SIGKILL);
            killed = 1;
        }
        int wait = bus_client_process (client);
        zmq_pollitem_t item = {NULL, bus_client_fd (client), ZMQ_POLLIN, 0};
        zmq_poll (&item, 1, wait < 0 || wait > 50 ? 50 : wait);
    }
    assert_true (killed);
    assert_int_equal (c.done, total);
    assert_int_equal (c.ok, total);
    /*  Applied exactly once each: the counter's values are 1..total. */
    qsort (c.values, (size_t) c.n_values, sizeof c.values[0], s_cmp64);
    for (int i = 0; i < total; i++)
        assert_int_equal (c.values[i], i + 1);
    /*  And a new write sees exactly total before it. */
    arena_t *arena = arena_new ();
    Echo__CountReply *after = NULL;
    bus_call_opts_t opts = {.timeout_ms = 5000, .idempotency_key = "one-more", .caller = &caller};
    assert_int_equal (bus_client_call (client, "echo", "echo.count", &req.base, &opts,
                                       &echo__count_reply__descriptor, arena,
                                       (ProtobufCMessage **) &after, NULL),
                      ST_OK);
    assert_int_equal (after->value, total + 1);
    arena_destroy (&arena);
    bus_client_destroy (&client);
}

/*  A call another service makes on no one's behalf (no caller) with a key
    is applied once too: retried, it gets the first answer. */
static void
test_keyed_call_without_caller_applies_once (void **state)
{
    harness_t *h = *state;
    s_start_broker (h);
    harness_spawn (h, "parta-echo-worker", NULL);
    assert_int_equal (harness_wait_workers (h, "echo", 1, 5000), 0);
    bus_client_t *client = harness_client (h);
    arena_t *arena = arena_new ();
    Echo__CountRequest req = ECHO__COUNT_REQUEST__INIT;
    req.name = "service-calls";
    const char *keys[] = {"svc-1", "svc-1", "svc-2", "svc-1"};
    const int64_t expected[] = {1, 1, 2, 1};
    for (int i = 0; i < 4; i++) {
        Echo__CountReply *r = NULL;
        bus_call_opts_t opts = {.timeout_ms = 5000, .idempotency_key = keys[i]};
        assert_int_equal (bus_client_call (client, "echo", "echo.count", &req.base, &opts,
                                           &echo__count_reply__descriptor, arena,
                                           (ProtobufCMessage **) &r, NULL),
                          ST_OK);
        assert_int_equal (r->value, expected[i]);
    }
    arena_destroy (&arena);
    bus_client_destroy (&client);
}

/* --- a worker dying with a request in hand --- */

typedef struct {
    int done;
    status_t status;
} one_t;

static void
s_one_reply (void *arg, const Bus__Reply *reply)
{
    one_t *o = arg;
    o->done = 1;
    o->status = reply->status;
}

static void
test_worker_death_answers_unavailable (void **state)
{
    harness_t *h = *state;
    s_start_broker (h);
    pid_t worker = harness_spawn (h, "parta-echo-worker", NULL);
    assert_int_equal (harness_wait_workers (h, "echo", 1, 5000), 0);
    bus_client_t *client = harness_client (h);
    Echo__EchoRequest req = ECHO__ECHO_REQUEST__INIT;
    req.text = "slow";
    req.sleep_ms = 5000;
    /*  Not retryable (no flag, no key): the caller must hear of the loss. */
    bus_call_opts_t opts = {.timeout_ms = 20000};
    one_t one = {0};
    assert_true (bus_client_send (client, "echo", "echo.echo", &req.base, &opts, s_one_reply, &one));
    int64_t until = clock_mono_ms () + 500;
    while (clock_mono_ms () < until) {
        bus_client_process (client);
        zclock_sleep (10);
    }
    kill (worker, SIGKILL);
    until = clock_mono_ms () + 15000;
    while (!one.done && clock_mono_ms () < until) {
        int wait = bus_client_process (client);
        zmq_pollitem_t item = {NULL, bus_client_fd (client), ZMQ_POLLIN, 0};
        zmq_poll (&item, 1, wait < 0 || wait > 50 ? 50 : wait);
    }
    assert_true (one.done);
    assert_int_equal (one.status, ST_UNAVAILABLE);
    bus_client_destroy (&client);
}

/* --- no worker: wait until the deadline, then unavailable --- */

static void
test_no_worker_waits_for_deadline (void **state)
{
    harness_t *h = *state;
    s_start_broker (h);
    assert_int_equal (harness_wait_broker (h, 5000), 0);
    bus_client_t *client = harness_client (h);
    assert_int_equal (s_echo (client, "anyone?", 400, 0, NULL), ST_UNAVAILABLE);
    /*  The broker queued it and answered when its deadline came. */
    arena_t *arena = arena_new ();
    Bus__MmiStats *stats = NULL;
    assert_int_equal (bus_client_call (client, "mmi", "mmi.stats", NULL, NULL,
                                       &bus__mmi_stats__descriptor, arena,
                                       (ProtobufCMessage **) &stats, NULL),
                      ST_OK);
    assert_int_equal (stats->expired, 1);
    arena_destroy (&arena);
    /*  A worker that arrives while a request waits gets it. */
    Echo__EchoRequest req = ECHO__ECHO_REQUEST__INIT;
    req.text = "late";
    one_t one = {0};
    bus_call_opts_t opts = {.timeout_ms = 10000};
    assert_true (bus_client_send (client, "echo", "echo.echo", &req.base, &opts, s_one_reply, &one));
    harness_spawn (h, "parta-echo-worker", NULL);
    int64_t until = clock_mono_ms () + 10000;
    while (!one.done && clock_mono_ms () < until) {
        int wait = bus_client_process (client);
        zmq_pollitem_t item = {NULL, bus_client_fd (client), ZMQ_POLLIN, 0};
        zmq_poll (&item, 1, wait < 0 || wait > 50 ? 50 : wait);
    }
    assert_int_equal (one.status, ST_OK);
    bus_client_destroy (&client);
}

/* --- the broker restarts; everyone finds it again --- */

static void
test_broker_restart (void **state)
{
    harness_t *h = *state;
    pid_t broker = harness_spawn (h, "parta-broker", NULL);
    harness_spawn (h, "parta-echo-worker", NULL);
    assert_int_equal (harness_wait_workers (h, "echo", 1, 5000), 0);
    bus_client_t *client = harness_client (h);
    assert_int_equal (s_echo (client, "before", 2000, BUS_CALL_RETRY, NULL), ST_OK);
    harness_kill (h, broker, SIGKILL);
    harness_spawn (h, "parta-broker", NULL);
    /*  The same client and worker, neither restarted: within 5 s a call
        succeeds again. */
    int64_t until = clock_mono_ms () + 5000;
    status_t st = ST_UNAVAILABLE;
    while (st != ST_OK && clock_mono_ms () < until)
        st = s_echo (client, "after", 1000, BUS_CALL_RETRY, NULL);
    assert_int_equal (st, ST_OK);
    bus_client_destroy (&client);
}

/* --- garbage does not hurt the broker --- */

static void
s_send_parts (zsock_t *sock, int parts, const void *const *frames, const size_t *lens)
{
    for (int i = 0; i < parts; i++)
        zmq_send (zsock_resolve (sock), frames[i], lens[i],
                  (i + 1 < parts ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT);
}

/*  A well-formed header of the command garbage of kind k starts from. */
static size_t
s_header (uint8_t *buf, int as_worker)
{
    static const uint8_t id[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0};
    static const uint8_t address[5] = {0, 0x6b, 0x8b, 0x45, 0x67};
    bus_header_t h = {.side = as_worker ? BUS_WORKER : BUS_CLIENT,
                      .command = as_worker ? BUS_WORKER_REPLY : BUS_CLIENT_REQUEST,
                      .number = 1000,
                      .id = id,
                      .id_len = sizeof id,
                      .service = (const uint8_t *) "echo",
                      .service_len = 4,
                      .address = address,
                      .address_len = sizeof address};
    return bus_header_build (buf, &h, BUS_TO_BROKER);
}

/*  One malformed message of kind k (0..NUM_GARBAGE-1), sent from `sock`.
    Each is dropped, and counted, exactly once by the broker: a malformed
    BATCH (kind 13) too, as one message, whatever its entries. */
#define NUM_GARBAGE 15

static void
s_garbage (zsock_t *sock, int k, int as_worker)
{
    static uint8_t big[64 * 1024];
    uint8_t rnd[64], header[BUS_HEADER_MAX + 64];
    randombytes_buf (rnd, sizeof rnd);
    size_t size = s_header (header, as_worker);
    const char *signature = as_worker ? BUS_WORKER_HEADER : BUS_CLIENT_HEADER;
    switch (k) {
    case 0: {   /* random bytes, one frame */
        const void *f[] = {rnd};
        size_t l[] = {1 + (size_t) randombytes_uniform (63)};
        s_send_parts (sock, 1, f, l);
        break;
    }
    case 1: {   /* wrong protocol signature, otherwise well-formed */
        memcpy (header, "XXX99", 5);
        const void *f[] = {header, "x"};
        size_t l[] = {size, 1};
        s_send_parts (sock, 2, f, l);
        break;
    }
    case 2: {   /* signature only, command missing */
        const void *f[] = {signature, "x"};
        size_t l[] = {5, 1};
        s_send_parts (sock, 2, f, l);
        break;
    }
    case 3: {   /* unknown command */
        header[BUS_SIGNATURE_LEN] = 0x10 + (uint8_t) randombytes_uniform (0xe0);
        const void *f[] = {header, "x"};
        size_t l[] = {size, 1};
        s_send_parts (sock, 2, f, l);
        break;
    }
    case 4: {   /* truncated: cut anywhere inside the fields */
        const void *f[] = {header, "x"};
        size_t l[] = {BUS_SIGNATURE_LEN + 1 + randombytes_uniform ((uint32_t) size - 6), 1};
        s_send_parts (sock, 2, f, l);
        break;
    }
    case 5: {   /* a length pointing past the end of the header */
        header[as_worker ? 6 : 10] = 200;
        const void *f[] = {header, "x"};
        size_t l[] = {size, 1};
        s_send_parts (sock, 2, f, l);
        break;
    }
    case 6: {   /* bytes after the last field */
        memcpy (header + size, rnd, 7);
        const void *f[] = {header, "x"};
        size_t l[] = {size + 7, 1};
        s_send_parts (sock, 2, f, l);
        break;
    }
    case 7: {   /* wrong frame counts: the header alone, or a third frame */
        const void *f[] = {header, "x", "y"};
        size_t l[] = {size, 1, 1};
        s_send_parts (sock, rnd[0] & 1 ? 1 : 3, f, l);
        break;
    }
    case 8: {   /* too many frames */
        const void *f[12];
        size_t l[12];
        for (int i = 0; i < 12; i++) {
            f[i] = rnd;
            l[i] = 3;
        }
        f[0] = header;
        l[0] = size;
        s_send_parts (sock, 12, f, l);
        break;
    }
    case 9: {   /* huge frames: 64 KiB of noise as the header, and as a payload behind it */
        randombytes_buf (big, 64);
        memcpy (big, signature, 5);
        const void *f[] = {big, big};
        size_t l[] = {sizeof big, sizeof big};
        s_send_parts (sock, 2, f, l);
        break;
    }
    case 10: {  /* worker: READY with a bad credit or name; client: a bad id length */
        if (as_worker) {
            bus_header_t h = {.side = BUS_WORKER, .command = BUS_WORKER_READY,
                              .number = rnd[0] & 1 ? 0 : BUS_CREDIT_MAX + 1,
                              .service = (const uint8_t *) (rnd[1] & 1 ? "echo" : "Echo!"),
                              .service_len = rnd[1] & 1 ? 4 : 5};
            if (!(rnd[1] & 1))
                h.number = 1;
            size = bus_header_build (header, &h, BUS_TO_BROKER);
            const void *f[] = {header};
            size_t l[] = {size};
            s_send_parts (sock, 1, f, l);
        }
        else {
            bus_header_t h = {.side = BUS_CLIENT, .command = BUS_CLIENT_REQUEST, .number = 1000,
                              .id = rnd, .id_len = rnd[0] & 1 ? 0 : BUS_ID_MAX + 1,
                              .service = (const uint8_t *) "echo", .service_len = 4};
            size = bus_header_build (header, &h, BUS_TO_BROKER);
            const void *f[] = {header, "x"};
            size_t l[] = {size, 1};
            s_send_parts (sock, 2, f, l);
        }
        break;
    }
    case 11: {  /* worker: a REPLY nobody holds; client: a bad service name or ttl */
        if (!as_worker) {
            bus_header_t h = {.side = BUS_CLIENT, .command = BUS_CLIENT_REQUEST,
                              .number = rnd[0] & 1 ? 0 : BUS_TTL_MAX_MS + 1,
                              .id = rnd, .id_len = 12,
                              .service = (const uint8_t *) (rnd[1] & 1 ? "Echo Service!" : "echo"),
                              .service_len = rnd[1] & 1 ? 13 : 4};
            if (rnd[1] & 1)
                h.number = 1000;
            size = bus_header_build (header, &h, BUS_TO_BROKER);
        }
        const void *f[] = {header, "x"};
        size_t l[] = {size, 1};
        s_send_parts (sock, 2, f, l);
        break;
    }
    case 12: {  /* a peer of protocol version 1 */
        char cmd = as_worker ? 0x01 : 0x01;
        const void *f[] = {"", as_worker ? "PBW01" : "PBC01", &cmd, "echo", "32"};
        size_t l[] = {0, 5, 1, 4, 2};
        s_send_parts (sock, 5, f, l);
        break;
    }
    case 13: {  /* a malformed BATCH */
        /*  Of 2 or 3 entries that a broker handling them would drop one by
            one (a client's REQUEST without an id; anything from a worker
            that did not register), counting the BATCH more than once. */
        if (!as_worker) {
            bus_header_t h = {.side = BUS_CLIENT, .command = BUS_CLIENT_REQUEST, .number = 1000,
                              .id_len = 0, .service = (const uint8_t *) "echo", .service_len = 4};
            size = bus_header_build (header, &h, BUS_TO_BROKER);
        }
        static uint8_t entries[3 * (2 + BUS_HEADER_MAX + 5) + 8];
        uint32_t n = 2 + randombytes_uniform (2), count = n;
        size_t len = 0, last = 0;
        for (uint32_t i = 0; i < n; i++) {
            last = len;
            entries[len++] = (uint8_t) (size >> 8);
            entries[len++] = (uint8_t) size;
            memcpy (entries + len, header, size);
            len += size;
            memcpy (entries + len, "\0\0\0\1x", 5);    /* a payload of 1 byte */
            len += 5;
        }
        switch (rnd[2] % 5) {
        case 0:     /* the count says more entries than there are */
            count = n + 1 + randombytes_uniform (3);
            break;
        case 1:     /* the last entry cut short: a length runs past the end */
            len = last + randombytes_uniform ((uint32_t) (len - last));
            break;
        case 2: {   /* bytes after the last entry */
            size_t tail = 1 + randombytes_uniform (7);
            memcpy (entries + len, rnd + 8, tail);
            len += tail;
            break;
        }
        case 3:     /* a count of 0 */
            count = 0;
            break;
        default:    /* a count over 1024 */
            count = BUS_BATCH_MAX + 1 + randombytes_uniform (100000);
            break;
        }
        uint8_t head[BUS_BATCH_HEADER_LEN];
        bus_batch_header (head, as_worker ? BUS_WORKER : BUS_CLIENT, count);
        const void *f[] = {head, entries};
        size_t l[] = {sizeof head, len};
        s_send_parts (sock, 2, f, l);
        break;
    }
    default: {  /* a right signature and command, then noise */
        memcpy (header + BUS_SIGNATURE_LEN + 1, rnd, sizeof rnd);
        size_t tail = randombytes_uniform (sizeof rnd);
        /*  Noise that happens to be a well-formed header would not be
            dropped: make it one byte too long for its own lengths. */
        bus_header_t h;
        if (!bus_header_parse (header, BUS_SIGNATURE_LEN + 1 + tail, BUS_TO_BROKER, &h))
            tail++;
        const void *f[] = {header, rnd};
        size_t l[] = {BUS_SIGNATURE_LEN + 1 + tail, 5};
        s_send_parts (sock, 2, f, l);
        break;
    }
    }
}

/*  The broker's counters (mmi.stats), allocated from `arena`. */
static Bus__MmiStats *
s_stats (bus_client_t *client, arena_t *arena)
{
    Bus__MmiStats *stats = NULL;
    assert_int_equal (bus_client_call (client, "mmi", "mmi.stats", NULL, NULL,
                                       &bus__mmi_stats__descriptor, arena,
                                       (ProtobufCMessage **) &stats, NULL),
                      ST_OK);
    return stats;
}

/*  The broker's drops, checking that it has `workers` workers. */
static uint64_t
s_drops_with (bus_client_t *client, uint64_t workers)
{
    arena_t *arena = arena_new ();
    Bus__MmiStats *stats = s_stats (client, arena);
    uint64_t drops = stats->drops;
    assert_int_equal (stats->workers, workers);
    arena_destroy (&arena);
    return drops;
}

static uint64_t
s_drops (bus_client_t *client)
{
    return s_drops_with (client, 1);
}

/*  Lines of the broker's log (the first process started) that say it
    dropped a message; *suppressed gets the sum of their suppressed=N. */
static int
s_drop_lines (harness_t *h, unsigned long *suppressed)
{
    char path[400], line[1024];
    snprintf (path, sizeof path, "%s/parta-broker.0.log", h->dir);
    FILE *f = fopen (path, "r");
    assert_non_null (f);
    int lines = 0;
    *suppressed = 0;
    while (fgets (line, sizeof line, f)) {
        if (!strstr (line, "broker dropped a message"))
            continue;
        lines++;
        const char *at = strstr (line, "suppressed=");
        if (at)
            *suppressed += strtoul (at + 11, NULL, 10);
    }
    fclose (f);
    return lines;
}

static void
test_malformed_frames_do_not_hurt (void **state)
{
    harness_t *h = *state;
    pid_t broker = harness_spawn (h, "parta-broker", NULL);
    harness_spawn (h, "parta-echo-worker", NULL);
    assert_int_equal (harness_wait_workers (h, "echo", 1, 5000), 0);
    bus_client_t *client = harness_client (h);
    uint64_t before = s_drops (client);
    int sent = 0;
    for (int batch = 0; batch < 10; batch++) {
        zsock_t *sock = zsock_new_dealer (h->bus);
        zsock_set_sndhwm (sock, 0);
        zsock_set_linger (sock, 2000);  /* every message reaches the broker */
        for (int i = 0; i < 1000; i++, sent++)
            s_garbage (sock, i % NUM_GARBAGE, batch % 2);
        zclock_sleep (100);
        zsock_destroy (&sock);
        assert_true (harness_alive (broker));
        assert_int_equal (s_echo (client, "still there", 5000, BUS_CALL_RETRY, NULL), ST_OK);
    }
    assert_int_equal (sent, 10000);
    /*  One more once the log's one-second window is over, so that a line
        reports how many the window left out. */
    zclock_sleep (1100);
    zsock_t *last = zsock_new_dealer (h->bus);
    zsock_set_linger (last, 2000);
    s_garbage (last, 0, 0);
    zsock_destroy (&last);
    /*  The broker counted every one it dropped, and still has its worker. */
    int64_t until = clock_mono_ms () + 5000;
    uint64_t drops = s_drops (client) - before;
    while (drops < 10001 && clock_mono_ms () < until) {
        zclock_sleep (50);
        drops = s_drops (client) - before;
    }
    assert_int_equal (drops, 10001);
    /*  Logged, but not 10,001 times: a few lines a second, the next line
        saying how many were left out, so that every drop is accounted for. */
    unsigned long suppressed;
    int lines = s_drop_lines (h, &suppressed);
    assert_true (lines >= 2);
    assert_true (lines <= 100);
    assert_int_equal (lines + suppressed, 10001);
    /*  A frame over the bus's limit costs the sender its connection, not
        the broker anything. */
    zsock_t *sock = zsock_new_dealer (h->bus);
    size_t huge = BUS_MAX_MESSAGE + 1;
    uint8_t *junk = calloc (1, huge);
    memcpy (junk, BUS_CLIENT_HEADER, 5);
    zmq_send (zsock_resolve (sock), junk, huge, 0);
    free (junk);
    zclock_sleep (200);
    zsock_destroy (&sock);
    assert_true (harness_alive (broker));
    assert_int_equal (s_echo (client, "still there", 5000, BUS_CALL_RETRY, NULL), ST_OK);
    bus_client_destroy (&client);
}

/* --- the protocol spoken by hand, as docs/bus.md tells it --- */

/*  Receives one message of at most 4 frames, waiting up to timeout_ms.
    Returns the frame count, 0 on timeout. */
static int
s_recv_raw (zsock_t *sock, zmq_msg_t *frames, int timeout_ms)
{
    zmq_pollitem_t item = {zsock_resolve (sock), 0, ZMQ_POLLIN, 0};
    if (zmq_poll (&item, 1, timeout_ms) <= 0)
        return 0;
    int count = 0, more = 1;
    while (more && count < 4) {
        zmq_msg_init (&frames[count]);
        assert_true (zmq_msg_recv (&frames[count], zsock_resolve (sock), 0) >= 0);
        more = zmq_msg_more (&frames[count]);
        count++;
    }
    assert_false (more);
    return count;
}

static void
s_close_raw (zmq_msg_t *frames, int count)
{
    for (int i = 0; i < count; i++)
        zmq_msg_close (&frames[i]);
}

static void
s_send_header (zsock_t *sock, const bus_header_t *h, const void *payload, size_t len,
               int with_payload)
{
    uint8_t header[BUS_HEADER_MAX];
    size_t size = bus_header_build (header, h, BUS_TO_BROKER);
    assert_true (size > 0);
    zmq_send (zsock_resolve (sock), header, size, with_payload ? ZMQ_SNDMORE : 0);
    if (with_payload)
        zmq_send (zsock_resolve (sock), payload, len, 0);
}

static void
test_protocol_by_hand (void **state)
{
    harness_t *h = *state;
    s_start_broker (h);
    assert_int_equal (harness_wait_broker (h, 5000), 0);
    zsock_t *client = zsock_new_dealer (h->bus);
    zsock_t *worker = zsock_new_dealer (h->bus);
    zmq_msg_t f[4];
    bus_header_t got;
    const uint8_t id[3] = {'r', 'q', '1'};

    /*  A heartbeat is answered with the broker's instance and our nonce. */
    bus_header_t hb = {.side = BUS_CLIENT, .command = BUS_CLIENT_HEARTBEAT,
                       .nonce = (const uint8_t *) "nonce-1", .nonce_len = 7};
    s_send_header (client, &hb, NULL, 0, 0);
    assert_int_equal (s_recv_raw (client, f, 2000), 1);
    assert_null (bus_header_parse (zmq_msg_data (&f[0]), zmq_msg_size (&f[0]), BUS_FROM_BROKER,
                                   &got));
    assert_int_equal (got.command, BUS_CLIENT_HEARTBEAT);
    assert_int_equal (got.instance_len, 26);
    assert_int_equal (got.nonce_len, 7);
    assert_memory_equal (got.nonce, "nonce-1", 7);
    s_close_raw (f, 1);

    /*  A request for a bad service name is answered bad_request, echoing
        the id and the name. */
    bus_header_t req = {.side = BUS_CLIENT, .command = BUS_CLIENT_REQUEST, .number = 2000,
                        .id = id, .id_len = sizeof id,
                        .service = (const uint8_t *) "No-Such!", .service_len = 8};
    s_send_header (client, &req, "", 0, 1);
    assert_int_equal (s_recv_raw (client, f, 2000), 2);
    assert_null (bus_header_parse (zmq_msg_data (&f[0]), zmq_msg_size (&f[0]), BUS_FROM_BROKER,
                                   &got));
    assert_int_equal (got.command, BUS_CLIENT_REPLY);
    assert_int_equal (got.id_len, sizeof id);
    assert_memory_equal (got.id, id, sizeof id);
    assert_int_equal (got.service_len, 8);
    Bus__Reply *reply = bus__reply__unpack (NULL, zmq_msg_size (&f[1]), zmq_msg_data (&f[1]));
    assert_non_null (reply);
    assert_int_equal (reply->status, ST_BAD_REQUEST);
    bus__reply__free_unpacked (reply, NULL);
    s_close_raw (f, 2);

    /*  A READY with credit 0 is answered DISCONNECT. */
    bus_header_t ready = {.side = BUS_WORKER, .command = BUS_WORKER_READY, .number = 0,
                          .service = (const uint8_t *) "raw", .service_len = 3};
    s_send_header (worker, &ready, NULL, 0, 0);
    assert_int_equal (s_recv_raw (worker, f, 2000), 1);
    assert_int_equal (zmq_msg_size (&f[0]), 6);
    assert_memory_equal (zmq_msg_data (&f[0]), BUS_WORKER_HEADER "\x05", 6);
    s_close_raw (f, 1);
    zsock_destroy (&worker);

    /*  A worker registers; a request reaches it with the client's address
        and id in the header and the payload as the client sent it; the
        worker answers with the same header under the REPLY command and the
        client gets the reply, payload untouched. */
    worker = zsock_new_dealer (h->bus);
    ready.number = 2;
    s_send_header (worker, &ready, NULL, 0, 0);
    assert_int_equal (harness_wait_workers (h, "raw", 1, 5000), 0);
    req.service = (const uint8_t *) "raw";
    req.service_len = 3;
    s_send_header (client, &req, "opaque payload", 14, 1);
    int n;
    do {    /* heartbeats may come first */
        n = s_recv_raw (worker, f, 2000);
        assert_true (n > 0);
        assert_null (bus_header_parse (zmq_msg_data (&f[0]), zmq_msg_size (&f[0]),
                                       BUS_FROM_BROKER, &got));
        if (got.command == BUS_WORKER_HEARTBEAT)
            s_close_raw (f, n);
    } while (got.command == BUS_WORKER_HEARTBEAT);
    assert_int_equal (n, 2);
    assert_int_equal (got.command, BUS_WORKER_REQUEST);
    assert_int_equal (got.id_len, sizeof id);
    assert_memory_equal (got.id, id, sizeof id);
    assert_true (got.address_len > 0);
    assert_int_equal (zmq_msg_size (&f[1]), 14);
    assert_memory_equal (zmq_msg_data (&f[1]), "opaque payload", 14);
    ((uint8_t *) zmq_msg_data (&f[0]))[BUS_SIGNATURE_LEN] = BUS_WORKER_REPLY;
    zmq_msg_send (&f[0], zsock_resolve (worker), ZMQ_SNDMORE);
    zmq_send (zsock_resolve (worker), "opaque reply", 12, 0);
    zmq_msg_close (&f[1]);
    assert_int_equal (s_recv_raw (client, f, 2000), 2);
    assert_null (bus_header_parse (zmq_msg_data (&f[0]), zmq_msg_size (&f[0]), BUS_FROM_BROKER,
                                   &got));
    assert_int_equal (got.command, BUS_CLIENT_REPLY);
    assert_memory_equal (got.id, id, sizeof id);
    assert_int_equal (got.service_len, 3);
    assert_memory_equal (got.service, "raw", 3);
    assert_int_equal (zmq_msg_size (&f[1]), 12);
    assert_memory_equal (zmq_msg_data (&f[1]), "opaque reply", 12);
    s_close_raw (f, 2);

    /*  A peer of the first version hears nothing (and is counted). */
    char cmd = 0x04;
    const void *old[] = {"", "PBC01", &cmd};
    size_t old_len[] = {0, 5, 1};
    s_send_parts (client, 3, old, old_len);
    assert_int_equal (s_recv_raw (client, f, 300), 0);

    zsock_destroy (&worker);
    zsock_destroy (&client);
}

/* --- batches spoken by hand --- */

/*  Heartbeats once a minute for the processes the test starts and for its
    clients: over a test of a few seconds nothing crosses the broker's
    socket but what the test sends, and a worker spoken by hand stays
    registered without heartbeating. */
static void
s_add_env (harness_t *h, const char *setting)
{
    int i = 0;
    while (i < 15 && h->extra_env[i])
        i++;
    h->extra_env[i] = setting;
}

static void
s_quiet_heartbeats (harness_t *h)
{
    s_add_env (h, "PARTA_HEARTBEAT_MS=60000");
    config_set (h->cfg, "heartbeat_ms", "60000");
}

/*  Appends a message (its header as sent to the broker, and its payload)
    to a batch. */
static void
s_entry (bus_batch_t *b, const bus_header_t *h, const void *payload, size_t len)
{
    uint8_t header[BUS_HEADER_MAX];
    size_t size = bus_header_build (header, h, BUS_TO_BROKER);
    assert_true (size > 0);
    assert_int_equal (bus_batch_add (b, header, size, payload, len), 0);
}

/*  Sends a BATCH of `side` whose header says `count` and whose second
    frame is `entries`, right or wrong. */
static void
s_send_batch (zsock_t *sock, bus_side_t side, uint32_t count, const void *entries, size_t len)
{
    uint8_t header[BUS_BATCH_HEADER_LEN];
    bus_batch_header (header, side, count);
    zmq_send (zsock_resolve (sock), header, sizeof header, ZMQ_SNDMORE);
    zmq_send (zsock_resolve (sock), entries, len, 0);
}

/*  Receives the next message for a worker spoken by hand, skipping the
    broker's HEARTBEATs. Returns its frame count; *got is its header. */
static int
s_recv_worker (zsock_t *worker, zmq_msg_t *f, bus_header_t *got)
{
    int n;
    do {
        n = s_recv_raw (worker, f, 5000);
        assert_true (n > 0);
        assert_null (bus_header_parse (zmq_msg_data (&f[0]), zmq_msg_size (&f[0]),
                                       BUS_FROM_BROKER, got));
        if (got->command == BUS_WORKER_HEARTBEAT)
            s_close_raw (f, n);
    } while (got->command == BUS_WORKER_HEARTBEAT);
    return n;
}

/*  Sends a client HEARTBEAT and checks that its answer is the next message
    the client gets. The broker sends a client what it made for it in the
    order it made it (docs/bus.md §6.8), so what the client sent before has
    been handled by then, and was not answered. */
static void
s_barrier (zsock_t *client)
{
    bus_header_t hb = {.side = BUS_CLIENT, .command = BUS_CLIENT_HEARTBEAT,
                       .nonce = (const uint8_t *) "barrier", .nonce_len = 7};
    s_send_header (client, &hb, NULL, 0, 0);
    zmq_msg_t f[4];
    bus_header_t got;
    assert_int_equal (s_recv_raw (client, f, 5000), 1);
    assert_null (bus_header_parse (zmq_msg_data (&f[0]), zmq_msg_size (&f[0]), BUS_FROM_BROKER,
                                   &got));
    assert_int_equal (got.command, BUS_CLIENT_HEARTBEAT);
    assert_int_equal (got.nonce_len, 7);
    assert_memory_equal (got.nonce, "barrier", 7);
    s_close_raw (f, 1);
}

/*  1 if a line of the broker's log says it dropped a message and holds
    `text`. */
static int
s_drop_logged (harness_t *h, const char *text)
{
    char path[400], line[1024];
    snprintf (path, sizeof path, "%s/parta-broker.0.log", h->dir);
    FILE *f = fopen (path, "r");
    assert_non_null (f);
    int found = 0;
    while (!found && fgets (line, sizeof line, f))
        found = strstr (line, "broker dropped a message") && strstr (line, text);
    fclose (f);
    return found;
}

/*  Appends n REQUESTs for mmi.stats (`body`), with the ids 0..n-1 as 4
    bytes big-endian. */
static void
s_mmi_entries (bus_batch_t *b, uint32_t n, const uint8_t *body, size_t body_len)
{
    for (uint32_t i = 0; i < n; i++) {
        uint8_t id[4] = {(uint8_t) (i >> 24), (uint8_t) (i >> 16), (uint8_t) (i >> 8),
                         (uint8_t) i};
        bus_header_t req = {.side = BUS_CLIENT, .command = BUS_CLIENT_REQUEST, .number = 5000,
                            .id = id, .id_len = 4,
                            .service = (const uint8_t *) "mmi", .service_len = 3};
        s_entry (b, &req, body, body_len);
    }
}

/*  Receives the REPLYs to n mmi REQUESTs of s_mmi_entries, in BATCHes,
    checking each. Returns how many messages they came in. */
static int
s_recv_mmi_replies (zsock_t *client, uint32_t n)
{
    uint32_t seen = 0;
    int messages = 0;
    while (seen < n) {
        zmq_msg_t f[4];
        bus_header_t got;
        assert_int_equal (s_recv_raw (client, f, 5000), 2);
        messages++;
        assert_null (bus_header_parse (zmq_msg_data (&f[0]), zmq_msg_size (&f[0]),
                                       BUS_FROM_BROKER, &got));
        assert_int_equal (got.command, BUS_CLIENT_BATCH);
        assert_true (got.number >= 2 && got.number <= BUS_BATCH_SEND);
        const uint8_t *data = zmq_msg_data (&f[1]), *header, *payload;
        size_t size = zmq_msg_size (&f[1]), at = 0, header_len, len;
        assert_null (bus_batch_check (data, size, got.number));
        while (bus_batch_next (data, size, &at, &header, &header_len, &payload, &len)) {
            bus_header_t e;
            assert_null (bus_header_parse (header, header_len, BUS_FROM_BROKER, &e));
            assert_int_equal (e.side, BUS_CLIENT);
            assert_int_equal (e.command, BUS_CLIENT_REPLY);
            assert_int_equal (e.id_len, 4);
            uint32_t i = (uint32_t) e.id[0] << 24 | (uint32_t) e.id[1] << 16
                         | (uint32_t) e.id[2] << 8 | e.id[3];
            assert_int_equal (i, seen);
            assert_int_equal (e.service_len, 3);
            assert_memory_equal (e.service, "mmi", 3);
            Bus__Reply *reply = bus__reply__unpack (NULL, len, payload);
            assert_non_null (reply);
            assert_int_equal (reply->status, ST_OK);
            bus__reply__free_unpacked (reply, NULL);
            seen++;
        }
        s_close_raw (f, 2);
    }
    assert_int_equal (seen, n);
    return messages;
}

static void
test_batch_by_hand (void **state)
{
    harness_t *h = *state;
    s_quiet_heartbeats (h);
    s_start_broker (h);
    assert_int_equal (harness_wait_broker (h, 5000), 0);
    bus_client_t *stats = harness_client (h);
    zsock_t *client = zsock_new_dealer (h->bus);
    zmq_msg_t f[4];
    bus_header_t got;
    uint64_t drops = s_drops_with (stats, 0);
    uint8_t body[64];
    Bus__Request mmi = BUS__REQUEST__INIT;
    mmi.method = "mmi.stats";
    assert_true (bus__request__get_packed_size (&mmi) <= sizeof body);
    size_t body_len = bus__request__pack (&mmi, body);

    /*  A peer of version 2: a well-formed header of a request the broker
        would answer, under the signature PBC02, gets no answer; its drop is
        logged as such. First, while the log's limit lets every line out. */
    bus_header_t req = {.side = BUS_CLIENT, .command = BUS_CLIENT_REQUEST, .number = 5000,
                        .id = (const uint8_t *) "v2", .id_len = 2,
                        .service = (const uint8_t *) "mmi", .service_len = 3};
    uint8_t header[BUS_HEADER_MAX];
    size_t size = bus_header_build (header, &req, BUS_TO_BROKER);
    memcpy (header, "PBC02", BUS_SIGNATURE_LEN);
    zmq_send (zsock_resolve (client), header, size, ZMQ_SNDMORE);
    zmq_send (zsock_resolve (client), body, body_len, 0);
    s_barrier (client);
    assert_int_equal (s_drops_with (stats, 0), ++drops);
    assert_true (s_drop_logged (h, "protocol version 2"));

    /*  A BATCH of two requests the broker answers itself is answered with
        one BATCH of two REPLYs, in order. */
    bus_batch_t b = {0};
    s_mmi_entries (&b, 2, body, body_len);
    s_send_batch (client, BUS_CLIENT, 2, b.data, b.len);
    assert_int_equal (s_recv_mmi_replies (client, 2), 1);
    /*  So are 1,024, the most a BATCH may hold, in BATCHes of 256. */
    bus_batch_t most = {0};
    s_mmi_entries (&most, BUS_BATCH_MAX, body, body_len);
    s_send_batch (client, BUS_CLIENT, most.count, most.data, most.len);
    assert_int_equal (s_recv_mmi_replies (client, BUS_BATCH_MAX), BUS_BATCH_MAX / BUS_BATCH_SEND);
    assert_int_equal (s_drops_with (stats, 0), drops);

    /*  The same entries in a malformed BATCH: none is handled, not even
        those before the fault, and the BATCH is one drop. */
    const uint8_t *eh, *ep;
    size_t first = 0, eh_len, ep_len;
    assert_true (bus_batch_next (b.data, b.len, &first, &eh, &eh_len, &ep, &ep_len));
    uint8_t bad[512];
    assert_true (b.len + 1 <= sizeof bad);
    /*  The count says 2, the frame holds 1. */
    s_send_batch (client, BUS_CLIENT, 2, b.data, first);
    s_barrier (client);
    assert_int_equal (s_drops_with (stats, 0), ++drops);
    /*  The last entry's payload length runs past the end. */
    memcpy (bad, b.data, b.len);
    bad[b.len - body_len - 1]++;
    s_send_batch (client, BUS_CLIENT, 2, bad, b.len);
    s_barrier (client);
    assert_int_equal (s_drops_with (stats, 0), ++drops);
    /*  The first entry's header length is over 512. */
    memcpy (bad, b.data, b.len);
    bad[0] = 0x02;
    bad[1] = 0x01;
    s_send_batch (client, BUS_CLIENT, 2, bad, b.len);
    s_barrier (client);
    assert_int_equal (s_drops_with (stats, 0), ++drops);
    /*  A byte after the last entry. */
    memcpy (bad, b.data, b.len);
    bad[b.len] = 0;
    s_send_batch (client, BUS_CLIENT, 2, bad, b.len + 1);
    s_barrier (client);
    assert_int_equal (s_drops_with (stats, 0), ++drops);
    /*  A count of 0. */
    s_send_batch (client, BUS_CLIENT, 0, b.data, b.len);
    s_barrier (client);
    assert_int_equal (s_drops_with (stats, 0), ++drops);
    /*  1,025 entries, all well-formed, and the count saying so. */
    uint8_t *over = malloc (most.len + first);
    assert_non_null (over);
    memcpy (over, most.data, most.len);
    memcpy (over + most.len, b.data, first);
    s_send_batch (client, BUS_CLIENT, BUS_BATCH_MAX + 1, over, most.len + first);
    free (over);
    bus_batch_fini (&most);
    s_barrier (client);
    assert_int_equal (s_drops_with (stats, 0), ++drops);

    /*  A worker registers by hand, with credit 8. */
    zsock_t *worker = zsock_new_dealer (h->bus);
    bus_header_t ready = {.side = BUS_WORKER, .command = BUS_WORKER_READY, .number = 8,
                          .service = (const uint8_t *) "raw", .service_len = 3};
    s_send_header (worker, &ready, NULL, 0, 0);
    assert_int_equal (harness_wait_workers (h, "raw", 1, 5000), 0);
    assert_int_equal (s_drops (stats), drops);

    /*  One BATCH of six entries: three requests for it, between them one
        for a bad service name (answered BAD_REQUEST), one with an empty id
        and a HEARTBEAT, which a BATCH may not carry (both dropped, no
        answer). */
    static const char *const ids[3] = {"rq-a", "rq-b", "rq-c"};
    static const char *const payloads[3] = {"alpha", "beta beta", "gamma gamma gamma"};
    bus_batch_reset (&b);
    for (int i = 0; i < 3; i++) {
        req.id = (const uint8_t *) ids[i];
        req.id_len = 4;
        req.service = (const uint8_t *) "raw";
        req.service_len = 3;
        s_entry (&b, &req, payloads[i], strlen (payloads[i]));
        if (i == 0) {
            bus_header_t bad_name = req;
            bad_name.id = (const uint8_t *) "rq-x";
            bad_name.service = (const uint8_t *) "No-Such!";
            bad_name.service_len = 8;
            s_entry (&b, &bad_name, "x", 1);
        }
        if (i == 1) {
            bus_header_t no_id = req;
            no_id.id_len = 0;
            s_entry (&b, &no_id, "y", 1);
            bus_header_t hb = {.side = BUS_CLIENT, .command = BUS_CLIENT_HEARTBEAT,
                               .nonce = (const uint8_t *) "in-a-batch", .nonce_len = 10};
            s_entry (&b, &hb, NULL, 0);
        }
    }
    assert_int_equal (b.count, 6);
    s_send_batch (client, BUS_CLIENT, b.count, b.data, b.len);

    /*  The worker gets the three as one BATCH, in order, each with the
        client's address and id and the payload as the client sent it. */
    assert_int_equal (s_recv_worker (worker, f, &got), 2);
    assert_int_equal (got.command, BUS_WORKER_BATCH);
    assert_int_equal (got.number, 3);
    const uint8_t *data = zmq_msg_data (&f[1]);
    size_t data_len = zmq_msg_size (&f[1]), at = 0;
    assert_null (bus_batch_check (data, data_len, got.number));
    uint8_t replies[3][BUS_HEADER_MAX], address[256];
    size_t reply_len[3], address_len = 0;
    for (int i = 0; i < 3; i++) {
        assert_true (bus_batch_next (data, data_len, &at, &eh, &eh_len, &ep, &ep_len));
        bus_header_t e;
        assert_null (bus_header_parse (eh, eh_len, BUS_FROM_BROKER, &e));
        assert_int_equal (e.side, BUS_WORKER);
        assert_int_equal (e.command, BUS_WORKER_REQUEST);
        assert_int_equal (e.id_len, 4);
        assert_memory_equal (e.id, ids[i], 4);
        assert_true (e.address_len > 0 && e.address_len <= sizeof address);
        memcpy (address, e.address, e.address_len);
        address_len = e.address_len;
        assert_int_equal (ep_len, strlen (payloads[i]));
        assert_memory_equal (ep, payloads[i], ep_len);
        /*  Its REPLY: the same header under the REPLY command. */
        memcpy (replies[i], eh, eh_len);
        replies[i][BUS_SIGNATURE_LEN] = BUS_WORKER_REPLY;
        reply_len[i] = eh_len;
    }
    assert_false (bus_batch_next (data, data_len, &at, &eh, &eh_len, &ep, &ep_len));
    s_close_raw (f, 2);
    /*  The client gets BAD_REQUEST for the bad name, and nothing else. */
    assert_int_equal (s_recv_raw (client, f, 5000), 2);
    assert_null (bus_header_parse (zmq_msg_data (&f[0]), zmq_msg_size (&f[0]), BUS_FROM_BROKER,
                                   &got));
    assert_int_equal (got.command, BUS_CLIENT_REPLY);
    assert_int_equal (got.id_len, 4);
    assert_memory_equal (got.id, "rq-x", 4);
    assert_int_equal (got.service_len, 8);
    assert_memory_equal (got.service, "No-Such!", 8);
    Bus__Reply *reply = bus__reply__unpack (NULL, zmq_msg_size (&f[1]), zmq_msg_data (&f[1]));
    assert_non_null (reply);
    assert_int_equal (reply->status, ST_BAD_REQUEST);
    bus__reply__free_unpacked (reply, NULL);
    s_close_raw (f, 2);
    s_barrier (client);
    /*  Three drops: the bad name, the empty id, the HEARTBEAT. */
    drops += 3;
    assert_int_equal (s_drops (stats), drops);

    /*  The worker answers with one BATCH: the three REPLYs, last first,
        and among them one for a request it does not hold (dropped). The
        client gets the three as one BATCH, in that order, payloads
        untouched. */
    static const char *const answers[3] = {"answer a", "answer bb", "answer ccc"};
    bus_batch_reset (&b);
    assert_int_equal (bus_batch_add (&b, replies[2], reply_len[2], answers[2], 10), 0);
    bus_header_t unknown = {.side = BUS_WORKER, .command = BUS_WORKER_REPLY,
                            .address = address, .address_len = address_len,
                            .id = (const uint8_t *) "rq-z", .id_len = 4};
    s_entry (&b, &unknown, "stray", 5);
    assert_int_equal (bus_batch_add (&b, replies[1], reply_len[1], answers[1], 9), 0);
    assert_int_equal (bus_batch_add (&b, replies[0], reply_len[0], answers[0], 8), 0);
    s_send_batch (worker, BUS_WORKER, b.count, b.data, b.len);
    assert_int_equal (s_recv_raw (client, f, 5000), 2);
    assert_null (bus_header_parse (zmq_msg_data (&f[0]), zmq_msg_size (&f[0]), BUS_FROM_BROKER,
                                   &got));
    assert_int_equal (got.command, BUS_CLIENT_BATCH);
    assert_int_equal (got.number, 3);
    data = zmq_msg_data (&f[1]);
    data_len = zmq_msg_size (&f[1]);
    at = 0;
    assert_null (bus_batch_check (data, data_len, got.number));
    for (int i = 2; i >= 0; i--) {
        assert_true (bus_batch_next (data, data_len, &at, &eh, &eh_len, &ep, &ep_len));
        bus_header_t e;
        assert_null (bus_header_parse (eh, eh_len, BUS_FROM_BROKER, &e));
        assert_int_equal (e.side, BUS_CLIENT);
        assert_int_equal (e.command, BUS_CLIENT_REPLY);
        assert_int_equal (e.id_len, 4);
        assert_memory_equal (e.id, ids[i], 4);
        assert_int_equal (e.service_len, 3);
        assert_memory_equal (e.service, "raw", 3);
        assert_int_equal (ep_len, strlen (answers[i]));
        assert_memory_equal (ep, answers[i], ep_len);
    }
    s_close_raw (f, 2);
    s_barrier (client);
    arena_t *arena = arena_new ();
    Bus__MmiStats *st = s_stats (stats, arena);
    assert_int_equal (st->drops, ++drops);
    assert_int_equal (st->replies, 3);
    assert_int_equal (st->workers, 1);
    arena_destroy (&arena);

    /*  A BATCH with the worker signature from a peer that did not
        register, well-formed or not, is one drop and answered DISCONNECT. */
    zsock_t *stranger = zsock_new_dealer (h->bus);
    for (int malformed = 0; malformed < 2; malformed++) {
        s_send_batch (stranger, BUS_WORKER, b.count + (uint32_t) malformed, b.data, b.len);
        assert_int_equal (s_recv_raw (stranger, f, 5000), 1);
        assert_int_equal (zmq_msg_size (&f[0]), 6);
        assert_memory_equal (zmq_msg_data (&f[0]), BUS_WORKER_HEADER "\x05", 6);
        s_close_raw (f, 1);
        assert_int_equal (s_drops (stats), ++drops);
    }
    zsock_destroy (&stranger);
    /*  From the registered worker, a malformed BATCH is one drop too, and
        the worker stays registered. */
    s_send_batch (worker, BUS_WORKER, b.count + 1, b.data, b.len);
    int64_t until = clock_mono_ms () + 5000;
    uint64_t now = s_drops (stats);
    while (now == drops && clock_mono_ms () < until) {
        zclock_sleep (20);
        now = s_drops (stats);
    }
    assert_int_equal (now, drops + 1);

    bus_batch_fini (&b);
    zsock_destroy (&worker);
    zsock_destroy (&client);
    bus_client_destroy (&stats);
}

/* --- the client sends calls started together as one message --- */

typedef struct {
    const char *text;           /* what the echo gives back; NULL: not an echo */
    int done, ok;
} calls_t;

static void
s_calls_reply (void *arg, const Bus__Reply *reply)
{
    calls_t *c = arg;
    c->done++;
    if (reply->status != ST_OK)
        return;
    if (!c->text) {
        c->ok++;
        return;
    }
    Echo__EchoReply *r = echo__echo_reply__unpack (NULL, reply->body.len, reply->body.data);
    if (r && strcmp (r->text, c->text) == 0)
        c->ok++;
    if (r)
        echo__echo_reply__free_unpacked (r, NULL);
}

static void
s_echo_send (bus_client_t *client, calls_t *c)
{
    Echo__EchoRequest req = ECHO__ECHO_REQUEST__INIT;
    req.text = (char *) c->text;
    bus_call_opts_t opts = {.timeout_ms = 10000};
    assert_true (bus_client_send (client, "echo", "echo.echo", &req.base, &opts, s_calls_reply, c));
}

/*  The worker, spoken to by a broker played by hand: a REQUEST whose
    header holds more than any broker may send (a 255-byte client address
    and a 255-byte id: 518 bytes, where docs/bus.md allows 32-byte ids) is
    dropped, not run; the worker stays up and answers the next one. In a
    BATCH, entries with an empty id or no client are dropped likewise. */
static void
test_worker_refuses_oversized_headers (void **state)
{
    harness_t *h = *state;
    s_quiet_heartbeats (h);
    zsock_t *broker = zsock_new (ZMQ_ROUTER);
    assert_non_null (broker);
    assert_true (zsock_bind (broker, "%s", h->bus) >= 0);
    pid_t worker = harness_spawn (h, "parta-echo-worker", NULL);
    assert_true (worker > 0);
    /*  Its READY, and its routing id. */
    zmq_msg_t f[4];
    assert_int_equal (s_recv_raw (broker, f, 10000), 2);
    bus_header_t got;
    assert_null (bus_header_parse (zmq_msg_data (&f[1]), zmq_msg_size (&f[1]), BUS_TO_BROKER,
                                   &got));
    assert_int_equal (got.command, BUS_WORKER_READY);
    uint8_t routing[256];
    size_t routing_len = zmq_msg_size (&f[0]);
    memcpy (routing, zmq_msg_data (&f[0]), routing_len);
    s_close_raw (f, 2);

    Echo__EchoRequest body = ECHO__ECHO_REQUEST__INIT;
    body.text = "hello";
    uint8_t body_buf[64];
    Bus__Request req = BUS__REQUEST__INIT;
    req.method = "echo.echo";
    req.body.len = echo__echo_request__pack (&body, body_buf);
    req.body.data = body_buf;
    uint8_t payload[256];
    size_t payload_len = bus__request__pack (&req, payload);

    uint8_t big[255];
    memset (big, 'a', sizeof big);
    for (int k = 0; k < 2; k++) {
        /*  k 0: address and id of 255 bytes; k 1: a fine one. */
        bus_header_t r = {.side = BUS_WORKER, .command = BUS_WORKER_REQUEST,
                          .address = k ? (const uint8_t *) "cli01" : big,
                          .address_len = k ? 5 : sizeof big,
                          .id = k ? (const uint8_t *) "ok1" : big,
                          .id_len = k ? 3 : sizeof big};
        uint8_t header[BUS_HEADER_MAX + 16];
        size_t size = 0;
        if (k)
            size = bus_header_build (header, &r, BUS_FROM_BROKER);
        else {
            /*  Built by hand: bus_header_build refuses what is too long. */
            memcpy (header, BUS_WORKER_HEADER, BUS_SIGNATURE_LEN);
            header[BUS_SIGNATURE_LEN] = BUS_WORKER_REQUEST;
            size = BUS_SIGNATURE_LEN + 1;
            header[size++] = sizeof big;
            memcpy (header + size, big, sizeof big);
            size += sizeof big;
            header[size++] = sizeof big;
            memcpy (header + size, big, sizeof big);
            size += sizeof big;
            assert_int_equal (size, 518);
            bus_header_t parsed;
            assert_null (bus_header_parse (header, size, BUS_FROM_BROKER, &parsed));
        }
        assert_true (size > 0);
        zmq_send (zsock_resolve (broker), routing, routing_len, ZMQ_SNDMORE);
        zmq_send (zsock_resolve (broker), header, size, ZMQ_SNDMORE);
        zmq_send (zsock_resolve (broker), payload, payload_len, 0);
    }
    /*  The one reply is the fine request's (heartbeats may come first). */
    int n;
    do {
        n = s_recv_raw (broker, f, 10000);
        assert_true (n >= 2);
        assert_null (bus_header_parse (zmq_msg_data (&f[1]), zmq_msg_size (&f[1]), BUS_TO_BROKER,
                                       &got));
        if (got.command != BUS_WORKER_REPLY)
            s_close_raw (f, n);
    } while (got.command != BUS_WORKER_REPLY);
    assert_int_equal (n, 3);
    assert_int_equal (got.id_len, 3);
    assert_memory_equal (got.id, "ok1", 3);
    Bus__Reply *reply = bus__reply__unpack (NULL, zmq_msg_size (&f[2]), zmq_msg_data (&f[2]));
    assert_non_null (reply);
    assert_int_equal (reply->status, ST_OK);
    bus__reply__free_unpacked (reply, NULL);
    s_close_raw (f, n);

    /*  In a BATCH the same: an entry with an empty id, one naming no
        client, and a fine one; only the fine one is answered. */
    bus_batch_t batch = {0};
    const struct {
        const char *address, *id;
    } entries[] = {{"cli01", ""}, {"", "id2"}, {"cli01", "ok2"}};
    for (int k = 0; k < 3; k++) {
        bus_header_t r = {.side = BUS_WORKER, .command = BUS_WORKER_REQUEST,
                          .address = (const uint8_t *) entries[k].address,
                          .address_len = strlen (entries[k].address),
                          .id = (const uint8_t *) entries[k].id,
                          .id_len = strlen (entries[k].id)};
        uint8_t header[BUS_HEADER_MAX];
        size_t size = bus_header_build (header, &r, BUS_FROM_BROKER);
        assert_true (size > 0);
        assert_int_equal (bus_batch_add (&batch, header, size, payload, payload_len), 0);
    }
    uint8_t head[BUS_BATCH_HEADER_LEN];
    bus_batch_header (head, BUS_WORKER, batch.count);
    zmq_send (zsock_resolve (broker), routing, routing_len, ZMQ_SNDMORE);
    zmq_send (zsock_resolve (broker), head, sizeof head, ZMQ_SNDMORE);
    zmq_send (zsock_resolve (broker), batch.data, batch.len, 0);
    bus_batch_fini (&batch);
    do {
        n = s_recv_raw (broker, f, 10000);
        assert_true (n >= 2);
        assert_null (bus_header_parse (zmq_msg_data (&f[1]), zmq_msg_size (&f[1]), BUS_TO_BROKER,
                                       &got));
        if (got.command != BUS_WORKER_REPLY)
            s_close_raw (f, n);
    } while (got.command != BUS_WORKER_REPLY);
    assert_int_equal (n, 3);    /* one reply: alone, not in a batch */
    assert_int_equal (got.id_len, 3);
    assert_memory_equal (got.id, "ok2", 3);
    s_close_raw (f, n);
    /*  Nothing else comes but heartbeats, and the worker lives. */
    while ((n = s_recv_raw (broker, f, 300)) > 0) {
        assert_null (bus_header_parse (zmq_msg_data (&f[1]), zmq_msg_size (&f[1]), BUS_TO_BROKER,
                                       &got));
        assert_int_equal (got.command, BUS_WORKER_HEARTBEAT);
        s_close_raw (f, n);
    }
    assert_true (harness_alive (worker));
    zsock_destroy (&broker);
}

/*  Processes the client until no call is in flight (at most 15 s). */
static void
s_pump_all (bus_client_t *client)
{
    int64_t until = clock_mono_ms () + 15000;
    while (bus_client_pending (client) && clock_mono_ms () < until) {
        int wait = bus_client_process (client);
        zmq_pollitem_t item = {NULL, bus_client_fd (client), ZMQ_POLLIN, 0};
        zmq_poll (&item, 1, wait < 0 || wait > 50 ? 50 : wait);
    }
    assert_int_equal (bus_client_pending (client), 0);
}

static uint64_t
s_messages_in (bus_client_t *client)
{
    arena_t *arena = arena_new ();
    uint64_t n = s_stats (client, arena)->messages_in;
    arena_destroy (&arena);
    return n;
}

static void
test_client_batches_calls (void **state)
{
    harness_t *h = *state;
    /*  No heartbeats for a minute: in this test only the calls' own
        messages reach the broker's socket, whose messages_in counts them.
        And credit for all 50 calls at once, so that the broker hands them
        to the worker together. */
    s_quiet_heartbeats (h);
    s_add_env (h, "PARTA_WORKER_CREDIT=64");
    s_start_broker (h);
    harness_spawn (h, "parta-echo-worker", NULL);
    assert_int_equal (harness_wait_workers (h, "echo", 1, 5000), 0);
    bus_client_t *client = harness_client (h);
    /*  The first call after a quiet spell sends a heartbeat before it;
        both are counted in this first reading, and for a minute no other
        heartbeat goes. */
    uint64_t before = s_messages_in (client);

    /*  50 calls the broker answers itself, started in one batch, cross its
        socket as one message: between two readings it receives exactly
        two, the batch and the second reading. */
    calls_t mmi = {0};
    bus_call_opts_t opts = {.timeout_ms = 10000};
    bus_client_batch_begin (client);
    for (int i = 0; i < 50; i++)
        assert_true (bus_client_send (client, "mmi", "mmi.stats", NULL, &opts, s_calls_reply,
                                      &mmi));
    bus_client_batch_end (client);
    s_pump_all (client);
    assert_int_equal (mmi.done, 50);
    assert_int_equal (mmi.ok, 50);
    uint64_t after = s_messages_in (client);
    assert_int_equal (after - before, 2);

    /*  50 echo calls in one batch. While it is open nothing leaves,
        however often the client is processed: bus_client_process holds the
        client too, and only the outermost _end sends (no heartbeat, which
        would send what was collected first, is due for a minute). */
    before = after;
    calls_t echo = {.text = "batched"};
    bus_client_batch_begin (client);
    for (int i = 0; i < 50; i++)
        s_echo_send (client, &echo);
    int64_t until = clock_mono_ms () + 200;
    while (clock_mono_ms () < until) {
        int wait = bus_client_process (client);
        zmq_pollitem_t item = {NULL, bus_client_fd (client), ZMQ_POLLIN, 0};
        zmq_poll (&item, 1, wait < 0 || wait > 20 ? 20 : wait);
    }
    assert_int_equal (echo.done, 0);
    assert_int_equal (bus_client_pending (client), 50);
    bus_client_batch_end (client);
    s_pump_all (client);
    assert_int_equal (echo.done, 50);
    assert_int_equal (echo.ok, 50);
    /*  The broker received the batch, the worker's replies (one BATCH when
        it made the 50 replies within its hold of a millisecond, a few
        otherwise) and the second reading: at most 5, where 50 calls sent
        one by one would be over 50. */
    after = s_messages_in (client);
    assert_true (after - before <= 5);

    /*  A request over 64 KiB is not batched: it goes alone, after the
        calls collected before it, and those after it are collected anew.
        All seven are answered, the large echo intact. */
    size_t large_len = 100 * 1024;
    char *large = malloc (large_len + 1);
    assert_non_null (large);
    for (size_t i = 0; i < large_len; i++)
        large[i] = (char) ('a' + i % 26);
    large[large_len] = 0;
    calls_t mixed[7] = {{"one"}, {"two"}, {"three"}, {large}, {"five"}, {"six"}, {"seven"}};
    bus_client_batch_begin (client);
    for (int i = 0; i < 7; i++)
        s_echo_send (client, &mixed[i]);
    bus_client_batch_end (client);
    s_pump_all (client);
    for (int i = 0; i < 7; i++) {
        assert_int_equal (mixed[i].done, 1);
        assert_int_equal (mixed[i].ok, 1);
    }
    free (large);
    bus_client_destroy (&client);
}

/* --- a consumer that was down catches up --- */

typedef struct {
    pthread_mutex_t lock;
    uint64_t seqs[4000];
    int n;
} seen_t;

static status_t
s_on_tick (event_ctx_t *ctx, const Ev__Event *event, const ProtobufCMessage *payload)
{
    seen_t *seen = event_ctx_context (ctx);
    const Echo__Tick *tick = (const Echo__Tick *) payload;
    if (!tick || tick->n == 0)
        return ST_BAD_REQUEST;
    pthread_mutex_lock (&seen->lock);
    if (seen->n < 4000)
        seen->seqs[seen->n++] = event->seq;
    pthread_mutex_unlock (&seen->lock);
    return ST_OK;
}

static const event_handler_t s_handlers[] = {
    {"echo.tick", &echo__tick__descriptor, s_on_tick},
    {NULL, NULL, NULL},
};

static int
s_seen (seen_t *seen)
{
    pthread_mutex_lock (&seen->lock);
    int n = seen->n;
    pthread_mutex_unlock (&seen->lock);
    return n;
}

/*  Waits (at most 20 s) until `n` events were applied. */
static void
s_wait_seen (seen_t *seen, int n)
{
    int64_t until = clock_mono_ms () + 20000;
    while (s_seen (seen) < n && clock_mono_ms () < until)
        zclock_sleep (20);
}

static void
s_emit (bus_client_t *client, uint32_t count)
{
    Echo__EmitRequest req = ECHO__EMIT_REQUEST__INIT;
    req.count = count;
    bus_call_opts_t opts = {.timeout_ms = 10000};
    assert_int_equal (bus_client_call (client, "echo", "echo.emit", &req.base, &opts, NULL, NULL,
                                       NULL, NULL),
                      ST_OK);
}

static void
test_consumer_catches_up (void **state)
{
    harness_t *h = *state;
    s_start_broker (h);
    harness_spawn (h, "parta-echo-worker", NULL);
    assert_int_equal (harness_wait_workers (h, "echo", 1, 5000), 0);
    bus_client_t *client = harness_client (h);
    /*  1,000 events while no consumer runs. */
    for (int i = 0; i < 10; i++)
        s_emit (client, 100);
    seen_t seen = {.lock = PTHREAD_MUTEX_INITIALIZER};
    char db_path[400];
    snprintf (db_path, sizeof db_path, "%s/consumer.db", h->dir);
    zactor_t *consumer = event_consumer_start (h->cfg, "consumer", db_path, s_handlers, &seen);
    assert_non_null (consumer);
    s_wait_seen (&seen, 1000);
    /*  Then live ones, while it runs. */
    for (int i = 0; i < 5; i++)
        s_emit (client, 10);
    s_wait_seen (&seen, 1050);
    zclock_sleep (300);     /* room for a duplicate to show up, if any */
    zactor_destroy (&consumer);
    assert_int_equal (seen.n, 1050);
    for (int i = 0; i < seen.n; i++)
        assert_int_equal (seen.seqs[i], (uint64_t) i + 1);
    /*  Down again while 500 more are published: restarted, it goes on
        from where it stopped (its stored seq), applies nothing twice and
        misses nothing; 20 more arrive once while it runs. */
    for (int i = 0; i < 5; i++)
        s_emit (client, 100);
    consumer = event_consumer_start (h->cfg, "consumer", db_path, s_handlers, &seen);
    assert_non_null (consumer);
    s_wait_seen (&seen, 1550);
    s_emit (client, 20);
    s_wait_seen (&seen, 1570);
    zclock_sleep (300);
    zactor_destroy (&consumer);
    assert_int_equal (seen.n, 1570);
    for (int i = 0; i < seen.n; i++)
        assert_int_equal (seen.seqs[i], (uint64_t) i + 1);
    bus_client_destroy (&client);
}

/*  A consumer that was away longer than the source keeps its events:
    the replay says which is the oldest left, and the consumer goes on from
    there (the lost range is logged) instead of asking for it forever. */
static void
test_consumer_skips_pruned_events (void **state)
{
    harness_t *h = *state;
    s_start_broker (h);
    harness_spawn (h, "parta-echo-worker", NULL);
    assert_int_equal (harness_wait_workers (h, "echo", 1, 5000), 0);
    bus_client_t *client = harness_client (h);
    for (int i = 0; i < 3; i++)
        s_emit (client, 100);
    /*  Prune as the retention would, through a second connection to the
        echo service's database: the oldest 200 (all are published soon
        after they commit; the newest published one is always kept). */
    char path[400], err[200];
    snprintf (path, sizeof path, "%s/echo.db", h->dir);
    db_t *db = db_open (path, NULL, "normal", err, sizeof err);
    assert_non_null (db);
    int pruned = 0;
    int64_t until = clock_mono_ms () + 10000;
    while (pruned < 200 && clock_mono_ms () < until) {
        int n = outbox_prune (db, clock_now_ms () + 86400000, 200 - pruned);
        assert_true (n >= 0);
        pruned += n;
        if (pruned < 200)
            zclock_sleep (20);
    }
    assert_int_equal (pruned, 200);
    db_destroy (&db);

    seen_t seen = {.lock = PTHREAD_MUTEX_INITIALIZER};
    char db_path[400];
    snprintf (db_path, sizeof db_path, "%s/consumer.db", h->dir);
    zactor_t *consumer = event_consumer_start (h->cfg, "consumer", db_path, s_handlers, &seen);
    assert_non_null (consumer);
    s_wait_seen (&seen, 100);
    /*  And it follows live events after the skip. */
    s_emit (client, 10);
    s_wait_seen (&seen, 110);
    zclock_sleep (300);     /* room for a duplicate to show up, if any */
    zactor_destroy (&consumer);
    assert_int_equal (seen.n, 110);
    for (int i = 0; i < seen.n; i++)
        assert_int_equal (seen.seqs[i], (uint64_t) i + 201);
    bus_client_destroy (&client);
}

/* --- CURVE --- */

static void
test_curve_keeps_strangers_out (void **state)
{
    harness_t *h = *state;
    char keys[400], env[420], stranger[400];
    snprintf (keys, sizeof keys, "%s/keys", h->dir);
    assert_int_equal (curve_keygen (keys), 0);
    snprintf (env, sizeof env, "PARTA_CURVE=%s", keys);
    h->extra_env[0] = env;
    config_set (h->cfg, "curve", keys);
    s_start_broker (h);
    harness_spawn (h, "parta-echo-worker", NULL);
    assert_int_equal (harness_wait_workers (h, "echo", 1, 5000), 0);
    bus_client_t *client = harness_client (h);
    assert_int_equal (s_echo (client, "friend", 3000, BUS_CALL_RETRY, NULL), ST_OK);
    bus_client_destroy (&client);

    /*  A key the broker has not been given. */
    snprintf (stranger, sizeof stranger, "%s/stranger.cert", h->dir);
    zcert_t *cert = zcert_new ();
    assert_int_equal (zcert_save (cert, stranger), 0);
    zcert_destroy (&cert);
    char err[128];
    config_t *cfg = config_new ("stranger", NULL, 0, NULL, err, sizeof err);
    config_set (cfg, "bus", h->bus);
    config_set (cfg, "events_in", h->events_in);
    config_set (cfg, "data", h->dir);
    config_set (cfg, "curve", keys);
    config_set (cfg, "curve_cert", stranger);
    client = bus_client_new_from_config (cfg);
    assert_int_equal (s_echo (client, "stranger", 1500, 0, NULL), ST_UNAVAILABLE);
    bus_client_destroy (&client);
    /*  Nor can it act as a worker: a stranger's worker never registers. */
    zactor_t *worker = bus_worker_start (cfg, &echo_service, NULL);
    assert_non_null (worker);
    assert_int_not_equal (harness_wait_workers (h, "echo", 2, 1500), 0);
    zactor_destroy (&worker);
    /*  And without CURVE at all, nothing either. */
    config_set (cfg, "curve", NULL);
    config_set (cfg, "curve_cert", NULL);
    client = bus_client_new_from_config (cfg);
    assert_int_equal (s_echo (client, "plain", 1500, 0, NULL), ST_UNAVAILABLE);
    bus_client_destroy (&client);
    config_destroy (&cfg);
}

/* --- mmi and sys --- */

static void
test_mmi_and_sys_methods (void **state)
{
    harness_t *h = *state;
    s_start_broker (h);
    harness_spawn (h, "parta-echo-worker", NULL);
    harness_spawn (h, "parta-echo-worker", NULL);
    assert_int_equal (harness_wait_workers (h, "echo", 2, 5000), 0);
    bus_client_t *client = harness_client (h);
    arena_t *arena = arena_new ();
    Bus__Pong *pong = NULL;
    assert_int_equal (bus_client_call (client, "echo", "sys.ping", NULL, NULL,
                                       &bus__pong__descriptor, arena, (ProtobufCMessage **) &pong,
                                       NULL),
                      ST_OK);
    assert_string_equal (pong->service, "echo");
    assert_int_equal (s_echo (client, "x", 2000, 0, NULL), ST_OK);
    Bus__Stats *stats = NULL;
    assert_int_equal (bus_client_call (client, "echo", "sys.stats", NULL, NULL,
                                       &bus__stats__descriptor, arena, (ProtobufCMessage **) &stats,
                                       NULL),
                      ST_OK);
    assert_string_equal (stats->service, "echo");
    assert_true (stats->n_methods >= 6);
    /*  An unknown method is not_found, with a message. */
    Bus__Reply *result = NULL;
    assert_int_equal (bus_client_call (client, "echo", "echo.nope", NULL, NULL, NULL, arena, NULL,
                                       &result),
                      ST_NOT_FOUND);
    assert_non_null (strstr (result->message, "echo.nope"));
    /*  A body that is not the method's message is bad_request. */
    Echo__CountRequest wrong = ECHO__COUNT_REQUEST__INIT;
    wrong.name = "";
    assert_int_equal (bus_client_call (client, "echo", "echo.count", &wrong.base, NULL, NULL,
                                       arena, NULL, &result),
                      ST_BAD_REQUEST);
    assert_string_equal (result->field, "name");
    arena_destroy (&arena);
    bus_client_destroy (&client);
}

int
main (void)
{
    zsys_init ();
    zsys_set_logstream (NULL);
    log_init ("test", "warn");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (test_three_workers_share_load, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_keyed_call_without_caller_applies_once, s_setup,
                                         s_teardown),
        cmocka_unit_test_setup_teardown (test_killed_worker_loses_no_idempotent_request, s_setup,
                                         s_teardown),
        cmocka_unit_test_setup_teardown (test_worker_death_answers_unavailable, s_setup,
                                         s_teardown),
        cmocka_unit_test_setup_teardown (test_no_worker_waits_for_deadline, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_broker_restart, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_malformed_frames_do_not_hurt, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_protocol_by_hand, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_batch_by_hand, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_client_batches_calls, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_worker_refuses_oversized_headers, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_consumer_catches_up, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_consumer_skips_pruned_events, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_curve_keeps_strangers_out, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_mmi_and_sys_methods, s_setup, s_teardown),
    };
    return cmocka_run_group_tests_name ("bus", tests, NULL, NULL);
}

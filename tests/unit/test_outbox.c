/*  Unit tests of outbox: sequence numbers gap-free and ascending across
    transactions (a rollback leaves no gap), replay in pages, the epoch, and
    the publisher: one lease holder among connections to one database, the
    takeover when the holder goes or its lease lapses, and what arrives, in
    order, on a SUB socket that stands in for the broker's event input. */
#include "clock.h"
#include "config.h"
#include "log.h"
#include "outbox.h"
#include "ulid.h"

#include <czmq.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#define SOURCE "svc"
#define WAIT_MS 15000           /* only a limit for a broken build; never reached */

typedef struct {
    char dir[200];
    char path[300];             /* the database */
    char other[300];            /* a second database */
    char clock_file[300];
    char endpoint[300];
    config_t *cfg;
} fixture_t;

static int
s_setup (void **state)
{
    fixture_t *fx = calloc (1, sizeof *fx);
    if (!fx)
        return -1;
    const char *tmp = getenv ("TMPDIR");
    snprintf (fx->dir, sizeof fx->dir, "%s/parta-outbox-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp (fx->dir)) {
        free (fx);
        return -1;
    }
    snprintf (fx->path, sizeof fx->path, "%s/svc.db", fx->dir);
    snprintf (fx->other, sizeof fx->other, "%s/other.db", fx->dir);
    snprintf (fx->clock_file, sizeof fx->clock_file, "%s/clock", fx->dir);
    snprintf (fx->endpoint, sizeof fx->endpoint, "ipc://%s/events-in.sock", fx->dir);
    setenv ("PARTA_TEST_CLOCK_FILE", fx->clock_file, 1);
    clock_test_reload ();
    unsetenv ("PARTA_CURVE");
    unsetenv ("PARTA_CURVE_CERT");
    char err[256];
    fx->cfg = config_new ("test", NULL, 0, NULL, err, sizeof err);
    if (!fx->cfg)
        return -1;
    config_set (fx->cfg, "events_in", fx->endpoint);
    *state = fx;
    return 0;
}

static int
s_teardown (void **state)
{
    fixture_t *fx = *state;
    unsetenv ("PARTA_TEST_CLOCK_FILE");
    clock_test_reload ();
    config_destroy (&fx->cfg);
    DIR *d = opendir (fx->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir (d)) != NULL) {
            if (strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
                continue;
            char file[600];
            snprintf (file, sizeof file, "%s/%s", fx->dir, e->d_name);
            unlink (file);
        }
        closedir (d);
    }
    int rc = rmdir (fx->dir);
    free (fx);
    return rc;
}

static db_t *
s_open (const char *path)
{
    char err[256] = "";
    const char *migrations[] = {"CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT);", NULL};
    db_t *db = db_open (path, migrations, "normal", err, sizeof err);
    if (!db)
        fail_msg ("db_open: %s", err);
    return db;
}

/*  Adds the event the test expects to get sequence number `seq`: its org
    id and its payload carry that number, so a receiver can tell a row's
    fields and payload went out with the right seq. */
static void
s_add (db_t *db, uint64_t seq)
{
    char org[32], type[48];
    snprintf (org, sizeof org, "org-%llu", (unsigned long long) seq);
    snprintf (type, sizeof type, "test.item.n%llu", (unsigned long long) (seq % 3));
    Ev__Head payload = EV__HEAD__INIT;
    payload.seq = seq;
    int64_t at = 1795856400000LL + (int64_t) seq;
    assert_int_equal (outbox_add (db, type, org, "actor-1", "trace-1", at, &payload.base), 0);
}

/*  Commits `count` events, expected at first_seq.. in one transaction. */
static void
s_commit_events (db_t *db, uint64_t first_seq, int count)
{
    assert_int_equal (db_begin (db), 0);
    for (int i = 0; i < count; i++)
        s_add (db, first_seq + (uint64_t) i);
    assert_int_equal (db_commit (db), 0);
}

/*  Checks what s_add wrote against the event's seq. */
static void
s_check_event (const Ev__Event *event, const char *epoch)
{
    char org[32], type[48];
    snprintf (org, sizeof org, "org-%llu", (unsigned long long) event->seq);
    snprintf (type, sizeof type, "test.item.n%llu", (unsigned long long) (event->seq % 3));
    assert_string_equal (event->org_id, org);
    assert_string_equal (event->type, type);
    assert_string_equal (event->source, SOURCE);
    assert_string_equal (event->actor_id, "actor-1");
    assert_string_equal (event->trace_id, "trace-1");
    assert_string_equal (event->epoch, epoch);
    assert_true (ulid_valid (event->id));
    assert_int_equal (event->at, 1795856400000LL + (int64_t) event->seq);
    Ev__Head *payload = ev__head__unpack (NULL, event->payload.len, event->payload.data);
    assert_non_null (payload);
    assert_int_equal (payload->seq, event->seq);
    ev__head__free_unpacked (payload, NULL);
}

static uint64_t
s_max_seq (db_t *db)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT count(*), coalesce(min(seq), 0),"
                                      " coalesce(max(seq), 0) FROM outbox");
    assert_int_equal (sqlite3_step (stmt), SQLITE_ROW);
    uint64_t count = (uint64_t) sqlite3_column_int64 (stmt, 0);
    uint64_t min = (uint64_t) sqlite3_column_int64 (stmt, 1);
    uint64_t max = (uint64_t) sqlite3_column_int64 (stmt, 2);
    sqlite3_reset (stmt);
    /*  gap-free: as many rows as the highest number, starting at 1 */
    assert_int_equal (count, max);
    if (count)
        assert_int_equal (min, 1);
    return max;
}

/* --- sequence numbers --- */

static void
test_seq_gap_free (void **state)
{
    fixture_t *fx = *state;
    db_t *db = s_open (fx->path);
    assert_int_equal (outbox_head (db), 0);
    assert_int_equal (outbox_published (db), 0);

    s_commit_events (db, 1, 3);
    assert_int_equal (outbox_head (db), 3);

    /*  a rolled-back transaction uses no numbers */
    assert_int_equal (db_begin (db), 0);
    s_add (db, 4);
    s_add (db, 5);
    assert_int_equal (db_exec (db, "INSERT INTO item (name) VALUES ('x')"), 0);
    assert_int_equal (db_rollback (db), 0);
    assert_int_equal (outbox_head (db), 3);
    s_commit_events (db, 4, 2);
    assert_int_equal (outbox_head (db), 5);

    /*  nor does a rolled-back savepoint inside a committed transaction */
    assert_int_equal (db_begin (db), 0);
    s_add (db, 6);
    assert_int_equal (db_begin (db), 0);
    s_add (db, 7);
    assert_int_equal (db_rollback (db), 0);
    s_add (db, 7);
    assert_int_equal (db_commit (db), 0);

    /*  a second connection to the same database continues the sequence */
    db_t *other = s_open (fx->path);
    s_commit_events (other, 8, 2);
    s_commit_events (db, 10, 1);
    assert_int_equal (db_begin (other), 0);
    s_add (other, 11);
    assert_int_equal (db_rollback (other), 0);
    s_commit_events (other, 11, 1);
    assert_int_equal (s_max_seq (db), 11);
    assert_int_equal (outbox_head (other), 11);

    /*  the rows, in seq order, are the events in the order they were made */
    arena_t *arena = arena_new ();
    Bus__ReplayReply reply = BUS__REPLAY_REPLY__INIT;
    assert_int_equal (outbox_replay (db, SOURCE, 1, 100, arena, &reply), 0);
    assert_int_equal (reply.n_events, 11);
    for (size_t i = 0; i < reply.n_events; i++) {
        Ev__Event *event = ev__event__unpack (NULL, reply.events[i].len, reply.events[i].data);
        assert_non_null (event);
        assert_int_equal (event->seq, i + 1);
        s_check_event (event, outbox_epoch (db));
        ev__event__free_unpacked (event, NULL);
    }
    arena_destroy (&arena);
    db_destroy (&other);
    db_destroy (&db);
}

static void
test_add_without_payload (void **state)
{
    fixture_t *fx = *state;
    db_t *db = s_open (fx->path);
    assert_int_equal (outbox_add (db, "test.bare", NULL, NULL, NULL, 5, NULL), 0);
    /*  a payload bigger than the stack buffer */
    Ev__Event big = EV__EVENT__INIT;
    char *text = malloc (5000);
    assert_non_null (text);
    memset (text, 'y', 4999);
    text[4999] = 0;
    big.type = text;
    assert_int_equal (outbox_add (db, "test.big", "o", "a", "t", 6, &big.base), 0);

    arena_t *arena = arena_new ();
    Bus__ReplayReply reply = BUS__REPLAY_REPLY__INIT;
    assert_int_equal (outbox_replay (db, SOURCE, 1, 10, arena, &reply), 0);
    assert_int_equal (reply.n_events, 2);
    Ev__Event *event = ev__event__unpack (NULL, reply.events[0].len, reply.events[0].data);
    assert_non_null (event);
    assert_string_equal (event->type, "test.bare");
    assert_string_equal (event->org_id, "");
    assert_string_equal (event->actor_id, "");
    assert_string_equal (event->trace_id, "");
    assert_int_equal (event->payload.len, 0);
    assert_int_equal (event->at, 5);
    ev__event__free_unpacked (event, NULL);
    event = ev__event__unpack (NULL, reply.events[1].len, reply.events[1].data);
    assert_non_null (event);
    Ev__Event *inner = ev__event__unpack (NULL, event->payload.len, event->payload.data);
    assert_non_null (inner);
    assert_string_equal (inner->type, text);
    ev__event__free_unpacked (inner, NULL);
    ev__event__free_unpacked (event, NULL);
    arena_destroy (&arena);
    free (text);
    db_destroy (&db);
}

/* --- replay --- */

/*  Replays from `from` with `limit` and checks the page is exactly
    first..first+count-1. */
static void
s_check_page (db_t *db, uint64_t from, uint32_t limit, uint64_t first, size_t count,
              uint64_t head)
{
    arena_t *arena = arena_new ();
    Bus__ReplayReply reply = BUS__REPLAY_REPLY__INIT;
    assert_int_equal (outbox_replay (db, SOURCE, from, limit, arena, &reply), 0);
    assert_int_equal (reply.n_events, count);
    assert_int_equal (reply.head, head);
    assert_string_equal (reply.epoch, outbox_epoch (db));
    for (size_t i = 0; i < reply.n_events; i++) {
        Ev__Event *event = ev__event__unpack (NULL, reply.events[i].len, reply.events[i].data);
        assert_non_null (event);
        assert_int_equal (event->seq, first + i);
        s_check_event (event, reply.epoch);
        ev__event__free_unpacked (event, NULL);
    }
    /*  the reply packs, as the worker will send it */
    size_t len = bus__replay_reply__get_packed_size (&reply);
    uint8_t *buf = malloc (len ? len : 1);
    assert_non_null (buf);
    assert_int_equal (bus__replay_reply__pack (&reply, buf), len);
    free (buf);
    arena_destroy (&arena);
}

static void
test_replay_paging (void **state)
{
    fixture_t *fx = *state;
    db_t *db = s_open (fx->path);
    /*  nothing yet */
    s_check_page (db, 1, 10, 1, 0, 0);
    s_commit_events (db, 1, 7);
    s_commit_events (db, 8, 5);

    s_check_page (db, 1, 5, 1, 5, 12);
    s_check_page (db, 6, 5, 6, 5, 12);
    s_check_page (db, 11, 5, 11, 2, 12);
    s_check_page (db, 13, 5, 13, 0, 12);
    s_check_page (db, 1000, 5, 1000, 0, 12);
    /*  from any seq, 0 meaning the start */
    s_check_page (db, 0, 3, 1, 3, 12);
    s_check_page (db, 7, 1, 7, 1, 12);
    s_check_page (db, 12, 500, 12, 1, 12);
    s_check_page (db, 4, 100, 4, 9, 12);

    /*  the limit is capped at 500; 0 means the cap */
    assert_int_equal (db_begin (db), 0);
    for (uint64_t seq = 13; seq <= 620; seq++)
        s_add (db, seq);
    assert_int_equal (db_commit (db), 0);
    s_check_page (db, 1, 0, 1, 500, 620);
    s_check_page (db, 1, 501, 1, 500, 620);
    s_check_page (db, 1, 4000000000u, 1, 500, 620);
    s_check_page (db, 501, 500, 501, 120, 620);
    /*  a seq beyond what sqlite's integers hold does not wrap around */
    s_check_page (db, UINT64_MAX, 10, 0, 0, 620);
    db_destroy (&db);
}

/*  Marks everything up to `seq` published, as a publisher would. */
static void
s_set_published (db_t *db, uint64_t seq)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE outbox_state SET published = ? WHERE id = 1");
    assert_non_null (stmt);
    sqlite3_bind_int64 (stmt, 1, (sqlite3_int64) seq);
    assert_int_equal (db_step_done (db, stmt, NULL), 0);
}

static void
test_prune (void **state)
{
    fixture_t *fx = *state;
    db_t *db = s_open (fx->path);
    arena_t *arena = arena_new ();
    /*  Events 1..20 written at base+seq ms; 1..15 published. */
    s_commit_events (db, 1, 20);
    s_set_published (db, 15);
    int64_t base = 1795856400000LL;

    /*  Nothing is older than the cut-off: nothing goes. */
    assert_int_equal (outbox_prune (db, base + 1, 100), 0);
    /*  Older than base+6: seq 1..5, and a batch bounds each call. */
    assert_int_equal (outbox_prune (db, base + 6, 3), 3);
    assert_int_equal (outbox_prune (db, base + 6, 3), 2);
    assert_int_equal (outbox_prune (db, base + 6, 3), 0);
    Bus__ReplayReply reply = BUS__REPLAY_REPLY__INIT;
    assert_int_equal (outbox_replay (db, SOURCE, 1, 100, arena, &reply), 0);
    assert_int_equal (reply.oldest, 6);
    assert_int_equal (reply.head, 20);
    assert_int_equal (reply.n_events, 15);
    Ev__Event *first = ev__event__unpack (NULL, reply.events[0].len, reply.events[0].data);
    assert_non_null (first);
    assert_int_equal (first->seq, 6);
    ev__event__free_unpacked (first, NULL);

    /*  Everything is old: unpublished rows stay, and so does the newest
        published one. */
    assert_int_equal (outbox_prune (db, base + 1000000, 100), 9);     /* 6..14 */
    arena_reset (arena);
    assert_int_equal (outbox_replay (db, SOURCE, 1, 100, arena, &reply), 0);
    assert_int_equal (reply.oldest, 15);
    assert_int_equal (reply.n_events, 6);
    /*  All published and pruned: the head and the numbering carry on. */
    s_set_published (db, 20);
    assert_int_equal (outbox_prune (db, base + 1000000, 100), 5);
    assert_int_equal (outbox_head (db), 20);
    s_commit_events (db, 21, 1);
    assert_int_equal (outbox_head (db), 21);
    arena_reset (arena);
    assert_int_equal (outbox_replay (db, SOURCE, 1, 100, arena, &reply), 0);
    assert_int_equal (reply.oldest, 20);
    assert_int_equal (reply.n_events, 2);
    arena_destroy (&arena);
    db_destroy (&db);
}

/* --- epoch --- */

static void
test_epoch (void **state)
{
    fixture_t *fx = *state;
    db_t *db = s_open (fx->path);
    char *first = strdup (outbox_epoch (db));
    assert_true (ulid_valid (first));
    char *meta = db_meta_get (db, "epoch");
    assert_string_equal (first, meta);
    free (meta);
    assert_string_equal (outbox_epoch (db), first);
    db_destroy (&db);

    /*  another database has another epoch, even when its db_t happens to
        sit where the previous one was */
    db = s_open (fx->other);
    const char *second = outbox_epoch (db);
    assert_true (ulid_valid (second));
    assert_string_not_equal (second, first);
    meta = db_meta_get (db, "epoch");
    assert_string_equal (second, meta);
    free (meta);
    db_destroy (&db);

    /*  the same file keeps its epoch across reopening */
    db = s_open (fx->path);
    assert_string_equal (outbox_epoch (db), first);
    db_t *second_conn = s_open (fx->path);
    assert_string_equal (outbox_epoch (second_conn), first);
    db_destroy (&second_conn);
    db_destroy (&db);

    /*  a database made again at the same path is a new epoch */
    char wal[320], shm[320];
    snprintf (wal, sizeof wal, "%s-wal", fx->path);
    snprintf (shm, sizeof shm, "%s-shm", fx->path);
    unlink (fx->path);
    unlink (wal);
    unlink (shm);
    db = s_open (fx->path);
    assert_string_not_equal (outbox_epoch (db), first);
    db_destroy (&db);
    free (first);
}

/* --- the publisher --- */

typedef struct {
    uint64_t seqs[2048];        /* events other than sys.head, as they came */
    size_t n;
    int beacons;
    uint64_t beacon_seq;        /* the last beacon's head */
    char epoch[64];             /* what every message must carry */
    int connected;              /* set once a beacon came: nothing is lost after */
} received_t;

/*  Receives what is waiting on `sub` (at most `timeout_ms` for the first
    message) and checks each message as it comes. */
static void
s_receive (zsock_t *sub, received_t *got, int timeout_ms)
{
    zmq_pollitem_t item = {zsock_resolve (sub), 0, ZMQ_POLLIN, 0};
    while (zmq_poll (&item, 1, timeout_ms) > 0) {
        timeout_ms = 0;
        zmsg_t *msg = zmsg_recv (sub);
        assert_non_null (msg);
        assert_int_equal (zmsg_size (msg), 2);
        char *topic = zmsg_popstr (msg);
        zframe_t *body = zmsg_pop (msg);
        Ev__Event *event = ev__event__unpack (NULL, zframe_size (body), zframe_data (body));
        assert_non_null (event);
        /*  the topic is the type, so subscribers can filter by prefix */
        assert_string_equal (topic, event->type);
        assert_string_equal (event->source, SOURCE);
        assert_string_equal (event->epoch, got->epoch);
        if (strcmp (event->type, "sys.head") == 0) {
            Ev__Head *head = ev__head__unpack (NULL, event->payload.len, event->payload.data);
            assert_non_null (head);
            assert_int_equal (head->seq, event->seq);
            /*  a beacon never announces what has not been sent before it */
            if (got->connected)
                assert_true (head->seq <= (got->n ? got->seqs[got->n - 1] : 0));
            got->connected = 1;
            got->beacons++;
            got->beacon_seq = head->seq;
            ev__head__free_unpacked (head, NULL);
        }
        else {
            s_check_event (event, got->epoch);
            assert_true (got->n < sizeof got->seqs / sizeof got->seqs[0]);
            got->seqs[got->n++] = event->seq;
        }
        ev__event__free_unpacked (event, NULL);
        zframe_destroy (&body);
        free (topic);
        zmsg_destroy (&msg);
    }
}

/*  Ticks the publishers and receives until `until` holds. The deadline is
    only there so a broken publisher fails the test instead of hanging. */
typedef int (until_fn) (received_t *got, outbox_pub_t **pubs, void *arg);

static int
s_pump (zsock_t *sub, received_t *got, outbox_pub_t **pubs, int npubs, until_fn *until, void *arg)
{
    int64_t deadline = clock_mono_ms () + WAIT_MS;
    while (!until (got, pubs, arg)) {
        if (clock_mono_ms () > deadline)
            return -1;
        int wait = 50;
        for (int i = 0; i < npubs; i++) {
            int next = outbox_pub_tick (pubs[i]);
            if (next < wait)
                wait = next;
        }
        s_receive (sub, got, wait > 0 ? wait : 1);
    }
    return 0;
}

static int
s_until_beacon (received_t *got, outbox_pub_t **pubs, void *arg)
{
    (void) pubs;
    return got->beacons >= *(int *) arg;
}

static int
s_until_seq (received_t *got, outbox_pub_t **pubs, void *arg)
{
    (void) pubs;
    return got->n > 0 && got->seqs[got->n - 1] >= *(uint64_t *) arg;
}

static int
s_until_holder (received_t *got, outbox_pub_t **pubs, void *arg)
{
    (void) got;
    return outbox_pub_is_holder (pubs[*(int *) arg]);
}

static int
s_until_not_holder (received_t *got, outbox_pub_t **pubs, void *arg)
{
    (void) got;
    return !outbox_pub_is_holder (pubs[*(int *) arg]);
}

/*  A new publisher waits a moment before it takes the lease (its PUB
    socket connects meanwhile): tick the first until it holds, then the
    second, which must then find the lease taken. */
static void
s_first_holder (outbox_pub_t **pubs)
{
    int64_t until = clock_mono_ms () + WAIT_MS;
    while (!outbox_pub_is_holder (pubs[0]) && clock_mono_ms () < until) {
        outbox_pub_tick (pubs[0]);
        zclock_sleep (10);
    }
    outbox_pub_tick (pubs[1]);
}

/*  Every seq from 1 to `last` arrived once, in order. */
static void
s_assert_in_order (const received_t *got, uint64_t last)
{
    assert_int_equal (got->n, last);
    for (size_t i = 0; i < got->n; i++)
        if (got->seqs[i] != i + 1)
            fail_msg ("event %zu has seq %llu", i, (unsigned long long) got->seqs[i]);
}

static zsock_t *
s_subscriber (fixture_t *fx)
{
    zsock_t *sub = zsock_new (ZMQ_SUB);
    assert_non_null (sub);
    zsock_set_subscribe (sub, "");
    zsock_set_rcvhwm (sub, 100000);
    assert_true (zsock_bind (sub, "%s", fx->endpoint) == 0);
    return sub;
}

static void
s_set_clock_offset (fixture_t *fx, long long offset_ms)
{
    FILE *f = fopen (fx->clock_file, "w");
    assert_non_null (f);
    fprintf (f, "%lld\n", offset_ms);
    assert_int_equal (fclose (f), 0);
}

static char *
s_holder (db_t *db)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT holder FROM outbox_state WHERE id = 1");
    assert_int_equal (sqlite3_step (stmt), SQLITE_ROW);
    char *holder = strdup (db_col_text (stmt, 0));
    sqlite3_reset (stmt);
    return holder;
}

static int64_t
s_lease_until (db_t *db)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT lease_until FROM outbox_state WHERE id = 1");
    assert_int_equal (sqlite3_step (stmt), SQLITE_ROW);
    int64_t until = sqlite3_column_int64 (stmt, 0);
    sqlite3_reset (stmt);
    return until;
}

static void
test_publisher_one_holder_in_order (void **state)
{
    fixture_t *fx = *state;
    zsock_t *sub = s_subscriber (fx);
    db_t *a = s_open (fx->path);
    db_t *b = s_open (fx->path);
    received_t *got = calloc (1, sizeof *got);
    assert_non_null (got);
    snprintf (got->epoch, sizeof got->epoch, "%s", outbox_epoch (a));

    /*  Events committed before any publisher exists go out too. */
    s_commit_events (a, 1, 3);

    outbox_pub_t *pubs[2];
    pubs[0] = outbox_pub_new (a, SOURCE, fx->cfg);
    pubs[1] = outbox_pub_new (b, SOURCE, fx->cfg);
    assert_non_null (pubs[0]);
    assert_non_null (pubs[1]);
    s_first_holder (pubs);
    assert_true (outbox_pub_is_holder (pubs[0]));
    assert_false (outbox_pub_is_holder (pubs[1]));
    char *holder = s_holder (a);
    assert_true (ulid_valid (holder));
    free (holder);

    /*  The first messages may go before the PUB has connected (consumers
        recover those by replay); a beacon tells that it is connected. */
    int beacons = 1;
    assert_int_equal (s_pump (sub, got, pubs, 2, s_until_beacon, &beacons), 0);
    assert_int_equal (outbox_published (a), 3);
    assert_int_equal (got->beacon_seq, 3);
    got->n = 0;

    /*  What another connection commits, the holder finds and sends. */
    s_commit_events (b, 4, 3);
    outbox_pub_flush (pubs[1]);         /* not the holder: sends nothing */
    uint64_t last = 6;
    assert_int_equal (s_pump (sub, got, pubs, 2, s_until_seq, &last), 0);

    /*  What the holder's connection commits goes out on flush, no tick
        needed; a later transaction after an earlier one. */
    s_commit_events (a, 7, 2);
    outbox_pub_flush (pubs[0]);
    s_commit_events (a, 9, 1);
    outbox_pub_flush (pubs[0]);
    /*  a rolled-back transaction sends nothing and leaves no gap */
    assert_int_equal (db_begin (a), 0);
    s_add (a, 10);
    assert_int_equal (db_rollback (a), 0);
    outbox_pub_flush (pubs[0]);
    /*  more than one flush's batch (500) */
    s_commit_events (b, 10, 600);
    last = 609;
    assert_int_equal (s_pump (sub, got, pubs, 2, s_until_seq, &last), 0);

    /*  a beacon after the last event announces it */
    beacons = got->beacons + 1;
    assert_int_equal (s_pump (sub, got, pubs, 2, s_until_beacon, &beacons), 0);
    assert_int_equal (got->beacon_seq, 609);
    assert_int_equal (outbox_published (b), 609);
    s_receive (sub, got, 100);

    /*  4..609 exactly once each, in order (seqs restart at index 0 = 4) */
    assert_int_equal (got->n, 606);
    for (size_t i = 0; i < got->n; i++)
        if (got->seqs[i] != i + 4)
            fail_msg ("event %zu has seq %llu", i, (unsigned long long) got->seqs[i]);
    assert_true (outbox_pub_is_holder (pubs[0]));
    assert_false (outbox_pub_is_holder (pubs[1]));

    outbox_pub_destroy (&pubs[1]);
    outbox_pub_destroy (&pubs[0]);
    assert_null (pubs[0]);
    outbox_pub_destroy (&pubs[0]);
    free (got);
    db_destroy (&b);
    db_destroy (&a);
    zsock_destroy (&sub);
}

static void
test_publisher_takeover_on_destroy (void **state)
{
    fixture_t *fx = *state;
    zsock_t *sub = s_subscriber (fx);
    db_t *a = s_open (fx->path);
    db_t *b = s_open (fx->path);
    received_t *got = calloc (1, sizeof *got);
    assert_non_null (got);
    snprintf (got->epoch, sizeof got->epoch, "%s", outbox_epoch (a));

    outbox_pub_t *pubs[2];
    pubs[0] = outbox_pub_new (a, SOURCE, fx->cfg);
    pubs[1] = outbox_pub_new (b, SOURCE, fx->cfg);
    s_first_holder (pubs);
    assert_true (outbox_pub_is_holder (pubs[0]));
    assert_false (outbox_pub_is_holder (pubs[1]));
    int beacons = 1;
    assert_int_equal (s_pump (sub, got, pubs, 2, s_until_beacon, &beacons), 0);

    s_commit_events (a, 1, 4);
    outbox_pub_flush (pubs[0]);
    uint64_t last = 4;
    assert_int_equal (s_pump (sub, got, pubs, 2, s_until_seq, &last), 0);

    /*  committed while the holder goes away: the next holder sends it */
    s_commit_events (b, 5, 2);
    assert_true (s_lease_until (b) > clock_now_ms ());
    outbox_pub_destroy (&pubs[0]);
    /*  the lease is given up at once, not left to lapse */
    assert_true (s_lease_until (b) < clock_now_ms ());
    pubs[0] = pubs[1];
    int which = 0;
    assert_int_equal (s_pump (sub, got, pubs, 1, s_until_holder, &which), 0);
    last = 6;
    assert_int_equal (s_pump (sub, got, pubs, 1, s_until_seq, &last), 0);
    s_commit_events (b, 7, 1);
    outbox_pub_flush (pubs[0]);
    last = 7;
    assert_int_equal (s_pump (sub, got, pubs, 1, s_until_seq, &last), 0);
    s_receive (sub, got, 100);
    s_assert_in_order (got, 7);
    assert_int_equal (outbox_published (a), 7);

    outbox_pub_destroy (&pubs[0]);
    free (got);
    db_destroy (&b);
    db_destroy (&a);
    zsock_destroy (&sub);
}

static void
test_publisher_takeover_on_lapse (void **state)
{
    fixture_t *fx = *state;
    zsock_t *sub = s_subscriber (fx);
    db_t *a = s_open (fx->path);
    db_t *b = s_open (fx->path);
    received_t *got = calloc (1, sizeof *got);
    assert_non_null (got);
    snprintf (got->epoch, sizeof got->epoch, "%s", outbox_epoch (a));

    outbox_pub_t *pubs[2];
    pubs[0] = outbox_pub_new (a, SOURCE, fx->cfg);
    pubs[1] = outbox_pub_new (b, SOURCE, fx->cfg);
    s_first_holder (pubs);
    assert_true (outbox_pub_is_holder (pubs[0]));
    assert_false (outbox_pub_is_holder (pubs[1]));
    int beacons = 1;
    assert_int_equal (s_pump (sub, got, pubs, 2, s_until_beacon, &beacons), 0);
    s_commit_events (a, 1, 2);
    outbox_pub_flush (pubs[0]);
    uint64_t last = 2;
    assert_int_equal (s_pump (sub, got, pubs, 2, s_until_seq, &last), 0);

    /*  The holder stops ticking (a stuck process) and a minute passes on
        the wall clock: its lease lapses and the other one takes over. */
    s_commit_events (b, 3, 2);
    char *old_holder = s_holder (a);
    s_set_clock_offset (fx, 60000);
    outbox_pub_t *b_only[1] = {pubs[1]};
    int which = 0;
    assert_int_equal (s_pump (sub, got, b_only, 1, s_until_holder, &which), 0);
    char *holder = s_holder (a);
    assert_true (ulid_valid (holder));
    assert_string_not_equal (holder, old_holder);
    free (holder);
    free (old_holder);
    last = 4;
    assert_int_equal (s_pump (sub, got, b_only, 1, s_until_seq, &last), 0);

    /*  the old holder, back, finds it has lost the lease and stays quiet */
    outbox_pub_t *a_only[1] = {pubs[0]};
    assert_int_equal (s_pump (sub, got, a_only, 1, s_until_not_holder, &which), 0);
    assert_true (outbox_pub_is_holder (pubs[1]));
    s_commit_events (a, 5, 2);
    outbox_pub_flush (pubs[0]);         /* not the holder: sends nothing */
    last = 6;
    assert_int_equal (s_pump (sub, got, pubs, 2, s_until_seq, &last), 0);
    assert_true (outbox_pub_is_holder (pubs[1]));
    assert_false (outbox_pub_is_holder (pubs[0]));
    beacons = got->beacons + 1;
    assert_int_equal (s_pump (sub, got, pubs, 2, s_until_beacon, &beacons), 0);
    assert_int_equal (got->beacon_seq, 6);
    s_receive (sub, got, 100);
    s_assert_in_order (got, 6);

    outbox_pub_destroy (&pubs[0]);
    outbox_pub_destroy (&pubs[1]);
    free (got);
    db_destroy (&b);
    db_destroy (&a);
    zsock_destroy (&sub);
}

static void
test_publisher_bad_endpoint (void **state)
{
    fixture_t *fx = *state;
    db_t *db = s_open (fx->path);
    config_set (fx->cfg, "events_in", "nonsense://x");
    outbox_pub_t *pub = outbox_pub_new (db, SOURCE, fx->cfg);
    assert_null (pub);
    /*  it never took the lease, so another publisher can */
    config_set (fx->cfg, "events_in", fx->endpoint);
    pub = outbox_pub_new (db, SOURCE, fx->cfg);
    assert_non_null (pub);
    int64_t until = clock_mono_ms () + WAIT_MS;
    while (!outbox_pub_is_holder (pub) && clock_mono_ms () < until) {
        outbox_pub_tick (pub);
        zclock_sleep (10);
    }
    assert_true (outbox_pub_is_holder (pub));
    outbox_pub_destroy (&pub);
    db_destroy (&db);
}

int
main (void)
{
    log_init ("test", "warn");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (test_seq_gap_free, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_add_without_payload, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_replay_paging, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_prune, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_epoch, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_publisher_one_holder_in_order, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_publisher_takeover_on_destroy, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_publisher_takeover_on_lapse, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_publisher_bad_endpoint, s_setup, s_teardown),
    };
    return cmocka_run_group_tests_name ("outbox", tests, NULL, NULL);
}

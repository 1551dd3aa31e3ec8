/*  outbox: events written with the change, published in order (outbox.h). */
#include "outbox.h"
#include "clock.h"
#include "bus_socket.h"
#include "log.h"
#include "ulid.h"

#include <czmq.h>
#include <string.h>

#define REPLAY_MAX 500
#define REPLAY_MAX_BYTES (4 * 1024 * 1024)
#define FIRST_LEASE_DELAY_MS 300  /* let the PUB socket connect before publishing */
#define LEASE_MS 3000
#define LEASE_RENEW_MS 1000
#define POLL_MS 10              /* data_version check while holding the lease */
#define BEACON_MS 1000
#define PRUNE_EVERY_MS (10 * 60 * 1000)
#define PRUNE_BATCH 5000        /* rows per statement: short write locks */
#define DAY_MS (24LL * 3600 * 1000)

int
outbox_add (db_t *db, const char *type, const char *org_id, const char *actor_id,
            const char *trace_id, int64_t at_ms, const ProtobufCMessage *payload)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO outbox (id, type, org_id, actor_id, at,"
                                      " payload, trace_id) VALUES (?, ?, ?, ?, ?, ?, ?)");
    if (!stmt)
        return -1;
    char id[ULID_LEN + 1];
    ulid_make (id);
    uint8_t small[1024];
    uint8_t *buf = NULL;
    size_t len = 0;
    if (payload) {
        len = protobuf_c_message_get_packed_size (payload);
        buf = len <= sizeof small ? small : malloc (len);
        if (!buf)
            return -1;
        protobuf_c_message_pack (payload, buf);
    }
    sqlite3_bind_text (stmt, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (stmt, 2, type, -1, SQLITE_STATIC);
    sqlite3_bind_text (stmt, 3, org_id ? org_id : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (stmt, 4, actor_id ? actor_id : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (stmt, 5, at_ms);
    sqlite3_bind_blob (stmt, 6, buf ? (const void *) buf : "", (int) len, SQLITE_TRANSIENT);
    sqlite3_bind_text (stmt, 7, trace_id ? trace_id : "", -1, SQLITE_TRANSIENT);
    int rc = db_step_done (db, stmt, NULL);
    if (buf && buf != small)
        free (buf);
    return rc;
}

const char *
outbox_epoch (db_t *db)
{
    /*  Read on every call (a cached statement, and callers ask once per
        batch, not per row): a cache keyed by the db_t pointer returned a
        closed database's epoch when a new db_t was allocated at the same
        address, and a database made again at the same path has a new one. */
    static __thread char cached[64];
    char *epoch = db_meta_get (db, "epoch");
    snprintf (cached, sizeof cached, "%s", epoch ? epoch : "");
    free (epoch);
    return cached;
}

static uint64_t
s_scalar (db_t *db, const char *sql)
{
    sqlite3_stmt *stmt = db_stmt (db, sql);
    uint64_t value = 0;
    if (stmt && sqlite3_step (stmt) == SQLITE_ROW)
        value = (uint64_t) sqlite3_column_int64 (stmt, 0);
    if (stmt)
        sqlite3_reset (stmt);
    return value;
}

uint64_t
outbox_head (db_t *db)
{
    return s_scalar (db, "SELECT coalesce(max(seq), 0) FROM outbox");
}

uint64_t
outbox_published (db_t *db)
{
    return s_scalar (db, "SELECT published FROM outbox_state WHERE id = 1");
}

#define ROW_COLUMNS "seq, id, type, org_id, actor_id, at, payload, trace_id"

void
outbox_event_from_row (sqlite3_stmt *stmt, const char *source, const char *epoch,
                       Ev__Event *event)
{
    ev__event__init (event);
    event->seq = (uint64_t) sqlite3_column_int64 (stmt, 0);
    event->id = (char *) db_col_text (stmt, 1);
    event->type = (char *) db_col_text (stmt, 2);
    event->org_id = (char *) db_col_text (stmt, 3);
    event->actor_id = (char *) db_col_text (stmt, 4);
    event->at = sqlite3_column_int64 (stmt, 5);
    event->payload.data = (uint8_t *) sqlite3_column_blob (stmt, 6);
    event->payload.len = (size_t) sqlite3_column_bytes (stmt, 6);
    event->trace_id = (char *) db_col_text (stmt, 7);
    event->source = (char *) source;
    event->epoch = (char *) epoch;
}

int
outbox_replay (db_t *db, const char *source, uint64_t from_seq, uint32_t limit, arena_t *arena,
               Bus__ReplayReply *reply)
{
    if (limit == 0 || limit > REPLAY_MAX)
        limit = REPLAY_MAX;
    /*  sqlite integers are signed: a from_seq above INT64_MAX (it comes from
        the network) would bind as negative and replay from the start. */
    if (from_seq > (uint64_t) INT64_MAX)
        from_seq = (uint64_t) INT64_MAX;
    sqlite3_stmt *stmt = db_stmt (db, "SELECT " ROW_COLUMNS
                                      " FROM outbox WHERE seq >= ? ORDER BY seq LIMIT ?");
    if (!stmt)
        return -1;
    const char *epoch = outbox_epoch (db);
    sqlite3_bind_int64 (stmt, 1, (sqlite3_int64) from_seq);
    sqlite3_bind_int (stmt, 2, (int) limit);
    reply->events = arena_alloc (arena, limit * sizeof (ProtobufCBinaryData));
    reply->n_events = 0;
    int rc;
    size_t bytes = 0;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        Ev__Event event;
        outbox_event_from_row (stmt, source, epoch, &event);
        size_t len = ev__event__get_packed_size (&event);
        /*  A page must fit in one bus message: stop early when it would
            not (the consumer asks again while it is behind the head). */
        if (reply->n_events > 0 && bytes + len > REPLAY_MAX_BYTES) {
            rc = SQLITE_DONE;
            break;
        }
        bytes += len + 8;
        uint8_t *buf = arena_alloc (arena, len ? len : 1);
        ev__event__pack (&event, buf);
        reply->events[reply->n_events].data = buf;
        reply->events[reply->n_events].len = len;
        reply->n_events++;
    }
    sqlite3_reset (stmt);
    if (rc != SQLITE_DONE)
        return -1;
    reply->head = outbox_head (db);
    reply->oldest = s_scalar (db, "SELECT coalesce(min(seq), 0) FROM outbox");
    reply->epoch = arena_strdup (arena, epoch);
    return 0;
}

int
outbox_prune (db_t *db, int64_t before_ms, int batch)
{
    /*  seq is AUTOINCREMENT, so numbers are never reused; keeping the
        newest published row keeps max(seq), the head, as it was. Only the
        oldest `batch` rows are looked at: rows are written in time order,
        so this never walks the whole table. */
    sqlite3_stmt *stmt = db_stmt (db, "DELETE FROM outbox WHERE seq IN ("
                                      " SELECT seq FROM (SELECT seq, at FROM outbox"
                                      "  WHERE seq < (SELECT published FROM outbox_state WHERE id = 1)"
                                      "  ORDER BY seq LIMIT ?2) WHERE at < ?1)");
    if (!stmt)
        return -1;
    sqlite3_bind_int64 (stmt, 1, before_ms);
    sqlite3_bind_int (stmt, 2, batch);
    int changes = 0;
    if (db_step_done (db, stmt, &changes))
        return -1;
    return changes;
}

/* --- publisher --- */

struct outbox_pub_t {
    db_t *db;
    char *source;
    zsock_t *pub;
    char holder[ULID_LEN + 1];  /* this publisher's id in the lease */
    int holding;
    int64_t lease_at;           /* monotonic ms of the next lease renewal */
    int64_t poll_at;
    int64_t beacon_at;
    int data_version;
    uint64_t published;         /* the mark in outbox_state, while holding */
    char epoch[64];             /* the database's, read once */
    int64_t keep_ms;            /* 0: events are kept forever */
    int64_t prune_at;
};

outbox_pub_t *
outbox_pub_new (db_t *db, const char *source, const config_t *cfg)
{
    outbox_pub_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->db = db;
    self->source = strdup (source);
    ulid_make (self->holder);
    self->pub = bus_socket_connect (ZMQ_PUB, cfg, config_str (cfg, "events_in"));
    if (!self->pub)
        goto fail;
    /*  A PUB socket drops what it sends before its connection is up, and
        the rows would count as published: take the lease a moment later. */
    self->lease_at = clock_mono_ms () + FIRST_LEASE_DELAY_MS;
    int ok = 1;
    int64_t days = config_int (cfg, "outbox_keep_days", 30, 0, 36500, &ok);
    if (!ok)
        log_warn (NULL, "outbox_keep_days must be 0..36500: keeping 30 days");
    self->keep_ms = (ok ? days : 30) * DAY_MS;
    self->prune_at = self->lease_at + PRUNE_EVERY_MS;
    return self;
fail:
    outbox_pub_destroy (&self);
    return NULL;
}

void
outbox_pub_destroy (outbox_pub_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    outbox_pub_t *self = *self_p;
    if (self->holding) {
        /*  Hand the lease over at once rather than after it lapses. */
        sqlite3_stmt *stmt = db_stmt (self->db, "UPDATE outbox_state SET lease_until = 0"
                                                " WHERE id = 1 AND holder = ?");
        if (stmt) {
            sqlite3_bind_text (stmt, 1, self->holder, -1, SQLITE_STATIC);
            db_step_done (self->db, stmt, NULL);
        }
    }
    zsock_destroy (&self->pub);
    free (self->source);
    free (self);
    *self_p = NULL;
}

static void
s_lease (outbox_pub_t *self)
{
    int64_t now = clock_now_ms ();
    sqlite3_stmt *stmt = db_stmt (self->db,
                                  "UPDATE outbox_state SET holder = ?1, lease_until = ?2"
                                  " WHERE id = 1 AND (holder = ?1 OR lease_until < ?3)");
    int changes = 0;
    if (stmt) {
        sqlite3_bind_text (stmt, 1, self->holder, -1, SQLITE_STATIC);
        sqlite3_bind_int64 (stmt, 2, now + LEASE_MS);
        sqlite3_bind_int64 (stmt, 3, now);
        if (db_step_done (self->db, stmt, &changes))
            changes = 0;
    }
    int was = self->holding;
    self->holding = changes == 1;
    /*  Only the holder moves the published mark, so while holding, the
        copy in memory is the mark; read again at each renewal in case
        another instance held the lease in between. */
    if (self->holding)
        self->published = outbox_published (self->db);
    if (self->holding && !was) {
        log_info (NULL, "outbox publisher took the lease source=%s", self->source);
        self->beacon_at = 0;
    }
    else if (!self->holding && was)
        log_info (NULL, "outbox publisher lost the lease source=%s", self->source);
}

static void
s_publish_row (outbox_pub_t *self, sqlite3_stmt *stmt, const char *epoch)
{
    Ev__Event event;
    outbox_event_from_row (stmt, self->source, epoch, &event);
    size_t len = ev__event__get_packed_size (&event);
    uint8_t small[2048];
    uint8_t *buf = len <= sizeof small ? small : malloc (len);
    if (!buf)
        return;         /* consumers will notice the gap and replay */
    ev__event__pack (&event, buf);
    void *handle = zsock_resolve (self->pub);
    zmq_send (handle, event.type, strlen (event.type), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (handle, buf, len, ZMQ_DONTWAIT);
    if (buf != small)
        free (buf);
}

/*  The database's epoch, read once (it changes only with the file). */
static const char *
s_epoch (outbox_pub_t *self)
{
    if (!self->epoch[0])
        snprintf (self->epoch, sizeof self->epoch, "%s", outbox_epoch (self->db));
    return self->epoch;
}

/*  Runs after every write request: the epoch is read once and the mark
    comes from memory, so an idle flush is one indexed SELECT. */
void
outbox_pub_flush (outbox_pub_t *self)
{
    if (clock_mono_ms () >= self->lease_at) {
        /*  The renewal is due (this thread was busy): renew first, which
            also reads the mark, rather than publish on a lapsed lease. */
        s_lease (self);
        self->lease_at = clock_mono_ms () + LEASE_RENEW_MS;
    }
    if (!self->holding)
        return;
    s_epoch (self);
    for (;;) {
        uint64_t published = self->published;
        sqlite3_stmt *stmt = db_stmt (self->db, "SELECT " ROW_COLUMNS " FROM outbox"
                                                " WHERE seq > ? ORDER BY seq LIMIT 500");
        if (!stmt)
            return;
        sqlite3_bind_int64 (stmt, 1, (sqlite3_int64) published);
        uint64_t last = published;
        int rows = 0;
        while (sqlite3_step (stmt) == SQLITE_ROW) {
            s_publish_row (self, stmt, self->epoch);
            last = (uint64_t) sqlite3_column_int64 (stmt, 0);
            rows++;
        }
        sqlite3_reset (stmt);
        if (rows == 0)
            return;
        stmt = db_stmt (self->db, "UPDATE outbox_state SET published = ?"
                                  " WHERE id = 1 AND holder = ? AND published < ?");
        if (!stmt)
            return;
        sqlite3_bind_int64 (stmt, 1, (sqlite3_int64) last);
        sqlite3_bind_text (stmt, 2, self->holder, -1, SQLITE_STATIC);
        sqlite3_bind_int64 (stmt, 3, (sqlite3_int64) last);
        int changes = 0;
        if (db_step_done (self->db, stmt, &changes) || changes == 0) {
            /*  Another instance holds the lease now, or moved the mark
                while this one was away: go on from what the database says. */
            self->published = outbox_published (self->db);
            return;
        }
        self->published = last;
        if (rows < 500)
            return;
    }
}

static int
s_data_version (db_t *db)
{
    /*  PRAGMA data_version changes when another connection commits. */
    return (int) s_scalar (db, "PRAGMA data_version");
}

static void
s_beacon (outbox_pub_t *self)
{
    Ev__Head head = EV__HEAD__INIT;
    head.seq = self->published;
    uint8_t payload[16];
    size_t payload_len = ev__head__pack (&head, payload);
    Ev__Event event = EV__EVENT__INIT;
    event.type = "sys.head";
    event.source = self->source;
    event.seq = head.seq;
    event.at = clock_now_ms ();
    event.epoch = (char *) s_epoch (self);
    event.payload.data = payload;
    event.payload.len = payload_len;
    uint8_t buf[256];
    size_t len = ev__event__get_packed_size (&event);
    if (len > sizeof buf)
        return;
    ev__event__pack (&event, buf);
    void *handle = zsock_resolve (self->pub);
    zmq_send (handle, "sys.head", 8, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (handle, buf, len, ZMQ_DONTWAIT);
}

int
outbox_pub_tick (outbox_pub_t *self)
{
    int64_t now = clock_mono_ms ();
    if (now >= self->lease_at) {
        s_lease (self);
        self->lease_at = now + LEASE_RENEW_MS;
    }
    if (!self->holding)
        return (int) (self->lease_at - now);
    if (now >= self->poll_at) {
        int version = s_data_version (self->db);
        if (version != self->data_version) {
            /*  Another connection committed: perhaps another instance
                that held the lease while this one was stuck. */
            self->data_version = version;
            self->published = outbox_published (self->db);
            outbox_pub_flush (self);
        }
        self->poll_at = now + POLL_MS;
    }
    if (now >= self->beacon_at) {
        outbox_pub_flush (self);
        if (self->holding)      /* the flush may have found the lease gone */
            s_beacon (self);
        self->beacon_at = now + BEACON_MS;
    }
    if (self->keep_ms && now >= self->prune_at) {
        /*  A batch at a time; while there is more, come back soon. */
        int gone = outbox_prune (self->db, clock_now_ms () - self->keep_ms, PRUNE_BATCH);
        if (gone > 0)
            log_info (NULL, "outbox pruned source=%s events=%d", self->source, gone);
        self->prune_at = now + (gone == PRUNE_BATCH ? BEACON_MS : PRUNE_EVERY_MS);
    }
    int64_t next = self->poll_at;
    if (self->lease_at < next)
        next = self->lease_at;
    if (self->beacon_at < next)
        next = self->beacon_at;
    return next > now ? (int) (next - now) : 0;
}

int
outbox_pub_is_holder (outbox_pub_t *self)
{
    return self->holding;
}

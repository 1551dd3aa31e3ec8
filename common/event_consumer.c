/*  event_consumer: in-order, exactly-once application of followed events
    (see event_consumer.h). */
#include "event_consumer.h"
#include "clock.h"
#include "bus_socket.h"
#include "log.h"
#include "outbox.h"

#include <errno.h>
#include <string.h>

#define MAX_SOURCES 16
#define REPLAY_PAGE 500
#define RETRY_MS 1000

typedef struct {
    char name[64];
    char epoch[64];
    uint64_t last;
    int need_catchup;
    int behind;                 /* consecutive beacons ahead of us */
    int64_t retry_at;           /* monotonic ms */
} source_t;

typedef struct {
    const config_t *cfg;
    char *service;
    char *db_path;
    const event_handler_t *handlers;
    void *context;
    db_t *db;
    arena_t *arena;
    bus_client_t *client;
    zsock_t *sub;
    source_t sources[MAX_SOURCES];
    int n_sources;
    uint64_t applied, duplicates, replays;
    uint64_t lost;              /* events pruned at their source before we read them */
} consumer_t;

struct event_ctx_t {
    consumer_t *consumer;
    const Ev__Event *event;
};

db_t *event_ctx_db (event_ctx_t *ctx) { return ctx->consumer->db; }
arena_t *event_ctx_arena (event_ctx_t *ctx) { return ctx->consumer->arena; }
void *event_ctx_context (event_ctx_t *ctx) { return ctx->consumer->context; }
const config_t *event_ctx_config (event_ctx_t *ctx) { return ctx->consumer->cfg; }

bus_client_t *
event_ctx_client (event_ctx_t *ctx)
{
    consumer_t *c = ctx->consumer;
    if (!c->client)
        c->client = bus_client_new_from_config (c->cfg);
    return c->client;
}

int
event_ctx_emit (event_ctx_t *ctx, const char *type, const char *org_id,
                const ProtobufCMessage *payload)
{
    return outbox_add (ctx->consumer->db, type, org_id, ctx->event->actor_id,
                       ctx->event->trace_id, clock_now_ms (), payload);
}

static source_t *
s_source (consumer_t *c, const char *name)
{
    for (int i = 0; i < c->n_sources; i++)
        if (strcmp (c->sources[i].name, name) == 0)
            return &c->sources[i];
    return NULL;
}

static const event_handler_t *
s_handler (consumer_t *c, const char *type)
{
    for (const event_handler_t *h = c->handlers; h->type; h++) {
        size_t n = strlen (h->type);
        if (h->type[n - 1] == '.' ? strncmp (type, h->type, n) == 0 : strcmp (type, h->type) == 0)
            return h;
    }
    return NULL;
}

static int
s_load_cursors (consumer_t *c)
{
    for (int i = 0; i < c->n_sources; i++) {
        source_t *s = &c->sources[i];
        sqlite3_stmt *stmt = db_stmt (c->db, "SELECT epoch, seq FROM event_cursor WHERE source = ?");
        if (!stmt)
            return -1;
        sqlite3_bind_text (stmt, 1, s->name, -1, SQLITE_STATIC);
        if (sqlite3_step (stmt) == SQLITE_ROW) {
            snprintf (s->epoch, sizeof s->epoch, "%s", db_col_text (stmt, 0));
            s->last = (uint64_t) sqlite3_column_int64 (stmt, 1);
        }
        sqlite3_reset (stmt);
        s->need_catchup = 1;
    }
    return 0;
}

/*  Applies one event in a transaction with its cursor. Returns 0 when the
    cursor moved past it, -1 to try again later. */
static int
s_apply (consumer_t *c, source_t *s, const Ev__Event *event)
{
    if (db_begin (c->db))
        return -1;
    event_ctx_t ctx = {c, event};
    const event_handler_t *h = s_handler (c, event->type);
    if (h) {
        const ProtobufCMessage *payload = NULL;
        int ok = 1;
        if (h->payload) {
            payload = protobuf_c_message_unpack (h->payload, arena_allocator (c->arena),
                                                 event->payload.len, event->payload.data);
            if (!payload) {
                log_error (event->trace_id, "event payload does not unpack type=%s seq=%llu",
                           event->type, (unsigned long long) event->seq);
                ok = 0;
            }
        }
        if (ok) {
            status_t st = h->handler (&ctx, event, payload);
            if (st == ST_INTERNAL || st == ST_UNAVAILABLE) {
                log_warn (event->trace_id, "event not applied, will retry type=%s seq=%llu",
                          event->type, (unsigned long long) event->seq);
                db_rollback (c->db);
                arena_reset (c->arena);
                return -1;
            }
            if (st != ST_OK)
                log_warn (event->trace_id, "event skipped type=%s seq=%llu status=%s",
                          event->type, (unsigned long long) event->seq, status_name (st));
        }
    }
    arena_reset (c->arena);
    sqlite3_stmt *stmt = db_stmt (c->db, "INSERT INTO event_cursor (source, epoch, seq)"
                                         " VALUES (?, ?, ?) ON CONFLICT (source) DO UPDATE"
                                         " SET epoch = excluded.epoch, seq = excluded.seq");
    if (!stmt) {
        db_rollback (c->db);
        return -1;
    }
    sqlite3_bind_text (stmt, 1, s->name, -1, SQLITE_STATIC);
    sqlite3_bind_text (stmt, 2, event->epoch, -1, SQLITE_STATIC);
    sqlite3_bind_int64 (stmt, 3, (sqlite3_int64) event->seq);
    if (db_step_done (c->db, stmt, NULL) || db_commit (c->db)) {
        if (db_txn_depth (c->db))
            db_rollback (c->db);
        return -1;
    }
    s->last = event->seq;
    c->applied++;
    return 0;
}

/*  Asks the source for everything after s->last until its head. */
static void
s_catchup (consumer_t *c, source_t *s)
{
    if (!c->client)
        c->client = bus_client_new_from_config (c->cfg);
    if (!c->client) {
        s->retry_at = clock_mono_ms () + RETRY_MS;
        return;
    }
    c->replays++;
    for (;;) {
        Bus__ReplayRequest req = BUS__REPLAY_REQUEST__INIT;
        req.from_seq = s->last + 1;
        req.limit = REPLAY_PAGE;
        bus_call_opts_t opts = {.timeout_ms = 5000, .flags = BUS_CALL_RETRY};
        Bus__ReplayReply *reply = NULL;
        arena_t *arena = arena_new ();
        status_t st = bus_client_call (c->client, s->name, "sys.replay", &req.base, &opts,
                                       &bus__replay_reply__descriptor, arena,
                                       (ProtobufCMessage **) &reply, NULL);
        if (st != ST_OK || !reply) {
            log_info (NULL, "event replay failed, will retry source=%s status=%s", s->name,
                      status_name (st));
            arena_destroy (&arena);
            s->retry_at = clock_mono_ms () + RETRY_MS;
            return;
        }
        int new_epoch = strcmp (reply->epoch, s->epoch) != 0;
        if (!new_epoch && reply->head < s->last) {
            /*  Same epoch but behind us: the database was restored from a
                copy. What it numbers now is new to us. */
            log_error (NULL, "event source went back in time, reading it again from its start"
                             " source=%s head=%llu ours=%llu", s->name,
                       (unsigned long long) reply->head, (unsigned long long) s->last);
            new_epoch = 1;
        }
        if (new_epoch) {
            /*  A new outbox (or our first look at it): start from its beginning. */
            if (s->epoch[0])
                log_warn (NULL, "event source has a new epoch source=%s old=%s new=%s", s->name,
                          s->epoch, reply->epoch);
            snprintf (s->epoch, sizeof s->epoch, "%s", reply->epoch);
            int restart = s->last != 0;
            s->last = 0;
            if (restart) {
                arena_destroy (&arena);
                continue;
            }
        }
        if (reply->oldest > s->last + 1) {
            /*  What we missed was pruned (the source keeps its events for
                outbox_keep_days): go on from what is left, loudly. */
            log_error (NULL, "events lost: pruned at the source before this consumer caught up"
                             " source=%s first_lost=%llu last_lost=%llu", s->name,
                       (unsigned long long) (s->last + 1),
                       (unsigned long long) (reply->oldest - 1));
            c->lost += reply->oldest - 1 - s->last;
            s->last = reply->oldest - 1;
        }
        int failed = 0;
        for (size_t i = 0; i < reply->n_events && !failed; i++) {
            Ev__Event *event = ev__event__unpack (NULL, reply->events[i].len,
                                                  reply->events[i].data);
            if (!event)
                failed = 1;
            else if (event->seq == s->last + 1)
                failed = s_apply (c, s, event) != 0;
            else if (event->seq > s->last + 1)
                failed = 1;     /* the source skipped: should not happen; ask again */
            if (event)
                ev__event__free_unpacked (event, NULL);
        }
        /*  Pages may be cut short by size, so keep asking while behind. */
        int more = reply->n_events > 0 && s->last < reply->head;
        arena_destroy (&arena);
        if (failed) {
            s->retry_at = clock_mono_ms () + RETRY_MS;
            return;
        }
        if (!more) {
            s->need_catchup = 0;
            return;
        }
    }
}

static void
s_on_event (consumer_t *c, zmsg_t *msg)
{
    zframe_t *topic = zmsg_first (msg);
    zframe_t *body = zmsg_next (msg);
    if (!topic || !body || zmsg_size (msg) != 2)
        return;
    Ev__Event *event = ev__event__unpack (NULL, zframe_size (body), zframe_data (body));
    if (!event)
        return;
    source_t *s = s_source (c, event->source);
    if (!s)
        goto out;
    if (strcmp (event->epoch, s->epoch) != 0) {
        s->need_catchup = 1;    /* a new outbox: the replay sorts it out */
        goto out;
    }
    if (strcmp (event->type, "sys.head") == 0) {
        /*  Behind on two beacons in a row, a second apart, means events
            were lost (not merely still on their way); a beacon below us
            means the source went back in time. */
        s->behind = event->seq > s->last ? s->behind + 1 : 0;
        if (s->behind >= 2 || event->seq < s->last)
            s->need_catchup = 1;
        goto out;
    }
    if (event->seq <= s->last) {
        c->duplicates++;
        goto out;
    }
    if (event->seq == s->last + 1 && !s->need_catchup) {
        if (s_apply (c, s, event))
            s->need_catchup = 1;
        goto out;
    }
    s->need_catchup = 1;        /* a gap */
out:
    ev__event__free_unpacked (event, NULL);
}

static void
s_consumer_actor (zsock_t *pipe, void *args)
{
    consumer_t *c = args;
    zsock_signal (pipe, 0);
    char err[256];
    c->db = db_open (c->db_path, NULL, config_str (c->cfg, "sync"), err, sizeof err);
    c->arena = arena_new ();
    c->sub = bus_socket_connect (ZMQ_SUB, c->cfg, config_str (c->cfg, "events_out"));
    if (!c->db || !c->arena || !c->sub || s_load_cursors (c)) {
        log_error (NULL, "event consumer cannot start path=%s error=\"%s\"", c->db_path,
                   c->db ? "" : err);
        goto failed;
    }
    /*  Every event of a followed source, not only the handled types:
        sequence numbers count them all, so anything less looks like gaps. */
    for (int i = 0; i < c->n_sources; i++) {
        char prefix[70];
        snprintf (prefix, sizeof prefix, "%s.", c->sources[i].name);
        zsock_set_subscribe (c->sub, prefix);
    }
    zsock_set_subscribe (c->sub, "sys.head");
    zstr_send (pipe, "OK");
    log_info (NULL, "event consumer ready sources=%d", c->n_sources);

    for (;;) {
        int64_t now = clock_mono_ms ();
        for (int i = 0; i < c->n_sources; i++)
            if (c->sources[i].need_catchup && c->sources[i].retry_at <= now)
                s_catchup (c, &c->sources[i]);
        int64_t wait = -1;
        now = clock_mono_ms ();
        for (int i = 0; i < c->n_sources; i++)
            if (c->sources[i].need_catchup) {
                int64_t w = c->sources[i].retry_at - now;
                if (w < 0)
                    w = 0;
                if (wait < 0 || w < wait)
                    wait = w;
            }
        zmq_pollitem_t items[] = {
            {zsock_resolve (pipe), 0, ZMQ_POLLIN, 0},
            {zsock_resolve (c->sub), 0, ZMQ_POLLIN, 0},
        };
        if (zmq_poll (items, 2, wait) < 0 && errno != EINTR)
            break;
        if (items[0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv (pipe);
            int term = !command || strcmp (command, "$TERM") == 0;
            zstr_free (&command);
            if (term)
                break;
        }
        for (int n = 0; n < 1000 && (zsock_events (c->sub) & ZMQ_POLLIN); n++) {
            zmsg_t *msg = zmsg_recv (c->sub);
            if (!msg)
                break;
            s_on_event (c, msg);
            zmsg_destroy (&msg);
        }
    }
    goto out;
failed:
    zstr_send (pipe, "FAIL");
    char *term = zstr_recv (pipe);
    zstr_free (&term);
out:
    log_info (NULL, "event consumer stopped applied=%llu duplicates=%llu replays=%llu lost=%llu",
              (unsigned long long) c->applied, (unsigned long long) c->duplicates,
              (unsigned long long) c->replays, (unsigned long long) c->lost);
    zsock_destroy (&c->sub);
    bus_client_destroy (&c->client);
    arena_destroy (&c->arena);
    db_destroy (&c->db);
    free (c->service);
    free (c->db_path);
    free (c);
}

zactor_t *
event_consumer_start (const config_t *cfg, const char *service, const char *db_path,
                      const event_handler_t *handlers, void *context)
{
    consumer_t *c = calloc (1, sizeof *c);
    if (!c)
        return NULL;
    c->cfg = cfg;
    c->service = strdup (service);
    c->db_path = strdup (db_path);
    c->handlers = handlers;
    c->context = context;
    for (const event_handler_t *h = handlers; h->type; h++) {
        char name[64];
        const char *dot = strchr (h->type, '.');
        size_t n = dot ? (size_t) (dot - h->type) : strlen (h->type);
        if (n >= sizeof name)
            n = sizeof name - 1;
        memcpy (name, h->type, n);
        name[n] = 0;
        if (!s_source (c, name) && c->n_sources < MAX_SOURCES)
            snprintf (c->sources[c->n_sources++].name, sizeof c->sources[0].name, "%s", name);
    }
    zactor_t *actor = zactor_new (s_consumer_actor, c);
    if (!actor) {
        free (c->service);
        free (c->db_path);
        free (c);
        return NULL;
    }
    char *ready = zstr_recv (actor);
    int ok = ready && strcmp (ready, "OK") == 0;
    zstr_free (&ready);
    if (!ok)
        zactor_destroy (&actor);
    return actor;
}

/*  bus_worker: registers a service with the broker and dispatches requests
    through its method table (see bus_worker.h and docs/bus.md). */
#include "bus_worker.h"
#include "bus_proto.h"
#include "clock.h"
#include "curve.h"
#include "event_consumer.h"
#include "log.h"
#include "outbox.h"
#include "ulid.h"

#include "bus_socket.h"

#include <sodium.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define IDEMPOTENCY_KEEP_MS (24LL * 3600 * 1000)
#define CLAIM_MS 60000              /* a BUS_NOTXN attempt holds its key this long at most */
#define PRUNE_EVERY_MS 60000
#define MAX_FRAMES 2             /* a header and a payload */
#define RECONNECT_DELAY_MS 100
#define HANDOFF_MAX 65536           /* messages one handoff holds at most */
#define HANDOFF_BATCH 256           /* messages taken per wake-up at most */
#define REPLY_HOLD_US 1000          /* a reply waits for others this long at most */
#define SLOW_US 200                 /* a method this slow on average: replies go before it runs */

typedef struct worker_t worker_t;

struct bus_call_t {
    worker_t *worker;
    bus_method_t *method;
    const Bus__Request *request;
    int64_t now;
    status_t status;
    const char *message, *field, *code, *reason;
    int retry_after;
};

/*  Messages (a header and a payload frame) going from one thread to the
    other: requests to the executor, replies to the I/O thread. A queue
    under a mutex, and an eventfd written when the queue goes from empty to
    not empty, which the taker polls. The frames move as they are, so
    nothing is copied or framed again; the giver signals only when the
    taker may be asleep, so a busy taker costs no system call. */
typedef struct {
    pthread_mutex_t lock;
    zmq_msg_t *items;           /* two per message: header, payload */
    size_t cap, head, len;      /* in messages */
    int fd;                     /* eventfd */
} handoff_t;

/*  What both threads touch. */
typedef struct {
    atomic_uint_fast64_t requests;
    atomic_uint_fast64_t reconnects;
    handoff_t to_executor, to_io;
} shared_t;

/*  The executor's state: what handlers reach through bus_call_t. */
struct worker_t {
    const config_t *cfg;
    bus_service_t *service;
    void *context;
    db_t *db;
    arena_t *arena;
    outbox_pub_t *pub;
    bus_client_t *client;
    zhashx_t *methods;          /* name -> bus_method_t* */
    char instance[ULID_LEN + 1];
    int64_t started_at;
    shared_t *shared;
    /*  Keys the stored hashes of requests (which may hold passwords), one
        per database, so that a copy of the idempotency table cannot be
        used to test guesses. */
    unsigned char idem_key[crypto_generichash_KEYBYTES];
    /*  Replies made while more requests wait, handed to the I/O thread
        together, as one message. */
    bus_batch_t replies;
    int64_t replies_since;      /* monotonic us of the first */
    int64_t now_us;             /* monotonic us when the last handler ended */
    log_limit_t drop_log;
};

static void s_give_replies (worker_t *w);

/* --- the handler's view --- */

arena_t *bus_call_arena (bus_call_t *call) { return call->worker->arena; }
db_t *bus_call_db (bus_call_t *call) { return call->worker->db; }
void *bus_call_context (bus_call_t *call) { return call->worker->context; }
const Bus__Caller *bus_call_caller (bus_call_t *call) { return call->request->caller; }
const char *bus_call_trace (bus_call_t *call) { return call->request->trace_id; }
const char *bus_call_idempotency_key (bus_call_t *call) { return call->request->idempotency_key; }
const char *bus_call_method (bus_call_t *call) { return call->request->method; }
const config_t *bus_call_config (bus_call_t *call) { return call->worker->cfg; }
int64_t bus_call_now (bus_call_t *call) { return call->now; }

const char *
bus_call_user (bus_call_t *call)
{
    const Bus__Caller *caller = call->request->caller;
    return caller && caller->user_id ? caller->user_id : "";
}

int
bus_call_time_left (bus_call_t *call)
{
    int64_t left = call->request->deadline_ms - clock_now_ms ();
    if (call->request->deadline_ms == 0 || left > 30000)
        left = 30000;
    return left < 1 ? 1 : (int) left;
}

bus_client_t *
bus_call_client (bus_call_t *call)
{
    worker_t *w = call->worker;
    if (!w->client)
        w->client = bus_client_new_from_config (w->cfg);
    return w->client;
}

status_t
bus_call_fail (bus_call_t *call, status_t status, const char *field, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    char text[512];
    vsnprintf (text, sizeof text, fmt, args);
    va_end (args);
    call->status = status;
    call->message = arena_strdup (call->worker->arena, text);
    call->field = field ? arena_strdup (call->worker->arena, field) : NULL;
    return status;
}

void
bus_call_clear (bus_call_t *call)
{
    call->status = ST_OK;
    call->message = call->field = call->code = call->reason = NULL;
    call->retry_after = 0;
}

void
bus_call_set_code (bus_call_t *call, const char *code)
{
    call->code = arena_strdup (call->worker->arena, code);
}

void
bus_call_set_reason (bus_call_t *call, const char *reason)
{
    call->reason = arena_strdup (call->worker->arena, reason);
}

void
bus_call_set_retry_after (bus_call_t *call, int seconds)
{
    call->retry_after = seconds;
}

int
bus_call_event (bus_call_t *call, const char *type, const char *org_id,
                const ProtobufCMessage *payload)
{
    if (db_txn_depth (call->worker->db) == 0) {
        log_error (bus_call_trace (call), "event outside a transaction type=%s method=%s", type,
                   call->request->method);
        return -1;
    }
    return outbox_add (call->worker->db, type, org_id, bus_call_user (call), bus_call_trace (call),
                       call->now, payload);
}

/* --- caller helpers --- */

const Bus__Membership *
bus_caller_membership (const Bus__Caller *caller, const char *org_id)
{
    if (!caller || !org_id || !*org_id)
        return NULL;
    for (size_t i = 0; i < caller->n_orgs; i++)
        if (caller->orgs[i]->org_id && strcmp (caller->orgs[i]->org_id, org_id) == 0)
            return caller->orgs[i];
    return NULL;
}

int
bus_caller_has_role (const Bus__Caller *caller, const char *org_id, Bus__Role role)
{
    const Bus__Membership *m = bus_caller_membership (caller, org_id);
    for (size_t i = 0; m && i < m->n_roles; i++)
        if (m->roles[i] == role)
            return 1;
    return 0;
}

int
bus_caller_is_staff (const Bus__Caller *caller, const char *org_id)
{
    return bus_caller_has_role (caller, org_id, BUS__ROLE__ROLE_ADMIN)
           || bus_caller_has_role (caller, org_id, BUS__ROLE__ROLE_ADMINISTRATION)
           || bus_caller_has_role (caller, org_id, BUS__ROLE__ROLE_TEACHER);
}

/* --- handler helpers --- */

#define PAGE_DEFAULT 50
#define PAGE_MAX 200

status_t
bus_call_db_error (bus_call_t *call)
{
    return bus_call_fail (call, ST_UNAVAILABLE, NULL, "the database is busy, try again");
}

status_t
bus_call_check_id (bus_call_t *call, const char *field, const char *value)
{
    if (!value || !*value)
        return bus_call_fail (call, ST_BAD_REQUEST, field, "%s is required", field);
    if (!ulid_valid (value))
        return bus_call_fail (call, ST_BAD_REQUEST, field, "%s is not an id", field);
    return ST_OK;
}

uint32_t
bus_page_limit (uint32_t asked)
{
    return asked == 0 ? PAGE_DEFAULT : asked > PAGE_MAX ? PAGE_MAX : asked;
}

status_t
bus_call_forward (bus_call_t *call, const char *service, const char *method,
                  const ProtobufCMessage *request, const ProtobufCMessageDescriptor *reply_desc,
                  void **reply)
{
    bus_call_opts_t opts = {
        .timeout_ms = 3000,
        .caller = bus_call_caller (call),
        .trace_id = bus_call_trace (call),
    };
    Bus__Reply *result = NULL;
    void *ignored = NULL;
    status_t st = bus_client_call (bus_call_client (call), service, method, request, &opts,
                                   reply_desc, bus_call_arena (call),
                                   (ProtobufCMessage **) (reply ? reply : &ignored), &result);
    if (st == ST_OK)
        return ST_OK;
    if (result && result->code && *result->code)
        bus_call_set_code (call, result->code);
    return bus_call_fail (call, st, result && result->field && *result->field ? result->field : NULL,
                          "%s", result && result->message && *result->message
                                    ? result->message
                                    : "another service could not do it");
}

/* --- sys.* methods --- */

static status_t
s_sys_ping (bus_call_t *call, const void *request, void **reply)
{
    (void) request;
    Bus__Pong *pong = arena_msg (call->worker->arena, &bus__pong__descriptor);
    pong->service = (char *) call->worker->service->name;
    pong->instance = call->worker->instance;
    pong->started_at = call->worker->started_at;
    *reply = pong;
    return ST_OK;
}

static void
s_fill_stats (arena_t *arena, bus_method_t *m, Bus__MethodStats *out)
{
    bus__method_stats__init (out);
    out->method = (char *) m->name;
    out->calls = m->calls;
    out->errors = m->errors;
    out->total_us = m->total_us;
    out->max_us = m->max_us;
    out->n_buckets = BUS_LATENCY_BUCKETS;
    out->buckets = arena_alloc (arena, sizeof (uint64_t) * BUS_LATENCY_BUCKETS);
    memcpy (out->buckets, m->buckets, sizeof m->buckets);
}

static bus_method_t s_sys_methods[];

static status_t
s_sys_stats (bus_call_t *call, const void *request, void **reply)
{
    (void) request;
    worker_t *w = call->worker;
    Bus__Stats *stats = arena_msg (w->arena, &bus__stats__descriptor);
    stats->service = (char *) w->service->name;
    stats->instance = w->instance;
    size_t total = zhashx_size (w->methods);
    stats->methods = arena_alloc (w->arena, total * sizeof (Bus__MethodStats *));
    for (bus_method_t *m = zhashx_first (w->methods); m; m = zhashx_next (w->methods)) {
        Bus__MethodStats *ms = arena_alloc (w->arena, sizeof *ms);
        s_fill_stats (w->arena, m, ms);
        stats->methods[stats->n_methods++] = ms;
    }
    stats->outbox_head = outbox_head (w->db);
    stats->outbox_published = outbox_published (w->db);
    stats->requests = atomic_load (&w->shared->requests);
    stats->reconnects = atomic_load (&w->shared->reconnects);
    *reply = stats;
    return ST_OK;
}

static status_t
s_sys_replay (bus_call_t *call, const void *request, void **reply)
{
    const Bus__ReplayRequest *req = request;
    worker_t *w = call->worker;
    Bus__ReplayReply *out = arena_msg (w->arena, &bus__replay_reply__descriptor);
    if (outbox_replay (w->db, w->service->name, req->from_seq, req->limit, w->arena, out))
        return bus_call_fail (call, ST_INTERNAL, NULL, "cannot read the outbox");
    *reply = out;
    return ST_OK;
}

/*  Per worker: the counters live in the rows, so each worker copies them. */
static bus_method_t s_sys_methods[] = {
    {"sys.ping", s_sys_ping, 0},
    {"sys.stats", s_sys_stats, 0},
    {"sys.replay", s_sys_replay, 0},
    {NULL, NULL, 0},
};

/* --- the table --- */

/*  The org_id field of a request message, or NULL if it has none. */
static const char *
s_request_org (const ProtobufCMessage *msg)
{
    const ProtobufCFieldDescriptor *f
        = protobuf_c_message_descriptor_get_field_by_name (msg->descriptor, "org_id");
    if (!f || f->type != PROTOBUF_C_TYPE_STRING || f->label == PROTOBUF_C_LABEL_REPEATED)
        return NULL;
    return *(const char *const *) ((const char *) msg + f->offset);
}

static int
s_table_load (worker_t *w)
{
    w->methods = zhashx_new ();
    zhashx_set_destructor (w->methods, NULL);
    bus_service_t *svc = w->service;
    size_t prefix = strlen (svc->name);
    for (bus_method_t *m = svc->methods; m && m->name; m++) {
        if (strncmp (m->name, svc->name, prefix) != 0 || m->name[prefix] != '.') {
            log_error (NULL, "method outside its service method=%s", m->name);
            return -1;
        }
        m->desc = protobuf_c_service_descriptor_get_method_by_name (svc->descriptor,
                                                                    m->name + prefix + 1);
        if (!m->desc) {
            log_error (NULL, "method not in the service's proto method=%s", m->name);
            return -1;
        }
        if ((m->flags & (BUS_ORG_MEMBER | BUS_ORG_STAFF | BUS_ORG_ADMIN))
            && !protobuf_c_message_descriptor_get_field_by_name (m->desc->input, "org_id")) {
            log_error (NULL, "org check on a request without org_id method=%s", m->name);
            return -1;
        }
        zhashx_insert (w->methods, m->name, m);
    }
    for (bus_method_t *m = s_sys_methods; m->name; m++) {
        bus_method_t *copy = calloc (1, sizeof *copy);
        *copy = *m;
        copy->desc = protobuf_c_service_descriptor_get_method_by_name (&bus__sys__descriptor,
                                                                       m->name + 4);
        zhashx_insert (w->methods, copy->name, copy);
    }
    return 0;
}

static void
s_table_free (worker_t *w)
{
    if (!w->methods)
        return;
    for (bus_method_t *m = s_sys_methods; m->name; m++)
        free (zhashx_lookup (w->methods, m->name));
    zhashx_destroy (&w->methods);
}

/*  The checks the flags ask for, before the handler. Other orgs' ids look
    like ids that do not exist (not_found), so nothing of another org leaks. */
static status_t
s_check (bus_call_t *call, const ProtobufCMessage *msg)
{
    int flags = call->method->flags;
    const Bus__Caller *caller = call->request->caller;
    int signed_in = caller && caller->user_id && *caller->user_id;
    if ((flags & (BUS_AUTH | BUS_OPERATOR | BUS_ORG_MEMBER | BUS_ORG_STAFF | BUS_ORG_ADMIN))
        && !signed_in)
        return bus_call_fail (call, ST_UNAUTHORIZED, NULL, "sign in first");
    if ((flags & BUS_OPERATOR) && !caller->operator_)
        return bus_call_fail (call, ST_FORBIDDEN, NULL, "only platform operators may do this");
    if (flags & (BUS_ORG_MEMBER | BUS_ORG_STAFF | BUS_ORG_ADMIN)) {
        const char *org = s_request_org (msg);
        if (!bus_caller_membership (caller, org))
            return bus_call_fail (call, ST_NOT_FOUND, "org_id", "no such organisation");
        if ((flags & BUS_ORG_ADMIN) && !bus_caller_has_role (caller, org, BUS__ROLE__ROLE_ADMIN))
            return bus_call_fail (call, ST_FORBIDDEN, NULL,
                                  "only the organisation's admins may do this");
        if ((flags & BUS_ORG_STAFF) && !bus_caller_is_staff (caller, org))
            return bus_call_fail (call, ST_FORBIDDEN, NULL,
                                  "only the organisation's staff may do this");
    }
    return ST_OK;
}

static int
s_bucket (int64_t us)
{
    static const int64_t limits[] = {100, 1000, 10000, 100000, 1000000};
    for (int i = 0; i < 5; i++)
        if (us <= limits[i])
            return i;
    return 5;
}

/*  Packs the call's outcome as a bus.Reply into the arena. */
static ProtobufCBinaryData
s_pack_reply (bus_call_t *call, const ProtobufCMessage *body)
{
    arena_t *arena = call->worker->arena;
    Bus__Reply reply = BUS__REPLY__INIT;
    reply.status = call->status;
    reply.code = (char *) (call->code ? call->code : "");
    reply.message = (char *) (call->message ? call->message : "");
    reply.field = (char *) (call->field ? call->field : "");
    reply.reason = (char *) (call->reason ? call->reason : "");
    reply.retry_after = call->retry_after;
    if (body && call->status == ST_OK) {
        size_t len = protobuf_c_message_get_packed_size (body);
        reply.body.data = arena_alloc (arena, len ? len : 1);
        reply.body.len = protobuf_c_message_pack (body, reply.body.data);
    }
    ProtobufCBinaryData out;
    out.len = bus__reply__get_packed_size (&reply);
    if (out.len > BUS_MAX_MESSAGE - 4096) {
        /*  The broker would cut the connection for it: say so instead. */
        log_error (call->request->trace_id, "reply too large method=%s bytes=%zu",
                   call->request->method, out.len);
        Bus__Reply small = BUS__REPLY__INIT;
        small.status = ST_INTERNAL;
        small.message = "the reply is too large";
        reply = small;
        out.len = bus__reply__get_packed_size (&reply);
    }
    out.data = arena_alloc (arena, out.len ? out.len : 1);
    bus__reply__pack (&reply, out.data);
    return out;
}

/*  Idempotency records are per caller, method and key, and remember a hash
    of the request so that a key reused for something else is refused
    rather than answered with another request's result. A signed-in
    caller's keys are theirs. An anonymous caller's (a public route's: the
    gateway names their address) are honoured only by methods that say so
    (BUS_ANON_IDEM: applying, whose reply holds no secret; never signing in
    or up, whose replies hold tokens) and are scoped to that address, so
    the first answer goes back only to a retry of the very same request
    from there; other public methods ignore them. A call with no caller at
    all is another service's, made on no one's behalf: its keys (which
    services make unique) share one scope. */
static const char *
s_idem_scope (bus_call_t *call, char *buf, size_t size)
{
    const char *user = bus_call_user (call);
    if (*user)
        return user;
    const Bus__Caller *caller = bus_call_caller (call);
    if (!caller || !caller->ip || !*caller->ip)
        return "bus";       /* another service's call, made on no one's behalf */
    if (!call->method || !(call->method->flags & BUS_ANON_IDEM))
        return NULL;
    snprintf (buf, size, "ip:%s", caller->ip);
    return buf;
}

/*  Binds the call's (scope, method, key) to a statement's first three
    parameters; -1 when the call has no scope. */
static int
s_bind_key (bus_call_t *call, sqlite3_stmt *stmt)
{
    char buf[80];
    const char *scope = s_idem_scope (call, buf, sizeof buf);
    if (!scope)
        return -1;
    sqlite3_bind_text (stmt, 1, scope, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (stmt, 2, call->request->method, -1, SQLITE_STATIC);
    sqlite3_bind_text (stmt, 3, call->request->idempotency_key, -1, SQLITE_STATIC);
    return 0;
}

static void
s_request_hash (bus_call_t *call, unsigned char out[16])
{
    crypto_generichash (out, 16, call->request->body.data, call->request->body.len,
                        call->worker->idem_key, sizeof call->worker->idem_key);
}

/*  The database's key for request hashes, made by the first instance that
    opens it (instances of a service share the database). */
static int
s_idem_key_load (worker_t *w)
{
    char *hex = db_meta_get (w->db, "idempotency_key");
    if (!hex) {
        unsigned char key[crypto_generichash_KEYBYTES];
        char fresh[sizeof key * 2 + 1];
        randombytes_buf (key, sizeof key);
        sodium_bin2hex (fresh, sizeof fresh, key, sizeof key);
        sqlite3_stmt *stmt = db_stmt (w->db, "INSERT OR IGNORE INTO parta_meta (key, value)"
                                             " VALUES ('idempotency_key', ?)");
        if (!stmt)
            return -1;
        sqlite3_bind_text (stmt, 1, fresh, -1, SQLITE_TRANSIENT);
        if (db_step_done (w->db, stmt, NULL))
            return -1;
        hex = db_meta_get (w->db, "idempotency_key");
    }
    size_t len = 0;
    int bad = !hex || sodium_hex2bin (w->idem_key, sizeof w->idem_key, hex, strlen (hex), NULL, &len, NULL)
              || len != sizeof w->idem_key;
    free (hex);
    return bad ? -1 : 0;
}

/*  1 with the stored reply in *out, 0 when none, 2 when the key was used
    for a different request, -1 on a database error. */
static int
s_idempotent_lookup (worker_t *w, bus_call_t *call, ProtobufCBinaryData *out)
{
    sqlite3_stmt *stmt = db_stmt (w->db, "SELECT reply, request_hash FROM idempotency"
                                         " WHERE caller = ? AND method = ? AND key = ?");
    if (!stmt || s_bind_key (call, stmt))
        return -1;
    int found = 0;
    if (sqlite3_step (stmt) == SQLITE_ROW) {
        unsigned char hash[16];
        s_request_hash (call, hash);
        if (sqlite3_column_bytes (stmt, 1) != 16
            || sodium_memcmp (sqlite3_column_blob (stmt, 1), hash, 16) != 0)
            found = 2;
        else {
            out->len = (size_t) sqlite3_column_bytes (stmt, 0);
            out->data = arena_alloc (w->arena, out->len ? out->len : 1);
            memcpy (out->data, sqlite3_column_blob (stmt, 0), out->len);
            found = 1;
        }
    }
    sqlite3_reset (stmt);
    return found;
}

/*  For a method that runs its own transactions (BUS_NOTXN: the key cannot
    be looked up and the reply stored in the transaction of the change),
    the key is claimed first, in a transaction of its own, so that the
    same request running at once elsewhere (another instance, a retry that
    overtook it) waits for the first to finish instead of doing it again.
    1 with the stored reply in *out, 2 the key was used for a different
    request, 3 another attempt holds the claim, 0 claimed here, -1 on a
    database error. A claim lapses after CLAIM_MS (an instance that died
    with it). */
static int
s_idempotent_claim (worker_t *w, bus_call_t *call, ProtobufCBinaryData *out)
{
    if (db_begin (w->db))
        return -1;
    int found = s_idempotent_lookup (w, call, out);
    if (found) {
        db_rollback (w->db);
        return found;
    }
    sqlite3_stmt *get = db_stmt (w->db, "SELECT until FROM idempotency_claim"
                                        " WHERE caller = ? AND method = ? AND key = ?");
    sqlite3_stmt *put = db_stmt (w->db, "INSERT OR REPLACE INTO idempotency_claim"
                                        " (caller, method, key, until) VALUES (?, ?, ?, ?)");
    if (!get || !put || s_bind_key (call, get) || s_bind_key (call, put)) {
        db_rollback (w->db);
        return -1;
    }
    int held = sqlite3_step (get) == SQLITE_ROW && sqlite3_column_int64 (get, 0) > call->now;
    sqlite3_reset (get);
    if (held) {
        db_rollback (w->db);
        return 3;
    }
    sqlite3_bind_int64 (put, 4, call->now + CLAIM_MS);
    if (db_step_done (w->db, put, NULL) || db_commit (w->db)) {
        if (db_txn_depth (w->db))
            db_rollback (w->db);
        return -1;
    }
    return 0;
}

/*  Gives up a claim (the attempt failed: a retry runs again). */
static void
s_idempotent_unclaim (worker_t *w, bus_call_t *call)
{
    sqlite3_stmt *del = db_stmt (w->db, "DELETE FROM idempotency_claim"
                                        " WHERE caller = ? AND method = ? AND key = ?");
    if (!del || s_bind_key (call, del))
        return;
    db_step_done (w->db, del, NULL);
}

static int
s_idempotent_store (worker_t *w, bus_call_t *call, ProtobufCBinaryData reply)
{
    sqlite3_stmt *stmt = db_stmt (w->db, "INSERT OR REPLACE INTO idempotency"
                                         " (caller, method, key, reply, at, request_hash)"
                                         " VALUES (?, ?, ?, ?, ?, ?)");
    if (!stmt || s_bind_key (call, stmt))
        return -1;
    unsigned char hash[16];
    s_request_hash (call, hash);
    sqlite3_bind_blob (stmt, 4, reply.data, (int) reply.len, SQLITE_STATIC);
    sqlite3_bind_int64 (stmt, 5, call->now);
    sqlite3_bind_blob (stmt, 6, hash, 16, SQLITE_TRANSIENT);
    return db_step_done (w->db, stmt, NULL);
}

/*  Runs one request and returns the packed reply (in the arena). */
static ProtobufCBinaryData
s_dispatch (worker_t *w, const uint8_t *payload, size_t len, int *wrote)
{
    bus_call_t call = {.worker = w, .status = ST_OK};
    call.now = clock_now_ms ();
    *wrote = 0;
    Bus__Request *request = bus__request__unpack (arena_allocator (w->arena), len, payload);
    if (!request) {
        static Bus__Request empty = BUS__REQUEST__INIT;
        call.request = &empty;
        bus_call_fail (&call, ST_BAD_REQUEST, NULL, "malformed request envelope");
        w->now_us = clock_mono_us ();   /* unpacking a large one takes time too */
        return s_pack_reply (&call, NULL);
    }
    call.request = request;
    bus_method_t *m = zhashx_lookup (w->methods, request->method);
    if (!m) {
        bus_call_fail (&call, ST_NOT_FOUND, NULL, "no method '%.80s' in service %s",
                       request->method, w->service->name);
        w->now_us = clock_mono_us ();
        return s_pack_reply (&call, NULL);
    }
    call.method = m;
    /*  Replies held for company do not wait behind a method that may be
        slow: a write (a transaction, perhaps calls to other services), one
        not run before, or one slow on average. */
    if (w->replies.count
        && ((m->flags & BUS_WRITE) || !m->calls || m->total_us / m->calls > SLOW_US))
        s_give_replies (w);
    int64_t t0 = clock_mono_us ();
    void *reply_msg = NULL;
    ProtobufCBinaryData out = {0, NULL};
    char scope_buf[80];
    int idempotent = (m->flags & BUS_WRITE) && request->idempotency_key
                     && *request->idempotency_key
                     && s_idem_scope (&call, scope_buf, sizeof scope_buf);
    int txn = (m->flags & BUS_WRITE) && !(m->flags & BUS_NOTXN);

    ProtobufCMessage *msg = protobuf_c_message_unpack (
        m->desc->input, arena_allocator (w->arena), request->body.len, request->body.data);
    if (!msg) {
        bus_call_fail (&call, ST_BAD_REQUEST, NULL, "request body is not a %s",
                       m->desc->input->name);
        goto done;
    }
    if (s_check (&call, msg) != ST_OK)
        goto done;
    /*  A request whose caller gave up long ago (it sat in a queue while the
        broker was unreachable) is not run: its answer would go nowhere and
        its effect would surprise. A second of slack covers clock skew. */
    if (request->deadline_ms > 0 && call.now > request->deadline_ms + 1000) {
        bus_call_fail (&call, ST_UNAVAILABLE, NULL, "the caller's deadline passed before it ran");
        goto done;
    }
    if (txn && db_begin (w->db)) {
        bus_call_fail (&call, ST_UNAVAILABLE, NULL, "database busy");
        goto done;
    }
    if (idempotent) {
        int found = txn ? s_idempotent_lookup (w, &call, &out) : s_idempotent_claim (w, &call, &out);
        if (found == 1) {
            if (txn)
                db_rollback (w->db);
            goto count;     /* the stored reply, nothing done again */
        }
        if (found) {
            if (txn)
                db_rollback (w->db);
            if (found == 2)
                bus_call_fail (&call, ST_CONFLICT, NULL,
                               "this Idempotency-Key was used for a different request");
            else if (found == 3)
                /*  Retryable: the first attempt's answer will be stored. */
                bus_call_fail (&call, ST_UNAVAILABLE, NULL,
                               "a request with this Idempotency-Key is being handled");
            else
                bus_call_fail (&call, ST_UNAVAILABLE, NULL, "database busy");
            goto done;
        }
    }
    call.status = m->handler (&call, msg, &reply_msg);
    if (call.status == ST_OK && !reply_msg)
        reply_msg = arena_msg (w->arena, m->desc->output);
    if (call.status == ST_OK
        && ((ProtobufCMessage *) reply_msg)->descriptor != m->desc->output) {
        log_error (request->trace_id, "handler replied with the wrong type method=%s", m->name);
        bus_call_fail (&call, ST_INTERNAL, NULL, "internal error");
    }
    out = s_pack_reply (&call, reply_msg);
    if (txn) {
        if (call.status != ST_OK)
            db_rollback (w->db);
        else if ((idempotent && s_idempotent_store (w, &call, out)) || db_commit (w->db)) {
            if (db_txn_depth (w->db))
                db_rollback (w->db);
            bus_call_fail (&call, ST_UNAVAILABLE, NULL, "could not save the change");
            out = s_pack_reply (&call, NULL);
        }
        else
            *wrote = 1;
    }
    else if ((m->flags & BUS_WRITE) && call.status == ST_OK) {
        if (idempotent) {
            /*  The reply stored and the claim given up together. */
            if (db_begin (w->db) == 0) {
                int bad = s_idempotent_store (w, &call, out);
                s_idempotent_unclaim (w, &call);
                if (bad || db_commit (w->db))
                    db_rollback (w->db);
            }
        }
        *wrote = 1;
    }
    else if (idempotent && !txn)
        s_idempotent_unclaim (w, &call);
    goto count;
done:
    out = s_pack_reply (&call, NULL);
count:;
    w->now_us = clock_mono_us ();
    int64_t us = w->now_us - t0;
    m->calls++;
    if (call.status != ST_OK)
        m->errors++;
    m->total_us += (uint64_t) us;
    if ((uint64_t) us > m->max_us)
        m->max_us = (uint64_t) us;
    m->buckets[s_bucket (us)]++;
    if (call.status == ST_INTERNAL || call.status == ST_UNAVAILABLE)
        log_warn (request->trace_id, "request failed method=%s status=%s message=\"%s\"", m->name,
                  status_name (call.status), call.message ? call.message : "");
    else
        log_debug (request->trace_id, "request method=%s status=%s us=%lld", m->name,
                   status_name (call.status), (long long) us);
    return out;
}

/* --- handing messages between the threads --- */

static int
s_handoff_init (handoff_t *q)
{
    memset (q, 0, sizeof *q);
    q->fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->fd < 0)
        return -1;     /* fd stays -1: fini does nothing */
    pthread_mutex_init (&q->lock, NULL);
    return 0;
}

static void
s_handoff_fini (handoff_t *q)
{
    if (q->fd < 0)
        return;
    for (size_t i = 0; i < q->len; i++) {
        size_t at = (q->head + i) % q->cap;
        zmq_msg_close (&q->items[2 * at]);
        zmq_msg_close (&q->items[2 * at + 1]);
    }
    free (q->items);
    close (q->fd);
    pthread_mutex_destroy (&q->lock);
    q->fd = -1;
}

/*  Makes the taker's next poll return. */
static void
s_handoff_signal (handoff_t *q)
{
    uint64_t one = 1;
    if (write (q->fd, &one, sizeof one) < 0 && errno != EAGAIN)
        log_warn (NULL, "worker cannot signal the other thread error=\"%s\"", strerror (errno));
}

/*  Moves the two frames into the queue (they are left empty). -1 when the
    queue is full or memory is short; the frames are then the caller's. */
static int
s_handoff_give (handoff_t *q, zmq_msg_t *header, zmq_msg_t *payload)
{
    pthread_mutex_lock (&q->lock);
    if (q->len == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        zmq_msg_t *items = cap <= HANDOFF_MAX ? malloc (2 * cap * sizeof *items) : NULL;
        if (!items) {
            pthread_mutex_unlock (&q->lock);
            return -1;
        }
        /*  zmq_msg_t moves by copying its bytes, as ZeroMQ's own queues do. */
        for (size_t i = 0; i < q->len; i++) {
            size_t at = (q->head + i) % q->cap;
            items[2 * i] = q->items[2 * at];
            items[2 * i + 1] = q->items[2 * at + 1];
        }
        free (q->items);
        q->items = items;
        q->cap = cap;
        q->head = 0;
    }
    size_t at = (q->head + q->len) % q->cap;
    q->items[2 * at] = *header;
    q->items[2 * at + 1] = *payload;
    int was_empty = q->len++ == 0;
    pthread_mutex_unlock (&q->lock);
    zmq_msg_init (header);
    zmq_msg_init (payload);
    if (was_empty)
        s_handoff_signal (q);
    return 0;
}

/*  Takes the oldest message into header and payload (initialised here).
    0 when the queue is empty. */
static int
s_handoff_take (handoff_t *q, zmq_msg_t *header, zmq_msg_t *payload)
{
    pthread_mutex_lock (&q->lock);
    int taken = q->len > 0;
    if (taken) {
        *header = q->items[2 * q->head];
        *payload = q->items[2 * q->head + 1];
        q->head = (q->head + 1) % q->cap;
        q->len--;
    }
    pthread_mutex_unlock (&q->lock);
    return taken;
}

/*  Before taking: clears the signal, so that a message given from now on
    signals again. A taker that stops before the queue is empty (to see to
    its timers and its pipe) calls s_handoff_signal to come back. */
static void
s_handoff_clear (handoff_t *q)
{
    uint64_t count;
    if (read (q->fd, &count, sizeof count) < 0 && errno != EAGAIN)
        log_warn (NULL, "worker cannot read its thread signal error=\"%s\"", strerror (errno));
}

/* --- the executor: runs requests, owns the database --- */

/*  The worker is two threads. The I/O thread (the actor bus_worker_start
    returns) owns the broker connection and keeps heartbeating whatever the
    handlers do; the executor thread owns the database and runs requests one
    at a time. A handler that takes seconds (a slow call to another service,
    a busy database) therefore never makes the broker declare the worker
    dead with requests in hand. They hand each other the bus's own frames
    (handoff_t): the broker's REQUEST (header, payload) as it arrived one
    way, the REPLY (the same header with the REPLY command, the reply) the
    other, so nothing is framed twice. The executor actor's pipe carries
    only its start and $TERM. */

static int
s_recv_frames (void *handle, zmq_msg_t *frames, int max, int *extra)
{
    int count = 0, more = 1;
    *extra = 0;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init (&part);
        if (zmq_msg_recv (&part, handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&part);
            return count ? count : (*extra ? count : -1);
        }
        more = zmq_msg_more (&part);
        if (count < max)
            frames[count++] = part;
        else {
            zmq_msg_close (&part);
            *extra = 1;
        }
    }
    return count;
}

static void
s_close_frames (zmq_msg_t *frames, int count)
{
    for (int i = 0; i < count; i++)
        zmq_msg_close (&frames[i]);
}

static void
s_prune (worker_t *w)
{
    sqlite3_stmt *stmt = db_stmt (w->db, "DELETE FROM idempotency WHERE at < ?");
    if (stmt) {
        sqlite3_bind_int64 (stmt, 1, clock_now_ms () - IDEMPOTENCY_KEEP_MS);
        db_step_done (w->db, stmt, NULL);
    }
    stmt = db_stmt (w->db, "DELETE FROM idempotency_claim WHERE until < ?");
    if (stmt) {
        sqlite3_bind_int64 (stmt, 1, clock_now_ms ());
        db_step_done (w->db, stmt, NULL);
    }
}

/*  A message for the I/O thread to send as it is. */
static void
s_give (worker_t *w, const void *header, size_t header_len, const void *payload,
        size_t payload_len)
{
    zmq_msg_t frames[MAX_FRAMES];
    if (zmq_msg_init_size (&frames[0], header_len))
        goto lost;
    if (zmq_msg_init_size (&frames[1], payload_len)) {
        zmq_msg_close (&frames[0]);
        goto lost;
    }
    memcpy (zmq_msg_data (&frames[0]), header, header_len);
    if (payload_len)
        memcpy (zmq_msg_data (&frames[1]), payload, payload_len);
    if (s_handoff_give (&w->shared->to_io, &frames[0], &frames[1]) == 0)
        return;
    s_close_frames (frames, MAX_FRAMES);
lost:
    log_error (NULL, "worker reply lost: the reply queue is full or memory is short");
}

/*  The replies held go to the I/O thread: one alone, several as a BATCH. */
static void
s_give_replies (worker_t *w)
{
    bus_batch_t *b = &w->replies;
    if (b->count == 1) {
        const uint8_t *header, *payload;
        size_t at = 0, header_len, len;
        bus_batch_next (b->data, b->len, &at, &header, &header_len, &payload, &len);
        s_give (w, header, header_len, payload, len);
    }
    else if (b->count > 1) {
        uint8_t header[BUS_BATCH_HEADER_LEN];
        s_give (w, header, bus_batch_header (header, BUS_WORKER, b->count), b->data, b->len);
    }
    bus_batch_reset (b);
}

/*  Runs one REQUEST (header checked, and payload) and keeps its REPLY:
    the same header bytes with another command (the broker matches it to
    the request by them) and the reply. The reply is held until the
    requests waiting now have run (s_give_replies), so that the I/O thread
    wakes once for them all and sends them as one message. */
static void
s_execute (worker_t *w, const uint8_t *header, size_t header_len, const uint8_t *payload,
           size_t len)
{
    int wrote = 0;
    if (header_len > BUS_HEADER_MAX)
        return;     /* refused by the I/O thread and bus_batch_check already */
    atomic_fetch_add (&w->shared->requests, 1);
    ProtobufCBinaryData reply = s_dispatch (w, payload, len, &wrote);
    uint8_t reply_header[BUS_HEADER_MAX];
    memcpy (reply_header, header, header_len);
    reply_header[BUS_SIGNATURE_LEN] = BUS_WORKER_REPLY;
    bus_batch_t *b = &w->replies;
    if (reply.len <= BUS_BATCH_PAYLOAD && bus_batch_full (b, reply.len))
        s_give_replies (w);
    if (b->count == 0)
        w->replies_since = w->now_us;
    if (reply.len > BUS_BATCH_PAYLOAD
        || bus_batch_add (b, reply_header, header_len, reply.data, reply.len)) {
        s_give_replies (w);
        s_give (w, reply_header, header_len, reply.data, reply.len);
    }
    arena_reset (w->arena);
    if (wrote && w->pub) {
        outbox_pub_flush (w->pub);
        w->now_us = clock_mono_us ();   /* publishing counts against the hold too */
    }
}

/*  A malformed message, logged at most a few times a second per thread. */
static void
s_dropped (log_limit_t *limit, const char *why)
{
    unsigned long suppressed;
    if (log_limit_allow (limit, &suppressed))
        log_warn (NULL, "worker dropped a message reason=\"%s\" suppressed=%lu", why, suppressed);
}

/*  What a REQUEST's header may hold (docs/bus.md §3), alone or in a
    BATCH: the executor answers with a copy of it. NULL when it is fine. */
static const char *
s_request_why (const bus_header_t *h, size_t header_len)
{
    if (header_len > BUS_HEADER_MAX || h->id_len == 0 || h->id_len > BUS_ID_MAX
        || h->address_len == 0)
        return "a REQUEST with an id of 0 or more than 32 bytes, or no client address";
    return NULL;
}

/*  A message from the I/O thread: a REQUEST, or a BATCH of them (its
    layout checked there); each entry is checked as if it came alone. */
static void
s_execute_message (worker_t *w, zmq_msg_t *frames)
{
    const uint8_t *data = zmq_msg_data (&frames[0]);
    if (data[BUS_SIGNATURE_LEN] != BUS_WORKER_BATCH) {
        s_execute (w, data, zmq_msg_size (&frames[0]), zmq_msg_data (&frames[1]),
                   zmq_msg_size (&frames[1]));
        return;
    }
    const uint8_t *entries = zmq_msg_data (&frames[1]), *header, *payload;
    size_t size = zmq_msg_size (&frames[1]), at = 0, header_len, len;
    while (bus_batch_next (entries, size, &at, &header, &header_len, &payload, &len)) {
        bus_header_t h;
        const char *why = bus_batch_entry (header, header_len, BUS_FROM_BROKER, BUS_WORKER,
                                           BUS_WORKER_REQUEST, &h);
        if (!why)
            why = s_request_why (&h, header_len);
        if (why) {
            s_dropped (&w->drop_log, why);
            continue;
        }
        if (w->replies.count && w->now_us - w->replies_since >= REPLY_HOLD_US)
            s_give_replies (w);
        s_execute (w, header, header_len, payload, len);
    }
}

/*  The service's periodic work, as a call without a caller. */
static void
s_tick (worker_t *w)
{
    static Bus__Request tick_request = BUS__REQUEST__INIT;
    tick_request.method = "sys.tick";
    bus_call_t call = {.worker = w, .request = &tick_request, .status = ST_OK};
    call.now = clock_now_ms ();
    if (db_begin (w->db))
        return;
    status_t st = w->service->tick (&call);
    if (st == ST_OK) {
        if (db_commit (w->db) && db_txn_depth (w->db))
            db_rollback (w->db);
    }
    else {
        db_rollback (w->db);
        log_warn (NULL, "periodic work failed service=%s status=%s message=\"%s\"",
                  w->service->name, status_name (st), call.message ? call.message : "");
    }
    arena_reset (w->arena);
    outbox_pub_flush (w->pub);
}

static void
s_executor_actor (zsock_t *pipe, void *args)
{
    worker_t *w = args;
    zsock_signal (pipe, 0);
    char path[1024], err[256];
    snprintf (path, sizeof path, "%s/%s.db", config_str (w->cfg, "data"), w->service->name);
    w->db = db_open (path, w->service->migrations, config_str (w->cfg, "sync"), err, sizeof err);
    w->arena = arena_new ();
    if (!w->db || !w->arena || s_table_load (w) || s_idem_key_load (w)) {
        if (!w->db)
            log_error (NULL, "worker cannot open its database path=%s error=\"%s\"", path, err);
        goto failed;
    }
    w->pub = outbox_pub_new (w->db, w->service->name, w->cfg);
    if (!w->pub)
        goto failed;
    zstr_send (pipe, "OK");
    void *h = zsock_resolve (pipe);
    int64_t prune_at = clock_mono_ms () + PRUNE_EVERY_MS;
    int tick_ms = w->service->tick ? (w->service->tick_ms > 0 ? w->service->tick_ms : 1000) : 0;
    int64_t tick_at = clock_mono_ms () + tick_ms;
    for (;;) {
        int wait = outbox_pub_tick (w->pub);
        if (tick_ms) {
            int64_t until = tick_at - clock_mono_ms ();
            if (until < wait)
                wait = until < 0 ? 0 : (int) until;
        }
        handoff_t *requests = &w->shared->to_executor;
        zmq_pollitem_t items[] = {{h, 0, ZMQ_POLLIN, 0}, {NULL, requests->fd, ZMQ_POLLIN, 0}};
        if (zmq_poll (items, 2, wait) < 0 && errno != EINTR)
            break;
        if (items[0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv (h);
            int term = !command || strcmp (command, "$TERM") == 0;
            zstr_free (&command);
            if (term)
                break;
        }
        if (items[1].revents & ZMQ_POLLIN) {
            s_handoff_clear (requests);
            zmq_msg_t frames[MAX_FRAMES];
            int n = 0;
            while (n < HANDOFF_BATCH && s_handoff_take (requests, &frames[0], &frames[1])) {
                if (w->replies.count && w->now_us - w->replies_since >= REPLY_HOLD_US)
                    s_give_replies (w);
                s_execute_message (w, frames);
                s_close_frames (frames, MAX_FRAMES);
                n++;
            }
            /*  Under steady load the queue may never be empty: publishing,
                the periodic task and $TERM must still get their turn. */
            s_give_replies (w);
            if (n == HANDOFF_BATCH)
                s_handoff_signal (requests);
        }
        if (clock_mono_ms () >= prune_at) {
            s_prune (w);
            prune_at = clock_mono_ms () + PRUNE_EVERY_MS;
        }
        if (tick_ms && clock_mono_ms () >= tick_at) {
            s_tick (w);
            tick_at = clock_mono_ms () + tick_ms;
        }
    }
    goto out;
failed:
    zstr_send (pipe, "FAIL");
    char *term = zstr_recv (pipe);
    zstr_free (&term);
out:
    outbox_pub_destroy (&w->pub);
    bus_client_destroy (&w->client);
    s_table_free (w);
    arena_destroy (&w->arena);
    bus_batch_fini (&w->replies);
    db_destroy (&w->db);
}

/* --- the I/O thread: the broker connection --- */

typedef struct {
    const config_t *cfg;
    const char *service;
    worker_t *executor_state;
    zactor_t *executor;
    zsock_t *dealer;
    int heartbeat_ms, liveness, credit;
    int64_t broker_expiry;      /* monotonic ms */
    int64_t heartbeat_at;
    int64_t ready_at;
    int backoff_ms;             /* grows while the broker keeps refusing us */
    shared_t *shared;
    log_limit_t drop_log;
} io_t;

/*  READY (with our service and credit), HEARTBEAT or DISCONNECT: one frame. */
static void
s_send_command (io_t *io, uint8_t cmd)
{
    bus_header_t h = {.side = BUS_WORKER, .command = cmd};
    if (cmd == BUS_WORKER_READY) {
        h.number = (uint32_t) io->credit;
        h.service = (const uint8_t *) io->service;
        h.service_len = strlen (io->service);
    }
    uint8_t header[BUS_HEADER_MAX];
    size_t size = bus_header_build (header, &h, BUS_TO_BROKER);
    zmq_send (zsock_resolve (io->dealer), header, size, ZMQ_DONTWAIT);
}

static int
s_connect (io_t *io)
{
    zsock_destroy (&io->dealer);
    io->dealer = bus_socket_connect (ZMQ_DEALER, io->cfg, config_str (io->cfg, "bus"));
    if (!io->dealer)
        return -1;
    s_send_command (io, BUS_WORKER_READY);
    int64_t now = clock_mono_ms ();
    io->ready_at = now;
    io->broker_expiry = now + (int64_t) io->heartbeat_ms * io->liveness;
    io->heartbeat_at = now + io->heartbeat_ms;
    return 0;
}

/*  Connects again, waiting longer each time the broker turns us away
    right after READY (it may have no room for our service). */
static void
s_reconnect (io_t *io, const char *why)
{
    int64_t now = clock_mono_ms ();
    if (now - io->ready_at < 2000)
        io->backoff_ms = io->backoff_ms ? (io->backoff_ms * 2 > 5000 ? 5000 : io->backoff_ms * 2)
                                        : RECONNECT_DELAY_MS;
    else
        io->backoff_ms = RECONNECT_DELAY_MS;
    log_info (NULL, "worker reconnecting service=%s reason=\"%s\" delay_ms=%d", io->service, why,
              io->backoff_ms);
    atomic_fetch_add (&io->shared->reconnects, 1);
    zsock_destroy (&io->dealer);
    zclock_sleep (io->backoff_ms);
    s_connect (io);
}

/*  A request, as it came, goes to the executor, which answers with its
    header. */
static void
s_to_executor (io_t *io, zmq_msg_t *header, zmq_msg_t *payload)
{
    if (s_handoff_give (&io->shared->to_executor, header, payload)) {
        unsigned long suppressed;
        if (log_limit_allow (&io->drop_log, &suppressed))
            log_warn (NULL, "worker dropped a request: its queue is full suppressed=%lu",
                      suppressed);
    }
}

/*  Reads what the broker sent; requests go to the executor. Returns -1
    when the broker asked us to reconnect. */
static int
s_from_broker (io_t *io)
{
    void *h = zsock_resolve (io->dealer);
    for (int batch = 0; batch < 1000; batch++) {
        zmq_msg_t frames[MAX_FRAMES];
        int extra;
        int count = s_recv_frames (h, frames, MAX_FRAMES, &extra);
        if (count < 0)
            return 0;
        int rc = 0;
        if (batch % 64 == 0)
            io->broker_expiry = clock_mono_ms () + (int64_t) io->heartbeat_ms * io->liveness;
        bus_header_t head;
        const char *why = bus_header_parse (zmq_msg_data (&frames[0]), zmq_msg_size (&frames[0]),
                                            BUS_FROM_BROKER, &head);
        if (!why && (extra || count != head.frames || head.side != BUS_WORKER))
            why = "wrong number of frames or a client's command";
        if (!why && head.command == BUS_WORKER_REQUEST)
            why = s_request_why (&head, zmq_msg_size (&frames[0]));
        if (!why && head.command == BUS_WORKER_BATCH)
            why = bus_batch_check (zmq_msg_data (&frames[1]), zmq_msg_size (&frames[1]),
                                   head.number);
        if (!why && (head.command == BUS_WORKER_REQUEST || head.command == BUS_WORKER_BATCH))
            s_to_executor (io, &frames[0], &frames[1]);
        else if (!why && head.command == BUS_WORKER_DISCONNECT)
            rc = -1;
        else if (why)
            s_dropped (&io->drop_log, why);
        s_close_frames (frames, count);
        if (rc)
            return rc;
    }
    return 0;
}

/*  Replies from the executor go to the broker as they are: a REPLY, or a
    BATCH of them. */
static void
s_from_executor (io_t *io)
{
    handoff_t *replies = &io->shared->to_io;
    s_handoff_clear (replies);
    zmq_msg_t frames[MAX_FRAMES];
    int n = 0;
    while (n < HANDOFF_BATCH && s_handoff_take (replies, &frames[0], &frames[1])) {
        if (io->dealer) {
            void *h = zsock_resolve (io->dealer);
            if (zmq_msg_send (&frames[0], h, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0)
                zmq_msg_send (&frames[1], h, ZMQ_DONTWAIT);
        }
        s_close_frames (frames, MAX_FRAMES);
        n++;
    }
    if (n == HANDOFF_BATCH)
        s_handoff_signal (replies);     /* the broker and heartbeats first */
}

static void
s_worker_actor (zsock_t *pipe, void *args)
{
    io_t *io = args;
    zsock_signal (pipe, 0);     /* zactor_new's handshake; readiness follows */
    io->executor = zactor_new (s_executor_actor, io->executor_state);
    char *status = io->executor ? zstr_recv (io->executor) : NULL;
    int ok = status && strcmp (status, "OK") == 0;
    zstr_free (&status);
    if (!ok || s_connect (io)) {
        zstr_send (pipe, "FAIL");
        char *term = zstr_recv (pipe);
        zstr_free (&term);
        goto out;
    }
    log_info (NULL, "worker ready service=%s instance=%s credit=%d", io->service,
              io->executor_state->instance, io->credit);
    zstr_send (pipe, "OK");
    for (;;) {
        int64_t now = clock_mono_ms ();
        int64_t wait = io->heartbeat_at - now;
        if (io->broker_expiry - now < wait)
            wait = io->broker_expiry - now;
        if (wait < 0)
            wait = 0;
        zmq_pollitem_t items[] = {
            {zsock_resolve (pipe), 0, ZMQ_POLLIN, 0},
            {zsock_resolve (io->dealer), 0, ZMQ_POLLIN, 0},
            {NULL, io->shared->to_io.fd, ZMQ_POLLIN, 0},
        };
        if (zmq_poll (items, 3, wait) < 0 && errno != EINTR)
            break;
        if (items[0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv (pipe);
            int term = !command || strcmp (command, "$TERM") == 0;
            zstr_free (&command);
            if (term)
                break;
        }
        if (items[2].revents & ZMQ_POLLIN)
            s_from_executor (io);
        if ((items[1].revents & ZMQ_POLLIN) || (zsock_events (io->dealer) & ZMQ_POLLIN)) {
            if (s_from_broker (io) < 0) {
                s_reconnect (io, "the broker asked us to register again");
                continue;
            }
        }
        now = clock_mono_ms ();
        if (now >= io->broker_expiry) {
            s_reconnect (io, "the broker is silent");
            continue;
        }
        if (now >= io->heartbeat_at) {
            s_send_command (io, BUS_WORKER_HEARTBEAT);
            io->heartbeat_at = now + io->heartbeat_ms;
        }
    }
    if (io->dealer) {
        /*  Say goodbye, giving the message a moment to leave. */
        zsock_set_linger (io->dealer, 200);
        s_send_command (io, BUS_WORKER_DISCONNECT);
    }
out:
    zactor_destroy (&io->executor);
    zsock_destroy (&io->dealer);
    s_handoff_fini (&io->shared->to_executor);
    s_handoff_fini (&io->shared->to_io);
    free (io->executor_state);
    free (io->shared);
    free (io);
}

zactor_t *
bus_worker_start (const config_t *cfg, bus_service_t *service, void *context)
{
    worker_t *w = calloc (1, sizeof *w);
    io_t *io = calloc (1, sizeof *io);
    shared_t *shared = calloc (1, sizeof *shared);
    if (shared)
        shared->to_executor.fd = shared->to_io.fd = -1;
    if (!w || !io || !shared || s_handoff_init (&shared->to_executor)
        || s_handoff_init (&shared->to_io)) {
        if (shared) {
            s_handoff_fini (&shared->to_executor);
            s_handoff_fini (&shared->to_io);
        }
        free (w);
        free (io);
        free (shared);
        return NULL;
    }
    w->cfg = cfg;
    w->service = service;
    w->context = context;
    w->shared = shared;
    w->started_at = clock_now_ms ();
    w->drop_log.burst = 5;
    ulid_make (w->instance);
    io->cfg = cfg;
    io->service = service->name;
    io->executor_state = w;
    io->shared = shared;
    io->heartbeat_ms = (int) config_int (cfg, "heartbeat_ms", 1000, 10, 60000, NULL);
    io->liveness = (int) config_int (cfg, "liveness", 3, 1, 100, NULL);
    io->credit = (int) config_int (cfg, "worker_credit", 32, 1, BUS_CREDIT_MAX, NULL);
    if (io->heartbeat_ms <= 0)
        io->heartbeat_ms = 1000;
    if (io->liveness <= 0)
        io->liveness = 3;
    if (io->credit <= 0)
        io->credit = 32;
    io->drop_log.burst = 5;
    zactor_t *actor = zactor_new (s_worker_actor, io);
    if (!actor) {
        s_handoff_fini (&shared->to_executor);
        s_handoff_fini (&shared->to_io);
        free (w);
        free (io);
        free (shared);
        return NULL;
    }
    /*  The actor owns w, io and shared from here and frees them at its end. */
    char *ready = zstr_recv (actor);
    int ok = ready && strcmp (ready, "OK") == 0;
    zstr_free (&ready);
    if (!ok)
        zactor_destroy (&actor);
    return actor;
}

/* --- the process --- */

int
bus_service_main (bus_service_t *service, int argc, char **argv)
{
    config_t *cfg = config_load_or_exit (service->name, service->options, argc, argv);
    int status = 1;
    void *context = NULL;
    zactor_t *worker = NULL, *consumer = NULL;
    const char *data = config_str (cfg, "data");
    if (zsys_dir_create ("%s", data)) {
        log_error (NULL, "cannot create the data directory path=%s", data);
        goto out;
    }
    if (service->init && service->init (cfg, &context)) {
        log_error (NULL, "service refused to start service=%s", service->name);
        goto out;
    }
    /*  Migrate once before the actors open their own connections. */
    char path[1024], err[256];
    snprintf (path, sizeof path, "%s/%s.db", data, service->name);
    db_t *db = db_open (path, service->migrations, config_str (cfg, "sync"), err, sizeof err);
    if (!db) {
        log_error (NULL, "cannot open the database path=%s error=\"%s\"", path, err);
        goto out;
    }
    db_destroy (&db);
    worker = bus_worker_start (cfg, service, context);
    if (!worker)
        goto out;
    if (service->events) {
        consumer = event_consumer_start (cfg, service->name, path, service->events, context);
        if (!consumer)
            goto out;
    }
    log_info (NULL, "service running service=%s", service->name);
    while (!zsys_interrupted)
        zclock_sleep (100);
    log_info (NULL, "service stopping service=%s", service->name);
    status = 0;
out:
    zactor_destroy (&consumer);
    zactor_destroy (&worker);
    if (service->fini)
        service->fini (context);
    config_destroy (&cfg);
    return status;
}

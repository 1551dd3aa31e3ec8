/*  gw_auth: see gw_auth.h. */
#include "gw_auth.h"
#include "gw_ws.h"
#include "clock.h"
#include "identity.pb-c.h"
#include "log.h"

#include <sodium.h>
#include <string.h>

typedef struct {
    Bus__Caller *caller;        /* unpacked with malloc */
    int64_t expires;            /* monotonic ms */
} entry_t;

struct gw_auth_t {
    zhashx_t *cache;            /* hex sha256(token) -> entry_t* */
    int cache_ms;
    size_t max_entries;
    /*  Bumped by every drop. An answer to a lookup started before a drop
        may predate the revocation that caused it: it is used once, not
        cached. */
    uint64_t generation;
    /*  identity's events arrive in sequence; a gap means some were lost
        (broker restart, slow subscriber), so nothing cached can be trusted. */
    uint64_t identity_seq;
    char identity_epoch[64];
    /*  Missed ones, fetched again with sys.replay: [replay_next,
        replay_to], one page in flight at a time (replay_call, its context
        replay_ctx). A reply from before the fetch was called off (the
        epoch changed, events were lost) carries an older generation and
        is dropped. */
    uint64_t replay_next, replay_to;
    uint64_t replay_call;
    void *replay_ctx;
    uint64_t replay_gen;
    int beacons_ahead;          /* sys.head beacons in a row ahead of identity_seq */
};

typedef struct {
    gw_t *gw;
    uint64_t generation;
    uint64_t from;              /* the page's first seq */
} replay_ctx_t;

typedef struct {
    gw_t *gw;
    uint64_t req_id;
    gw_auth_done_fn *done;
    uint64_t generation;
    char key[crypto_hash_sha256_BYTES * 2 + 1];
} pending_t;

static void
s_entry_free (void **item)
{
    entry_t *e = *item;
    if (e) {
        bus__caller__free_unpacked (e->caller, NULL);
        free (e);
    }
    *item = NULL;
}

gw_auth_t *
gw_auth_new (int cache_ms, size_t max_entries)
{
    gw_auth_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->cache = zhashx_new ();
    zhashx_set_destructor (self->cache, s_entry_free);
    self->cache_ms = cache_ms;
    self->max_entries = max_entries ? max_entries : 100000;
    return self;
}

void
gw_auth_destroy (gw_auth_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zhashx_destroy (&(*self_p)->cache);
    free ((*self_p)->replay_ctx);   /* a fetch in flight: the bus client went first */
    free (*self_p);
    *self_p = NULL;
}

size_t
gw_auth_cached (gw_t *gw)
{
    return zhashx_size (gw->auth->cache);
}

static void
s_key (const char *token, char *out)
{
    unsigned char hash[crypto_hash_sha256_BYTES];
    crypto_hash_sha256 (hash, (const unsigned char *) token, strlen (token));
    sodium_bin2hex (out, crypto_hash_sha256_BYTES * 2 + 1, hash, sizeof hash);
}

/*  Removes entries matching a predicate (collected first: a zhashx may not
    change while it is being walked). */
static void
s_drop_where (gw_auth_t *self, const char *user_id, const char *session_id, int expired_only)
{
    if (!expired_only)
        self->generation++;
    zlistx_t *doomed = zlistx_new ();
    int64_t now = clock_mono_ms ();
    for (entry_t *e = zhashx_first (self->cache); e; e = zhashx_next (self->cache)) {
        int drop;
        if (expired_only)
            drop = e->expires <= now;
        else if (session_id)
            drop = strcmp (e->caller->session_id, session_id) == 0;
        else
            drop = strcmp (e->caller->user_id, user_id) == 0;
        if (drop)
            zlistx_add_end (doomed, (void *) zhashx_cursor (self->cache));
    }
    for (const char *key = zlistx_first (doomed); key; key = zlistx_next (doomed))
        zhashx_delete (self->cache, key);
    zlistx_destroy (&doomed);
}

static void
s_store (gw_auth_t *self, const char *key, const uint8_t *data, size_t len)
{
    if (self->cache_ms <= 0)
        return;
    if (zhashx_size (self->cache) >= self->max_entries) {
        s_drop_where (self, NULL, NULL, 1);
        if (zhashx_size (self->cache) >= self->max_entries)
            zhashx_purge (self->cache);
    }
    entry_t *e = calloc (1, sizeof *e);
    if (!e)
        return;
    e->caller = bus__caller__unpack (NULL, len, data);
    if (!e->caller) {
        free (e);
        return;
    }
    e->expires = clock_mono_ms () + self->cache_ms;
    zhashx_update (self->cache, key, e);
}

static void
s_on_reply (void *arg, const Bus__Reply *reply)
{
    pending_t *p = arg;
    gw_t *gw = p->gw;
    if (reply->status == ST_OK) {
        Bus__Caller *caller = bus__caller__unpack (NULL, reply->body.len, reply->body.data);
        if (caller && caller->user_id && *caller->user_id) {
            if (p->generation == gw->auth->generation)
                s_store (gw->auth, p->key, reply->body.data, reply->body.len);
            p->done (gw, p->req_id, caller, ST_OK);
        }
        else
            p->done (gw, p->req_id, NULL, ST_UNAUTHORIZED);
        if (caller)
            bus__caller__free_unpacked (caller, NULL);
    }
    else if (reply->status == ST_UNAUTHORIZED || reply->status == ST_NOT_FOUND)
        p->done (gw, p->req_id, NULL, ST_UNAUTHORIZED);
    else
        p->done (gw, p->req_id, NULL, reply->status);
    free (p);
}

void
gw_auth_resolve (gw_t *gw, const char *token, const char *ip, const char *user_agent,
                 const char *trace, uint64_t req_id, gw_auth_done_fn *done)
{
    char key[crypto_hash_sha256_BYTES * 2 + 1];
    s_key (token, key);
    entry_t *e = zhashx_lookup (gw->auth->cache, key);
    if (e && e->expires > clock_mono_ms ()) {
        done (gw, req_id, e->caller, ST_OK);
        return;
    }
    if (e)
        zhashx_delete (gw->auth->cache, key);
    pending_t *p = calloc (1, sizeof *p);
    if (!p) {
        done (gw, req_id, NULL, ST_UNAVAILABLE);
        return;
    }
    p->gw = gw;
    p->req_id = req_id;
    p->done = done;
    p->generation = gw->auth->generation;
    memcpy (p->key, key, sizeof key);
    Identity__AuthenticateRequest req = IDENTITY__AUTHENTICATE_REQUEST__INIT;
    req.token = (char *) token;
    req.ip = (char *) (ip ? ip : "");
    req.user_agent = (char *) (user_agent ? user_agent : "");
    bus_call_opts_t opts = {.timeout_ms = 3000, .flags = BUS_CALL_RETRY, .trace_id = trace};
    if (!bus_client_send (gw->bus, "identity", "identity.authenticate", &req.base, &opts, s_on_reply,
                          p)) {
        free (p);
        done (gw, req_id, NULL, ST_UNAVAILABLE);
        return;
    }
    gw_bus_kick (gw);
}

/*  What an identity event makes stale in the cache. */
static void
s_apply (gw_t *gw, const Ev__Event *event)
{
    if (strcmp (event->type, "identity.session.revoked") == 0) {
        Identity__SessionRevoked *p
            = identity__session_revoked__unpack (NULL, event->payload.len, event->payload.data);
        if (p) {
            s_drop_where (gw->auth, NULL, p->session_id, 0);
            identity__session_revoked__free_unpacked (p, NULL);
        }
    }
    else if (strncmp (event->type, "identity.role.", 14) == 0
             || strcmp (event->type, "identity.teacher.verified") == 0) {
        Identity__RoleChanged *p
            = identity__role_changed__unpack (NULL, event->payload.len, event->payload.data);
        if (p) {
            if (p->user_id && *p->user_id)
                s_drop_where (gw->auth, p->user_id, NULL, 0);
            identity__role_changed__free_unpacked (p, NULL);
        }
    }
}

/*  Calls off a fetch in progress: its reply, if it comes, is dropped. */
static void
s_replay_stop (gw_t *gw)
{
    gw_auth_t *self = gw->auth;
    if (self->replay_call) {
        bus_client_cancel (gw->bus, self->replay_call);
        free (self->replay_ctx);
    }
    self->replay_call = 0;
    self->replay_ctx = NULL;
    self->replay_gen++;
    self->replay_next = self->replay_to = 0;
}

/*  Missed events that cannot be had again (pruned, identity's database is
    new, identity does not answer): nothing cached can be trusted, and
    every socket's token is checked again. */
static void
s_lost_events (gw_t *gw, const char *why)
{
    gw_auth_t *self = gw->auth;
    log_warn (NULL, "identity events were lost (%s): dropping every cached caller and checking "
              "every WebSocket's token again", why);
    s_replay_stop (gw);
    self->generation++;
    zhashx_purge (self->cache);
    gw_ws_recheck_all (gw);
}

static void s_replay_page (gw_t *gw);

static void
s_replay_done (void *arg, const Bus__Reply *reply)
{
    replay_ctx_t ctx = *(replay_ctx_t *) arg;
    free (arg);
    gw_t *gw = ctx.gw;
    gw_auth_t *self = gw->auth;
    if (self->replay_ctx == arg) {
        self->replay_call = 0;
        self->replay_ctx = NULL;
    }
    if (gw->stopping || ctx.generation != self->replay_gen)
        return;
    Bus__ReplayReply *r = NULL;
    if (reply->status == ST_OK)
        r = bus__replay_reply__unpack (NULL, reply->body.len, reply->body.data);
    if (!r) {
        s_lost_events (gw, reply->status == ST_OK ? "an unreadable replay" : status_name (reply->status));
        return;
    }
    const char *lost = NULL;
    uint64_t next = ctx.from;
    if (strcmp (r->epoch ? r->epoch : "", self->identity_epoch) != 0)
        lost = "identity's outbox has a new epoch";
    else if (r->oldest > next)
        lost = "pruned before they could be fetched";
    /*  Events come in order from `from` on, without holes (the outbox's
        sequence has none); anything else means some cannot be had. */
    for (size_t i = 0; !lost && i < r->n_events; i++) {
        Ev__Event *e = ev__event__unpack (NULL, r->events[i].len, r->events[i].data);
        if (!e || !e->type)
            lost = "an unreadable event in the replay";
        else if (e->seq > next)
            lost = "a hole in the replay";
        else if (e->seq == next && next <= self->replay_to) {
            if (strncmp (e->type, "identity.", 9) == 0) {
                s_apply (gw, e);
                gw_ws_on_event (gw, e);
            }
            next = e->seq + 1;
        }
        if (e)
            ev__event__free_unpacked (e, NULL);
    }
    int empty = r->n_events == 0;
    bus__replay_reply__free_unpacked (r, NULL);
    if (lost) {
        s_lost_events (gw, lost);
        return;
    }
    self->replay_next = next;
    if (next <= self->replay_to && !empty)
        s_replay_page (gw);
    else {
        if (next <= self->replay_to)
            log_warn (NULL, "identity's outbox ends before seq=%llu (fetched up to %llu)",
                      (unsigned long long) self->replay_to, (unsigned long long) next - 1);
        else
            log_info (NULL, "identity events fetched again up to seq=%llu",
                      (unsigned long long) self->replay_to);
        self->replay_next = self->replay_to = 0;
    }
}

static void
s_replay_page (gw_t *gw)
{
    gw_auth_t *self = gw->auth;
    replay_ctx_t *ctx = malloc (sizeof *ctx);
    if (!ctx) {
        s_lost_events (gw, "out of memory");
        return;
    }
    *ctx = (replay_ctx_t) {gw, self->replay_gen, self->replay_next};
    Bus__ReplayRequest req = BUS__REPLAY_REQUEST__INIT;
    req.from_seq = self->replay_next;
    uint64_t want = self->replay_to - self->replay_next + 1;
    req.limit = want < 500 ? (uint32_t) want : 500;
    bus_call_opts_t opts = {.timeout_ms = 5000, .flags = BUS_CALL_RETRY};
    self->replay_call = bus_client_send (gw->bus, "identity", "sys.replay", &req.base, &opts,
                                         s_replay_done, ctx);
    if (!self->replay_call) {
        free (ctx);
        s_lost_events (gw, "sys.replay could not be sent");
        return;
    }
    self->replay_ctx = ctx;
    gw_bus_kick (gw);
}

/*  Events from..to were missed: fetch them. Gaps are found above the last
    seq seen, so a new one lies above any range being fetched: the range
    grows, and the fetch in progress goes on to its end. */
static void
s_missed (gw_t *gw, uint64_t from, uint64_t to)
{
    gw_auth_t *self = gw->auth;
    log_warn (NULL, "identity events were missed, fetching them again from=%llu to=%llu",
              (unsigned long long) from, (unsigned long long) to);
    /*  Until they are here, nothing cached can be trusted. */
    self->generation++;
    zhashx_purge (self->cache);
    if (self->replay_to && self->replay_next <= self->replay_to) {
        if (to > self->replay_to)
            self->replay_to = to;
        if (self->replay_call)
            return;
    }
    else {
        self->replay_next = from;
        self->replay_to = to;
    }
    s_replay_page (gw);
}

void
gw_auth_on_event (gw_t *gw, const Ev__Event *event)
{
    if (!event->source || strcmp (event->source, "identity") != 0 || !event->type || !event->epoch)
        return;
    gw_auth_t *self = gw->auth;
    int beacon = strcmp (event->type, "sys.head") == 0;
    if (!beacon && strncmp (event->type, "identity.", 9) != 0)
        return;
    int new_epoch = strcmp (self->identity_epoch, event->epoch) != 0;
    if (!self->identity_epoch[0]) {
        /*  The first word from identity: where we start (nothing cached
            predates it that an event could concern). */
        snprintf (self->identity_epoch, sizeof self->identity_epoch, "%s", event->epoch);
        self->identity_seq = beacon || !event->seq ? event->seq : event->seq - 1;
        new_epoch = 0;
    }
    if (new_epoch) {
        snprintf (self->identity_epoch, sizeof self->identity_epoch, "%s", event->epoch);
        self->identity_seq = beacon ? event->seq : event->seq ? event->seq - 1 : 0;
        self->beacons_ahead = 0;
        s_lost_events (gw, "identity's outbox has a new epoch");
    }
    if (beacon) {
        /*  One beacon ahead is normal (its events may still be on their
            way); two in a row means they were lost (docs/bus.md §14.3). */
        if (event->seq > self->identity_seq && ++self->beacons_ahead >= 2) {
            s_missed (gw, self->identity_seq + 1, event->seq);
            self->identity_seq = event->seq;
            self->beacons_ahead = 0;
        }
        else if (event->seq <= self->identity_seq)
            self->beacons_ahead = 0;
        return;
    }
    if (event->seq > self->identity_seq + 1)
        s_missed (gw, self->identity_seq + 1, event->seq - 1);
    if (event->seq > self->identity_seq)
        self->identity_seq = event->seq;
    s_apply (gw, event);
}

void
gw_auth_drop_session (gw_t *gw, const char *session_id)
{
    if (session_id && *session_id)
        s_drop_where (gw->auth, NULL, session_id, 0);
}

void
gw_auth_drop_user (gw_t *gw, const char *user_id)
{
    if (user_id && *user_id)
        s_drop_where (gw->auth, user_id, NULL, 0);
}

/*  gw_auth: see gw_auth.h. */
#include "gw_auth.h"
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
};

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

void
gw_auth_on_event (gw_t *gw, const Ev__Event *event)
{
    if (strncmp (event->type, "identity.", 9) != 0 || strcmp (event->source, "identity") != 0)
        return;
    gw_auth_t *self = gw->auth;
    int new_epoch = strcmp (self->identity_epoch, event->epoch) != 0;
    if (self->identity_seq && (new_epoch || event->seq > self->identity_seq + 1)) {
        /*  Missed some: a revocation may be among them. */
        log_warn (NULL, "identity events were missed, dropping every cached caller last=%llu now=%llu",
                  (unsigned long long) self->identity_seq, (unsigned long long) event->seq);
        self->generation++;
        zhashx_purge (self->cache);
    }
    if (new_epoch || event->seq > self->identity_seq) {
        self->identity_seq = event->seq;
        snprintf (self->identity_epoch, sizeof self->identity_epoch, "%s", event->epoch);
    }
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

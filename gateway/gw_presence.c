/*  gw_presence: see gw_presence.h. Every Redis write here is fire and
    forget: presence is advisory, and a write lost while Redis is down is
    made good by the next refresh (which runs at once when Redis comes
    back). */
#include "gw_presence.h"
#include "chat.pb-c.h"
#include "clock.h"
#include "gw_metrics.h"
#include "gw_redis.h"
#include "gw_ws.h"
#include "log.h"

#include <jansson.h>
#include <string.h>

#define KEY_ONLINE "presence:online"
#define KEY_LAST_SEEN "presence:last_seen"
#define REFRESH_BATCH 256               /* users per refresh script call */
#define SWEEP_BATCH "1000"              /* expired members moved per sweep */

/*  Several gateways may hold sockets of one user. presence:at:{user} is a
    sorted set of the gateways (by instance id) holding the user, each
    scored with the expiry it vouches for; the user's score in the online
    set is the latest of them. presence:gw:{instance} says a gateway is
    alive: set with a short lifetime on every tick and every hold, deleted
    when it stops, so that a gateway that stopped or died no longer keeps
    its users online once their sockets elsewhere close. The key names are
    made in the scripts (one Redis, not a cluster). */

/*  ARGV: instance, expiry (unix ms), ttl (ms), alive ttl (ms), then users:
    each is held by this gateway until the expiry. */
static const char *s_hold_script
    = "redis.call('SET', 'presence:gw:' .. ARGV[1], '1', 'PX', ARGV[4])\n"
      "for i = 5, #ARGV do\n"
      "  local user = ARGV[i]\n"
      "  local held = 'presence:at:' .. user\n"
      "  redis.call('ZADD', held, ARGV[2], ARGV[1])\n"
      "  redis.call('PEXPIRE', held, ARGV[3])\n"
      "  local score = redis.call('ZSCORE', KEYS[1], user)\n"
      "  if not score or tonumber(score) < tonumber(ARGV[2]) then\n"
      "    redis.call('ZADD', KEYS[1], ARGV[2], user)\n"
      "  end\n"
      "end\n"
      "return #ARGV - 4\n";

/*  Gateway `inst` no longer holds `user` (at `now`): 1 when no live
    gateway does any more (the user went offline, last seen now), 0 when
    another still vouches for them (the online score becomes the latest of
    theirs). Entries that expired, or of gateways no longer alive, go. */
#define RELEASE_FUNCTION                                                                    \
    "local function release(inst, now, user)\n"                                             \
    "  local held = 'presence:at:' .. user\n"                                               \
    "  redis.call('ZREM', held, inst)\n"                                                    \
    "  redis.call('ZREMRANGEBYSCORE', held, '-inf', '(' .. now)\n"                          \
    "  local top = nil\n"                                                                   \
    "  for _, other in ipairs(redis.call('ZRANGE', held, 0, -1)) do\n"                      \
    "    if redis.call('EXISTS', 'presence:gw:' .. other) == 1 then\n"                      \
    "      local score = tonumber(redis.call('ZSCORE', held, other))\n"                     \
    "      if not top or score > top then top = score end\n"                                \
    "    else\n"                                                                            \
    "      redis.call('ZREM', held, other)\n"                                               \
    "    end\n"                                                                             \
    "  end\n"                                                                               \
    "  if top then\n"                                                                       \
    "    redis.call('ZADD', KEYS[1], top, user)\n"                                          \
    "    return 0\n"                                                                        \
    "  end\n"                                                                               \
    "  redis.call('DEL', held)\n"                                                           \
    "  redis.call('ZREM', KEYS[1], user)\n"                                                 \
    "  redis.call('HSET', KEYS[2], user, now)\n"                                            \
    "  return 1\n"                                                                          \
    "end\n"

/*  ARGV: instance, now (unix ms), user. */
static const char *s_release_script = RELEASE_FUNCTION "return release(ARGV[1], ARGV[2], ARGV[3])\n";

/*  A gateway stopping: no longer alive, and none of its users (ARGV from
    3 on) held by it. */
static const char *s_leave_script
    = RELEASE_FUNCTION
      "redis.call('DEL', 'presence:gw:' .. ARGV[1])\n"
      "for i = 3, #ARGV do release(ARGV[1], ARGV[2], ARGV[i]) end\n"
      "return #ARGV - 2\n";

/*  Moves members whose expiry has passed from the online set to the
    last-seen hash, as one step so that a refresh cannot interleave. Their
    last-seen time is their last refresh (expiry minus the TTL): the last
    moment a gateway vouched for them. The online score is the latest of
    the gateways' expiries, so every gateway's claim has lapsed too. */
static const char *s_sweep_script
    = "local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, "
      "ARGV[3])\n"
      "for _, user in ipairs(gone) do\n"
      "  local score = tonumber(redis.call('ZSCORE', KEYS[1], user))\n"
      "  if score then\n"
      "    redis.call('HSET', KEYS[2], user, string.format('%.0f', score - tonumber(ARGV[2])))\n"
      "  end\n"
      "  redis.call('ZREM', KEYS[1], user)\n"
      "  redis.call('DEL', 'presence:at:' .. user)\n"
      "end\n"
      "return #gone\n";

/*  Each member's expiry score and last-seen time, in one round trip and
    on any Redis version (ZMSCORE needs 6.2): a flat array of 2N replies,
    nil where there is nothing. */
static const char *s_read_script
    = "local out = {}\n"
      "for i, user in ipairs(ARGV) do\n"
      "  out[2 * i - 1] = redis.call('ZSCORE', KEYS[1], user)\n"
      "  out[2 * i] = redis.call('HGET', KEYS[2], user)\n"
      "end\n"
      "return out\n";

static struct {
    gw_t *gw;
    lws_sorted_usec_list_t timer;
    int64_t last_refresh_ms;    /* monotonic */
    int redis_was_up;
    log_limit_t log;
} s_presence;

static void
s_ignore (gw_t *gw, redisReply *reply, void *arg)
{
    (void) gw;
    (void) arg;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        unsigned long suppressed;
        if (log_limit_allow (&s_presence.log, &suppressed))
            log_warn (NULL, "redis presence command failed error=\"%.100s\" suppressed=%lu",
                      reply->str, suppressed);
    }
}

void
gw_presence_online (gw_t *gw, const char *user_id)
{
    char expiry[32], ttl[32], alive[32];
    snprintf (expiry, sizeof expiry, "%lld", (long long) (clock_now_ms () + GW_PRESENCE_TTL_MS));
    snprintf (ttl, sizeof ttl, "%d", GW_PRESENCE_TTL_MS);
    snprintf (alive, sizeof alive, "%d", GW_PRESENCE_ALIVE_MS);
    const char *argv[] = {"EVAL", s_hold_script, "1", KEY_ONLINE, gw->instance, expiry, ttl,
                          alive, user_id};
    gw_redis_command (gw->redis, s_ignore, NULL, 9, argv, NULL);
}

typedef struct {
    gw_presence_gone_fn *fn;
    void *arg;
} release_t;

static void
s_released (gw_t *gw, redisReply *reply, void *arg)
{
    release_t *r = arg;
    /*  No answer (Redis went away meanwhile): nobody can say whether
        another gateway holds the user, so nothing is said (-1). */
    int gone = -1;
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        gone = reply->integer != 0;
    else
        s_ignore (gw, reply, NULL);
    r->fn (gw, gone, r->arg);
    free (r);
}

int
gw_presence_offline (gw_t *gw, const char *user_id, int64_t now_ms, gw_presence_gone_fn *fn,
                     void *arg)
{
    release_t *r = malloc (sizeof *r);
    if (!r)
        return -1;
    r->fn = fn;
    r->arg = arg;
    char at[32];
    snprintf (at, sizeof at, "%lld", (long long) now_ms);
    const char *argv[] = {"EVAL", s_release_script, "2", KEY_ONLINE, KEY_LAST_SEEN,
                          gw->instance, at, user_id};
    if (gw_redis_command (gw->redis, s_released, r, 8, argv, NULL)) {
        free (r);
        return -1;
    }
    return 0;
}

/* --- the periodic refresh and sweep --- */

#define BATCH_HEAD 8                    /* EVAL script 1 key instance expiry ttl alive */

typedef struct {
    gw_t *gw;
    char expiry[32], ttl[32], alive[32];
    const char *argv[BATCH_HEAD + REFRESH_BATCH];
    int argc;
} batch_t;

static void
s_batch_flush (batch_t *b)
{
    if (b->argc > BATCH_HEAD)
        gw_redis_command (b->gw->redis, s_ignore, NULL, b->argc, b->argv, NULL);
    b->argc = BATCH_HEAD;
}

static void
s_batch_add (const char *user_id, void *arg)
{
    batch_t *b = arg;
    b->argv[b->argc++] = user_id;
    if (b->argc == (int) (sizeof b->argv / sizeof b->argv[0]))
        s_batch_flush (b);
}

/*  One script call per REFRESH_BATCH users; hiredis pipelines them (each
    is sent without waiting for the previous answer). User ids are
    borrowed from gw_ws only while the commands are formatted, which
    hiredis does at once. */
static void
s_refresh (gw_t *gw)
{
    batch_t *b = malloc (sizeof *b);
    if (!b)
        return;
    b->gw = gw;
    snprintf (b->expiry, sizeof b->expiry, "%lld",
              (long long) (clock_now_ms () + GW_PRESENCE_TTL_MS));
    snprintf (b->ttl, sizeof b->ttl, "%d", GW_PRESENCE_TTL_MS);
    snprintf (b->alive, sizeof b->alive, "%d", GW_PRESENCE_ALIVE_MS);
    const char *head[BATCH_HEAD] = {"EVAL", s_hold_script, "1", KEY_ONLINE, gw->instance,
                                    b->expiry, b->ttl, b->alive};
    memcpy (b->argv, head, sizeof head);
    b->argc = BATCH_HEAD;
    gw_ws_each_user (s_batch_add, b);
    s_batch_flush (b);
    free (b);
}

static void
s_sweep (gw_t *gw)
{
    char now[32], ttl[32];
    snprintf (now, sizeof now, "%lld", (long long) clock_now_ms ());
    snprintf (ttl, sizeof ttl, "%d", GW_PRESENCE_TTL_MS);
    const char *argv[] = {"EVAL", s_sweep_script, "2", KEY_ONLINE, KEY_LAST_SEEN, now, ttl, SWEEP_BATCH};
    gw_redis_command (gw->redis, s_ignore, NULL, 8, argv, NULL);
}

static void
s_tick (lws_sorted_usec_list_t *sul)
{
    (void) sul;
    gw_t *gw = s_presence.gw;
    if (!gw || gw->stopping)
        return;
    int up = gw_redis_up (gw->redis);
    int64_t now = clock_mono_ms ();
    /*  Redis just came back (or lost its data): put our users back now
        rather than up to a refresh period later. */
    if (up && (!s_presence.redis_was_up
               || now - s_presence.last_refresh_ms >= GW_PRESENCE_REFRESH_MS - 500)) {
        s_refresh (gw);
        s_presence.last_refresh_ms = now;
    }
    if (up) {
        char alive[32];
        snprintf (alive, sizeof alive, "%d", GW_PRESENCE_ALIVE_MS);
        char key[64];
        snprintf (key, sizeof key, "presence:gw:%s", gw->instance);
        const char *argv[] = {"SET", key, "1", "PX", alive};
        gw_redis_command (gw->redis, s_ignore, NULL, 5, argv, NULL);
        s_sweep (gw);
    }
    s_presence.redis_was_up = up;
    lws_sul_schedule (gw->lws, 0, &s_presence.timer, s_tick, GW_PRESENCE_SWEEP_MS * LWS_US_PER_MS);
}

void
gw_presence_start (gw_t *gw)
{
    s_presence.gw = gw;
    s_presence.log.burst = 2;
    s_presence.redis_was_up = 0;
    lws_sul_schedule (gw->lws, 0, &s_presence.timer, s_tick, GW_PRESENCE_SWEEP_MS * LWS_US_PER_MS);
}

typedef struct {
    const char **argv;
    size_t argc, cap;
} leave_t;

static void
s_leave_add (const char *user_id, void *arg)
{
    leave_t *l = arg;
    if (l->argc < l->cap)
        l->argv[l->argc++] = user_id;
}

/*  The gateway stops (the loop no longer runs): its users are released at
    once, on a short-lived blocking connection, rather than kept online by
    its entries until they expire; users with sockets on another gateway
    stay online. Best effort: without Redis the entries expire. */
static void
s_leave (gw_t *gw)
{
    redisContext *c = gw_redis_connect_blocking (config_str (gw->cfg, "redis"), 500);
    if (!c)
        return;
    size_t cap = 6 + GW_PRESENCE_LEAVE_MAX;
    leave_t l = {calloc (cap, sizeof (char *)), 0, cap};
    char now[32];
    snprintf (now, sizeof now, "%lld", (long long) clock_now_ms ());
    if (l.argv) {
        const char *head[] = {"EVAL", s_leave_script, "2", KEY_ONLINE, KEY_LAST_SEEN, gw->instance, now};
        for (size_t i = 0; i < sizeof head / sizeof head[0]; i++)
            l.argv[l.argc++] = head[i];
        gw_ws_each_user (s_leave_add, &l);
        redisReply *reply = redisCommandArgv (c, (int) l.argc, l.argv, NULL);
        if (!reply || reply->type == REDIS_REPLY_ERROR)
            log_warn (NULL, "could not release this gateway's users from presence error=\"%s\"",
                      reply ? reply->str : c->errstr);
        else
            log_info (NULL, "released this gateway's users from presence users=%zu", l.argc - 7);
        if (reply)
            freeReplyObject (reply);
        free (l.argv);
    }
    redisFree (c);
}

void
gw_presence_stop (gw_t *gw)
{
    if (s_presence.gw) {
        lws_sul_cancel (&s_presence.timer);
        s_leave (gw);
    }
    s_presence.gw = NULL;
}

/* --- GET /v1/chats/{chat_id}/presence --- */

typedef struct {
    gw_t *gw;
    uint64_t req_id;
    size_t n;
    char **user_ids;            /* n, malloc'd */
} presence_req_t;

static void
s_presence_req_free (presence_req_t *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        free (p->user_ids[i]);
    free (p->user_ids);
    free (p);
}

static int64_t
s_reply_ms (const redisReply *r, int *ok)
{
    *ok = 0;
    if (!r || r->type != REDIS_REPLY_STRING || r->len <= 0 || r->len > 30)
        return 0;
    char text[32];
    memcpy (text, r->str, (size_t) r->len);
    text[r->len] = 0;
    char *end;
    double v = strtod (text, &end);
    if (*end || v != v || v < 0 || v > 9e15)
        return 0;
    *ok = 1;
    return (int64_t) v;
}

/*  The reply body. `reply` is the read script's answer, or NULL (Redis
    down, or an answer of the wrong shape): every member is unknown. */
static json_t *
s_items (const presence_req_t *p, const redisReply *reply)
{
    int known = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 * p->n;
    int64_t now = clock_now_ms ();
    json_t *items = json_array ();
    for (size_t i = 0; i < p->n; i++) {
        json_t *online = json_null (), *last_seen = json_null ();
        if (known) {
            int has_score, has_seen;
            int64_t expires = s_reply_ms (reply->element[2 * i], &has_score);
            int64_t seen = s_reply_ms (reply->element[2 * i + 1], &has_seen);
            int is_online = has_score && expires > now;
            online = json_boolean (is_online);
            /*  An entry that expired but was not swept yet: its last
                refresh is when the user was last seen. */
            if (!is_online && !has_seen && has_score) {
                seen = expires - GW_PRESENCE_TTL_MS;
                has_seen = 1;
            }
            if (!is_online && has_seen && seen > 0) {
                char at[40];
                clock_format_rfc3339 (seen - seen % 1000, at, sizeof at);
                last_seen = json_string (at);
            }
        }
        json_array_append_new (items, json_pack ("{s:s, s:o, s:o}", "user_id", p->user_ids[i],
                                                 "online", online, "last_seen_at", last_seen));
    }
    return json_pack ("{s:o}", "items", items);
}

static void
s_read_done (gw_t *gw, redisReply *reply, void *arg)
{
    presence_req_t *p = arg;
    gw_req_t *req = gw_req_find (gw, p->req_id);
    if (req) {
        if (reply && reply->type == REDIS_REPLY_ERROR) {
            unsigned long suppressed;
            if (log_limit_allow (&s_presence.log, &suppressed))
                log_warn (gw_req_trace (req), "redis presence read failed error=\"%.100s\"",
                          reply->str);
            reply = NULL;
        }
        gw_reply_json (req, 200, s_items (p, reply));
    }
    s_presence_req_free (p);
}

/*  chat.audience answered (gw_req_call: only while the request lives). */
static void
s_audience_done (gw_req_t *req, const Bus__Reply *reply, void *arg)
{
    (void) arg;
    gw_t *gw = gw_req_gw (req);
    if (reply->status != ST_OK) {
        gw_reply_bus_error (req, reply);
        return;
    }
    Chat__AudienceReply *audience
        = chat__audience_reply__unpack (NULL, reply->body.len, reply->body.data);
    if (!audience) {
        log_error (gw_req_trace (req), "reply does not decode method=chat.audience");
        gw_reply_error (req, 500, "internal", "the service's reply could not be read", NULL);
        return;
    }
    presence_req_t *p = calloc (1, sizeof *p);
    if (!p) {
        chat__audience_reply__free_unpacked (audience, NULL);
        gw_reply_error (req, 503, "unavailable", "out of memory", NULL);
        return;
    }
    p->gw = gw;
    p->req_id = gw_req_id (req);
    /*  chat.audience answers members only; check anyway (deny by default). */
    int member = 0;
    for (size_t i = 0; i < audience->n_user_ids; i++)
        if (audience->user_ids[i] && strcmp (audience->user_ids[i], gw_req_user (req)) == 0)
            member = 1;
    if (!member) {
        chat__audience_reply__free_unpacked (audience, NULL);
        gw_reply_error (req, 403, "forbidden", "you are not a member of this chat", NULL);
        s_presence_req_free (p);
        return;
    }
    size_t n = audience->n_user_ids < GW_PRESENCE_MAX_ITEMS ? audience->n_user_ids
                                                            : GW_PRESENCE_MAX_ITEMS;
    p->user_ids = calloc (n ? n : 1, sizeof *p->user_ids);
    for (size_t i = 0; p->user_ids && i < n; i++) {
        p->user_ids[p->n] = strdup (audience->user_ids[i] ? audience->user_ids[i] : "");
        if (p->user_ids[p->n])
            p->n++;
    }
    chat__audience_reply__free_unpacked (audience, NULL);
    if (!p->user_ids || p->n != n) {
        gw_reply_error (req, 503, "unavailable", "out of memory", NULL);
        s_presence_req_free (p);
        return;
    }
    /*  EVAL script 2 online last_seen user... */
    const char **argv = calloc (5 + p->n, sizeof *argv);
    if (!argv) {
        gw_reply_error (req, 503, "unavailable", "out of memory", NULL);
        s_presence_req_free (p);
        return;
    }
    argv[0] = "EVAL";
    argv[1] = s_read_script;
    argv[2] = "2";
    argv[3] = KEY_ONLINE;
    argv[4] = KEY_LAST_SEEN;
    for (size_t i = 0; i < p->n; i++)
        argv[5 + i] = p->user_ids[i];
    int sent = p->n > 0
               && gw_redis_command (gw->redis, s_read_done, p, (int) (5 + p->n), argv, NULL) == 0;
    free (argv);
    if (!sent) {
        /*  Redis is down: everyone is unknown, and the answer is still 200. */
        gw_reply_json (req, 200, s_items (p, NULL));
        s_presence_req_free (p);
    }
}

void
gw_presence_http (gw_req_t *req)
{
    gw_t *gw = gw_req_gw (req);
    const char *chat_id = gw_req_param (req, "chat_id");
    if (!chat_id || !*chat_id || strlen (chat_id) > 64) {
        gw_reply_error (req, 400, "bad_request", "chat_id must be a chat's id", "chat_id");
        return;
    }
    Chat__AudienceRequest msg = CHAT__AUDIENCE_REQUEST__INIT;
    msg.chat_id = (char *) chat_id;
    gw_req_call (req, "chat", "chat.audience", &msg.base, gw->call_timeout_ms, s_audience_done, NULL);
}

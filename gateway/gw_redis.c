/*  gw_redis: hiredis's asynchronous API on the gateway's event loop,
    through hiredis's own libev adapter (see gw_redis.h). */
#include "gw_redis.h"
#include "clock.h"
#include "gw_metrics.h"
#include "log.h"

#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <string.h>

#define RECONNECT_MS 1000
#define CHECK_MS 100
#define ANSWER_WITHIN_MS 250
#define MAX_PENDING 4096
#define SUBSCRIBE_WITHIN_MS 2000

struct gw_redis_t {
    gw_t *gw;
    char *where;
    char *script;
    redisAsyncContext *ac;
    int connected;
    int64_t connected_at;       /* monotonic ms */
    int up;
    char sha[48];
    ev_timer reconnect_timer;
    ev_timer check_timer;       /* every CHECK_MS while not stopping */
    /*  Send times of commands awaiting answers, oldest first (Redis answers
        in order), to notice a Redis that accepts but does not answer. */
    int64_t sent[MAX_PENDING];
    size_t head, count;
    log_limit_t log;
    /*  A subscriber (gw_redis_subscriber): the channel it listens on, and
        what is called with each message. It sends no other command. */
    char *channel;
    gw_redis_message_fn *on_message;
    void *message_arg;
};

typedef struct {
    gw_redis_t *redis;
    gw_redis_fn *fn;
    void *arg;
} pending_t;

static void s_connect (gw_redis_t *self);
void gw_redis_drop (gw_redis_t *self);

static void
s_reconnect_timer (struct ev_loop *loop, ev_timer *timer, int revents)
{
    (void) loop;
    (void) revents;
    s_connect (timer->data);
}

static void
s_set_up (gw_redis_t *self, int up)
{
    if (self->up != up) {
        unsigned long suppressed;
        if (log_limit_allow (&self->log, &suppressed))
            log_info (NULL, "redis %s where=%s", up ? "up" : "down", self->where);
    }
    self->up = up;
    if (!self->channel)
        gw_metrics_redis (self->gw->metrics, up);
}

static void
s_lost (gw_redis_t *self)
{
    self->connected = 0;
    self->ac = NULL;
    self->count = 0;
    s_set_up (self, 0);
    if (!self->gw->stopping)
        gw_timer_after (self->gw, &self->reconnect_timer, RECONNECT_MS);
}

/* --- connection --- */

static void
s_on_script (redisAsyncContext *ac, void *r, void *data)
{
    (void) ac;
    gw_redis_t *self = data;
    redisReply *reply = r;
    if (self->count)
        self->count--, self->head = (self->head + 1) % MAX_PENDING;
    if (reply && reply->type == REDIS_REPLY_STRING && reply->len < (int) sizeof self->sha) {
        memcpy (self->sha, reply->str, (size_t) reply->len);
        self->sha[reply->len] = 0;
        s_set_up (self, 1);
    }
    else if (reply)
        log_error (NULL, "redis refused the rate-limit script error=\"%s\"",
                   reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
}

/*  Every reply of a subscriber's SUBSCRIBE: the confirmation, then one
    ["message", channel, payload] per message; NULL when the connection
    ends. */
static void
s_on_subscribed (redisAsyncContext *ac, void *r, void *data)
{
    (void) ac;
    gw_redis_t *self = data;
    redisReply *reply = r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str;
    if (strcmp (kind, "subscribe") == 0)
        s_set_up (self, 1);
    else if (strcmp (kind, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING)
        self->on_message (self->gw, reply->element[2]->str, (size_t) reply->element[2]->len,
                          self->message_arg);
}

static void
s_on_connect (const redisAsyncContext *ac, int status)
{
    gw_redis_t *self = ac->data;
    if (status != REDIS_OK) {
        /*  hiredis frees the context after this callback. */
        s_lost (self);
        return;
    }
    self->connected = 1;
    self->connected_at = clock_mono_ms ();
    /*  A peer that vanished (host down, network cut) is noticed by the
        kernel's keepalive on TCP; on a unix socket this does nothing. */
    if (ac->c.connection_type == REDIS_CONN_TCP)
        redisEnableKeepAlive ((redisContext *) &ac->c);
    if (self->channel) {
        /*  Not counted among the commands awaiting answers: the
            subscription answers for as long as it lasts. Not confirmed
            within SUBSCRIBE_WITHIN_MS, the connection is dropped (the
            check timer) and made again. */
        const char *argv[] = {"SUBSCRIBE", self->channel};
        redisAsyncCommandArgv ((redisAsyncContext *) ac, s_on_subscribed, self, 2, argv, NULL);
    }
    else if (self->script) {
        const char *argv[] = {"SCRIPT", "LOAD", self->script};
        self->sent[(self->head + self->count++) % MAX_PENDING] = clock_mono_ms ();
        redisAsyncCommandArgv ((redisAsyncContext *) ac, s_on_script, self, 3, argv, NULL);
    }
    else
        s_set_up (self, 1);
}

static void
s_on_disconnect (const redisAsyncContext *ac, int status)
{
    (void) status;
    gw_redis_t *self = ac->data;
    if (self->ac == ac)
        s_lost (self);
}

/*  1 with host and port when `where` names a TCP address (redis://host:port
    or host:port), 0 for a unix socket path. */
static int
s_where_tcp (const char *w, char *host, size_t size, int *port)
{
    if (!(strncmp (w, "redis://", 8) == 0 || (w[0] != '/' && strchr (w, ':') && !strchr (w, '/'))))
        return 0;
    snprintf (host, size, "%s", strncmp (w, "redis://", 8) == 0 ? w + 8 : w);
    char *colon = strrchr (host, ':');
    *port = 6379;
    if (colon) {
        *colon = 0;
        *port = atoi (colon + 1);
    }
    char *slash = strchr (host, '/');
    if (slash)
        *slash = 0;
    return 1;
}

redisContext *
gw_redis_connect_blocking (const char *where, int timeout_ms)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    char host[256];
    int port;
    redisContext *c = s_where_tcp (where, host, sizeof host, &port)
                          ? redisConnectWithTimeout (host, port, tv)
                          : redisConnectUnixWithTimeout (where, tv);
    if (c && (c->err || redisSetTimeout (c, tv) != REDIS_OK)) {
        redisFree (c);
        c = NULL;
    }
    return c;
}

static void
s_connect (gw_redis_t *self)
{
    if (self->ac || self->gw->stopping)
        return;
    redisAsyncContext *ac;
    char host[256];
    int port;
    if (s_where_tcp (self->where, host, sizeof host, &port))
        ac = redisAsyncConnect (host, port);
    else
        ac = redisAsyncConnectUnix (self->where);
    if (!ac || ac->err || redisLibevAttach (self->gw->loop, ac) != REDIS_OK) {
        if (ac)
            redisAsyncFree (ac);
        s_lost (self);
        return;
    }
    self->ac = ac;
    ac->data = self;
    redisAsyncSetDisconnectCallback (ac, s_on_disconnect);
    /*  A non-blocking connect completes when the socket becomes writable:
        setting this callback starts watching for that. */
    redisAsyncSetConnectCallback (ac, s_on_connect);
}

/*  Drops a connection whose oldest command has waited too long: hiredis
    then answers every pending command with NULL, and callers fall back. */
static void
s_check_timer (struct ev_loop *loop, ev_timer *timer, int revents)
{
    (void) revents;
    gw_redis_t *self = timer->data;
    if (self->ac && self->connected && self->count
        && clock_mono_ms () - self->sent[self->head] > ANSWER_WITHIN_MS)
        /*  A busy loop may not have read answers that are already here:
            read them first, so only a Redis that is really late is
            dropped (callbacks may run, and may lose the connection). */
        redisAsyncHandleRead (self->ac);
    if (self->ac && self->count
        && clock_mono_ms () - self->sent[self->head] > ANSWER_WITHIN_MS) {
        log_warn (NULL, "redis is not answering, dropping the connection pending=%zu",
                  self->count);
        gw_redis_drop (self);
    }
    else if (self->ac && self->channel && self->connected && !self->up
             && clock_mono_ms () - self->connected_at > SUBSCRIBE_WITHIN_MS) {
        log_warn (NULL, "redis did not confirm the subscription, connecting again channel=%s",
                  self->channel);
        gw_redis_drop (self);
    }
    if (self->gw->stopping)
        ev_timer_stop (loop, timer);
}

static gw_redis_t *
s_new (gw_t *gw, const char *where, const char *script, const char *channel,
       gw_redis_message_fn *on_message, void *arg)
{
    gw_redis_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->gw = gw;
    self->where = strdup (where);
    self->script = script ? strdup (script) : NULL;
    self->channel = channel ? strdup (channel) : NULL;
    self->on_message = on_message;
    self->message_arg = arg;
    if (!self->where || (script && !self->script) || (channel && !self->channel)) {
        free (self->where);
        free (self->script);
        free (self->channel);
        free (self);
        return NULL;
    }
    self->log.burst = 2;
    ev_timer_init (&self->reconnect_timer, s_reconnect_timer, 0., 0.);
    self->reconnect_timer.data = self;
    ev_timer_init (&self->check_timer, s_check_timer, CHECK_MS / 1000.0, CHECK_MS / 1000.0);
    self->check_timer.data = self;
    ev_timer_start (gw->loop, &self->check_timer);
    s_connect (self);
    return self;
}

gw_redis_t *
gw_redis_new (gw_t *gw, const char *where, const char *script)
{
    return s_new (gw, where, script, NULL, NULL, NULL);
}

gw_redis_t *
gw_redis_subscriber (gw_t *gw, const char *where, const char *channel,
                     gw_redis_message_fn *on_message, void *arg)
{
    return s_new (gw, where, NULL, channel, on_message, arg);
}

void
gw_redis_destroy (gw_redis_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    gw_redis_t *self = *self_p;
    ev_timer_stop (self->gw->loop, &self->reconnect_timer);
    ev_timer_stop (self->gw->loop, &self->check_timer);
    if (self->ac) {
        /*  Pending commands are answered NULL; the adapter stops its
            watchers. */
        redisAsyncContext *ac = self->ac;
        self->ac = NULL;
        redisAsyncFree (ac);
    }
    free (self->where);
    free (self->script);
    free (self->channel);
    free (self);
    *self_p = NULL;
}

void
gw_redis_drop (gw_redis_t *self)
{
    if (!self || !self->ac)
        return;
    /*  hiredis answers every pending command with NULL; callers fall back. */
    redisAsyncContext *ac = self->ac;
    self->ac = NULL;
    redisAsyncFree (ac);
    s_lost (self);
}

int
gw_redis_up (gw_redis_t *self)
{
    return self && self->up && self->ac;
}

const char *
gw_redis_script_sha (gw_redis_t *self)
{
    return self->sha;
}

static void
s_on_reply (redisAsyncContext *ac, void *r, void *data)
{
    (void) ac;
    pending_t *p = data;
    gw_redis_t *self = p->redis;
    if (self->count) {
        self->head = (self->head + 1) % MAX_PENDING;
        self->count--;
    }
    p->fn (self->gw, (redisReply *) r, p->arg);
    free (p);
}

int
gw_redis_command (gw_redis_t *self, gw_redis_fn *fn, void *arg, int argc, const char **argv,
                  const size_t *lens)
{
    if (!gw_redis_up (self) || self->channel || self->count >= MAX_PENDING)
        return -1;
    pending_t *p = malloc (sizeof *p);
    if (!p)
        return -1;
    p->redis = self;
    p->fn = fn;
    p->arg = arg;
    if (redisAsyncCommandArgv (self->ac, s_on_reply, p, argc, argv, lens) != REDIS_OK) {
        free (p);
        return -1;
    }
    self->sent[(self->head + self->count++) % MAX_PENDING] = clock_mono_ms ();
    return 0;
}

void
gw_redis_reload_script (gw_redis_t *self)
{
    if (!self || !self->ac || !self->connected || !self->script)
        return;
    const char *argv[] = {"SCRIPT", "LOAD", self->script};
    self->sent[(self->head + self->count++) % MAX_PENDING] = clock_mono_ms ();
    redisAsyncCommandArgv (self->ac, s_on_script, self, 3, argv, NULL);
}

/*  gw_redis: hiredis's asynchronous API driven by the lws loop through an
    adapter over gw_watch (see gw_redis.h). hiredis owns the socket; the
    loop watches a duplicate of it. */
#include "gw_redis.h"
#include "clock.h"
#include "gw_metrics.h"
#include "log.h"

#include <hiredis/async.h>
#include <string.h>

#define RECONNECT_MS 1000
#define CHECK_MS 100
#define ANSWER_WITHIN_MS 250
#define MAX_PENDING 4096

struct gw_redis_t {
    gw_t *gw;
    char *where;
    char *script;
    redisAsyncContext *ac;
    gw_watch_t *watch;
    int connected;
    int up;
    char sha[48];
    lws_sorted_usec_list_t reconnect_timer;
    lws_sorted_usec_list_t check_timer;
    /*  Send times of commands awaiting answers, oldest first (Redis answers
        in order), to notice a Redis that accepts but does not answer. */
    int64_t sent[MAX_PENDING];
    size_t head, count;
    log_limit_t log;
};

typedef struct {
    gw_redis_t *redis;
    gw_redis_fn *fn;
    void *arg;
} pending_t;

static void s_connect (gw_redis_t *self);

static void
s_reconnect_timer (lws_sorted_usec_list_t *sul)
{
    s_connect (lws_container_of (sul, gw_redis_t, reconnect_timer));
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
    gw_metrics_redis (self->gw->metrics, up);
}

static void
s_lost (gw_redis_t *self)
{
    self->connected = 0;
    self->ac = NULL;
    self->count = 0;
    s_set_up (self, 0);
    gw_watch_remove (&self->watch);
    if (!self->gw->stopping)
        lws_sul_schedule (self->gw->lws, 0, &self->reconnect_timer, s_reconnect_timer,
                          RECONNECT_MS * LWS_US_PER_MS);
}

/* --- the hiredis adapter --- */

static void
s_on_readable (gw_watch_t *watch, void *arg)
{
    (void) watch;
    gw_redis_t *self = arg;
    if (self->ac)
        redisAsyncHandleRead (self->ac);
}

static void
s_on_writable (gw_watch_t *watch, void *arg)
{
    (void) watch;
    gw_redis_t *self = arg;
    if (self->ac)
        redisAsyncHandleWrite (self->ac);
}

static void
s_add_read (void *data)
{
    gw_redis_t *self = data;
    if (!self->watch && self->ac)
        self->watch = gw_watch_add (self->gw, self->ac->c.fd, s_on_readable, s_on_writable, self);
}

static void
s_del_read (void *data)
{
    (void) data;    /* the watch keeps polling for input; reads then find nothing */
}

static void
s_add_write (void *data)
{
    gw_redis_t *self = data;
    s_add_read (self);
    gw_watch_want_write (self->watch);
}

static void
s_del_write (void *data)
{
    (void) data;    /* lws asks for writability once per request */
}

static void
s_cleanup (void *data)
{
    gw_redis_t *self = data;
    gw_watch_remove (&self->watch);
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

static void
s_on_connect (const redisAsyncContext *ac, int status)
{
    gw_redis_t *self = ac->ev.data;
    if (status != REDIS_OK) {
        /*  hiredis frees the context after this callback. */
        s_lost (self);
        return;
    }
    self->connected = 1;
    if (self->script) {
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
    gw_redis_t *self = ac->ev.data;
    if (self->ac == ac)
        s_lost (self);
}

static void
s_connect (gw_redis_t *self)
{
    if (self->ac || self->gw->stopping)
        return;
    redisAsyncContext *ac;
    const char *w = self->where;
    if (strncmp (w, "redis://", 8) == 0 || (w[0] != '/' && strchr (w, ':') && !strchr (w, '/'))) {
        const char *hp = strncmp (w, "redis://", 8) == 0 ? w + 8 : w;
        char host[256];
        snprintf (host, sizeof host, "%s", hp);
        char *colon = strrchr (host, ':');
        int port = 6379;
        if (colon) {
            *colon = 0;
            port = atoi (colon + 1);
        }
        char *slash = strchr (host, '/');
        if (slash)
            *slash = 0;
        ac = redisAsyncConnect (host, port);
    }
    else
        ac = redisAsyncConnectUnix (w);
    if (!ac || ac->err) {
        if (ac)
            redisAsyncFree (ac);
        s_lost (self);
        return;
    }
    self->ac = ac;
    ac->ev.data = self;
    ac->ev.addRead = s_add_read;
    ac->ev.delRead = s_del_read;
    ac->ev.addWrite = s_add_write;
    ac->ev.delWrite = s_del_write;
    ac->ev.cleanup = s_cleanup;
    redisAsyncSetConnectCallback (ac, s_on_connect);
    redisAsyncSetDisconnectCallback (ac, s_on_disconnect);
    /*  A non-blocking connect completes when the socket becomes writable. */
    s_add_write (self);
}

/*  Drops a connection whose oldest command has waited too long: hiredis
    then answers every pending command with NULL, and callers fall back. */
static void
s_check_timer (lws_sorted_usec_list_t *sul)
{
    gw_redis_t *self = lws_container_of (sul, gw_redis_t, check_timer);
    if (self->ac && self->count
        && clock_mono_ms () - self->sent[self->head] > ANSWER_WITHIN_MS) {
        log_warn (NULL, "redis is not answering, dropping the connection pending=%zu",
                  self->count);
        redisAsyncContext *ac = self->ac;
        self->ac = NULL;
        redisAsyncFree (ac);
        s_lost (self);
    }
    else if (self->ac && !self->connected && self->count == 0) {
        /*  still connecting */
    }
    if (!self->gw->stopping)
        lws_sul_schedule (self->gw->lws, 0, &self->check_timer, s_check_timer,
                          CHECK_MS * LWS_US_PER_MS);
}

gw_redis_t *
gw_redis_new (gw_t *gw, const char *where, const char *script)
{
    gw_redis_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->gw = gw;
    self->where = strdup (where);
    self->script = script ? strdup (script) : NULL;
    self->log.burst = 2;
    s_connect (self);
    lws_sul_schedule (gw->lws, 0, &self->check_timer, s_check_timer, CHECK_MS * LWS_US_PER_MS);
    return self;
}

void
gw_redis_destroy (gw_redis_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    gw_redis_t *self = *self_p;
    lws_sul_cancel (&self->reconnect_timer);
    lws_sul_cancel (&self->check_timer);
    if (self->ac) {
        redisAsyncContext *ac = self->ac;
        self->ac = NULL;
        redisAsyncFree (ac);
    }
    gw_watch_remove (&self->watch);
    free (self->where);
    free (self->script);
    free (self);
    *self_p = NULL;
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
    if (!gw_redis_up (self) || self->count >= MAX_PENDING)
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

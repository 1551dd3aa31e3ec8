/*  gw_limit: see gw_limit.h. */
#include "gw_limit.h"
#include "clock.h"
#include "gw_metrics.h"
#include "gw_redis.h"
#include "log.h"

#include <arpa/inet.h>
#include <string.h>

typedef struct {
    uint64_t req_id;
    gw_limit_done_fn *done;
    const gw_rl_class_t *cls;
    char subject[1024];
} pending_t;

static int
s_fallback (gw_t *gw, const gw_rl_class_t *cls, const char *subject, int64_t *retry_after_ms)
{
    int allowed = gw_fallback_check (gw->fallback, cls, subject, clock_mono_ms (), retry_after_ms);
    if (!allowed)
        gw_metrics_limited (gw->metrics, cls->name);
    return allowed;
}

static void
s_on_reply (gw_t *gw, redisReply *reply, void *arg)
{
    pending_t *p = arg;
    int64_t retry = 0;
    int allowed = -1;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
        && reply->element[0]->type == REDIS_REPLY_INTEGER
        && reply->element[1]->type == REDIS_REPLY_INTEGER)
        allowed = gw_ratelimit_reply (reply->element[0]->integer, reply->element[1]->integer,
                                      &retry);
    if (allowed < 0) {
        if (reply && reply->type == REDIS_REPLY_ERROR) {
            log_warn (NULL, "redis rate-limit script failed error=\"%.100s\"", reply->str);
            if (strncmp (reply->str, "NOSCRIPT", 8) == 0)
                gw_redis_reload_script (gw->redis);
        }
        allowed = s_fallback (gw, p->cls, p->subject, &retry);
    }
    else if (!allowed)
        gw_metrics_limited (gw->metrics, p->cls->name);
    p->done (gw, p->req_id, allowed, retry);
    free (p);
}

/*  One budget per IPv6 /64: a host usually owns the whole prefix. */
static const char *
s_subject (const char *subject, char *buf, size_t len)
{
    if (!strchr (subject, ':'))
        return subject;
    struct in6_addr a;
    if (inet_pton (AF_INET6, subject, &a) != 1)
        return subject;
    memset (a.s6_addr + 8, 0, 8);
    if (!inet_ntop (AF_INET6, &a, buf, (socklen_t) len))
        return subject;
    size_t n = strlen (buf);
    snprintf (buf + n, len - n, "/64");
    return buf;
}

int
gw_limit_check (gw_t *gw, const char *cls_name, const char *subject_in, uint64_t req_id,
                gw_limit_done_fn *done, int64_t *retry_after_ms)
{
    char prefix[INET6_ADDRSTRLEN + 8];
    const char *subject = s_subject (subject_in, prefix, sizeof prefix);
    const gw_rl_class_t *cls = gw_ratelimit_class (&gw->limits, cls_name);
    *retry_after_ms = 0;
    if (!cls) {
        /*  gw_routes_init refuses to start without every class a route
            names, so this is a programming error; refuse rather than let
            an endpoint go unlimited. */
        log_error (NULL, "no rate limit configured class=%s", cls_name);
        *retry_after_ms = 1000;
        return 0;
    }
    if (gw_redis_up (gw->redis)) {
        pending_t *p = calloc (1, sizeof *p);
        if (p) {
            p->req_id = req_id;
            p->done = done;
            p->cls = cls;
            snprintf (p->subject, sizeof p->subject, "%s", subject);
            gw_rl_call_t call;
            gw_ratelimit_call (&call, gw_redis_script_sha (gw->redis), cls, subject);
            if (gw_redis_command (gw->redis, s_on_reply, p, call.argc, call.argv, call.argvlen)
                == 0)
                return -1;
            free (p);
        }
    }
    return s_fallback (gw, cls, subject, retry_after_ms);
}

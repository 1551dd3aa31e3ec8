/*  gw_peers: see gw_peers.h. The messages are JSON objects:
    {"from": instance, "type": "typing", "chat_id", "user_id"} and
    {"from": instance, "type": "presence", "user_id", "online",
     "last_seen_at" (unix ms, 0 when online), "chats": [chat ids]}, as
    the README's "Running it elsewhere" says. */
#include "gw_peers.h"
#include "clock.h"
#include "gw_redis.h"
#include "gw_ws.h"
#include "log.h"

#include <string.h>

#define MAX_MESSAGE (1024 * 1024)       /* a peer's message above this is dropped */
#define ECHO_EVERY_MS 10000             /* this gateway hears itself this often... */
#define ECHO_WITHIN_MS 35000            /* ...or its subscription is made again */

static struct {
    gw_redis_t *sub;
    log_limit_t log;
    /*  A subscription can go deaf without its connection failing (a
        half-open TCP connection): every gateway publishes a ping and
        expects to hear its own. */
    ev_timer echo_timer;
    int64_t heard_ms;           /* monotonic: its own ping last heard, or the start */
} s_peers;

static void
s_echo_timer (struct ev_loop *loop, ev_timer *timer, int revents)
{
    (void) loop;
    (void) revents;
    gw_t *gw = timer->data;
    if (gw->stopping)
        return;
    int64_t now = clock_mono_ms ();
    if (!gw_redis_up (gw->redis) || !gw_redis_up (s_peers.sub))
        s_peers.heard_ms = now;     /* nothing to hear over: the reconnection is on */
    else if (now - s_peers.heard_ms > ECHO_WITHIN_MS) {
        log_warn (NULL, "this gateway no longer hears itself on %s: subscribing again",
                  GW_PEERS_CHANNEL);
        gw_redis_drop (s_peers.sub);
        s_peers.heard_ms = now;
    }
    gw_peers_publish (gw, json_pack ("{s:s}", "type", "ping"));
}

static void
s_ignore (gw_t *gw, redisReply *reply, void *arg)
{
    (void) gw;
    (void) reply;
    (void) arg;
}

static void
s_on_message (gw_t *gw, const char *payload, size_t len, void *arg)
{
    (void) arg;
    if (gw->stopping)
        return;
    json_t *msg = len <= MAX_MESSAGE ? json_loadb (payload, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    const char *from = json_string_value (json_object_get (msg, "from"));
    if (!msg || !json_is_object (msg) || !from) {
        unsigned long suppressed;
        if (log_limit_allow (&s_peers.log, &suppressed))
            log_warn (NULL, "dropped a message on %s that is not a gateway's len=%zu suppressed=%lu",
                      GW_PEERS_CHANNEL, len, suppressed);
        json_decref (msg);
        return;
    }
    if (strcmp (from, gw->instance) != 0)
        gw_ws_on_peer (gw, msg);
    else
        s_peers.heard_ms = clock_mono_ms ();
    json_decref (msg);
}

int
gw_peers_start (gw_t *gw)
{
    s_peers.log.burst = 2;
    s_peers.sub = gw_redis_subscriber (gw, config_str (gw->cfg, "redis"), GW_PEERS_CHANNEL,
                                       s_on_message, NULL);
    if (!s_peers.sub)
        return -1;
    s_peers.heard_ms = clock_mono_ms ();
    ev_timer_init (&s_peers.echo_timer, s_echo_timer, ECHO_EVERY_MS / 1000.0, ECHO_EVERY_MS / 1000.0);
    s_peers.echo_timer.data = gw;
    ev_timer_start (gw->loop, &s_peers.echo_timer);
    return 0;
}

void
gw_peers_stop (gw_t *gw)
{
    if (s_peers.sub)
        ev_timer_stop (gw->loop, &s_peers.echo_timer);
    gw_redis_destroy (&s_peers.sub);
}

void
gw_peers_publish (gw_t *gw, json_t *msg)
{
    if (!msg)
        return;
    char *text = NULL;
    if (gw_redis_up (gw->redis) && json_object_set_new (msg, "from", json_string (gw->instance)) == 0)
        text = json_dumps (msg, JSON_COMPACT);
    json_decref (msg);
    if (!text)
        return;
    const char *argv[] = {"PUBLISH", GW_PEERS_CHANNEL, text};
    gw_redis_command (gw->redis, s_ignore, NULL, 3, argv, NULL);
    free (text);
}

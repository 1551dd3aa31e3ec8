/*  gw_peers: see gw_peers.h. The messages are JSON objects:
    {"from": instance, "type": "typing", "chat_id", "user_id"} and
    {"from": instance, "type": "presence", "user_id", "online",
     "last_seen_at" (unix ms, 0 when online), "chats": [chat ids]}, as
    the README's "Running it elsewhere" says. */
#include "gw_peers.h"
#include "gw_redis.h"
#include "gw_ws.h"
#include "log.h"

#include <string.h>

#define MAX_MESSAGE (1024 * 1024)       /* a peer's message above this is dropped */

static struct {
    gw_redis_t *sub;
    log_limit_t log;
} s_peers;

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
    json_decref (msg);
}

int
gw_peers_start (gw_t *gw)
{
    s_peers.log.burst = 2;
    s_peers.sub = gw_redis_subscriber (gw, config_str (gw->cfg, "redis"), GW_PEERS_CHANNEL,
                                       s_on_message, NULL);
    return s_peers.sub ? 0 : -1;
}

void
gw_peers_stop (gw_t *gw)
{
    (void) gw;
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

/*  gw_redis: the gateway's Redis connection (hiredis, asynchronous, inside
    the event loop). It reconnects by itself; a command that gets no answer
    within a quarter second counts Redis as down (the connection is dropped,
    callers get NULL and fall back). Nothing in Redis is the only copy of
    anything (DESIGN §2), so callers always have a way on without it. */
#ifndef PARTA_GW_REDIS_H
#define PARTA_GW_REDIS_H

#include "gw.h"

#include <hiredis/hiredis.h>

/*  `reply` is NULL when Redis is down or the command failed to complete;
    it is borrowed for the duration of the callback. */
typedef void (gw_redis_fn) (gw_t *gw, redisReply *reply, void *arg);

/*  `where`: a unix socket path, or redis://host:port, or host:port.
    `script` (may be NULL) is loaded on every (re)connection. */
gw_redis_t *gw_redis_new (gw_t *gw, const char *where, const char *script);
void gw_redis_destroy (gw_redis_t **self_p);

/*  A second connection that only listens on one channel (SUBSCRIBE, again
    after every reconnection); `on_message` runs for each message, with the
    payload borrowed for the call. Messages published while it was
    disconnected are lost: pub/sub keeps nothing. gw_redis_command refuses
    it. */
typedef void (gw_redis_message_fn) (gw_t *gw, const char *payload, size_t len, void *arg);
gw_redis_t *gw_redis_subscriber (gw_t *gw, const char *where, const char *channel,
                                 gw_redis_message_fn *on_message, void *arg);

/*  A blocking connection, for the moment the loop no longer runs (a
    gateway stopping); NULL when Redis cannot be reached within
    timeout_ms. Commands on it wait at most as long. */
redisContext *gw_redis_connect_blocking (const char *where, int timeout_ms);

/*  1 when connected (and the script loaded, or the channel subscribed). */
int gw_redis_up (gw_redis_t *self);
/*  The loaded script's SHA1 ("" when none). */
const char *gw_redis_script_sha (gw_redis_t *self);

/*  Drops the connection and makes it again (pending commands are answered
    NULL): for a subscriber that no longer hears anything. */
void gw_redis_drop (gw_redis_t *self);

/*  Loads the script again (Redis lost it: SCRIPT FLUSH, a failover). */
void gw_redis_reload_script (gw_redis_t *self);

/*  Sends a command. Returns -1 (and does not call `fn`) when Redis is
    down; otherwise `fn` runs exactly once, later. */
int gw_redis_command (gw_redis_t *self, gw_redis_fn *fn, void *arg, int argc, const char **argv,
                      const size_t *lens);

#endif

/*  gw_presence: who is online, kept in Redis (DESIGN §2) by every gateway
    for the users with WebSocket connections to it. presence:online is a
    sorted set of user ids scored with an expiry (unix ms), refreshed while
    the user has sockets on some gateway; presence:at:{user} says which
    gateways hold the user's sockets, each with its own expiry, so that a
    user with sockets on two gateways stays online when one of them
    closes; presence:last_seen is a hash of user id to the time (unix ms)
    they were last seen. A periodic sweep on every
    gateway moves expired members from the set to the hash, so the users of
    a gateway that died go offline within a minute. Without Redis nothing
    here fails: writes are skipped and presence reads as unknown. */
#ifndef PARTA_GW_PRESENCE_H
#define PARTA_GW_PRESENCE_H

#include "gw.h"

#define GW_PRESENCE_TTL_MS 60000        /* an online entry lives this long unrefreshed */
#define GW_PRESENCE_REFRESH_MS 20000
#define GW_PRESENCE_SWEEP_MS 10000
#define GW_PRESENCE_MAX_ITEMS 5000      /* members one presence request reports */
#define GW_PRESENCE_ALIVE_MS 30000      /* a gateway counts as alive this long unrefreshed */
#define GW_PRESENCE_LEAVE_MAX 100000    /* users released at once when a gateway stops */

/*  Starts the refresh and sweep timers; stop cancels them and releases
    this gateway's users (a blocking call: the loop has stopped). */
void gw_presence_start (gw_t *gw);
void gw_presence_stop (gw_t *gw);

/*  A user's first socket here opened: this gateway holds them. */
void gw_presence_online (gw_t *gw, const char *user_id);
/*  A user's last socket here closed: this gateway holds them no more.
    `fn` later says whether the user went offline (gone 1: no other live
    gateway holds them; their last_seen_at is now_ms), is still online
    elsewhere (0), or Redis could not tell (-1). Returns -1, and does not
    call `fn`, when Redis is down. */
typedef void (gw_presence_gone_fn) (gw_t *gw, int gone, void *arg);
int gw_presence_offline (gw_t *gw, const char *user_id, int64_t now_ms, gw_presence_gone_fn *fn,
                         void *arg);

/*  GET /v1/chats/{chat_id}/presence (a local route): the chat's members
    (chat.audience, which refuses callers who are not members) with
    {user_id, online, last_seen_at}; online and last_seen_at are null for
    everyone while Redis is down. */
void gw_presence_http (gw_req_t *req);

#endif

/*  gw_auth: bearer tokens to callers. identity.authenticate resolves a
    token; the answer is cached in the process for at most auth_cache_ms
    (default 30 s) and dropped at once when identity announces that the
    session ended or the user's roles changed, so a revoked token is refused
    on the very next request. Tokens are kept only as SHA-256 hashes. */
#ifndef PARTA_GW_AUTH_H
#define PARTA_GW_AUTH_H

#include "bus.pb-c.h"
#include "events.pb-c.h"
#include "gw.h"
#include "status.h"

/*  `caller` is borrowed for the duration of the call; NULL when status is
    not OK (unauthorized: bad token; unavailable: identity is down). */
typedef void (gw_auth_done_fn) (gw_t *gw, uint64_t req_id, const Bus__Caller *caller,
                                status_t status);

gw_auth_t *gw_auth_new (int cache_ms, size_t max_entries);
void gw_auth_destroy (gw_auth_t **self_p);

/*  Resolves `token`; `done` runs now (cache hit) or when identity answers. */
void gw_auth_resolve (gw_t *gw, const char *token, const char *ip, const char *user_agent,
                      const char *trace, uint64_t req_id, gw_auth_done_fn *done);

/*  Drops cache entries that an identity event makes stale. Follows
    identity's sequence (events and sys.head beacons): events it missed
    are fetched again with sys.replay and applied, here and to the
    WebSockets (a revoked session's sockets close); when they cannot be had,
    every cached caller is dropped and every socket's token checked again. */
void gw_auth_on_event (gw_t *gw, const Ev__Event *event);

size_t gw_auth_cached (gw_t *gw);
void gw_auth_drop_session (gw_t *gw, const char *session_id);
void gw_auth_drop_user (gw_t *gw, const char *user_id);

#endif

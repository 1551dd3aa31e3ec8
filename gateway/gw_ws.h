/*  gw_ws: WebSocket clients at GET /v1/ws (API.md "Realtime"). A socket
    signs in with the Authorization header of the upgrade or with a first
    frame {"type": "auth", "token"}, then receives the events of its user's
    chats and account as JSON frames; the gateway's event subscription
    hands every event here (gw_ws_on_event) and the recipients the event
    names are looked up among the users connected to this gateway. */
#ifndef PARTA_GW_WS_H
#define PARTA_GW_WS_H

#include "events.pb-c.h"
#include "gw.h"

#define GW_WS_PATH "/v1/ws"
#define GW_WS_PROTOCOL "parta-ws"

/*  Close codes (RFC 6455 leaves 4000-4999 to applications). */
#define GW_WS_CLOSE_UNAUTHORIZED 4001       /* no valid token, or none within 10 s */
#define GW_WS_CLOSE_REVOKED 4003            /* the session ended */
#define GW_WS_CLOSE_RATE_LIMITED 4029       /* too many connections from this address */

/*  The "parta-ws" protocol: every WebSocket of the gateway. */
int gw_ws_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len);

/*  The "http" protocol: gw_http_callback, except that it refuses
    WebSocket upgrades anywhere but /v1/ws and upgrades that ask for a
    subprotocol other than parta-ws (with a JSON error, not a hang-up). */
int gw_ws_http_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len);

/*  GET /v1/ws without an upgrade (a local route): 400 bad_request. */
void gw_ws_http_plain (gw_req_t *req);

typedef struct {
    int ping_s;                 /* idle seconds before lws pings a socket */
    int queue_frames;           /* outgoing frames a socket may have waiting */
    size_t queue_bytes;         /* and their bytes */
    int revalidate_s;           /* a socket's token is checked again this often */
} gw_ws_opts_t;

/*  Starts the WebSocket side (and presence); `opts` is copied. stop cancels
    timers before the lws context goes; destroy frees what is left after it
    (closing the sockets runs their callbacks). All three are safe to call
    when start never ran. */
int gw_ws_start (gw_t *gw, const gw_ws_opts_t *opts);
void gw_ws_stop (gw_t *gw);
void gw_ws_destroy (gw_t *gw);

/*  An event from the subscription: pushes it to the sockets it concerns. */
void gw_ws_on_event (gw_t *gw, const Ev__Event *event);

/*  Checks every signed-in socket's token again now (identity events were
    lost: a session may have ended unannounced). */
void gw_ws_recheck_all (gw_t *gw);

/*  A message from another gateway (gw_peers.h): typing and presence of
    users with sockets there, delivered to the sockets here. */
void gw_ws_on_peer (gw_t *gw, const json_t *msg);

/*  Every user with a signed-in socket here (for presence refresh). The
    id is borrowed for the duration of the call. */
typedef void (gw_ws_user_fn) (const char *user_id, void *arg);
void gw_ws_each_user (gw_ws_user_fn *fn, void *arg);

#endif

/*  gw: the gateway's shared state. One event loop (libev, on epoll) runs
    everything: libwebsockets serves HTTP and WebSocket clients on it as a
    foreign loop, and the bus client, the event subscription and the Redis
    connection are watched by the same loop, so no call ever blocks it
    (DESIGN §2). */
#ifndef PARTA_GW_H
#define PARTA_GW_H

#include "bus_client.h"
#include "config.h"
#include "gw_ratelimit.h"
#include "u64map.h"

#include <czmq.h>
#include <ev.h>
#include <hiredis/async.h>
#include <jansson.h>
#include <libwebsockets.h>

typedef struct gw_t gw_t;
typedef struct gw_req_t gw_req_t;
typedef struct gw_route_t gw_route_t;
typedef struct gw_metrics_t gw_metrics_t;
typedef struct gw_auth_t gw_auth_t;
typedef struct gw_redis_t gw_redis_t;

/* --- the bus sockets in the loop (gw_loop.c) --- */

/*  Starts watching the bus client and the event subscription; stop
    stops the watchers and timers (the sockets stay the caller's). */
int gw_loop_start (gw_t *gw);
void gw_loop_stop (gw_t *gw);

/*  The bus client, serviced from the loop. After sending, call gw_bus_kick
    (ZeroMQ's descriptor is edge-triggered: a send can swallow the edge). */
void gw_bus_kick (gw_t *gw);

/*  Arms `timer` (an ev_timer whose callback is set) to fire once, `ms`
    milliseconds from now, replacing any earlier arming. */
void gw_timer_after (gw_t *gw, ev_timer *timer, int64_t ms);

/* --- the gateway --- */

#define GW_MAX_SUBS 16

struct gw_t {
    config_t *cfg;
    struct ev_loop *loop;       /* the one loop (gw_main.c runs it) */
    ev_signal sigint, sigterm;
    struct lws_context *lws;
    struct lws_vhost *vhost;
    int port;                   /* the port actually bound */
    bus_client_t *bus;
    ev_io bus_io;
    ev_timer bus_timer;         /* the client's next deadline, or a kick */
    ev_check bus_hold;          /* each loop turn: the bus calls it starts... */
    ev_prepare bus_release;     /* ...leave together before the loop sleeps */
    int bus_held;
    zsock_t *sub;               /* events from the broker's XPUB */
    ev_io sub_io;
    ev_timer sub_timer;         /* more events waiting than one wake takes */
    gw_redis_t *redis;
    gw_rl_classes_t limits;
    gw_fallback_t *fallback;
    gw_auth_t *auth;
    gw_metrics_t *metrics;
    u64map_t *reqs;             /* live HTTP requests by id */
    uint64_t next_req_id;
    char trusted_proxies[512];  /* comma-separated peer addresses */
    char services[256];         /* services /readyz expects workers for */
    int call_timeout_ms;
    char public_url[256];
    char instance[32];          /* this gateway's id among its peers (a ULID) */
    int stopping;
};

/* --- HTTP requests (gw_http.c) --- */

typedef enum { GW_GET, GW_POST, GW_PUT, GW_PATCH, GW_DELETE, GW_OPTIONS, GW_METHOD_OTHER } gw_method_t;

const char *gw_method_name (gw_method_t method);

/*  Finishes a request with a JSON body (taken) and status. */
void gw_reply_json (gw_req_t *req, int status, json_t *body);
/*  Finishes with the API's error body {"error": {code, message, field?}}. */
void gw_reply_error (gw_req_t *req, int status, const char *code, const char *message,
                     const char *field);
/*  Finishes with a text body. */
void gw_reply_text (gw_req_t *req, int status, const char *content_type, char *body, size_t len);
void gw_req_set_header (gw_req_t *req, const char *name, const char *value);
gw_t *gw_req_gw (gw_req_t *req);
const char *gw_req_trace (gw_req_t *req);
uint64_t gw_req_id (gw_req_t *req);
/*  The live request with this id, or NULL once it ended (async callbacks
    carry ids, never pointers, because a client may go away meanwhile). */
gw_req_t *gw_req_find (gw_t *gw, uint64_t id);
/*  The Accept header ("" when none). */
const char *gw_req_accept (gw_req_t *req);
/*  The caller's user and session ids ("" for public calls). */
const char *gw_req_user (gw_req_t *req);
const char *gw_req_session (gw_req_t *req);
/*  The whole caller (user, session, org roles, address), for local routes
    that call services themselves; NULL before the caller is known. */
const Bus__Caller *gw_req_caller (gw_req_t *req);
/*  A path parameter by name, or NULL. */
const char *gw_req_param (gw_req_t *req, const char *name);
/*  Memory that lives as long as the request (arena.h). */
arena_t *gw_req_arena (gw_req_t *req);
/*  The request message of the route's bus method, decoded from the path,
    the query and the body; NULL for a local route that names none. */
const ProtobufCMessage *gw_req_msg (gw_req_t *req);

/*  Calls a service for a request, as a route's own call is made (gw_http.c):
    with the request's caller, trace id and idempotency key, retried while
    the service is unavailable when the route only reads, within
    `timeout_ms`, and counted in the metrics by `method` (a string that
    outlives the call). `done` runs with the reply while the request lives;
    a request freed first (its connection closed) cancels the call, and
    `done` never runs, so `arg` may live in the request's arena. One call
    at a time per request. Returns 0, or -1 when the call could not be sent
    (the request is then answered 503). */
typedef void (gw_call_fn) (gw_req_t *req, const Bus__Reply *reply, void *arg);
int gw_req_call (gw_req_t *req, const char *service, const char *method,
                 const ProtobufCMessage *body, int timeout_ms, gw_call_fn *done, void *arg);
/*  Finishes with a failed call's status and the API's error body, as a
    route answers a service's failure (Retry-After for rate_limited). */
void gw_reply_bus_error (gw_req_t *req, const Bus__Reply *reply);
/*  Finishes with `msg` turned into JSON by the generic codec; NULL (a
    service's reply that did not unpack) is answered 500 and logged. */
void gw_reply_message (gw_req_t *req, int status, const ProtobufCMessage *msg);

#endif

/*  parta-gateway: reads configuration, builds the gateway (routes, rate
    limits, bus client, event subscription, Redis) and runs its event loop
    until SIGINT or SIGTERM. The loop is libev's, on epoll: libwebsockets
    runs on it as a foreign loop (lws's own loop is poll(), which walks
    every descriptor on every wake-up: with thousands of WebSockets that
    was most of the gateway's time). */
#include "bus_socket.h"
#include "gw.h"
#include "gw_auth.h"
#include "gw_http.h"
#include "gw_metrics.h"
#include "gw_ops.h"
#include "gw_peers.h"
#include "gw_redis.h"
#include "gw_routes.h"
#include "gw_ws.h"
#include "log.h"
#include "ulid.h"

#include <signal.h>
#include <string.h>

static const config_opt_t s_options[] = {
    {"rate_limits", GW_RL_DEFAULT_SPEC,
     "rate limits: class=N/P[,N/P];... (N requests per P seconds)"},
    {"trusted_proxies", "", "comma-separated proxy addresses whose X-Forwarded-For is believed"},
    {"public_url", NULL, "the address users reach the gateway at (default: from http)"},
    {"auth_cache_ms", "30000", "how long a resolved token is cached, milliseconds (at most 30000)"},
    {"services", "identity,org,invite,chat,meet,audit", "services /readyz expects workers of"},
    {"call_timeout_ms", "5000", "deadline of a bus call made for an HTTP request"},
    {"list_routes", NULL, "print the route table as JSON and exit (any value)"},
    /* WebSockets (gw_ws.c) */
    {"ws_ping_s", "30", "seconds from a WebSocket's last pong to its next ping (dropped if no pong in as many again)"},
    {"ws_queue_frames", "256", "frames waiting to be written to one WebSocket before it owes a resync"},
    {"ws_queue_bytes", "1048576", "bytes waiting to be written to one WebSocket before it owes a resync"},
    {"ws_revalidate_s", "300", "how often a WebSocket's token is checked again (0: never)"},
    {NULL, NULL, NULL},
};

static gw_t *s_gw;

static void
s_lws_log (int level, const char *line)
{
    char text[512];
    snprintf (text, sizeof text, "%s", line);
    size_t n = strlen (text);
    while (n && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        text[--n] = 0;
    log_msg (level == LLL_ERR ? LOG_LEVEL_ERROR : LOG_LEVEL_WARN, NULL, "lws: %s", text);
}

/*  "http" first: plain requests always go to protocols[0]. gw_ws_http_callback
    is gw_http_callback guarding against stray WebSocket upgrades.

    A WebSocket's rx buffer (lws allocates it per socket: at 16 KiB it
    was most of what an idle socket cost) bounds how much of a frame one
    LWS_CALLBACK_RECEIVE hands over, and how much lws reads from the
    socket at once. Client frames are small (auth, typing, ping); gw_ws.c
    puts larger ones together, up to 64 KiB. Writes are bounded by the
    last field instead. */
static struct lws_protocols s_protocols[] = {
    {"http", gw_ws_http_callback, sizeof (void *), 0, 0, NULL, 0},
    {GW_WS_PROTOCOL, gw_ws_callback, sizeof (void *), 1024, 0, NULL, 65536},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/*  WebSocket upgrades that name no subprotocol get parta-ws (lws 4.1 picks
    the upgrade's protocol from Sec-WebSocket-Protocol or this default, never
    from a mount). Plain HTTP is unaffected: with no mount, lws hands every
    request to protocols[0]. */
static const struct lws_protocol_vhost_options s_ws_default = {NULL, NULL, "default", "1"};
static const struct lws_protocol_vhost_options s_vhost_options = {NULL, &s_ws_default,
                                                                  GW_WS_PROTOCOL, ""};

/*  No keep-alive timers of lws's own: gw_ws.c pings WebSockets itself,
    with one timer for all of them (an lws validity timer per socket would
    sit in lws's sorted timer list, which every HTTP request walks when it
    sets a timeout). All zero: lws then schedules none (lws 4.1's default
    policy would ping every 300 s). */
static const lws_retry_bo_t s_no_keepalive;

static int
s_split_http (const char *http, char *host, size_t host_len, int *port)
{
    const char *colon = strrchr (http, ':');
    if (!colon)
        return -1;
    size_t n = (size_t) (colon - http);
    if (n >= host_len)
        return -1;
    memcpy (host, http, n);
    host[n] = 0;
    char *end;
    long p = strtol (colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535)
        return -1;
    *port = (int) p;
    return 0;
}

/*  SIGINT, SIGTERM: the loop returns and main stops the gateway in order.
    zsys_interrupted is set as CZMQ's own handler (which these replace)
    would, for code that looks at it. */
static void
s_on_signal (struct ev_loop *loop, ev_signal *watcher, int revents)
{
    (void) watcher;
    (void) revents;
    zsys_interrupted = 1;
    ev_break (loop, EVBREAK_ALL);
}

static void
s_destroy (gw_t *gw)
{
    gw->stopping = 1;
    gw_ops_stop (gw);
    gw_ws_stop (gw);
    if (gw->loop)
        gw_loop_stop (gw);
    gw_peers_stop (gw);
    gw_redis_destroy (&gw->redis);
    /*  On a foreign loop, lws closes every connection and stops its
        watchers here, without running the loop again. */
    if (gw->lws)
        lws_context_destroy (gw->lws);
    gw_ws_destroy (gw);     /* after lws closed the sockets */
    /*  Requests still alive were freed with their connections. */
    u64map_destroy (&gw->reqs);
    bus_client_destroy (&gw->bus);
    zsock_destroy (&gw->sub);
    gw_auth_destroy (&gw->auth);
    gw_fallback_destroy (&gw->fallback);
    gw_metrics_destroy (&gw->metrics);
    if (gw->loop) {
        ev_signal_stop (gw->loop, &gw->sigint);
        ev_signal_stop (gw->loop, &gw->sigterm);
        ev_loop_destroy (gw->loop);
    }
    config_destroy (&gw->cfg);
    free (gw);
}

static const char *
s_backend_name (unsigned int backend)
{
    switch (backend) {
    case EVBACKEND_EPOLL:
        return "epoll";
    case EVBACKEND_POLL:
        return "poll";
    case EVBACKEND_SELECT:
        return "select";
    default:
        return "other";
    }
}

int
main (int argc, char **argv)
{
    zsys_init ();
    config_t *cfg = config_load_or_exit ("gateway", s_options, argc, argv);
    gw_t *gw = calloc (1, sizeof *gw);
    s_gw = gw;
    gw->cfg = cfg;
    ulid_make (gw->instance);
    char err[256];
    char host[128];
    int port = 0, ok;
    if (s_split_http (config_str (cfg, "http"), host, sizeof host, &port)) {
        log_error (NULL, "http must be host:port value=%s", config_str (cfg, "http"));
        goto fail;
    }
    if (gw_ratelimit_parse (config_str (cfg, "rate_limits"), &gw->limits, err, sizeof err)) {
        log_error (NULL, "bad rate_limits error=\"%s\"", err);
        goto fail;
    }
    int cache_ms = (int) config_int (cfg, "auth_cache_ms", 30000, 0, 30000, &ok);
    if (!ok) {
        log_error (NULL, "auth_cache_ms must be 0..30000");
        goto fail;
    }
    gw->call_timeout_ms = (int) config_int (cfg, "call_timeout_ms", 5000, 100, 60000, &ok);
    if (!ok) {
        log_error (NULL, "call_timeout_ms must be 100..60000");
        goto fail;
    }
    snprintf (gw->trusted_proxies, sizeof gw->trusted_proxies, "%s",
              config_str (cfg, "trusted_proxies") ? config_str (cfg, "trusted_proxies") : "");
    snprintf (gw->services, sizeof gw->services, "%s", config_str (cfg, "services"));
    if (gw_routes_init (&gw->limits))
        goto fail;
    if (config_str (cfg, "list_routes")) {
        /*  For the API document's test: every route, as the table has it. */
        json_t *list = json_array ();
        for (const gw_route_t *r = gw_routes; r->method_name; r++)
            json_array_append_new (
                list, json_pack ("{s:s, s:s, s:s?, s:b, s:i, s:s?}", "method", r->method_name,
                                 "path", r->pattern, "bus_method", r->bus_method, "public",
                                 (r->flags & GW_PUBLIC) != 0, "success", r->success, "limits",
                                 r->limits));
        char *text = json_dumps (list, JSON_INDENT (2));
        printf ("%s\n", text);
        free (text);
        json_decref (list);
        s_destroy (gw);
        return 0;
    }
    gw->reqs = u64map_new ();
    gw->fallback = gw_fallback_new (100000);
    gw->auth = gw_auth_new (cache_ms, 100000);
    gw->metrics = gw_metrics_new ();
    gw->bus = bus_client_new_from_config (cfg);
    gw->sub = bus_socket_connect (ZMQ_SUB, cfg, config_str (cfg, "events_out"));
    if (!gw->reqs || !gw->fallback || !gw->auth || !gw->metrics || !gw->bus || !gw->sub)
        goto fail;
    zsock_set_subscribe (gw->sub, "identity.");
    zsock_set_subscribe (gw->sub, "sys.head");  /* identity's beacons (gw_auth.c) */
    zsock_set_subscribe (gw->sub, "chat.");     /* for WebSocket clients (gw_ws.c) */
    gw_ws_opts_t ws_opts = {0};
    int ws_ok[4];
    ws_opts.ping_s = (int) config_int (cfg, "ws_ping_s", 30, 1, 3600, &ws_ok[0]);
    ws_opts.queue_frames = (int) config_int (cfg, "ws_queue_frames", 256, 1, 100000, &ws_ok[1]);
    ws_opts.queue_bytes
        = (size_t) config_int (cfg, "ws_queue_bytes", 1048576, 4096, 1073741824, &ws_ok[2]);
    ws_opts.revalidate_s = (int) config_int (cfg, "ws_revalidate_s", 300, 0, 86400, &ws_ok[3]);
    if (!ws_ok[0] || !ws_ok[1] || !ws_ok[2] || !ws_ok[3]) {
        log_error (NULL, "ws_ping_s must be 1..3600, ws_queue_frames 1..100000, ws_queue_bytes "
                         "4096..1073741824, ws_revalidate_s 0..86400");
        goto fail;
    }

    gw->loop = ev_loop_new (EVFLAG_AUTO | EVFLAG_NOENV);
    if (!gw->loop) {
        log_error (NULL, "cannot create the event loop");
        goto fail;
    }
    ev_signal_init (&gw->sigint, s_on_signal, SIGINT);
    ev_signal_init (&gw->sigterm, s_on_signal, SIGTERM);
    ev_signal_start (gw->loop, &gw->sigint);
    ev_signal_start (gw->loop, &gw->sigterm);

    lws_set_log_level (LLL_ERR | LLL_WARN, s_lws_log);
    struct lws_context_creation_info info;
    memset (&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_VALIDATE_UTF8
                   | LWS_SERVER_OPTION_LIBEV;
    void *foreign_loops[1] = {gw->loop};
    info.foreign_loops = foreign_loops;
    info.user = gw;
    /*  Request heads beyond this are dropped by lws without an answer. */
    info.max_http_header_data = 16384;
    info.timeout_secs = 30;
    gw->lws = lws_create_context (&info);
    if (!gw->lws) {
        /*  Also when lws cannot load its libev glue (a package of its own). */
        log_error (NULL, "cannot create the lws context on the libev loop");
        goto fail;
    }
    info.port = port;
    info.iface = host;
    info.protocols = s_protocols;
    info.keepalive_timeout = 30;
    info.pvo = &s_vhost_options;
    info.retry_and_idle_policy = &s_no_keepalive;
    gw->vhost = lws_create_vhost (gw->lws, &info);
    if (!gw->vhost) {
        log_error (NULL, "cannot listen http=%s", config_str (cfg, "http"));
        goto fail;
    }
    gw->port = lws_get_vhost_listen_port (gw->vhost);
    if (config_str (cfg, "public_url"))
        snprintf (gw->public_url, sizeof gw->public_url, "%s", config_str (cfg, "public_url"));
    else
        snprintf (gw->public_url, sizeof gw->public_url, "http://%s:%d", host, gw->port);
    if (gw_loop_start (gw))
        goto fail;
    if (gw_ws_start (gw, &ws_opts))
        goto fail;
    gw->redis = gw_redis_new (gw, config_str (cfg, "redis"), gw_ratelimit_script ());
    if (!gw->redis || gw_peers_start (gw))
        goto fail;
    gw_ops_start (gw);
    /*  lws arms its timers when it has handled an event: give it one now,
        so that they run before the first client comes. */
    lws_cancel_service (gw->lws);
    log_info (NULL, "gateway listening url=http://%s:%d public_url=%s loop=%s", host, gw->port,
              gw->public_url, s_backend_name (ev_backend (gw->loop)));
    ev_run (gw->loop, 0);
    log_info (NULL, "gateway stopping");
    s_destroy (gw);
    return 0;
fail:
    s_destroy (gw);
    return 1;
}

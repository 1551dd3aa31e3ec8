/*  parta-gateway: reads configuration, builds the gateway (routes, rate
    limits, bus client, event subscription, Redis) and runs the lws loop
    until SIGINT or SIGTERM. */
#include "bus_socket.h"
#include "gw.h"
#include "gw_auth.h"
#include "gw_http.h"
#include "gw_metrics.h"
#include "gw_ops.h"
#include "gw_redis.h"
#include "gw_routes.h"
#include "gw_ws.h"
#include "log.h"

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
    {"ws_ping_s", "30", "seconds a WebSocket may be idle before it is pinged (closed if no pong in as many again)"},
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
    is gw_http_callback guarding against stray WebSocket upgrades. */
static struct lws_protocols s_protocols[] = {
    {"http", gw_ws_http_callback, sizeof (void *), 0, 0, NULL, 0},
    {"parta-fd", gw_loop_callback, 0, 0, 0, NULL, 0},
    {GW_WS_PROTOCOL, gw_ws_callback, sizeof (void *), 16384, 0, NULL, 65536},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/*  WebSocket upgrades that name no subprotocol get parta-ws (lws 4.1 picks
    the upgrade's protocol from Sec-WebSocket-Protocol or this default, never
    from a mount). Plain HTTP is unaffected: with no mount, lws hands every
    request to protocols[0]. */
static const struct lws_protocol_vhost_options s_ws_default = {NULL, NULL, "default", "1"};
static const struct lws_protocol_vhost_options s_vhost_options = {NULL, &s_ws_default,
                                                                  GW_WS_PROTOCOL, ""};

/*  lws pings a WebSocket idle this long and hangs up when no pong comes
    back (the ws role only: HTTP connections are not pinged). */
static lws_retry_bo_t s_ws_keepalive;

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

static void
s_destroy (gw_t *gw)
{
    gw->stopping = 1;
    gw_ops_stop (gw);
    gw_ws_stop (gw);
    if (gw->lws)
        gw_loop_stop (gw);
    gw_redis_destroy (&gw->redis);
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
    config_destroy (&gw->cfg);
    free (gw);
}

int
main (int argc, char **argv)
{
    zsys_init ();
    config_t *cfg = config_load_or_exit ("gateway", s_options, argc, argv);
    gw_t *gw = calloc (1, sizeof *gw);
    s_gw = gw;
    gw->cfg = cfg;
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
    s_ws_keepalive.secs_since_valid_ping = (uint16_t) ws_opts.ping_s;
    s_ws_keepalive.secs_since_valid_hangup = (uint16_t) (2 * ws_opts.ping_s);

    lws_set_log_level (LLL_ERR | LLL_WARN, s_lws_log);
    struct lws_context_creation_info info;
    memset (&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_VALIDATE_UTF8;
    info.user = gw;
    /*  Request heads beyond this are dropped by lws without an answer. */
    info.max_http_header_data = 16384;
    info.timeout_secs = 30;
    gw->lws = lws_create_context (&info);
    if (!gw->lws)
        goto fail;
    info.port = port;
    info.iface = host;
    info.protocols = s_protocols;
    info.keepalive_timeout = 30;
    info.pvo = &s_vhost_options;
    info.retry_and_idle_policy = &s_ws_keepalive;
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
    gw_ops_start (gw);
    log_info (NULL, "gateway listening url=http://%s:%d public_url=%s", host, gw->port,
              gw->public_url);
    while (!zsys_interrupted)
        if (lws_service (gw->lws, 0) < 0)
            break;
    log_info (NULL, "gateway stopping");
    s_destroy (gw);
    return 0;
fail:
    s_destroy (gw);
    return 1;
}

/*  gw_http: HTTP requests through the gateway. Each request walks a short
    pipeline: the per-IP limit, the route and the caller (bearer token),
    decoding (JSON body, query and path parameters into the bus method's
    request message by one generic codec), the route's own limits (per
    field, then per user), the bus call, and the reply turned back into
    JSON with the API's status and error body. Steps
    that wait (Redis, the bus) resume the pipeline from their callbacks;
    callbacks carry the request's id, so a client that went away meanwhile
    is simply not found. */
#include "gw_http.h"
#include "clock.h"
#include "codec.h"
#include "gw_auth.h"
#include "gw_limit.h"
#include "gw_metrics.h"
#include "gw_routes.h"
#include "log.h"
#include "text.h"
#include "ulid.h"

#include <assert.h>
#include <ctype.h>
#include <jansson.h>
#include <sodium.h>
#include <string.h>

#define MAX_BODY (1024 * 1024)
#define MAX_DISCARD (16 * 1024 * 1024)
#define MAX_BUFFERED (256 * 1024 * 1024)   /* bodies being read, all requests together */

/*  Bytes announced by bodies being read right now (one loop, no lock). */
static size_t s_buffered;
#define CHUNK 16384
#define MAX_HEADERS 6

enum {
    STAGE_IP_LIMIT = 0,
    STAGE_DECODE,
    STAGE_LIMITS,
    STAGE_AUTH,
    STAGE_USER_LIMITS,
    STAGE_CALL,
    STAGE_WAIT,
};

struct gw_req_t {
    uint64_t id;
    gw_t *gw;
    struct lws *wsi;
    gw_method_t method;
    char path[1024];
    const gw_route_t *route;
    int match;                  /* 0, 404 or 405 */
    char allow[64];
    gw_param_t params[GW_MAX_PARAMS];
    int n_params;
    char *body;
    size_t body_len, body_cap;
    size_t body_reserved;       /* counted in s_buffered until freed */
    int64_t content_length;
    char trace[ULID_LEN + 1];
    char ip[64];
    char user_agent[256];
    char idem[129];
    char accept[512];           /* browsers send up to ~150 bytes; longer reads as none */
    char content_type[128];
    char *token;
    int64_t start_us;
    arena_t *arena;
    ProtobufCMessage *msg;
    Bus__Caller *caller;
    int stage;
    const char *limits_at;      /* position in route->limits */
    int waiting;                /* an async step is out */
    int rx_paused;              /* input unwatched until the answer (s_pause_input) */
    int in_advance;
    uint64_t bus_call;
    void *bus_ctx;              /* the call's context, ours to free if cancelled */
    /* the response */
    int status;
    char *out;
    size_t out_len, out_sent;
    char out_type[64];
    int headers_sent;
    char hdr_name[MAX_HEADERS][32];
    char hdr_value[MAX_HEADERS][128];
    int n_hdr;
    int close_after;
    int responded;
    const char *bad_header;
    int discarding;             /* reading a too-large body only to drop it */
};

typedef struct {
    gw_req_t *req;
} pss_t;

static void s_advance (gw_req_t *req);

/* --- small accessors --- */

gw_t *gw_req_gw (gw_req_t *req) { return req->gw; }
const char *gw_req_trace (gw_req_t *req) { return req->trace; }
uint64_t gw_req_id (gw_req_t *req) { return req->id; }
const char *gw_req_accept (gw_req_t *req) { return req->accept; }
arena_t *gw_req_arena (gw_req_t *req) { return req->arena; }
const ProtobufCMessage *gw_req_msg (gw_req_t *req) { return req->msg; }

const char *
gw_req_user (gw_req_t *req)
{
    return req->caller && req->caller->user_id ? req->caller->user_id : "";
}

const char *
gw_req_session (gw_req_t *req)
{
    return req->caller && req->caller->session_id ? req->caller->session_id : "";
}

const Bus__Caller *
gw_req_caller (gw_req_t *req)
{
    return req->caller;
}

const char *
gw_req_param (gw_req_t *req, const char *name)
{
    for (int i = 0; i < req->n_params; i++)
        if (strcmp (req->params[i].name, name) == 0)
            return req->params[i].value;
    return NULL;
}

gw_req_t *
gw_req_find (gw_t *gw, uint64_t id)
{
    return u64map_get (gw->reqs, id);
}

static const char *
s_route_label (gw_req_t *req, char *buf, size_t len)
{
    if (req->route)
        snprintf (buf, len, "%s %s", req->route->method_name, req->route->pattern);
    else
        snprintf (buf, len, "unmatched");
    return buf;
}

/* --- responses --- */

void
gw_req_set_header (gw_req_t *req, const char *name, const char *value)
{
    if (req->n_hdr >= MAX_HEADERS)
        return;
    snprintf (req->hdr_name[req->n_hdr], sizeof req->hdr_name[0], "%s:", name);
    snprintf (req->hdr_value[req->n_hdr], sizeof req->hdr_value[0], "%s", value);
    req->n_hdr++;
}

void
gw_reply_text (gw_req_t *req, int status, const char *content_type, char *body, size_t len)
{
    if (req->responded) {
        free (body);
        return;
    }
    req->responded = 1;
    req->stage = STAGE_WAIT;
    req->status = status;
    req->out = body;
    req->out_len = body ? len : 0;
    snprintf (req->out_type, sizeof req->out_type, "%s", content_type);
    if (req->wsi) {
        if (req->rx_paused) {
            req->rx_paused = 0;
            lws_rx_flow_control (req->wsi, 1);
        }
        lws_callback_on_writable (req->wsi);
    }
}

void
gw_reply_json (gw_req_t *req, int status, json_t *body)
{
    char *text = NULL;
    if (body) {
        text = json_dumps (body, JSON_COMPACT | JSON_REAL_PRECISION (15));
        json_decref (body);
    }
    if (body && !text) {
        static const char oom[] = "{\"error\":{\"code\":\"unavailable\",\"message\":\"out of memory\"}}";
        gw_reply_text (req, 503, "application/json", strdup (oom), sizeof oom - 1);
        return;
    }
    gw_reply_text (req, status, "application/json", text, text ? strlen (text) : 0);
}

void
gw_reply_error (gw_req_t *req, int status, const char *code, const char *message,
                const char *field)
{
    json_t *err = json_pack ("{s:s, s:s}", "code", code, "message",
                             message && text_utf8_valid (message, strlen (message)) ? message : "");
    if (field && (*field || status == 400))
        json_object_set_new (err, "field",
                             json_string (text_utf8_valid (field, strlen (field)) ? field : "?"));
    gw_reply_json (req, status, json_pack ("{s:o}", "error", err));
}

static void
s_reply_limited (gw_req_t *req, int64_t retry_after_ms)
{
    char value[32];
    snprintf (value, sizeof value, "%lld",
              (long long) (gw_ratelimit_retry_after_s (retry_after_ms) > 0
                               ? gw_ratelimit_retry_after_s (retry_after_ms)
                               : 1));
    gw_req_set_header (req, "retry-after", value);
    gw_reply_error (req, 429, "rate_limited", "too many requests, try again later", NULL);
}

/* --- the request's life --- */

static gw_req_t *
s_req_new (gw_t *gw, struct lws *wsi)
{
    gw_req_t *req = calloc (1, sizeof *req);
    if (!req)
        return NULL;
    req->arena = arena_new ();
    if (!req->arena) {
        free (req);
        return NULL;
    }
    req->gw = gw;
    req->wsi = wsi;
    req->id = ++gw->next_req_id;
    req->start_us = clock_mono_us ();
    ulid_make (req->trace);
    if (u64map_put (gw->reqs, req->id, req)) {
        arena_destroy (&req->arena);
        free (req);
        return NULL;
    }
    return req;
}

static void
s_req_free (gw_req_t *req)
{
    if (!req)
        return;
    u64map_remove (req->gw->reqs, req->id);
    if (req->bus_call) {
        bus_client_cancel (req->gw->bus, req->bus_call);
        free (req->bus_ctx);
    }
    if (req->token) {
        sodium_memzero (req->token, strlen (req->token));
        free (req->token);
    }
    s_buffered -= req->body_reserved;
    free (req->body);
    free (req->out);
    arena_destroy (&req->arena);
    free (req);
}

static int
s_header (struct lws *wsi, enum lws_token_indexes token, char *buf, int len)
{
    buf[0] = 0;
    int n = lws_hdr_total_length (wsi, token);
    if (n <= 0)
        return 0;
    if (n >= len)
        return -1;
    return lws_hdr_copy (wsi, buf, len, token) < 0 ? -1 : n;
}

/*  The client's address: the peer, or the last X-Forwarded-For hop when
    the peer is a proxy we were told to trust. */
static void
s_client_ip (gw_req_t *req)
{
    char peer[64] = "";
    lws_get_peer_simple (req->wsi, peer, sizeof peer);
    /*  An IPv4 client of a dual-stack socket shows as ::ffff:a.b.c.d. */
    const char *plain = strncmp (peer, "::ffff:", 7) == 0 && strchr (peer + 7, '.') ? peer + 7 : peer;
    memmove (peer, plain, strlen (plain) + 1);
    snprintf (req->ip, sizeof req->ip, "%s", peer);
    if (!req->gw->trusted_proxies[0])
        return;
    char list[512];
    snprintf (list, sizeof list, "%s", req->gw->trusted_proxies);
    int trusted = 0;
    char *save = NULL;
    for (char *p = strtok_r (list, ", ", &save); p; p = strtok_r (NULL, ", ", &save))
        if (strcmp (p, peer) == 0)
            trusted = 1;
    if (!trusted)
        return;
    char xff[2048];
    int got = s_header (req->wsi, WSI_TOKEN_X_FORWARDED_FOR, xff, sizeof xff);
    if (got < 0) {
        req->bad_header = "X-Forwarded-For";
        return;
    }
    if (got == 0)
        return;
    char *last = strrchr (xff, ',');
    char *hop = last ? last + 1 : xff;
    while (*hop == ' ')
        hop++;
    size_t n = strlen (hop);
    while (n && hop[n - 1] == ' ')
        hop[--n] = 0;
    if (n > 0 && n < sizeof req->ip)
        snprintf (req->ip, sizeof req->ip, "%s", hop);
}

static gw_method_t
s_method (struct lws *wsi)
{
    static const struct {
        enum lws_token_indexes token;
        gw_method_t method;
    } map[] = {
        {WSI_TOKEN_GET_URI, GW_GET},       {WSI_TOKEN_POST_URI, GW_POST},
        {WSI_TOKEN_PUT_URI, GW_PUT},       {WSI_TOKEN_PATCH_URI, GW_PATCH},
        {WSI_TOKEN_DELETE_URI, GW_DELETE}, {WSI_TOKEN_OPTIONS_URI, GW_OPTIONS},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (lws_hdr_total_length (wsi, map[i].token) > 0)
            return map[i].method;
    return GW_METHOD_OTHER;
}

/*  Reads the request line and headers. Returns 0, or an HTTP status to
    answer at once (the body, if any, is then not read). */
static int
s_read_headers (gw_req_t *req, const char *path)
{
    struct lws *wsi = req->wsi;
    req->method = s_method (wsi);
    snprintf (req->path, sizeof req->path, "%s", path ? path : "/");
    s_client_ip (req);
    if (req->bad_header)
        return 400;
    s_header (wsi, WSI_TOKEN_HTTP_USER_AGENT, req->user_agent, sizeof req->user_agent);
    s_header (wsi, WSI_TOKEN_HTTP_ACCEPT, req->accept, sizeof req->accept);
    s_header (wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, req->content_type, sizeof req->content_type);
    int n = lws_hdr_custom_length (wsi, "idempotency-key:", 16);
    if (n > 0) {
        if (n >= (int) sizeof req->idem) {
            req->bad_header = "Idempotency-Key";
            return 400;
        }
        lws_hdr_custom_copy (wsi, req->idem, sizeof req->idem, "idempotency-key:", 16);
    }
    char auth[1024];
    int len = s_header (wsi, WSI_TOKEN_HTTP_AUTHORIZATION, auth, sizeof auth);
    if (len > 7 && strncasecmp (auth, "Bearer ", 7) == 0) {
        const char *t = auth + 7;
        while (*t == ' ')
            t++;
        if (*t)
            req->token = strdup (t);
    }
    sodium_memzero (auth, sizeof auth);
    char cl[32];
    req->content_length = -1;
    if (s_header (wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, cl, sizeof cl) > 0) {
        char *end;
        long long v = strtoll (cl, &end, 10);
        if (*end || v < 0) {
            req->bad_header = "Content-Length";
            return 400;
        }
        req->content_length = v;
    }
    char te[64];
    if (s_header (wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING, te, sizeof te) != 0) {
        if (req->content_length >= 0) {
            /*  Both framings at once: the classic request smuggling shape. */
            req->bad_header = "Transfer-Encoding";
            return 400;
        }
        return 411;
    }
    req->match = gw_route_match (req->method, req->path, &req->route, req->params, &req->n_params,
                                 req->allow, sizeof req->allow);
    return 0;
}

/* --- decoding --- */

/*  Query parameters, as lws split and decoded them ("name=value"). */
static int
s_apply_query (gw_req_t *req, char *field, size_t field_len, char *err, size_t errlen)
{
    /*  Writes take their fields from the body only: a password or a code in
        a URL would end up in proxies' logs. */
    int writes = req->method == GW_POST || req->method == GW_PUT || req->method == GW_PATCH;
    int allowed = !writes || (req->route->flags & GW_QUERY);
    char frag[1024];
    for (int i = 0; i < 32; i++) {
        int n = lws_hdr_copy_fragment (req->wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0)
            break;
        if (n == 0)
            continue;
        char *eq = strchr (frag, '=');
        const char *value = eq ? eq + 1 : "";
        if (eq)
            *eq = 0;
        snprintf (field, field_len, "%s", frag);
        if (gw_req_param (req, frag)) {
            snprintf (err, errlen, "%s is given by the path", frag);
            return -1;
        }
        if (!allowed) {
            snprintf (err, errlen, "this endpoint takes no query parameters: send them in the body");
            return -1;
        }
        if (!req->msg || codec_set_text (req->msg, frag, value, req->arena, err, errlen))
            return -1;
    }
    return 0;
}

static int
s_decode (gw_req_t *req)
{
    char field[128] = "", err[256] = "";
    const ProtobufCMessageDescriptor *desc = req->route->desc->input;
    int has_body = req->body_len > 0;
    if (has_body && req->content_type[0]
        && strncasecmp (req->content_type, "application/json", 16) != 0) {
        gw_reply_error (req, 415, "unsupported_media_type", "send JSON (application/json)", NULL);
        return -1;
    }
    json_t *json;
    if (has_body) {
        json_error_t jerr;
        /*  NUL is let through the parser so that the codec refuses it
            naming the field. */
        json = json_loadb (req->body, req->body_len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
        if (!json) {
            snprintf (err, sizeof err, "invalid JSON: %s (line %d, column %d)", jerr.text,
                      jerr.line, jerr.column);
            gw_reply_error (req, 400, "bad_request", err, "");
            return -1;
        }
    }
    else
        json = json_object ();
    int rc = codec_from_json (desc, json, req->arena, &req->msg, field, sizeof field, err,
                              sizeof err);
    json_decref (json);
    if (rc) {
        gw_reply_error (req, 400, "bad_request", err, field);
        return -1;
    }
    if (s_apply_query (req, field, sizeof field, err, sizeof err)) {
        gw_reply_error (req, 400, "bad_request", err[0] ? err : "unknown query parameter", field);
        return -1;
    }
    /*  The path decides what is acted on: its parameters come last, over
        anything the body or the query said. */
    for (int i = 0; i < req->n_params; i++)
        if (codec_set_text (req->msg, req->params[i].name, req->params[i].value, req->arena, err,
                            sizeof err)) {
            gw_reply_error (req, 400, "bad_request", err, req->params[i].name);
            return -1;
        }
    return 0;
}

/* --- rate limits --- */

static void
s_limit_done (gw_t *gw, uint64_t req_id, int allowed, int64_t retry_after_ms)
{
    gw_req_t *req = gw_req_find (gw, req_id);
    if (!req)
        return;
    req->waiting = 0;
    if (!allowed) {
        s_reply_limited (req, retry_after_ms);
        return;
    }
    if (!req->in_advance)
        s_advance (req);
}

/*  The value of a request field named in a limit, as text. */
static const char *
s_field_text (gw_req_t *req, const char *name, char *buf, size_t len)
{
    if (!req->msg)
        return NULL;
    const ProtobufCFieldDescriptor *f
        = protobuf_c_message_descriptor_get_field_by_name (req->msg->descriptor, name);
    if (!f || f->label == PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_STRING)
        return NULL;
    const char *v = *(const char *const *) ((const char *) req->msg + f->offset);
    if (!v || !*v)
        return NULL;
    /*  Every spelling of a phone shares one budget: the same normalisation
        identity applies. An unparseable phone is identity's to refuse. */
    if (strstr (name, "phone")) {
        if (len < 20 || text_phone_normalize (v, buf, len))
            return NULL;
        return buf;
    }
    snprintf (buf, len, "%s", v);
    return buf;
}

/*  Runs the route's limits whose subject kind matches `want_user`, from
    req->limits_at on. Returns 1 when all passed, 0 when one refused (the
    reply is set) or is pending. */
static int
s_route_limits (gw_req_t *req, int want_user)
{
    const char *p = req->limits_at;
    while (p && *p) {
        const char *end = strchr (p, ',');
        size_t n = end ? (size_t) (end - p) : strlen (p);
        char item[96];
        if (n >= sizeof item)
            n = sizeof item - 1;
        memcpy (item, p, n);
        item[n] = 0;
        p = end ? end + 1 : p + n;
        req->limits_at = p;
        char *colon = strchr (item, ':');
        if (!colon)
            continue;
        *colon = 0;
        const char *cls = item, *kind = colon + 1;
        int is_user = strcmp (kind, "user") == 0;
        if (is_user != want_user)
            continue;
        char buf[256];
        const char *subject;
        if (strcmp (kind, "ip") == 0)
            subject = req->ip;
        else if (is_user)
            subject = req->caller ? req->caller->user_id : NULL;
        else
            subject = s_field_text (req, kind, buf, sizeof buf);
        if (!subject || !*subject)
            continue;   /* a missing field is the service's to refuse */
        int64_t retry = 0;
        req->waiting = 1;
        int rc = gw_limit_check (req->gw, cls, subject, req->id, s_limit_done, &retry);
        if (rc == -1) {
            if (req->waiting)
                return 0;   /* s_limit_done resumes */
            if (req->responded)
                return 0;
            continue;
        }
        req->waiting = 0;
        if (rc == 0) {
            s_reply_limited (req, retry);
            return 0;
        }
    }
    return 1;
}

/* --- the caller --- */

static void
s_auth_done (gw_t *gw, uint64_t req_id, const Bus__Caller *caller, status_t status)
{
    gw_req_t *req = gw_req_find (gw, req_id);
    if (!req)
        return;
    req->waiting = 0;
    if (status == ST_OK && caller) {
        /*  A private copy: the cache may drop its entry while we wait. */
        size_t len = bus__caller__get_packed_size (caller);
        uint8_t *buf = arena_alloc (req->arena, len ? len : 1);
        bus__caller__pack (caller, buf);
        req->caller = bus__caller__unpack (arena_allocator (req->arena), len, buf);
        if (req->caller) {
            req->caller->ip = req->ip;
            req->caller->user_agent = req->user_agent;
        }
    }
    if (!req->caller) {
        if (status == ST_UNAUTHORIZED || status == ST_OK)
            gw_reply_error (req, 401, "unauthorized", "the token is missing, expired or revoked",
                            NULL);
        else
            gw_reply_error (req, 503, "unavailable", "cannot check the token right now", NULL);
        return;
    }
    if (!req->in_advance)
        s_advance (req);
}

/* --- the call --- */

typedef struct {
    gw_t *gw;
    uint64_t req_id;
    const char *method;
    int64_t start_us;
    gw_call_fn *done;
    void *arg;
} call_ctx_t;

static void
s_call_reply (void *arg, const Bus__Reply *reply)
{
    call_ctx_t ctx = *(call_ctx_t *) arg;
    free (arg);
    gw_metrics_bus (ctx.gw->metrics, ctx.method, reply->status, clock_mono_us () - ctx.start_us);
    gw_req_t *req = gw_req_find (ctx.gw, ctx.req_id);
    if (!req)
        return;
    req->bus_call = 0;
    req->bus_ctx = NULL;
    ctx.done (req, reply, ctx.arg);
}

int
gw_req_call (gw_req_t *req, const char *service, const char *method,
             const ProtobufCMessage *body, int timeout_ms, gw_call_fn *done, void *arg)
{
    assert (!req->bus_call);
    call_ctx_t *ctx = malloc (sizeof *ctx);
    if (!ctx) {
        gw_reply_error (req, 503, "unavailable", "out of memory", NULL);
        return -1;
    }
    *ctx = (call_ctx_t) {req->gw, req->id, method, clock_mono_us (), done, arg};
    bus_call_opts_t opts = {
        .timeout_ms = timeout_ms,
        .flags = (req->route->flags & GW_READ) ? BUS_CALL_RETRY : 0,
        .caller = req->caller,
        .trace_id = req->trace,
        .idempotency_key = req->idem[0] ? req->idem : NULL,
    };
    req->bus_call = bus_client_send (req->gw->bus, service, method, body, &opts, s_call_reply, ctx);
    if (!req->bus_call) {
        free (ctx);
        gw_reply_error (req, 503, "unavailable", "cannot reach the bus", NULL);
        return -1;
    }
    req->bus_ctx = ctx;
    gw_bus_kick (req->gw);
    return 0;
}

void
gw_reply_bus_error (gw_req_t *req, const Bus__Reply *reply)
{
    const gw_route_t *route = req->route;
    const char *code = reply->code && *reply->code ? reply->code : status_name (reply->status);
    if (reply->status == ST_RATE_LIMITED) {
        char value[16];
        snprintf (value, sizeof value, "%d", reply->retry_after > 0 ? reply->retry_after : 1);
        gw_req_set_header (req, "retry-after", value);
    }
    if (reply->status == ST_INTERNAL)
        log_error (req->trace, "service failed route=\"%s %s\" message=\"%s\"", route->method_name,
                   route->pattern, reply->message);
    json_t *err = json_pack ("{s:s, s:s}", "code", code, "message",
                             reply->message && *reply->message ? reply->message
                                                               : status_name (reply->status));
    if (reply->field && (*reply->field || reply->status == ST_BAD_REQUEST))
        json_object_set_new (err, "field", json_string (reply->field));
    if (reply->reason && *reply->reason)
        json_object_set_new (err, "reason", json_string (reply->reason));
    gw_reply_json (req, status_http (reply->status), json_pack ("{s:o}", "error", err));
}

void
gw_reply_message (gw_req_t *req, int status, const ProtobufCMessage *msg)
{
    json_t *json = msg ? codec_to_json (msg) : NULL;
    if (!json) {
        log_error (req->trace, "reply does not decode route=\"%s %s\"", req->route->method_name,
                   req->route->pattern);
        gw_reply_error (req, 500, "internal", "the service's reply could not be read", NULL);
        return;
    }
    gw_reply_json (req, status, json);
}

/*  The route's own call answered. */
static void
s_on_reply (gw_req_t *req, const Bus__Reply *reply, void *arg)
{
    (void) arg;
    const gw_route_t *route = req->route;
    if (reply->status != ST_OK) {
        gw_reply_bus_error (req, reply);
        return;
    }
    ProtobufCMessage *out = protobuf_c_message_unpack (
        route->desc->output, arena_allocator (req->arena), reply->body.len, reply->body.data);
    if (route->after)
        route->after (req, req->msg, out);
    if (route->success == 204) {
        gw_reply_text (req, 204, "application/json", NULL, 0);
        return;
    }
    /*  Get-or-create endpoints say which it was. */
    int status = route->success ? route->success : 200;
    if (status == 200 && reply->reason && strcmp (reply->reason, "created") == 0)
        status = 201;
    gw_reply_message (req, status, out);
}

static void
s_call (gw_req_t *req)
{
    const gw_route_t *route = req->route;
    if (route->local)
        route->local (req);
    else
        gw_req_call (req, route->service, route->bus_method, req->msg, req->gw->call_timeout_ms,
                     s_on_reply, NULL);
}

/* --- the pipeline --- */

static void
s_advance (gw_req_t *req)
{
    req->in_advance = 1;
    while (!req->responded && !req->waiting) {
        switch (req->stage) {
        case STAGE_IP_LIMIT: {
            req->stage = STAGE_AUTH;
            int64_t retry = 0;
            req->waiting = 1;
            int rc = gw_limit_check (req->gw, "ip", req->ip, req->id, s_limit_done, &retry);
            if (rc != -1) {
                req->waiting = 0;
                if (rc == 0)
                    s_reply_limited (req, retry);
            }
            break;
        }
        case STAGE_AUTH:
            /*  Who is calling comes before what they sent: an anonymous
                caller of a protected endpoint learns nothing about it. */
            if (req->match == 404) {
                gw_reply_error (req, 404, "not_found", "no such endpoint", NULL);
                break;
            }
            if (req->match == 405) {
                gw_req_set_header (req, "allow", req->allow);
                gw_reply_error (req, 405, "method_not_allowed",
                                "this endpoint does not take that method", NULL);
                break;
            }
            req->stage = STAGE_DECODE;
            if (req->route->flags & GW_PUBLIC) {
                /*  Anonymous, but services still learn where it came from
                    (sessions keep it; guessing protection counts by it). */
                req->caller = arena_msg (req->arena, &bus__caller__descriptor);
                req->caller->ip = req->ip;
                req->caller->user_agent = req->user_agent;
                break;
            }
            if (!req->token) {
                gw_reply_error (req, 401, "unauthorized",
                                "sign in and send the token as Authorization: Bearer", NULL);
                break;
            }
            req->waiting = 1;
            gw_auth_resolve (req->gw, req->token, req->ip, req->user_agent, req->trace, req->id,
                             s_auth_done);
            break;
        case STAGE_DECODE:
            if (req->route->desc && s_decode (req))
                break;
            req->limits_at = req->route->limits;
            req->stage = STAGE_LIMITS;
            break;
        case STAGE_LIMITS:
            if (!s_route_limits (req, 0))
                break;
            req->limits_at = req->route->limits;
            req->stage = STAGE_USER_LIMITS;
            break;
        case STAGE_USER_LIMITS:
            if (!s_route_limits (req, 1))
                break;
            req->stage = STAGE_CALL;
            break;
        case STAGE_CALL:
            req->stage = STAGE_WAIT;
            s_call (req);
            if (!req->responded)
                req->waiting = 1;
            break;
        default:
            req->waiting = 1;
            break;
        }
    }
    req->in_advance = 0;
}

/* --- writing --- */

/*  Writes what the socket takes now. Returns -1 to close the connection. */
static int
s_write (struct lws *wsi, pss_t *pss)
{
    gw_req_t *req = pss->req;
    if (!req || !req->responded)
        return 0;
    if (!req->headers_sent) {
        unsigned char buf[LWS_PRE + 2048];
        unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
        if (req->status == 204) {
            if (lws_add_http_header_status (wsi, 204, &p, end))
                return -1;
        }
        else if (lws_add_http_common_headers (wsi, (unsigned int) req->status, req->out_type,
                                              (lws_filepos_t) req->out_len, &p, end))
            return -1;
        for (int i = 0; i < req->n_hdr; i++)
            if (lws_add_http_header_by_name (wsi, (const unsigned char *) req->hdr_name[i],
                                             (const unsigned char *) req->hdr_value[i],
                                             (int) strlen (req->hdr_value[i]), &p, end))
                return -1;
        if (lws_add_http_header_by_name (wsi, (const unsigned char *) "x-trace-id:",
                                         (const unsigned char *) req->trace,
                                         (int) strlen (req->trace), &p, end))
            return -1;
        if (req->close_after
            && lws_add_http_header_by_token (wsi, WSI_TOKEN_CONNECTION,
                                             (const unsigned char *) "close", 5, &p, end))
            return -1;
        if (lws_finalize_write_http_header (wsi, start, &p, end))
            return -1;
        req->headers_sent = 1;
    }
    if (req->out_sent < req->out_len) {
        static unsigned char chunk[LWS_PRE + CHUNK];
        size_t n = req->out_len - req->out_sent;
        if (n > CHUNK)
            n = CHUNK;
        memcpy (chunk + LWS_PRE, req->out + req->out_sent, n);
        int last = req->out_sent + n == req->out_len;
        if (lws_write (wsi, chunk + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP)
            != (int) n)
            return -1;
        req->out_sent += n;
        if (!last) {
            lws_callback_on_writable (wsi);
            return 0;
        }
    }
    /*  Done: account, then free the request before the next one on this
        connection begins. */
    char label[160];
    int64_t us = clock_mono_us () - req->start_us;
    gw_metrics_http (req->gw->metrics, s_route_label (req, label, sizeof label), req->status, us);
    log_msg (req->status >= 500 ? LOG_LEVEL_WARN : LOG_LEVEL_INFO, req->trace,
             "http %s route=\"%s\" status=%d ms=%.2f ip=%s", gw_method_name (req->method), label,
             req->status, (double) us / 1000.0, req->ip);
    int close = req->close_after;
    s_req_free (req);
    pss->req = NULL;
    if (close)
        return -1;
    return lws_http_transaction_completed (wsi) ? -1 : 0;
}

/*  While an answer is pending, lws reads nothing more from an HTTP/1
    connection but keeps it in the loop's read set: a client that closes
    (or pipelines its next request) while its request waits for a service
    would wake the loop over and over for input that stays unread. So
    input is not watched until the answer is ready. lws handles no
    writability of a connection whose input is paused, so gw_reply_text
    resumes it before asking to write; lws then reads the close (or the
    next request) once the answer is out. */
static void
s_pause_input (gw_req_t *req)
{
    if (req->wsi && !req->responded && !req->rx_paused) {
        req->rx_paused = 1;
        lws_rx_flow_control (req->wsi, 0);
    }
}

/* --- the lws protocol --- */

int
gw_http_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    pss_t *pss = user;
    gw_t *gw = lws_context_user (lws_get_context (wsi));
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        if (pss->req) {
            s_req_free (pss->req);
            pss->req = NULL;
        }
        gw_req_t *req = s_req_new (gw, wsi);
        if (!req)
            return -1;
        pss->req = req;
        int early = s_read_headers (req, (const char *) in);
        if (early) {
            req->close_after = 1;
            if (early == 411)
                gw_reply_error (req, 411, "length_required", "send the body with Content-Length",
                                NULL);
            else
                gw_reply_error (req, 400, "bad_request",
                                "a header is malformed (Content-Length, or Idempotency-Key over 128 bytes)",
                                req->bad_header);
            return 0;
        }
        int body_method = req->method == GW_POST || req->method == GW_PUT
                          || req->method == GW_PATCH || req->method == GW_DELETE;
        if (body_method && req->content_length > 0) {
            if (req->content_length > MAX_BODY) {
                /*  Answering before the body is read would make the kernel
                    reset the connection (unread data at close), and the
                    client would never see the answer: read and drop what
                    was announced, within reason, then answer. */
                req->close_after = 1;
                if (req->content_length > MAX_DISCARD) {
                    gw_reply_error (req, 413, "payload_too_large", "the body is larger than 1 MiB",
                                    NULL);
                    return 0;
                }
                req->discarding = 1;
                return 0;
            }
            /*  Grown as data arrives, within a budget for all bodies
                being read at once, so slow senders cannot pin memory. */
            if (s_buffered + (size_t) req->content_length > MAX_BUFFERED) {
                req->close_after = 1;
                gw_reply_error (req, 503, "unavailable", "too many requests in progress, try again",
                                NULL);
                return 0;
            }
            req->body_reserved = (size_t) req->content_length;
            s_buffered += req->body_reserved;
            return 0;   /* the body follows */
        }
        s_advance (req);
        s_pause_input (req);
        return 0;
    }
    case LWS_CALLBACK_HTTP_BODY: {
        gw_req_t *req = pss->req;
        if (req && req->discarding)
            return 0;
        if (!req || req->responded || !req->body_reserved)
            return 0;
        if (req->body_len + len > (size_t) req->content_length) {
            req->close_after = 1;
            gw_reply_error (req, 413, "payload_too_large", "the body is longer than announced",
                            NULL);
            return 0;
        }
        if (req->body_len + len + 1 > req->body_cap) {
            size_t cap = req->body_cap ? req->body_cap * 2 : 4096;
            while (cap < req->body_len + len + 1)
                cap *= 2;
            if (cap > (size_t) req->content_length + 1)
                cap = (size_t) req->content_length + 1;
            char *body = realloc (req->body, cap);
            if (!body)
                return -1;
            req->body = body;
            req->body_cap = cap;
        }
        memcpy (req->body + req->body_len, in, len);
        req->body_len += len;
        return 0;
    }
    case LWS_CALLBACK_HTTP_BODY_COMPLETION: {
        gw_req_t *req = pss->req;
        if (req && req->discarding && !req->responded)
            gw_reply_error (req, 413, "payload_too_large", "the body is larger than 1 MiB", NULL);
        else if (req && !req->responded) {
            s_advance (req);
            s_pause_input (req);
        }
        return 0;
    }
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return s_write (wsi, pss);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (pss && pss->req) {
            s_req_free (pss->req);
            pss->req = NULL;
        }
        break;
    default:
        break;
    }
    return lws_callback_http_dummy (wsi, reason, user, in, len);
}

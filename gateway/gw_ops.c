/*  gw_ops: see gw_ops.h. */
#include "gw_ops.h"
#include "gw_auth.h"
#include "gw_metrics.h"
#include "gw_redis.h"
#include "log.h"

#include <jansson.h>
#include <string.h>

#define POLL_MS 5000

void
gw_ops_healthz (gw_req_t *req)
{
    gw_reply_json (req, 200, json_pack ("{s:s}", "status", "ok"));
}

void
gw_ops_metrics (gw_req_t *req)
{
    gw_t *gw = gw_req_gw (req);
    size_t len = 0;
    char *text = gw_metrics_render (gw->metrics, &len);
    if (!text) {
        gw_reply_error (req, 503, "unavailable", "out of memory", NULL);
        return;
    }
    /*  A few figures that are state, not counters. */
    char extra[256];
    int n = snprintf (extra, sizeof extra,
                      "# HELP parta_auth_cache_entries Callers cached by the gateway.\n"
                      "# TYPE parta_auth_cache_entries gauge\nparta_auth_cache_entries %zu\n",
                      gw_auth_cached (gw));
    char *all = realloc (text, len + (size_t) n + 1);
    if (all) {
        memcpy (all + len, extra, (size_t) n + 1);
        len += (size_t) n;
        text = all;
    }
    gw_reply_text (req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

/*  Fills the workers gauge from an mmi.services reply; returns the list. */
static Bus__MmiServices *
s_services (gw_t *gw, const Bus__Reply *reply)
{
    if (reply->status != ST_OK)
        return NULL;
    Bus__MmiServices *list = bus__mmi_services__unpack (NULL, reply->body.len, reply->body.data);
    for (size_t i = 0; list && i < list->n_items; i++)
        gw_metrics_workers (gw->metrics, list->items[i]->name, (int) list->items[i]->workers);
    return list;
}

typedef struct {
    gw_t *gw;
    uint64_t req_id;
} ready_t;

static void
s_ready_reply (void *arg, const Bus__Reply *reply)
{
    ready_t *r = arg;
    gw_t *gw = r->gw;
    gw_req_t *req = gw_req_find (gw, r->req_id);
    free (r);
    Bus__MmiServices *list = s_services (gw, reply);
    if (!req) {
        if (list)
            bus__mmi_services__free_unpacked (list, NULL);
        return;
    }
    int ready = list != NULL;
    json_t *services = json_object ();
    char names[256];
    snprintf (names, sizeof names, "%s", gw->services);
    char *save = NULL;
    for (char *name = strtok_r (names, ",", &save); name; name = strtok_r (NULL, ",", &save)) {
        int workers = 0;
        for (size_t i = 0; list && i < list->n_items; i++)
            if (strcmp (list->items[i]->name, name) == 0)
                workers = (int) list->items[i]->workers;
        if (workers < 1)
            ready = 0;
        json_object_set_new (services, name, json_integer (workers));
    }
    int redis = gw_redis_up (gw->redis);
    if (!redis)
        ready = 0;
    json_t *body = json_pack ("{s:s, s:{s:s, s:s, s:o}}", "status", ready ? "ready" : "not_ready",
                              "checks", "broker", list ? "ok" : "down", "redis",
                              redis ? "ok" : "down", "services", services);
    if (list)
        bus__mmi_services__free_unpacked (list, NULL);
    gw_reply_json (req, ready ? 200 : 503, body);
}

void
gw_ops_readyz (gw_req_t *req)
{
    gw_t *gw = gw_req_gw (req);
    ready_t *r = calloc (1, sizeof *r);
    if (!r) {
        gw_reply_error (req, 503, "unavailable", "out of memory", NULL);
        return;
    }
    r->gw = gw;
    r->req_id = gw_req_id (req);
    bus_call_opts_t opts = {.timeout_ms = 1000, .trace_id = gw_req_trace (req)};
    if (!bus_client_send (gw->bus, "mmi", "mmi.services", NULL, &opts, s_ready_reply, r)) {
        free (r);
        gw_reply_error (req, 503, "unavailable", "cannot reach the broker", NULL);
        return;
    }
    gw_bus_kick (gw);
}

/* --- the periodic poll --- */

static ev_timer s_poll_timer;
static gw_t *s_gw;

static void
s_poll_reply (void *arg, const Bus__Reply *reply)
{
    gw_t *gw = arg;
    Bus__MmiServices *list = s_services (gw, reply);
    if (list)
        bus__mmi_services__free_unpacked (list, NULL);
}

static void
s_poll (struct ev_loop *loop, ev_timer *timer, int revents)
{
    (void) revents;
    gw_t *gw = s_gw;
    if (!gw || gw->stopping) {
        ev_timer_stop (loop, timer);
        return;
    }
    bus_call_opts_t opts = {.timeout_ms = 2000};
    if (bus_client_send (gw->bus, "mmi", "mmi.services", NULL, &opts, s_poll_reply, gw))
        gw_bus_kick (gw);
}

/*  The first poll soon after start, then every POLL_MS. */
void
gw_ops_start (gw_t *gw)
{
    s_gw = gw;
    ev_timer_init (&s_poll_timer, s_poll, 0.1, POLL_MS / 1000.0);
    ev_timer_start (gw->loop, &s_poll_timer);
}

void
gw_ops_stop (gw_t *gw)
{
    if (s_gw)
        ev_timer_stop (gw->loop, &s_poll_timer);
    s_gw = NULL;
}

/*  gw_loop: foreign descriptors in the libwebsockets loop. Each watch
    adopts a duplicate of the descriptor as a "raw file" connection, so lws
    polls it with the HTTP sockets and closing the watch never closes the
    owner's descriptor. The bus client and the event subscription are
    ZeroMQ sockets: their descriptors signal edge-style, so every wake-up
    drains them completely and a timer covers the bus client's deadlines. */
#include "gw.h"
#include "gw_auth.h"
#include "gw_metrics.h"
#include "gw_ws.h"
#include "log.h"

#include <unistd.h>

struct gw_watch_t {
    gw_t *gw;
    struct lws *wsi;
    gw_watch_fn *on_read;
    gw_watch_fn *on_write;
    void *arg;
    int dead;
};

int gw_loop_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len);

int
gw_loop_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    (void) user;
    (void) in;
    (void) len;
    gw_watch_t *watch = lws_get_opaque_user_data (wsi);
    switch (reason) {
    case LWS_CALLBACK_RAW_RX_FILE:
        if (watch && !watch->dead && watch->on_read)
            watch->on_read (watch, watch->arg);
        break;
    case LWS_CALLBACK_RAW_WRITEABLE_FILE:
        if (watch && !watch->dead && watch->on_write)
            watch->on_write (watch, watch->arg);
        break;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        if (watch) {
            lws_set_opaque_user_data (wsi, NULL);
            free (watch);
        }
        break;
    default:
        break;
    }
    return 0;
}

gw_watch_t *
gw_watch_add (gw_t *gw, int fd, gw_watch_fn *on_read, gw_watch_fn *on_write, void *arg)
{
    gw_watch_t *watch = calloc (1, sizeof *watch);
    if (!watch)
        return NULL;
    watch->gw = gw;
    watch->on_read = on_read;
    watch->on_write = on_write;
    watch->arg = arg;
    int copy = dup (fd);
    if (copy < 0) {
        free (watch);
        return NULL;
    }
    lws_adopt_desc_t info;
    memset (&info, 0, sizeof info);
    info.vh = gw->vhost;
    info.type = LWS_ADOPT_RAW_FILE_DESC;
    info.fd.filefd = copy;
    info.vh_prot_name = "parta-fd";
    info.opaque = watch;
    watch->wsi = lws_adopt_descriptor_vhost_via_info (&info);
    if (!watch->wsi) {
        /*  lws closed the duplicate already. */
        free (watch);
        return NULL;
    }
    return watch;
}

void
gw_watch_want_write (gw_watch_t *watch)
{
    if (watch && !watch->dead)
        lws_callback_on_writable (watch->wsi);
}

void
gw_watch_remove (gw_watch_t **watch_p)
{
    if (!watch_p || !*watch_p)
        return;
    gw_watch_t *watch = *watch_p;
    watch->dead = 1;
    /*  Closed from the loop, which then frees the watch. */
    lws_set_timeout (watch->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
    *watch_p = NULL;
}

/* --- the bus client --- */

static void s_bus_service (gw_t *gw);

static void
s_bus_timer (lws_sorted_usec_list_t *sul)
{
    gw_t *gw = lws_container_of (sul, gw_t, bus_timer);
    s_bus_service (gw);
}

static void
s_bus_service (gw_t *gw)
{
    int wait = bus_client_process (gw->bus);
    if (wait >= 0)
        lws_sul_schedule (gw->lws, 0, &gw->bus_timer, s_bus_timer,
                          (lws_usec_t) (wait > 0 ? wait : 1) * LWS_US_PER_MS);
    else
        lws_sul_cancel (&gw->bus_timer);
}

static void
s_bus_readable (gw_watch_t *watch, void *arg)
{
    (void) watch;
    s_bus_service ((gw_t *) arg);
}

void
gw_bus_kick (gw_t *gw)
{
    lws_sul_schedule (gw->lws, 0, &gw->bus_timer, s_bus_timer, 1);
}

/* --- events --- */

#define EVENTS_PER_WAKE 1000

static void s_sub_drain (gw_t *gw);

static void
s_sub_timer (lws_sorted_usec_list_t *sul)
{
    s_sub_drain (lws_container_of (sul, gw_t, sub_timer));
}

static void
s_sub_drain (gw_t *gw)
{
    int n = 0;
    while (n < EVENTS_PER_WAKE && (zsock_events (gw->sub) & ZMQ_POLLIN)) {
        zmsg_t *msg = zmsg_recv (gw->sub);
        if (!msg)
            break;
        zframe_t *topic = zmsg_first (msg);
        zframe_t *body = zmsg_next (msg);
        if (topic && body && zmsg_size (msg) == 2) {
            Ev__Event *event = ev__event__unpack (NULL, zframe_size (body), zframe_data (body));
            if (event) {
                gw_auth_on_event (gw, event);
                gw_ws_on_event (gw, event);     /* pushes to WebSocket clients */
                ev__event__free_unpacked (event, NULL);
            }
        }
        zmsg_destroy (&msg);
        n++;
    }
    /*  More than one wake's worth: come back soon rather than starve HTTP. */
    if (n == EVENTS_PER_WAKE)
        lws_sul_schedule (gw->lws, 0, &gw->sub_timer, s_sub_timer, 1);
}

static void
s_sub_readable (gw_watch_t *watch, void *arg)
{
    (void) watch;
    s_sub_drain ((gw_t *) arg);
}

int gw_loop_start (gw_t *gw);
void gw_loop_stop (gw_t *gw);

int
gw_loop_start (gw_t *gw)
{
    gw->bus_watch = gw_watch_add (gw, bus_client_fd (gw->bus), s_bus_readable, NULL, gw);
    gw->sub_watch = gw_watch_add (gw, zsock_fd (gw->sub), s_sub_readable, NULL, gw);
    if (!gw->bus_watch || !gw->sub_watch) {
        log_error (NULL, "cannot watch the bus sockets");
        return -1;
    }
    gw_bus_kick (gw);
    lws_sul_schedule (gw->lws, 0, &gw->sub_timer, s_sub_timer, 1);
    return 0;
}

void
gw_loop_stop (gw_t *gw)
{
    lws_sul_cancel (&gw->bus_timer);
    lws_sul_cancel (&gw->sub_timer);
    gw_watch_remove (&gw->bus_watch);
    gw_watch_remove (&gw->sub_watch);
}

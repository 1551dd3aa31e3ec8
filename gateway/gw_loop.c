/*  gw_loop: the bus client and the event subscription in the gateway's
    event loop (libev; lws runs on the same loop, see gw_main.c). Both are
    ZeroMQ sockets: their descriptors signal edge-style, so every wake-up
    drains them completely, and a timer covers the bus client's deadlines
    and the input a send may have hidden (gw_bus_kick). */
#include "gw.h"
#include "gw_auth.h"
#include "gw_metrics.h"
#include "gw_ws.h"
#include "log.h"

void
gw_timer_after (gw_t *gw, ev_timer *timer, int64_t ms)
{
    ev_timer_stop (gw->loop, timer);
    ev_timer_set (timer, (ev_tstamp) (ms > 0 ? ms : 0) / 1000.0, 0.);
    ev_timer_start (gw->loop, timer);
}

/* --- the bus client --- */

static void
s_bus_service (gw_t *gw)
{
    int wait = bus_client_process (gw->bus);
    if (wait >= 0)
        gw_timer_after (gw, &gw->bus_timer, wait > 0 ? wait : 1);
    else
        ev_timer_stop (gw->loop, &gw->bus_timer);
}

static void
s_bus_timer (struct ev_loop *loop, ev_timer *timer, int revents)
{
    (void) loop;
    (void) revents;
    s_bus_service (timer->data);
}

static void
s_bus_readable (struct ev_loop *loop, ev_io *io, int revents)
{
    (void) loop;
    (void) revents;
    s_bus_service (io->data);
}

/*  A turn of the loop may handle many HTTP requests and WebSocket frames,
    each starting a bus call: they are collected from the turn's start
    (the check watcher, run first) and leave as one message before the
    loop sleeps again (the prepare watcher), docs/bus.md §10.3. */
static void
s_bus_hold (struct ev_loop *loop, ev_check *check, int revents)
{
    (void) loop;
    (void) revents;
    gw_t *gw = check->data;
    if (!gw->bus_held) {
        bus_client_batch_begin (gw->bus);
        gw->bus_held = 1;
    }
}

static void
s_bus_release (struct ev_loop *loop, ev_prepare *prepare, int revents)
{
    (void) loop;
    (void) revents;
    gw_t *gw = prepare->data;
    if (gw->bus_held) {
        gw->bus_held = 0;
        /*  Sending may have taken the edge of replies already there. */
        if (bus_client_batch_end (gw->bus))
            gw_bus_kick (gw);
    }
}

/*  At the loop's next turn rather than now: the caller may be in the
    middle of a callback of the bus client itself. */
void
gw_bus_kick (gw_t *gw)
{
    if (!ev_is_active (&gw->bus_timer) || ev_timer_remaining (gw->loop, &gw->bus_timer) > 0)
        gw_timer_after (gw, &gw->bus_timer, 0);
}

/* --- events --- */

#define EVENTS_PER_WAKE 1000

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
    /*  More than one wake's worth: come back at the next turn, after the
        sockets that are ready now, rather than starve HTTP. */
    if (n == EVENTS_PER_WAKE)
        gw_timer_after (gw, &gw->sub_timer, 0);
}

static void
s_sub_timer (struct ev_loop *loop, ev_timer *timer, int revents)
{
    (void) loop;
    (void) revents;
    s_sub_drain (timer->data);
}

static void
s_sub_readable (struct ev_loop *loop, ev_io *io, int revents)
{
    (void) loop;
    (void) revents;
    s_sub_drain (io->data);
}

int
gw_loop_start (gw_t *gw)
{
    int bus_fd = bus_client_fd (gw->bus);
    int sub_fd = zsock_fd (gw->sub);
    if (bus_fd < 0 || sub_fd < 0) {
        log_error (NULL, "cannot watch the bus sockets");
        return -1;
    }
    ev_io_init (&gw->bus_io, s_bus_readable, bus_fd, EV_READ);
    gw->bus_io.data = gw;
    ev_timer_init (&gw->bus_timer, s_bus_timer, 0., 0.);
    gw->bus_timer.data = gw;
    ev_io_init (&gw->sub_io, s_sub_readable, sub_fd, EV_READ);
    gw->sub_io.data = gw;
    ev_timer_init (&gw->sub_timer, s_sub_timer, 0., 0.);
    gw->sub_timer.data = gw;
    ev_check_init (&gw->bus_hold, s_bus_hold);
    gw->bus_hold.data = gw;
    ev_set_priority (&gw->bus_hold, EV_MAXPRI);
    ev_prepare_init (&gw->bus_release, s_bus_release);
    gw->bus_release.data = gw;
    ev_set_priority (&gw->bus_release, EV_MINPRI);
    ev_io_start (gw->loop, &gw->bus_io);
    ev_io_start (gw->loop, &gw->sub_io);
    ev_check_start (gw->loop, &gw->bus_hold);
    ev_prepare_start (gw->loop, &gw->bus_release);
    /*  Whatever arrived before we watched is behind an edge already seen. */
    gw_bus_kick (gw);
    gw_timer_after (gw, &gw->sub_timer, 0);
    return 0;
}

void
gw_loop_stop (gw_t *gw)
{
    ev_io_stop (gw->loop, &gw->bus_io);
    ev_io_stop (gw->loop, &gw->sub_io);
    ev_check_stop (gw->loop, &gw->bus_hold);
    ev_prepare_stop (gw->loop, &gw->bus_release);
    if (gw->bus_held) {
        gw->bus_held = 0;
        bus_client_batch_end (gw->bus);
    }
    ev_timer_stop (gw->loop, &gw->bus_timer);
    ev_timer_stop (gw->loop, &gw->sub_timer);
}

/*  bus_bench: what a request costs on the bus. Round trips through the
    broker to parta-echo-worker processes (started by the test harness, so
    what is measured is what runs), next to a plain DEALER<->ROUTER echo in
    this process with the same message sizes and pipelining, over ipc://,
    tcp:// and tcp:// with CURVE. Prints requests/s, p50/p99 latency and the
    broker/direct ratio, a worker-credit sweep, a fixed-rate run and paired
    runs (broker and direct alternately, whose median ratio the target is
    judged on), then checks the targets. scripts/bench.sh runs it (`make bench`). */
#include "bus_client.h"
#include "bus_proto.h"
#include "config.h"
#include "curve.h"
#include "echo.pb-c.h"
#include "../service/harness.h"
#include "log.h"

#include <arpa/inet.h>
#include <czmq.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TEXT_LEN 64             /* bytes of text in each echo request */
#define WINDOW_ASYNC 100        /* requests in flight for the pipelined runs */
#define FIXED_RATE 10000        /* requests/s offered in the fixed-rate runs */
#define RING 65536              /* request slots; more than can ever be in flight */
#define MAX_SAMPLES (4u << 20)
#define DRAIN_NS 3000000000LL   /* how long a run waits for its last replies */

/*  Targets from the issue. */
#define TARGET_RATIO 0.5
#define TARGET_RATE 100000.0
#define TARGET_P99_US 1000.0

static double s_warm_s = 0.3;   /* discarded at the start of every run */
static double s_run_s = 2.0;    /* measured, closed-loop runs */
static double s_sweep_s = 1.5;  /* measured, credit sweep */
static double s_fixed_s = 3.0;  /* measured, fixed-rate runs */
static double s_pair_s = 1.0;   /* measured, each run of a pair */
#define PAIRS 5                 /* paired runs per transport and worker count */
static const char *s_dirs_file; /* where temporary directories are noted */

/*  The size of a packed bus.Reply to an echo, learnt from the first reply
    through the broker; the direct echo answers with this many bytes. */
static size_t s_reply_len;
static size_t s_request_len;

static int64_t
s_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* --- runs: closed loop (a fixed window in flight) and open loop (a fixed
       rate), over any transport that can issue a request for a slot and
       report its completion --- */

typedef struct run_t run_t;
typedef struct driver_t driver_t;

struct driver_t {
    /*  Sends a request tagged with `slot`. 0, or -1 if it could not. */
    int (*issue) (driver_t *d, uint32_t slot);
    /*  Waits for replies until `until` (monotonic ns) at most, and reports
        each through s_complete. May return early. */
    void (*pump) (driver_t *d, int64_t until);
    /*  Optional: around a burst of issue() calls, so that a transport
        that can send them together does (NULL: each goes alone). */
    void (*hold) (driver_t *d);
    void (*release) (driver_t *d);
    run_t *run;
};

struct run_t {
    int64_t start[RING];        /* when the slot's request was (meant to be) sent */
    uint8_t busy[RING];
    uint32_t free_slots[RING];  /* closed loop: slots to send again */
    size_t n_free;
    int closed;
    size_t in_flight;
    uint64_t completions;
    /* the measured window */
    int64_t from, until;
    uint64_t *lat;              /* ns, requests sent and answered in the window */
    size_t n_lat;
    uint64_t answered;          /* good replies that arrived in the window */
    uint64_t errors, overruns;
};

typedef struct {
    double rate;                /* replies/s in the window */
    double p50_us, p90_us, p99_us, p999_us, max_us;
    uint64_t errors, overruns, samples;
    uint64_t total;             /* replies of the whole run, warm-up and drain included */
    /*  CPU time per request of the whole run, all threads, in microseconds:
        this process (the client, and the direct echo thread), the broker,
        the workers together. */
    double cpu_client_us, cpu_broker_us, cpu_workers_us;
    /*  ZeroMQ messages the broker received and sent per request (4 when
        nothing is batched), from mmi.stats; 0 when not through the broker. */
    double messages_per_request;
} result_t;

static void
s_complete (run_t *run, uint32_t slot, int ok)
{
    if (slot >= RING || !run->busy[slot])
        return;                 /* a stale reply of an earlier run */
    int64_t now = s_now_ns ();
    run->busy[slot] = 0;
    run->in_flight--;
    run->completions++;
    if (run->closed)
        run->free_slots[run->n_free++] = slot;
    if (now < run->from || now > run->until)
        return;
    if (!ok) {
        run->errors++;
        return;
    }
    run->answered++;
    if (run->start[slot] >= run->from && run->n_lat < MAX_SAMPLES)
        run->lat[run->n_lat++] = (uint64_t) (now - run->start[slot]);
}

static int
s_cmp_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

static result_t
s_result (run_t *run)
{
    result_t r = {0};
    double secs = (double) (run->until - run->from) / 1e9;
    r.rate = (double) run->answered / secs;
    r.errors = run->errors;
    r.overruns = run->overruns;
    r.samples = run->n_lat;
    r.total = run->completions;
    if (run->n_lat) {
        qsort (run->lat, run->n_lat, sizeof run->lat[0], s_cmp_u64);
        double last = (double) (run->n_lat - 1);
        r.p50_us = (double) run->lat[(size_t) (last * 0.5)] / 1e3;
        r.p90_us = (double) run->lat[(size_t) (last * 0.9)] / 1e3;
        r.p99_us = (double) run->lat[(size_t) (last * 0.99)] / 1e3;
        r.p999_us = (double) run->lat[(size_t) (last * 0.999)] / 1e3;
        r.max_us = (double) run->lat[run->n_lat - 1] / 1e3;
    }
    return r;
}

static run_t *
s_run_new (int closed, double measure_s)
{
    run_t *run = calloc (1, sizeof *run);
    run->lat = malloc (MAX_SAMPLES * sizeof run->lat[0]);
    run->closed = closed;
    run->from = s_now_ns () + (int64_t) (s_warm_s * 1e9);
    run->until = run->from + (int64_t) (measure_s * 1e9);
    return run;
}

static void
s_run_destroy (run_t **run_p)
{
    if (*run_p) {
        free ((*run_p)->lat);
        free (*run_p);
        *run_p = NULL;
    }
}

static int
s_issue (driver_t *d, run_t *run, uint32_t slot, int64_t at)
{
    run->busy[slot] = 1;
    run->start[slot] = at;
    run->in_flight++;
    if (d->issue (d, slot) == 0)
        return 0;
    run->busy[slot] = 0;
    run->in_flight--;
    run->errors++;
    return -1;
}

/*  Lets the last replies come in, so that they do not land in the next run. */
static void
s_drain (driver_t *d, run_t *run)
{
    int64_t until = s_now_ns () + DRAIN_NS;
    while (run->in_flight && s_now_ns () < until && !zsys_interrupted)
        d->pump (d, until);
}

/*  `window` requests in flight all the time: each reply sends the next. */
static result_t
s_closed_loop (driver_t *d, int window, double measure_s)
{
    run_t *run = s_run_new (1, measure_s);
    d->run = run;
    for (int i = window - 1; i >= 0; i--)
        run->free_slots[run->n_free++] = (uint32_t) i;
    while (!zsys_interrupted) {
        int64_t now = s_now_ns ();
        if (now >= run->until)
            break;
        if (d->hold)
            d->hold (d);
        while (run->n_free) {
            uint32_t slot = run->free_slots[--run->n_free];
            if (s_issue (d, run, slot, s_now_ns ())) {
                run->free_slots[run->n_free++] = slot;
                break;
            }
        }
        if (d->release)
            d->release (d);
        d->pump (d, run->until);
    }
    s_drain (d, run);
    result_t r = s_result (run);
    d->run = NULL;
    s_run_destroy (&run);
    return r;
}

/*  Requests leave on a fixed schedule whatever the replies do (an open
    loop), and latency counts from the scheduled time, so a stall shows as
    the queue behind it rather than as one slow request. */
static result_t
s_fixed_rate (driver_t *d, double rate, double measure_s)
{
    run_t *run = s_run_new (0, measure_s);
    d->run = run;
    int64_t t0 = s_now_ns ();
    double interval = 1e9 / rate;
    uint64_t sent = 0;
    int64_t next = t0;
    while (!zsys_interrupted) {
        int64_t now = s_now_ns ();
        if (now >= run->until)
            break;
        if (d->hold)
            d->hold (d);
        while (next <= now && next < run->until) {
            uint32_t slot = (uint32_t) (sent % RING);
            if (run->busy[slot])
                run->overruns++;
            else
                s_issue (d, run, slot, next);
            sent++;
            next = t0 + (int64_t) ((double) sent * interval);
        }
        if (d->release)
            d->release (d);
        d->pump (d, next < run->until ? next : run->until);
    }
    s_drain (d, run);
    result_t r = s_result (run);
    d->run = NULL;
    s_run_destroy (&run);
    return r;
}

static void
s_wait_fd (int fd, int64_t timeout_ns)
{
    if (timeout_ns < 0)
        timeout_ns = 0;
    struct pollfd p = {fd, POLLIN, 0};
    struct timespec ts = {(time_t) (timeout_ns / 1000000000LL), (long) (timeout_ns % 1000000000LL)};
    ppoll (&p, 1, &ts, NULL);
}

/* --- through the broker, with the project's bus_client --- */

typedef struct bus_driver_t bus_driver_t;

typedef struct {
    bus_driver_t *d;
    uint32_t slot;
} bus_tag_t;

struct bus_driver_t {
    driver_t base;
    bus_client_t *client;
    int fd;
    Echo__EchoRequest req;
    char text[TEXT_LEN + 1];
    bus_tag_t tags[RING];
};

static void
s_bus_reply (void *arg, const Bus__Reply *reply)
{
    bus_tag_t *tag = arg;
    if (!s_reply_len && reply->status == ST_OK)
        s_reply_len = bus__reply__get_packed_size (reply);
    if (tag->d->base.run)
        s_complete (tag->d->base.run, tag->slot, reply->status == ST_OK);
}

static int
s_bus_issue (driver_t *base, uint32_t slot)
{
    bus_driver_t *d = (bus_driver_t *) base;
    bus_call_opts_t opts = {.timeout_ms = 5000};
    return bus_client_send (d->client, "echo", "echo.echo", &d->req.base, &opts, s_bus_reply,
                            &d->tags[slot])
               ? 0
               : -1;
}

static void
s_bus_hold (driver_t *base)
{
    bus_client_batch_begin (((bus_driver_t *) base)->client);
}

static void
s_bus_release (driver_t *base)
{
    bus_client_batch_end (((bus_driver_t *) base)->client);
}

/*  As the gateway does it: process, poll the descriptor, process. The
    descriptor is edge-style, so we only wait after a process() found
    nothing. */
static void
s_bus_pump (driver_t *base, int64_t until)
{
    bus_driver_t *d = (bus_driver_t *) base;
    uint64_t before = base->run->completions;
    int wait_ms = bus_client_process (d->client);
    if (base->run->completions != before)
        return;
    int64_t timeout = until - s_now_ns ();
    if (wait_ms >= 0 && (int64_t) wait_ms * 1000000LL < timeout)
        timeout = (int64_t) wait_ms * 1000000LL;
    s_wait_fd (d->fd, timeout);
    bus_client_process (d->client);
}

static bus_driver_t *
s_bus_driver_new (const config_t *cfg)
{
    bus_driver_t *d = calloc (1, sizeof *d);
    d->client = bus_client_new_from_config (cfg);
    if (!d->client) {
        free (d);
        return NULL;
    }
    d->fd = bus_client_fd (d->client);
    memset (d->text, 'x', TEXT_LEN);
    echo__echo_request__init (&d->req);
    d->req.text = d->text;
    for (uint32_t i = 0; i < RING; i++) {
        d->tags[i].d = d;
        d->tags[i].slot = i;
    }
    d->base.issue = s_bus_issue;
    d->base.pump = s_bus_pump;
    d->base.hold = s_bus_hold;
    d->base.release = s_bus_release;
    return d;
}

static void
s_bus_driver_destroy (bus_driver_t **d_p)
{
    if (*d_p) {
        bus_client_destroy (&(*d_p)->client);
        free (*d_p);
        *d_p = NULL;
    }
}

/*  The packed bus.Request that bus_client sends for our echo. */
static size_t
s_bus_request_len (void)
{
    char text[TEXT_LEN + 1];
    memset (text, 'x', TEXT_LEN);
    text[TEXT_LEN] = 0;
    Echo__EchoRequest body = ECHO__ECHO_REQUEST__INIT;
    body.text = text;
    uint8_t buf[256];
    Bus__Request req = BUS__REQUEST__INIT;
    req.method = "echo.echo";
    req.body.len = echo__echo_request__pack (&body, buf);
    req.body.data = buf;
    req.trace_id = "";
    req.idempotency_key = "";
    req.deadline_ms = 1800000000000LL;
    return bus__request__get_packed_size (&req);
}

/* --- the direct echo: a ROUTER thread, a DEALER client --- */

typedef struct {
    char endpoint[320];
    const char *curve_dir;
} echo_args_t;

static void
s_set_options (zsock_t *sock)
{
    zsock_set_sndhwm (sock, 100000);
    zsock_set_rcvhwm (sock, 100000);
    zsock_set_linger (sock, 0);
}

#define ECHO_MAX_FRAMES 10

/*  Answers a request with the frames before its payload and a reply of
    s_reply_len bytes in place of the payload: [id][payload] gets
    [id][reply]; a request shaped like the bus's (a client REQUEST header,
    the payload) gets what the broker answers (a REPLY header, the reply).
    Drains what has arrived before polling again, as the broker does. */
static void
s_echo_actor (zsock_t *pipe, void *arg)
{
    echo_args_t *args = arg;
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    s_set_options (router);
    int ok = router != NULL;
    if (ok && args->curve_dir)
        ok = curve_server_setup (router, args->curve_dir) == 0;
    int port = ok ? zsock_bind (router, "%s", args->endpoint) : -1;
    zsock_signal (pipe, 0);
    zstr_sendf (pipe, "%d", port);
    uint8_t *reply = calloc (1, s_reply_len ? s_reply_len : 1);
    void *h = router ? zsock_resolve (router) : NULL;
    while (port >= 0) {
        zmq_pollitem_t items[] = {{zsock_resolve (pipe), 0, ZMQ_POLLIN, 0}, {h, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll (items, 2, -1) < 0 && zsys_interrupted)
            break;
        if (items[0].revents & ZMQ_POLLIN)
            break;
        for (int n = 0; n < 10000; n++) {
            zmq_msg_t part[ECHO_MAX_FRAMES];
            int count = 0;
            zmq_msg_init (&part[0]);
            if (zmq_msg_recv (&part[0], h, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close (&part[0]);
                break;
            }
            count = 1;
            while (zmq_msg_more (&part[count - 1]) && count < ECHO_MAX_FRAMES) {
                zmq_msg_init (&part[count]);
                zmq_msg_recv (&part[count], h, 0);
                count++;
            }
            /*  routing id, header, payload: the header is a client REQUEST. */
            bus_header_t req;
            if (count == 3
                && !bus_header_parse (zmq_msg_data (&part[1]), zmq_msg_size (&part[1]),
                                      BUS_TO_BROKER, &req)) {
                bus_header_t rep = {.side = BUS_CLIENT, .command = BUS_CLIENT_REPLY,
                                    .id = req.id, .id_len = req.id_len,
                                    .service = req.service, .service_len = req.service_len};
                uint8_t header[BUS_HEADER_MAX];
                size_t size = bus_header_build (header, &rep, BUS_FROM_BROKER);
                zmq_msg_send (&part[0], h, ZMQ_SNDMORE | ZMQ_DONTWAIT);
                zmq_send (h, header, size, ZMQ_SNDMORE | ZMQ_DONTWAIT);
            }
            else
                for (int i = 0; i < count - 1; i++)
                    zmq_msg_send (&part[i], h, ZMQ_SNDMORE | ZMQ_DONTWAIT);
            zmq_send (h, reply, s_reply_len, ZMQ_DONTWAIT);
            for (int i = 0; i < count; i++)
                zmq_msg_close (&part[i]);
        }
    }
    if (port < 0) {
        char *term = zstr_recv (pipe);
        zstr_free (&term);
    }
    free (reply);
    zsock_destroy (&router);
}

typedef struct {
    driver_t base;
    zactor_t *server;
    zsock_t *dealer;
    void *handle;
    int fd;
    int framed;                 /* the bus's header rather than [id][payload] */
    uint8_t *payload;
} direct_driver_t;

static int
s_direct_issue (driver_t *base, uint32_t slot)
{
    direct_driver_t *d = (direct_driver_t *) base;
    uint8_t id[12] = {0};
    memcpy (id, &slot, sizeof slot);
    int flags = ZMQ_SNDMORE | ZMQ_DONTWAIT;
    if (d->framed) {
        bus_header_t h = {.side = BUS_CLIENT, .command = BUS_CLIENT_REQUEST, .number = 4950,
                          .id = id, .id_len = sizeof id,
                          .service = (const uint8_t *) "echo", .service_len = 4};
        uint8_t header[BUS_HEADER_MAX];
        size_t size = bus_header_build (header, &h, BUS_TO_BROKER);
        if (zmq_send (d->handle, header, size, flags) < 0)
            return -1;
    }
    else if (zmq_send (d->handle, id, sizeof id, flags) < 0)
        return -1;
    zmq_send (d->handle, d->payload, s_request_len, ZMQ_DONTWAIT);
    return 0;
}

static int
s_direct_drain (direct_driver_t *d)
{
    int n = 0;
    for (;;) {
        zmq_msg_t part[ECHO_MAX_FRAMES];
        zmq_msg_init (&part[0]);
        if (zmq_msg_recv (&part[0], d->handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&part[0]);
            return n;
        }
        int count = 1;
        while (zmq_msg_more (&part[count - 1]) && count < ECHO_MAX_FRAMES) {
            zmq_msg_init (&part[count]);
            zmq_msg_recv (&part[count], d->handle, 0);
            count++;
        }
        uint32_t slot = RING;
        bus_header_t h;
        if (count == 2 && !d->framed && zmq_msg_size (&part[0]) == 12)
            memcpy (&slot, zmq_msg_data (&part[0]), sizeof slot);
        else if (count == 2 && d->framed
                 && !bus_header_parse (zmq_msg_data (&part[0]), zmq_msg_size (&part[0]),
                                       BUS_FROM_BROKER, &h)
                 && h.id_len == 12)
            memcpy (&slot, h.id, sizeof slot);
        s_complete (d->base.run, slot, zmq_msg_size (&part[count - 1]) == s_reply_len);
        for (int i = 0; i < count; i++)
            zmq_msg_close (&part[i]);
        n++;
    }
}

static void
s_direct_pump (driver_t *base, int64_t until)
{
    direct_driver_t *d = (direct_driver_t *) base;
    if (s_direct_drain (d))
        return;
    s_wait_fd (d->fd, until - s_now_ns ());
    s_direct_drain (d);
}

static void
s_direct_driver_destroy (direct_driver_t **d_p)
{
    direct_driver_t *d = *d_p;
    if (!d)
        return;
    zsock_destroy (&d->dealer);
    zactor_destroy (&d->server);
    free (d->payload);
    free (d);
    *d_p = NULL;
}

/*  `endpoint` is where the ROUTER binds ("tcp://127.0.0.1:*" picks a port). */
static direct_driver_t *
s_direct_driver_new (const char *endpoint, const char *curve_dir)
{
    direct_driver_t *d = calloc (1, sizeof *d);
    echo_args_t args = {.curve_dir = curve_dir};
    snprintf (args.endpoint, sizeof args.endpoint, "%s", endpoint);
    d->server = zactor_new (s_echo_actor, &args);
    char *port = d->server ? zstr_recv (d->server) : NULL;
    int p = port ? atoi (port) : -1;
    zstr_free (&port);
    d->dealer = zsock_new (ZMQ_DEALER);
    if (p < 0 || !d->dealer)
        goto fail;
    s_set_options (d->dealer);
    if (curve_dir && curve_client_setup (d->dealer, curve_dir, NULL))
        goto fail;
    char connect[340];
    if (strncmp (endpoint, "tcp://", 6) == 0)
        snprintf (connect, sizeof connect, "tcp://127.0.0.1:%d", p);
    else
        snprintf (connect, sizeof connect, "%s", endpoint);
    if (zsock_connect (d->dealer, "%s", connect))
        goto fail;
    d->handle = zsock_resolve (d->dealer);
    d->fd = zsock_fd (d->dealer);
    d->payload = calloc (1, s_request_len);
    d->base.issue = s_direct_issue;
    d->base.pump = s_direct_pump;
    return d;
fail:
    fprintf (stderr, "bus_bench: cannot start the direct echo on %s\n", endpoint);
    s_direct_driver_destroy (&d);
    return NULL;
}

/* --- CPU time, to see where a request's cost goes --- */

static int64_t
s_cpu_self_us (void)
{
    struct rusage ru;
    getrusage (RUSAGE_SELF, &ru);
    return (int64_t) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000
           + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

/*  User + system time of another process so far (clock-tick resolution). */
static int64_t
s_cpu_pid_us (pid_t pid)
{
    char path[64], buf[1024];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *f = fopen (path, "r");
    if (!f)
        return 0;
    size_t n = fread (buf, 1, sizeof buf - 1, f);
    fclose (f);
    buf[n] = 0;
    char *p = strrchr (buf, ')');
    unsigned long long utime = 0, stime = 0;
    if (!p || sscanf (p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                      &stime)
                  != 2)
        return 0;
    return (int64_t) ((utime + stime) * 1000000ULL / (unsigned long long) sysconf (_SC_CLK_TCK));
}

/* --- a broker and echo workers, as processes --- */

typedef struct {
    harness_t h;
    char env[4][320];
    char curve[300];
} bench_stack_t;

static void
s_note_dir (const char *dir)
{
    if (!s_dirs_file)
        return;
    FILE *f = fopen (s_dirs_file, "a");
    if (f) {
        fprintf (f, "%s\n", dir);
        fclose (f);
    }
}

/*  The worker credit a service runs with when nobody sets it: the
    configuration's own default, so that the figures follow it. */
static int
s_default_credit (void)
{
    for (const config_opt_t *o = config_common_opts; o->name; o++)
        if (strcmp (o->name, "worker_credit") == 0 && o->defval)
            return atoi (o->defval);
    return 32;
}

static int
s_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind (fd, (struct sockaddr *) &a, sizeof a) == 0
        && getsockname (fd, (struct sockaddr *) &a, &len) == 0)
        port = ntohs (a.sin_port);
    if (fd >= 0)
        close (fd);
    return port;
}

/*  transport: "ipc", "tcp" or "curve" (tcp with CURVE, as `make run` has it). */
static int
s_stack_start (bench_stack_t *st, const char *transport, int workers, int credit)
{
    memset (st, 0, sizeof *st);
    if (harness_init (&st->h))
        return -1;
    s_note_dir (st->h.dir);
    int e = 0;
    snprintf (st->env[e], sizeof st->env[0], "PARTA_WORKER_CREDIT=%d", credit);
    st->h.extra_env[e] = st->env[e];
    e++;
    if (strcmp (transport, "ipc") != 0) {
        int port = s_free_port ();
        if (port < 0)
            return -1;
        snprintf (st->h.bus, sizeof st->h.bus, "tcp://127.0.0.1:%d", port);
        config_set (st->h.cfg, "bus", st->h.bus);
    }
    if (strcmp (transport, "curve") == 0) {
        snprintf (st->curve, sizeof st->curve, "%s/curve", st->h.dir);
        if (curve_keygen (st->curve))
            return -1;
        snprintf (st->env[e], sizeof st->env[0], "PARTA_CURVE=%s", st->curve);
        st->h.extra_env[e] = st->env[e];
        e++;
        config_set (st->h.cfg, "curve", st->curve);
    }
    if (harness_spawn (&st->h, "parta-broker", NULL) < 0 || harness_wait_broker (&st->h, 5000))
        return -1;
    /*  One at a time: two workers of a service started together on a new
        data directory can fail to open its database ("database is locked"). */
    for (int i = 1; i <= workers; i++)
        if (harness_spawn (&st->h, "parta-echo-worker", NULL) < 0
            || harness_wait_workers (&st->h, "echo", i, 10000))
            return -1;
    return 0;
}

static void
s_stack_stop (bench_stack_t *st)
{
    harness_fini (&st->h);
}

typedef struct {
    int64_t self, broker, workers;
} cpu_mark_t;

/*  `st` NULL: only this process (the direct echo). */
static cpu_mark_t
s_cpu_mark (bench_stack_t *st)
{
    cpu_mark_t m = {s_cpu_self_us (), 0, 0};
    for (int i = 0; st && i < st->h.n; i++) {
        if (strcmp (st->h.names[i], "parta-broker") == 0)
            m.broker += s_cpu_pid_us (st->h.pids[i]);
        else
            m.workers += s_cpu_pid_us (st->h.pids[i]);
    }
    return m;
}

/*  The broker's counters: requests, and messages in and out. */
typedef struct {
    uint64_t requests, messages;
} mmi_mark_t;

static mmi_mark_t
s_mmi_mark (bus_client_t *client)
{
    mmi_mark_t m = {0, 0};
    arena_t *arena = arena_new ();
    Bus__MmiStats *st = NULL;
    bus_call_opts_t opts = {.timeout_ms = 5000};
    if (arena
        && bus_client_call (client, "mmi", "mmi.stats", NULL, &opts, &bus__mmi_stats__descriptor,
                            arena, (ProtobufCMessage **) &st, NULL)
               == ST_OK) {
        m.requests = st->requests;
        m.messages = st->messages_in + st->messages_out;
    }
    arena_destroy (&arena);
    return m;
}

static void
s_mmi_charge (result_t *r, mmi_mark_t before, mmi_mark_t after)
{
    /*  The second mmi.stats call is one request and two messages. */
    uint64_t requests = after.requests - before.requests - 1;
    uint64_t messages = after.messages - before.messages - 2;
    r->messages_per_request = requests ? (double) messages / (double) requests : 0;
}

static void
s_cpu_charge (result_t *r, cpu_mark_t before, cpu_mark_t after)
{
    double n = r->total ? (double) r->total : 1;
    r->cpu_client_us = (double) (after.self - before.self) / n;
    r->cpu_broker_us = (double) (after.broker - before.broker) / n;
    r->cpu_workers_us = (double) (after.workers - before.workers) / n;
}

/* --- the report --- */

typedef struct {
    result_t sync, async;
    int have;
} pair_t;

/*  Runs through the broker and direct runs, alternately, the stack up for
    both: a pair's two runs see the same machine, so their ratio is spared
    most of what makes one run differ from the next (other load, CPU
    frequency, where the scheduler puts threads). */
typedef struct {
    double broker[PAIRS], direct[PAIRS], ratio[PAIRS];
    int n;
} paired_t;

typedef struct {
    const char *name;           /* ipc, tcp, curve */
    paired_t paired[3];         /* [1], [2]: one and two workers */
    pair_t direct, broker[3];   /* broker[1], broker[2]: one and two workers */
    result_t framed;            /* the direct echo, async, with the bus's frames */
    result_t fixed, fixed_direct;
    int have_fixed;
} transport_t;

static void
s_row (const char *transport, const char *path, const char *workers, int in_flight,
       const result_t *r, const result_t *direct)
{
    char ratio[32] = "";
    if (direct && direct->rate > 0)
        snprintf (ratio, sizeof ratio, "%5.0f %%", 100.0 * r->rate / direct->rate);
    char errors[48] = "";
    if (r->errors || r->overruns)
        snprintf (errors, sizeof errors, "  errors=%llu", (unsigned long long) r->errors);
    printf ("  %-10s %-7s %-7s %9d %12.0f %10.1f %10.1f %11s%s\n", transport, path, workers,
            in_flight, r->rate, r->p50_us, r->p99_us, ratio, errors);
}

static void
s_header (void)
{
    printf ("  %-10s %-7s %-7s %9s %12s %10s %10s %11s\n", "transport", "path", "workers",
            "in-flight", "req/s", "p50 us", "p99 us", "vs direct");
}

static const char *
s_label (const char *name)
{
    return strcmp (name, "curve") == 0 ? "tcp+curve" : name;
}

static void
s_print_transport (transport_t *t)
{
    const char *label = s_label (t->name);
    s_row (label, "direct", "-", 1, &t->direct.sync, NULL);
    for (int w = 1; w <= 2; w++)
        if (t->broker[w].have) {
            char workers[8];
            snprintf (workers, sizeof workers, "%d", w);
            s_row (label, "broker", workers, 1, &t->broker[w].sync, &t->direct.sync);
        }
    s_row (label, "direct", "-", WINDOW_ASYNC, &t->direct.async, NULL);
    s_row (label, "direct*", "-", WINDOW_ASYNC, &t->framed, &t->direct.async);
    for (int w = 1; w <= 2; w++)
        if (t->broker[w].have) {
            char workers[8];
            snprintf (workers, sizeof workers, "%d", w);
            s_row (label, "broker", workers, WINDOW_ASYNC, &t->broker[w].async, &t->direct.async);
        }
    fflush (stdout);
}

/*  Other work on the machine skews every figure: say how busy it was. */
static void
s_loadavg (const char *when)
{
    double load[3];
    if (getloadavg (load, 3) == 3)
        printf ("load average %s: %.2f %.2f %.2f\n", when, load[0], load[1], load[2]);
}

static void
s_machine (void)
{
    char model[256] = "unknown";
    FILE *f = fopen ("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets (line, sizeof line, f))
        if (strncmp (line, "model name", 10) == 0) {
            char *colon = strchr (line, ':');
            if (colon) {
                snprintf (model, sizeof model, "%s", colon + 2);
                model[strcspn (model, "\n")] = 0;
            }
            break;
        }
    if (f)
        fclose (f);
    int major, minor, patch;
    zmq_version (&major, &minor, &patch);
    printf ("machine: %ld cores online (%s), libzmq %d.%d.%d, czmq %d.%d.%d\n",
            sysconf (_SC_NPROCESSORS_ONLN), model, major, minor, patch, CZMQ_VERSION_MAJOR,
            CZMQ_VERSION_MINOR, CZMQ_VERSION_PATCH);
    s_loadavg ("at start");
}

/* --- the runs --- */

static int
s_measure_broker (transport_t *t, int workers, int with_fixed)
{
    bench_stack_t st;
    int rc = -1;
    bus_driver_t *d = NULL;
    if (s_stack_start (&st, t->name, workers, s_default_credit ())) {
        fprintf (stderr,
                 "bus_bench: the %s broker with %d worker(s) did not start"
                 " (PARTA_KEEP_TEST_DIR=1 keeps the logs in %s)\n",
                 t->name, workers, st.h.dir);
        goto out;
    }
    d = s_bus_driver_new (st.h.cfg);
    if (!d)
        goto out;
    pair_t *p = &t->broker[workers];
    p->sync = s_closed_loop (&d->base, 1, s_run_s);
    mmi_mark_t counted = s_mmi_mark (d->client);
    cpu_mark_t before = s_cpu_mark (&st);
    p->async = s_closed_loop (&d->base, WINDOW_ASYNC, s_run_s);
    s_cpu_charge (&p->async, before, s_cpu_mark (&st));
    s_mmi_charge (&p->async, counted, s_mmi_mark (d->client));
    p->have = 1;
    if (with_fixed) {
        t->fixed = s_fixed_rate (&d->base, FIXED_RATE, s_fixed_s);
        t->have_fixed = 1;
    }
    rc = zsys_interrupted ? -1 : 0;
out:
    s_bus_driver_destroy (&d);
    s_stack_stop (&st);
    return rc;
}

/*  A direct echo over t's transport, its ipc socket or CURVE keys under
    dir named after `tag`. NULL on failure. */
static direct_driver_t *
s_direct_for (transport_t *t, const char *dir, const char *tag)
{
    char endpoint[320], curve[300];
    const char *curve_dir = NULL;
    if (strcmp (t->name, "ipc") == 0)
        snprintf (endpoint, sizeof endpoint, "ipc://%s/%s.sock", dir, tag);
    else
        snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:*");
    if (strcmp (t->name, "curve") == 0) {
        snprintf (curve, sizeof curve, "%s/curve-%s", dir, tag);
        if (curve_keygen (curve))
            return NULL;
        curve_dir = curve;
    }
    return s_direct_driver_new (endpoint, curve_dir);
}

static int
s_measure_direct (transport_t *t, const char *dir, int with_fixed)
{
    direct_driver_t *d = s_direct_for (t, dir, "direct");
    if (!d)
        return -1;
    t->direct.sync = s_closed_loop (&d->base, 1, s_run_s);
    cpu_mark_t before = s_cpu_mark (NULL);
    t->direct.async = s_closed_loop (&d->base, WINDOW_ASYNC, s_run_s);
    s_cpu_charge (&t->direct.async, before, s_cpu_mark (NULL));
    d->framed = 1;
    before = s_cpu_mark (NULL);
    t->framed = s_closed_loop (&d->base, WINDOW_ASYNC, s_run_s);
    s_cpu_charge (&t->framed, before, s_cpu_mark (NULL));
    d->framed = 0;
    t->direct.have = 1;
    if (with_fixed)
        t->fixed_direct = s_fixed_rate (&d->base, FIXED_RATE, s_fixed_s);
    s_direct_driver_destroy (&d);
    return zsys_interrupted ? -1 : 0;
}

typedef struct {
    int credit;
    result_t r[3];              /* by workers */
} credit_row_t;

static int
s_cmp_double (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

/*  The median of n values (n >= 1). */
static double
s_median (const double *values, int n)
{
    double sorted[PAIRS];
    memcpy (sorted, values, (size_t) n * sizeof *sorted);
    qsort (sorted, (size_t) n, sizeof *sorted, s_cmp_double);
    return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

/*  PAIRS pairs of async runs, broker and direct, the order alternating
    from pair to pair. */
static int
s_measure_paired (transport_t *t, int workers, const char *dir)
{
    bench_stack_t st;
    int rc = -1;
    bus_driver_t *b = NULL;
    direct_driver_t *d = NULL;
    char tag[32];
    snprintf (tag, sizeof tag, "paired-%d", workers);
    if (s_stack_start (&st, t->name, workers, s_default_credit ()))
        goto out;
    b = s_bus_driver_new (st.h.cfg);
    d = s_direct_for (t, dir, tag);
    if (!b || !d)
        goto out;
    paired_t *p = &t->paired[workers];
    for (int i = 0; i < PAIRS && !zsys_interrupted; i++) {
        result_t rb, rd;
        if (i % 2 == 0) {
            rb = s_closed_loop (&b->base, WINDOW_ASYNC, s_pair_s);
            rd = s_closed_loop (&d->base, WINDOW_ASYNC, s_pair_s);
        }
        else {
            rd = s_closed_loop (&d->base, WINDOW_ASYNC, s_pair_s);
            rb = s_closed_loop (&b->base, WINDOW_ASYNC, s_pair_s);
        }
        p->broker[i] = rb.rate;
        p->direct[i] = rd.rate;
        p->ratio[i] = rd.rate > 0 ? rb.rate / rd.rate : 0;
        p->n = i + 1;
    }
    rc = zsys_interrupted ? -1 : 0;
out:
    s_direct_driver_destroy (&d);
    s_bus_driver_destroy (&b);
    s_stack_stop (&st);
    return rc;
}

static int
s_measure_credit (credit_row_t *row, transport_t *ipc)
{
    (void) ipc;
    for (int w = 1; w <= 2; w++) {
        bench_stack_t st;
        int rc = -1;
        bus_driver_t *d = NULL;
        if (s_stack_start (&st, "ipc", w, row->credit) == 0
            && (d = s_bus_driver_new (st.h.cfg))) {
            row->r[w] = s_closed_loop (&d->base, WINDOW_ASYNC, s_sweep_s);
            rc = 0;
        }
        else
            fprintf (stderr, "bus_bench: the stack with credit %d did not start\n", row->credit);
        s_bus_driver_destroy (&d);
        s_stack_stop (&st);
        if (rc || zsys_interrupted)
            return -1;
    }
    return 0;
}

static const char *
s_verdict (int met)
{
    return met ? "MET" : "MISSED";
}

/*  One run through the broker and nothing else, for a profiler to watch
    (perf record -a, or the broker and worker run under a tool through a
    $PARTA_BIN of wrappers): pipelined, or at a fixed rate when `rate` > 0. */
static int
s_one (const char *transport, int workers, double seconds, double rate)
{
    transport_t t = {.name = transport};
    if ((strcmp (transport, "ipc") && strcmp (transport, "tcp") && strcmp (transport, "curve"))
        || workers < 1 || workers > 2 || seconds <= 0 || rate < 0) {
        fprintf (stderr, "bus_bench: --one ipc|tcp|curve 1|2 SECONDS [RATE]\n");
        return 2;
    }
    s_run_s = seconds;
    bench_stack_t st;
    bus_driver_t *d = NULL;
    int rc = 1;
    if (s_stack_start (&st, t.name, workers, s_default_credit ()) == 0
        && (d = s_bus_driver_new (st.h.cfg))) {
        printf ("bus_bench: the stack is up (broker pid %d); running for %.1f s\n",
                (int) st.h.pids[0], seconds);
        mmi_mark_t counted = s_mmi_mark (d->client);
        cpu_mark_t before = s_cpu_mark (&st);
        result_t r = rate > 0 ? s_fixed_rate (&d->base, rate, s_run_s)
                              : s_closed_loop (&d->base, WINDOW_ASYNC, s_run_s);
        s_cpu_charge (&r, before, s_cpu_mark (&st));
        s_mmi_charge (&r, counted, s_mmi_mark (d->client));
        if (rate > 0)
            printf ("  %.0f req/s offered: achieved %.0f/s, p50 %.1f us, p90 %.1f us, p99 %.1f us,"
                    " p99.9 %.1f us, max %.1f us%s\n",
                    rate, r.rate, r.p50_us, r.p90_us, r.p99_us, r.p999_us, r.max_us,
                    r.errors || r.overruns ? "  (errors)" : "");
        else {
            s_header ();
            s_row (s_label (t.name), "broker", workers == 1 ? "1" : "2", WINDOW_ASYNC, &r, NULL);
        }
        printf ("  cpu us/request: client %.1f, broker %.1f, workers %.1f; broker messages per"
                " request %.2f (4 unbatched)\n",
                r.cpu_client_us, r.cpu_broker_us, r.cpu_workers_us, r.messages_per_request);
        rc = 0;
    }
    s_bus_driver_destroy (&d);
    s_stack_stop (&st);
    return rc;
}

int
main (int argc, char **argv)
{
    const char *one = NULL;
    int one_workers = 1;
    double one_seconds = 0, one_rate = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv[i], "--quick") == 0) {
            s_run_s = 0.5;
            s_sweep_s = 0.5;
            s_fixed_s = 1.0;
            s_pair_s = 0.5;
            s_warm_s = 0.1;
        }
        else if (strcmp (argv[i], "--dirs-file") == 0 && i + 1 < argc)
            s_dirs_file = argv[++i];
        else if (strcmp (argv[i], "--one") == 0 && i + 3 < argc) {
            one = argv[++i];
            one_workers = atoi (argv[++i]);
            one_seconds = atof (argv[++i]);
            if (i + 1 < argc && argv[i + 1][0] != '-')
                one_rate = atof (argv[++i]);
        }
        else {
            fprintf (stderr, "usage: bus_bench [--quick] [--dirs-file FILE]"
                             " [--one ipc|tcp|curve WORKERS SECONDS [RATE]]\n"
                             "  runs parta-broker and parta-echo-worker from $PARTA_BIN"
                             " (default build/bin)\n");
            return 2;
        }
    }
    setvbuf (stdout, NULL, _IOLBF, 0);
    log_init ("bus_bench", "warn");
    zsys_init ();
    zsys_set_linger (0);
    /*  Wake-ups at 100 us steps for the fixed-rate runs: the default timer
        slack (50 us) would add noise to them. */
    prctl (PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    if (one)
        return s_one (one, one_workers, one_seconds, one_rate);

    char dir[] = "/tmp/parta-bench-XXXXXX";
    if (!mkdtemp (dir)) {
        perror ("bus_bench: mkdtemp");
        return 1;
    }
    s_note_dir (dir);
    int64_t t_start = s_now_ns ();
    s_request_len = s_bus_request_len ();

    printf ("== bus benchmark ==\n");
    s_machine ();
    printf ("workload: echo.echo with %d bytes of text through parta-broker to parta-echo-worker\n"
            "  processes (worker credit %d, the configured default, unless said), client =\n"
            "  bus_client in this process; direct = DEALER -> ROUTER echo thread in this\n"
            "  process, same payload sizes and pipelining, [id][payload]; direct* = the same\n"
            "  with the bus's framing (a binary header frame, then the payload, each way).\n"
            "  sync = 1 request in flight, async = %d in flight. %.1f s measured per row\n"
            "  after %.1f s warm-up; latency from sending to the reply's callback.\n",
            TEXT_LEN, s_default_credit (), WINDOW_ASYNC, s_run_s, s_warm_s);

    transport_t transports[3] = {{.name = "ipc"}, {.name = "tcp"}, {.name = "curve"}};
    int failed = 0;
    for (int i = 0; i < 3 && !failed; i++) {
        transport_t *t = &transports[i];
        int fixed = 1;
        /*  The broker first: its first reply tells the direct echo how
            large a reply is. */
        failed = s_measure_broker (t, 1, fixed) || (i < 2 && s_measure_broker (t, 2, 0))
                 || s_measure_direct (t, dir, i == 0);
        if (i == 0)
            printf ("  sizes: request body %zu bytes (packed bus.Request), reply %zu bytes"
                    " (packed bus.Reply)\n\n",
                    s_request_len, s_reply_len);
        if (i == 0)
            s_header ();
        if (!failed)
            s_print_transport (t);
    }

    if (!failed) {
        printf ("\ncpu time per request, async runs (all threads of each process, warm-up and\n"
                "  drain included); \"bound\" is what %ld cores could do at most; msgs/req is\n"
                "  the ZeroMQ messages the broker received and sent per request (4 if nothing\n"
                "  were batched, docs/bus.md 6.8):\n",
                sysconf (_SC_NPROCESSORS_ONLN));
        printf ("  %-10s %-7s %-7s %10s %10s %10s %10s %12s %9s\n", "transport", "path", "workers",
                "client us", "broker us", "workers us", "total us", "bound req/s", "msgs/req");
        for (int i = 0; i < 3; i++) {
            transport_t *t = &transports[i];
            for (int w = -1; w <= 2; w++) {
                const result_t *r = w < 0    ? &t->direct.async
                                    : w == 0 ? &t->framed
                                             : &t->broker[w].async;
                if (w > 0 && !t->broker[w].have)
                    continue;
                double total = r->cpu_client_us + r->cpu_broker_us + r->cpu_workers_us;
                char workers[8] = "-";
                if (w > 0)
                    snprintf (workers, sizeof workers, "%d", w);
                char msgs[16] = "-";
                if (w > 0)
                    snprintf (msgs, sizeof msgs, "%.2f", r->messages_per_request);
                printf ("  %-10s %-7s %-7s %10.1f %10.1f %10.1f %10.1f %12.0f %9s\n",
                        s_label (t->name), w < 0 ? "direct" : w == 0 ? "direct*" : "broker",
                        workers, r->cpu_client_us,
                        r->cpu_broker_us, r->cpu_workers_us, total,
                        total > 0 ? 1e6 * (double) sysconf (_SC_NPROCESSORS_ONLN) / total : 0,
                        msgs);
            }
        }
    }

    credit_row_t credits[] = {{1}, {8}, {16}, {32}, {100}};
    int n_credits = (int) (sizeof credits / sizeof credits[0]);
    if (!failed) {
        printf ("\nworker credit (PARTA_WORKER_CREDIT), ipc, %d in flight, %.1f s per row:\n",
                WINDOW_ASYNC, s_sweep_s);
        printf ("  %-7s %14s %9s %9s %14s %9s %9s\n", "credit", "1 worker req/s", "p50 us",
                "p99 us", "2 workers req/s", "p50 us", "p99 us");
        for (int c = 0; c < n_credits && !failed; c++) {
            failed = s_measure_credit (&credits[c], &transports[0]);
            if (!failed)
                printf ("  %-7d %14.0f %9.1f %9.1f %14.0f %9.1f %9.1f\n", credits[c].credit,
                        credits[c].r[1].rate, credits[c].r[1].p50_us, credits[c].r[1].p99_us,
                        credits[c].r[2].rate, credits[c].r[2].p50_us, credits[c].r[2].p99_us);
        }
        for (int w = 1; w <= 2 && !failed; w++) {
            int best = 0;
            for (int c = 1; c < n_credits; c++)
                if (credits[c].r[w].rate > credits[best].r[w].rate)
                    best = c;
            printf ("  most req/s with %d worker%s: credit %d\n", w, w > 1 ? "s" : "",
                    credits[best].credit);
        }
    }

    if (!failed) {
        printf ("\nfixed rate: %d req/s offered for %.1f s (open loop: latency from the scheduled\n"
                "  sending time), 1 worker, credit %d (the default):\n",
                FIXED_RATE, s_fixed_s, s_default_credit ());
        printf ("  %-10s %-7s %11s %9s %9s %9s %9s %9s\n", "transport", "path", "achieved/s",
                "p50 us", "p90 us", "p99 us", "p99.9 us", "max us");
        for (int i = 0; i <= 3; i++) {
            const result_t *r = i < 3 ? &transports[i].fixed : &transports[0].fixed_direct;
            printf ("  %-10s %-7s %11.0f %9.1f %9.1f %9.1f %9.1f %9.1f%s\n",
                    i < 3 ? s_label (transports[i].name) : "ipc", i < 3 ? "broker" : "direct",
                    r->rate, r->p50_us, r->p90_us, r->p99_us, r->p999_us, r->max_us,
                    r->errors || r->overruns ? "  (errors)" : "");
        }

    }

    /*  The ratio target is judged on paired runs: one broker run and the
        direct run beside it are two runs of ~1 s each, and on a shared
        2-core machine runs of the same thing differ by 20 % and more. */
    for (int i = 0; i < 3 && !failed; i++)
        for (int w = 1; w <= (i < 2 ? 2 : 1) && !failed; w++)
            failed = s_measure_paired (&transports[i], w, dir);
    if (!failed) {
        printf ("\npaired runs: %d pairs per row of a broker run and a direct run (async, %d in\n"
                "  flight, %.1f s each after %.1f s warm-up), one after the other with the stack\n"
                "  up for both, which goes first alternating; ratio = broker / direct within a\n"
                "  pair:\n",
                PAIRS, WINDOW_ASYNC, s_pair_s, s_warm_s);
        printf ("  %-10s %-7s %15s %15s %8s %8s %8s\n", "transport", "workers",
                "broker req/s", "direct req/s", "ratio", "min", "max");
        for (int i = 0; i < 3; i++)
            for (int w = 1; w <= 2; w++) {
                const paired_t *p = &transports[i].paired[w];
                if (!p->n)
                    continue;
                double lo = p->ratio[0], hi = p->ratio[0];
                for (int k = 1; k < p->n; k++) {
                    lo = p->ratio[k] < lo ? p->ratio[k] : lo;
                    hi = p->ratio[k] > hi ? p->ratio[k] : hi;
                }
                printf ("  %-10s %-7d %15.0f %15.0f %7.0f%% %7.0f%% %7.0f%%  (medians; ratios:",
                        s_label (transports[i].name), w, s_median (p->broker, p->n),
                        s_median (p->direct, p->n), 100.0 * s_median (p->ratio, p->n),
                        100.0 * lo, 100.0 * hi);
                for (int k = 0; k < p->n; k++)
                    printf (" %.0f", 100.0 * p->ratio[k]);
                printf (")\n");
            }
    }

    if (!failed) {
        printf ("\ntargets (async = %d in flight, worker credit %d: the configured default; the\n"
                "  ratio and rate are the medians of the paired runs):\n",
                WINDOW_ASYNC, s_default_credit ());
        for (int i = 0; i < 3; i++) {
            transport_t *t = &transports[i];
            for (int w = 1; w <= 2; w++) {
                const paired_t *p = &t->paired[w];
                if (!p->n)
                    continue;
                double ratio = s_median (p->ratio, p->n);
                double rate = s_median (p->broker, p->n);
                printf ("  %-10s %d worker%s: async %.0f %% of direct (>= 50 %%: %s),"
                        " %.0f req/s (>= 100000: %s)\n",
                        s_label (t->name), w, w > 1 ? "s" : " ", 100.0 * ratio,
                        s_verdict (ratio >= TARGET_RATIO), rate, s_verdict (rate >= TARGET_RATE));
            }
            printf ("  %-10s p99 at %d req/s: %.0f us (< %.0f us: %s)\n", s_label (t->name),
                    FIXED_RATE, t->fixed.p99_us, TARGET_P99_US,
                    s_verdict (t->fixed.p99_us < TARGET_P99_US && t->fixed.errors == 0));
        }
        printf ("  (control: the direct ipc echo's p99 at %d req/s was %.0f us on this machine"
                " in this run)\n",
                FIXED_RATE, transports[0].fixed_direct.p99_us);
    }

    char cmd[300];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system (cmd) != 0)
        fprintf (stderr, "bus_bench: could not remove %s\n", dir);
    printf ("\n");
    s_loadavg ("at the end");
    printf ("bus benchmark took %.0f s%s\n", (double) (s_now_ns () - t_start) / 1e9,
            failed ? " and FAILED (see above)" : "");
    return failed ? 1 : 0;
}

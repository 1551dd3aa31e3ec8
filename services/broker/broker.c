/*  broker: see broker.h. Frames are received into zmq_msg_t and forwarded
    with zmq_msg_send, so a request's payload is never copied on its way
    from client to worker and back. */
#include "broker.h"
#include "bus.pb-c.h"
#include "bus_proto.h"
#include "clock.h"
#include "curve.h"
#include "log.h"
#include "status.h"
#include "ulid.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#define MAX_FRAMES 10
#define MAX_SERVICES 1024
#define MAX_QUEUE 100000        /* requests waiting per service */
#define SWEEP_MS 5              /* how often queued deadlines are checked */

typedef struct service_t service_t;
typedef struct worker_t worker_t;

typedef struct {
    zmq_msg_t client;           /* client routing id */
    zmq_msg_t id;               /* request id */
    zmq_msg_t payload;
    int64_t deadline;           /* monotonic ms */
} request_t;

typedef struct {
    zmq_msg_t client;
    zmq_msg_t id;
} held_t;

struct service_t {
    char *name;
    zlistx_t *waiting;          /* worker_t*: live workers with free credit, LRU first */
    zlistx_t *queue;            /* request_t*: waiting for a worker */
    size_t workers;
    size_t in_flight;
};

struct worker_t {
    char *key;                  /* hex of the routing id */
    zmq_msg_t address;
    service_t *service;
    int credit;
    held_t *held;               /* credit slots */
    int n_held;
    void *waiting_handle;       /* in service->waiting, or NULL when full */
    int64_t expiry;
};

typedef struct {
    const config_t *cfg;
    zsock_t *pipe;
    zsock_t *router;
    void *handle;
    zactor_t *proxy;
    zactor_t *auth;
    zhashx_t *services;         /* name -> service_t* */
    zhashx_t *workers;          /* key -> worker_t* */
    char instance[ULID_LEN + 1];
    int heartbeat_ms, liveness;
    int64_t heartbeat_at, sweep_at;
    size_t queued;
    /* counters (mmi.stats) */
    uint64_t requests, replies, drops, expired, worker_losses, lost_requests;
    int64_t started_at;
    log_limit_t drop_log;
    /* canned replies */
    ProtobufCBinaryData no_worker, worker_lost, queue_full, too_many_services, bad_request;
} broker_t;

/*  Event messages proxied; written by the proxy actor, read by mmi.stats. */
static atomic_uint_fast64_t s_events;

/* --- small helpers --- */

static void
s_drop (broker_t *b, const char *why, const char *who)
{
    b->drops++;
    unsigned long suppressed;
    if (log_limit_allow (&b->drop_log, &suppressed))
        log_warn (NULL, "broker dropped a message reason=\"%s\" from=%s suppressed=%lu", why, who,
                  suppressed);
}

static ProtobufCBinaryData
s_canned (status_t status, const char *message)
{
    Bus__Reply reply = BUS__REPLY__INIT;
    reply.status = status;
    reply.message = (char *) message;
    ProtobufCBinaryData out;
    out.len = bus__reply__get_packed_size (&reply);
    out.data = malloc (out.len);
    bus__reply__pack (&reply, out.data);
    return out;
}

static char *
s_hex (const zmq_msg_t *msg)
{
    static const char digits[] = "0123456789abcdef";
    size_t n = zmq_msg_size ((zmq_msg_t *) msg);
    const uint8_t *p = zmq_msg_data ((zmq_msg_t *) msg);
    char *out = malloc (2 * n + 1);
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = 0;
    return out;
}

static int
s_msg_eq (zmq_msg_t *a, zmq_msg_t *b)
{
    size_t n = zmq_msg_size (a);
    return n == zmq_msg_size (b) && memcmp (zmq_msg_data (a), zmq_msg_data (b), n) == 0;
}

/*  Sends a frame that stays ours (copied into a new message). */
static void
s_send_copy (broker_t *b, zmq_msg_t *msg, int more)
{
    zmq_msg_t copy;
    zmq_msg_init (&copy);
    zmq_msg_copy (&copy, msg);
    if (zmq_msg_send (&copy, b->handle, (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) < 0)
        zmq_msg_close (&copy);
}

/*  Sends a frame whose content moves to ZeroMQ (msg is left empty). */
static void
s_send_move (broker_t *b, zmq_msg_t *msg, int more)
{
    if (zmq_msg_send (msg, b->handle, (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (msg);
        zmq_msg_init (msg);
    }
}

static void
s_send_bytes (broker_t *b, const void *data, size_t len, int more)
{
    zmq_send (b->handle, data, len, (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT);
}

/*  A ROUTER drops a message to an unknown peer silently; with
    ZMQ_ROUTER_MANDATORY unset that is what we want for vanished clients. */

static void
s_client_reply (broker_t *b, zmq_msg_t *client, const char *service, zmq_msg_t *id,
                const void *payload, size_t len, int move)
{
    uint8_t cmd = BUS_CLIENT_REPLY;
    if (move)
        s_send_move (b, client, 1);
    else
        s_send_copy (b, client, 1);
    s_send_bytes (b, "", 0, 1);
    s_send_bytes (b, BUS_CLIENT_HEADER, 5, 1);
    s_send_bytes (b, &cmd, 1, 1);
    s_send_bytes (b, service, strlen (service), 1);
    if (move)
        s_send_move (b, id, 1);
    else
        s_send_copy (b, id, 1);
    s_send_bytes (b, payload, len, 0);
}

static void
s_worker_command (broker_t *b, worker_t *w, uint8_t cmd)
{
    s_send_copy (b, &w->address, 1);
    s_send_bytes (b, "", 0, 1);
    s_send_bytes (b, BUS_WORKER_HEADER, 5, 1);
    s_send_bytes (b, &cmd, 1, 0);
}

static void
s_disconnect_address (broker_t *b, zmq_msg_t *address)
{
    uint8_t cmd = BUS_WORKER_DISCONNECT;
    s_send_copy (b, address, 1);
    s_send_bytes (b, "", 0, 1);
    s_send_bytes (b, BUS_WORKER_HEADER, 5, 1);
    s_send_bytes (b, &cmd, 1, 0);
}

/* --- services --- */

static void
s_request_destroy (request_t **r_p)
{
    request_t *r = *r_p;
    if (!r)
        return;
    zmq_msg_close (&r->client);
    zmq_msg_close (&r->id);
    zmq_msg_close (&r->payload);
    free (r);
    *r_p = NULL;
}

static void s_service_free (void **item);

/*  Forgets a service no worker serves, answering what waited for it. Used
    to make room: requests for made-up names must not keep real services
    from registering. `for_worker` allows dropping one with waiting
    requests. Returns 1 if one was forgotten. */
static int
s_service_evict (broker_t *b, int for_worker)
{
    for (service_t *old = zhashx_first (b->services); old; old = zhashx_next (b->services)) {
        if (old->workers > 0 || (!for_worker && zlistx_size (old->queue) > 0))
            continue;
        request_t *r;
        while ((r = zlistx_detach (old->queue, NULL))) {
            s_client_reply (b, &r->client, old->name, &r->id, b->no_worker.data, b->no_worker.len,
                            1);
            s_request_destroy (&r);
            b->queued--;
            b->expired++;
        }
        char *key = (char *) zhashx_cursor (b->services);
        zhashx_delete (b->services, key);
        return 1;
    }
    return 0;
}

static service_t *
s_service (broker_t *b, const char *name, int create, int for_worker)
{
    service_t *s = zhashx_lookup (b->services, name);
    if (s || !create)
        return s;
    if (zhashx_size (b->services) >= MAX_SERVICES && !s_service_evict (b, 0)
        && !(for_worker && s_service_evict (b, 1)))
        return NULL;
    s = calloc (1, sizeof *s);
    s->name = strdup (name);
    s->waiting = zlistx_new ();
    s->queue = zlistx_new ();
    zhashx_insert (b->services, name, s);
    return s;
}

static void
s_service_free (void **item)
{
    service_t *s = *item;
    if (!s)
        return;
    request_t *r;
    while ((r = zlistx_detach (s->queue, NULL)))
        s_request_destroy (&r);
    zlistx_destroy (&s->queue);
    zlistx_destroy (&s->waiting);
    free (s->name);
    free (s);
    *item = NULL;
}

/*  Hands queued requests to workers with free credit, least recently used
    first; a worker that still has credit goes to the back of the line. */
static void
s_dispatch (broker_t *b, service_t *s)
{
    while (zlistx_size (s->queue) && zlistx_size (s->waiting)) {
        worker_t *w = zlistx_first (s->waiting);
        request_t *r = zlistx_detach (s->queue, NULL);
        b->queued--;
        uint8_t cmd = BUS_WORKER_REQUEST;
        held_t *h = &w->held[w->n_held++];
        zmq_msg_init (&h->client);
        zmq_msg_init (&h->id);
        zmq_msg_copy (&h->client, &r->client);
        zmq_msg_copy (&h->id, &r->id);
        s_send_copy (b, &w->address, 1);
        s_send_bytes (b, "", 0, 1);
        s_send_bytes (b, BUS_WORKER_HEADER, 5, 1);
        s_send_bytes (b, &cmd, 1, 1);
        s_send_move (b, &r->client, 1);
        s_send_move (b, &r->id, 1);
        s_send_move (b, &r->payload, 0);
        s_request_destroy (&r);
        s->in_flight++;
        if (w->n_held >= w->credit) {
            zlistx_delete (s->waiting, w->waiting_handle);
            w->waiting_handle = NULL;
        }
        else
            zlistx_move_end (s->waiting, w->waiting_handle);
    }
}

/* --- workers --- */

static void
s_worker_delete (broker_t *b, worker_t *w, int lost)
{
    service_t *s = w->service;
    if (w->waiting_handle)
        zlistx_delete (s->waiting, w->waiting_handle);
    for (int i = 0; i < w->n_held; i++) {
        held_t *h = &w->held[i];
        if (lost) {
            s_client_reply (b, &h->client, s->name, &h->id, b->worker_lost.data,
                            b->worker_lost.len, 1);
            b->lost_requests++;
        }
        zmq_msg_close (&h->client);
        zmq_msg_close (&h->id);
        s->in_flight--;
    }
    s->workers--;
    zhashx_delete (b->workers, w->key);     /* frees w */
}

static void
s_worker_free (void **item)
{
    worker_t *w = *item;
    if (!w)
        return;
    zmq_msg_close (&w->address);
    free (w->held);
    free (w->key);
    free (w);
    *item = NULL;
}

static int
s_valid_service (zmq_msg_t *frame, char *out)
{
    size_t n = zmq_msg_size (frame);
    if (n == 0 || n > BUS_SERVICE_MAX)
        return 0;
    const char *p = zmq_msg_data (frame);
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    memcpy (out, p, n);
    out[n] = 0;
    return 1;
}

/*  Parses a small positive decimal frame (ttl, credit). -1 if not one. */
static long
s_number (zmq_msg_t *frame, long max)
{
    size_t n = zmq_msg_size (frame);
    const char *p = zmq_msg_data (frame);
    if (n == 0 || n > 10)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v >= 1 && v <= max ? v : -1;
}

static void
s_on_worker (broker_t *b, zmq_msg_t *f, int count)
{
    /*  f[0] address, f[1] "", f[2] PBW01, f[3] command, ... */
    char *key = s_hex (&f[0]);
    worker_t *w = zhashx_lookup (b->workers, key);
    uint8_t cmd = *(uint8_t *) zmq_msg_data (&f[3]);
    if (w)
        w->expiry = clock_mono_ms () + (int64_t) b->heartbeat_ms * b->liveness;

    if (cmd == BUS_WORKER_READY) {
        char name[BUS_SERVICE_MAX + 1];
        long credit = count == 6 ? s_number (&f[5], BUS_CREDIT_MAX) : -1;
        if (w) {
            /*  READY twice is a protocol error (MDP): forget and disconnect. */
            s_drop (b, "worker sent READY twice", key);
            s_worker_delete (b, w, 1);
            s_disconnect_address (b, &f[0]);
        }
        else if (count != 6 || !s_valid_service (&f[4], name) || credit < 0
                 || strcmp (name, BUS_MMI_SERVICE) == 0) {
            /*  Tell the worker, or it would wait in vain for requests. */
            s_drop (b, "malformed READY", key);
            s_disconnect_address (b, &f[0]);
        }
        else {
            service_t *s = s_service (b, name, 1, 1);
            if (!s) {
                s_drop (b, "too many services", key);
                s_disconnect_address (b, &f[0]);
            }
            else {
                w = calloc (1, sizeof *w);
                w->key = key;
                key = NULL;
                zmq_msg_init (&w->address);
                zmq_msg_copy (&w->address, &f[0]);
                w->service = s;
                w->credit = (int) credit;
                w->held = calloc ((size_t) credit, sizeof (held_t));
                w->expiry = clock_mono_ms () + (int64_t) b->heartbeat_ms * b->liveness;
                zhashx_insert (b->workers, w->key, w);
                w->waiting_handle = zlistx_add_end (s->waiting, w);
                s->workers++;
                log_info (NULL, "worker registered service=%s credit=%ld workers=%zu", name,
                          credit, s->workers);
                s_dispatch (b, s);
            }
        }
    }
    else if (!w) {
        /*  An unknown worker: the broker restarted or forgot it. Tell it to
            register again (unless it is saying goodbye). */
        if (cmd != BUS_WORKER_DISCONNECT) {
            s_drop (b, "message from an unregistered worker", key);
            s_disconnect_address (b, &f[0]);
        }
    }
    else if (cmd == BUS_WORKER_REPLY && count == 7) {
        /*  f[4] client, f[5] id, f[6] payload */
        int found = -1;
        for (int i = 0; i < w->n_held; i++)
            if (s_msg_eq (&w->held[i].client, &f[4]) && s_msg_eq (&w->held[i].id, &f[5])) {
                found = i;
                break;
            }
        if (found < 0)
            s_drop (b, "reply to a request the worker does not hold", key);
        else {
            service_t *s = w->service;
            held_t *h = &w->held[found];
            zmq_msg_close (&h->client);
            zmq_msg_close (&h->id);
            w->held[found] = w->held[--w->n_held];
            s->in_flight--;
            uint8_t reply_cmd = BUS_CLIENT_REPLY;
            s_send_move (b, &f[4], 1);
            s_send_bytes (b, "", 0, 1);
            s_send_bytes (b, BUS_CLIENT_HEADER, 5, 1);
            s_send_bytes (b, &reply_cmd, 1, 1);
            s_send_bytes (b, s->name, strlen (s->name), 1);
            s_send_move (b, &f[5], 1);
            s_send_move (b, &f[6], 0);
            b->replies++;
            if (!w->waiting_handle)
                w->waiting_handle = zlistx_add_end (s->waiting, w);
            s_dispatch (b, s);
        }
    }
    else if (cmd == BUS_WORKER_HEARTBEAT && count == 4)
        ;   /* expiry refreshed above */
    else if (cmd == BUS_WORKER_DISCONNECT && count == 4) {
        log_info (NULL, "worker disconnected service=%s", w->service->name);
        s_worker_delete (b, w, 1);
    }
    else
        s_drop (b, "malformed worker command", key);
    free (key);
}

/* --- the mmi service --- */

static void
s_mmi (broker_t *b, zmq_msg_t *client, zmq_msg_t *id, zmq_msg_t *payload)
{
    Bus__Request *req = bus__request__unpack (NULL, zmq_msg_size (payload),
                                              zmq_msg_data (payload));
    Bus__Reply reply = BUS__REPLY__INIT;
    uint8_t *body = NULL;
    if (!req) {
        reply.status = ST_BAD_REQUEST;
        reply.message = "malformed request envelope";
    }
    else if (strcmp (req->method, "mmi.services") == 0) {
        size_t n = zhashx_size (b->services), i = 0;
        Bus__MmiServices list = BUS__MMI_SERVICES__INIT;
        Bus__MmiService *items = calloc (n ? n : 1, sizeof *items);
        Bus__MmiService **ptrs = calloc (n ? n : 1, sizeof *ptrs);
        for (service_t *s = zhashx_first (b->services); s; s = zhashx_next (b->services)) {
            bus__mmi_service__init (&items[i]);
            items[i].name = s->name;
            items[i].workers = (uint32_t) s->workers;
            items[i].queued = (uint32_t) zlistx_size (s->queue);
            items[i].in_flight = (uint32_t) s->in_flight;
            ptrs[i] = &items[i];
            i++;
        }
        list.items = ptrs;
        list.n_items = i;
        reply.body.len = bus__mmi_services__get_packed_size (&list);
        body = malloc (reply.body.len + 1);
        bus__mmi_services__pack (&list, body);
        reply.body.data = body;
        free (items);
        free (ptrs);
    }
    else if (strcmp (req->method, "mmi.stats") == 0) {
        Bus__MmiStats st = BUS__MMI_STATS__INIT;
        st.requests = b->requests;
        st.replies = b->replies;
        st.drops = b->drops;
        st.queued = b->queued;
        st.expired = b->expired;
        st.worker_losses = b->worker_losses;
        st.lost_requests = b->lost_requests;
        st.events = atomic_load (&s_events);
        st.workers = zhashx_size (b->workers);
        st.started_at = b->started_at;
        reply.body.len = bus__mmi_stats__get_packed_size (&st);
        body = malloc (reply.body.len + 1);
        bus__mmi_stats__pack (&st, body);
        reply.body.data = body;
    }
    else {
        reply.status = ST_NOT_FOUND;
        reply.message = "no such mmi method";
    }
    size_t len = bus__reply__get_packed_size (&reply);
    uint8_t *buf = malloc (len + 1);
    bus__reply__pack (&reply, buf);
    s_client_reply (b, client, BUS_MMI_SERVICE, id, buf, len, 0);
    free (buf);
    free (body);
    if (req)
        bus__request__free_unpacked (req, NULL);
}

/* --- clients --- */

static void
s_on_client (broker_t *b, zmq_msg_t *f, int count)
{
    uint8_t cmd = *(uint8_t *) zmq_msg_data (&f[3]);
    if (cmd == BUS_CLIENT_HEARTBEAT && (count == 4 || count == 5)) {
        /*  Answer with our instance id and the client's nonce, if any. */
        uint8_t hb = BUS_CLIENT_HEARTBEAT;
        s_send_copy (b, &f[0], 1);
        s_send_bytes (b, "", 0, 1);
        s_send_bytes (b, BUS_CLIENT_HEADER, 5, 1);
        s_send_bytes (b, &hb, 1, 1);
        s_send_bytes (b, b->instance, strlen (b->instance), count == 5);
        if (count == 5)
            s_send_copy (b, &f[4], 0);
        return;
    }
    /*  f[4] service, f[5] id, f[6] ttl, f[7] payload */
    char name[BUS_SERVICE_MAX + 1];
    long ttl;
    if (cmd != BUS_CLIENT_REQUEST || count != 8 || zmq_msg_size (&f[5]) == 0
        || zmq_msg_size (&f[5]) > BUS_ID_MAX) {
        s_drop (b, "malformed client command", "client");
        return;
    }
    if (!s_valid_service (&f[4], name) || (ttl = s_number (&f[6], BUS_TTL_MAX_MS)) < 0) {
        /*  The request can be answered: say what is wrong rather than let
            the client wait for its deadline. */
        s_drop (b, "bad service name or time-to-live", "client");
        size_t n = zmq_msg_size (&f[4]) <= BUS_SERVICE_MAX ? zmq_msg_size (&f[4]) : 0;
        char echo[BUS_SERVICE_MAX + 1];
        memcpy (echo, zmq_msg_data (&f[4]), n);
        echo[n] = 0;
        s_client_reply (b, &f[0], echo, &f[5], b->bad_request.data, b->bad_request.len, 0);
        return;
    }
    b->requests++;
    if (strcmp (name, BUS_MMI_SERVICE) == 0) {
        s_mmi (b, &f[0], &f[5], &f[7]);
        return;
    }
    service_t *s = s_service (b, name, 1, 0);
    if (!s) {
        s_client_reply (b, &f[0], name, &f[5], b->too_many_services.data,
                        b->too_many_services.len, 0);
        return;
    }
    if (zlistx_size (s->queue) >= MAX_QUEUE) {
        s_client_reply (b, &f[0], name, &f[5], b->queue_full.data, b->queue_full.len, 0);
        return;
    }
    request_t *r = malloc (sizeof *r);
    zmq_msg_init (&r->client);
    zmq_msg_init (&r->id);
    zmq_msg_init (&r->payload);
    zmq_msg_move (&r->client, &f[0]);
    zmq_msg_move (&r->id, &f[5]);
    zmq_msg_move (&r->payload, &f[7]);
    r->deadline = clock_mono_ms () + ttl;
    zlistx_add_end (s->queue, r);
    b->queued++;
    s_dispatch (b, s);
}

/*  Reads one message from the ROUTER and acts on it. 0 when none waited. */
static int
s_receive_one (broker_t *b)
{
    zmq_msg_t f[MAX_FRAMES];
    int count = 0, more = 1, extra = 0;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init (&part);
        if (zmq_msg_recv (&part, b->handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&part);
            if (count == 0 && !extra)
                return 0;
            break;
        }
        more = zmq_msg_more (&part);
        if (count < MAX_FRAMES)
            f[count++] = part;
        else {
            zmq_msg_close (&part);
            extra = 1;
        }
    }
    if (extra || count < 4 || zmq_msg_size (&f[1]) != 0 || zmq_msg_size (&f[2]) != 5
        || zmq_msg_size (&f[3]) != 1)
        s_drop (b, extra ? "too many frames" : "malformed header", "peer");
    else if (memcmp (zmq_msg_data (&f[2]), BUS_CLIENT_HEADER, 5) == 0)
        s_on_client (b, f, count);
    else if (memcmp (zmq_msg_data (&f[2]), BUS_WORKER_HEADER, 5) == 0)
        s_on_worker (b, f, count);
    else
        s_drop (b, "unknown protocol header", "peer");
    for (int i = 0; i < count; i++)
        zmq_msg_close (&f[i]);
    return 1;
}

/* --- timers --- */

static void
s_heartbeat (broker_t *b, int64_t now)
{
    /*  Collect first: deleting while iterating a zhashx is not allowed. */
    zlistx_t *dead = zlistx_new ();
    for (worker_t *w = zhashx_first (b->workers); w; w = zhashx_next (b->workers)) {
        if (w->expiry <= now)
            zlistx_add_end (dead, w);
        else
            s_worker_command (b, w, BUS_WORKER_HEARTBEAT);
    }
    for (worker_t *w = zlistx_first (dead); w; w = zlistx_next (dead)) {
        log_warn (NULL, "worker lost service=%s in_hand=%d", w->service->name, w->n_held);
        b->worker_losses++;
        s_worker_delete (b, w, 1);
    }
    zlistx_destroy (&dead);
}

static void
s_sweep (broker_t *b, int64_t now)
{
    for (service_t *s = zhashx_first (b->services); s; s = zhashx_next (b->services)) {
        /*  Rotate the queue once, keeping order, answering the expired. */
        size_t n = zlistx_size (s->queue);
        for (size_t i = 0; i < n; i++) {
            request_t *r = zlistx_detach (s->queue, NULL);
            if (r->deadline > now) {
                zlistx_add_end (s->queue, r);
                continue;
            }
            s_client_reply (b, &r->client, s->name, &r->id, b->no_worker.data, b->no_worker.len,
                            1);
            s_request_destroy (&r);
            b->queued--;
            b->expired++;
        }
    }
}

/* --- the event proxy --- */

static void
s_proxy_actor (zsock_t *pipe, void *args)
{
    const config_t *cfg = args;
    zsock_t *xsub = zsock_new (ZMQ_XSUB);
    zsock_t *xpub = zsock_new (ZMQ_XPUB);
    const char *curve = config_str (cfg, "curve");
    int ok = xsub && xpub;
    if (ok) {
        zsock_set_rcvhwm (xsub, 100000);
        zsock_set_sndhwm (xpub, 100000);
        zsock_set_maxmsgsize (xsub, BUS_MAX_MESSAGE);
        zsock_set_maxmsgsize (xpub, 64 * 1024);     /* subscriptions only */
        if (curve && *curve)
            ok = curve_server_setup (xsub, curve) == 0 && curve_server_setup (xpub, curve) == 0;
    }
    if (ok && zsock_bind (xsub, "%s", config_str (cfg, "events_in")) < 0) {
        log_error (NULL, "cannot bind events_in endpoint=%s error=\"%s\"",
                   config_str (cfg, "events_in"), zmq_strerror (zmq_errno ()));
        ok = 0;
    }
    if (ok && zsock_bind (xpub, "%s", config_str (cfg, "events_out")) < 0) {
        log_error (NULL, "cannot bind events_out endpoint=%s error=\"%s\"",
                   config_str (cfg, "events_out"), zmq_strerror (zmq_errno ()));
        ok = 0;
    }
    zsock_signal (pipe, 0);
    zstr_send (pipe, ok ? "OK" : "FAIL");
    void *in = ok ? zsock_resolve (xsub) : NULL, *out = ok ? zsock_resolve (xpub) : NULL;
    while (ok) {
        zmq_pollitem_t items[] = {
            {zsock_resolve (pipe), 0, ZMQ_POLLIN, 0},
            {in, 0, ZMQ_POLLIN, 0},
            {out, 0, ZMQ_POLLIN, 0},
        };
        if (zmq_poll (items, 3, -1) < 0 && errno != EINTR)
            break;
        if (items[0].revents & ZMQ_POLLIN)
            break;      /* $TERM */
        /*  Publications go out, subscriptions go in; whole messages. */
        for (int dir = 1; dir <= 2; dir++) {
            if (!(items[dir].revents & ZMQ_POLLIN))
                continue;
            void *from = dir == 1 ? in : out, *to = dir == 1 ? out : in;
            for (int n = 0; n < 1000; n++) {
                zmq_msg_t part;
                zmq_msg_init (&part);
                if (zmq_msg_recv (&part, from, ZMQ_DONTWAIT) < 0) {
                    zmq_msg_close (&part);
                    break;
                }
                int more;
                do {
                    more = zmq_msg_more (&part);
                    if (zmq_msg_send (&part, to, (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) < 0)
                        zmq_msg_close (&part);
                    if (more) {
                        zmq_msg_init (&part);
                        if (zmq_msg_recv (&part, from, 0) < 0) {
                            zmq_msg_close (&part);
                            break;
                        }
                    }
                } while (more);
                if (dir == 1)
                    atomic_fetch_add (&s_events, 1);
            }
        }
    }
    if (!ok) {
        char *term = zstr_recv (pipe);
        zstr_free (&term);
    }
    zsock_destroy (&xsub);
    zsock_destroy (&xpub);
}

/* --- the actor --- */

static void
s_broker_destroy (broker_t *b)
{
    zactor_destroy (&b->proxy);
    zhashx_destroy (&b->workers);
    zhashx_destroy (&b->services);
    zsock_destroy (&b->router);
    zactor_destroy (&b->auth);
    free (b->no_worker.data);
    free (b->worker_lost.data);
    free (b->queue_full.data);
    free (b->too_many_services.data);
    free (b->bad_request.data);
    free (b);
}

static void
s_broker_actor (zsock_t *pipe, void *args)
{
    broker_t *b = args;
    b->pipe = pipe;
    zsock_signal (pipe, 0);
    const char *curve = config_str (b->cfg, "curve");
    int ok = 1;
    if (curve && *curve) {
        b->auth = curve_auth_start (curve);
        ok = b->auth != NULL;
    }
    b->router = zsock_new (ZMQ_ROUTER);
    if (ok && b->router) {
        zsock_set_sndhwm (b->router, 200000);
        zsock_set_rcvhwm (b->router, 200000);
        zsock_set_maxmsgsize (b->router, BUS_MAX_MESSAGE);
        zsock_set_linger (b->router, 0);
        if (curve && *curve)
            ok = curve_server_setup (b->router, curve) == 0;
        if (ok && zsock_bind (b->router, "%s", config_str (b->cfg, "bus")) < 0) {
            log_error (NULL, "cannot bind the bus endpoint=%s error=\"%s\"",
                       config_str (b->cfg, "bus"), zmq_strerror (zmq_errno ()));
            ok = 0;
        }
    }
    else
        ok = 0;
    if (ok) {
        b->proxy = zactor_new (s_proxy_actor, (void *) b->cfg);
        char *status = b->proxy ? zstr_recv (b->proxy) : NULL;
        ok = status && strcmp (status, "OK") == 0;
        zstr_free (&status);
    }
    zstr_send (pipe, ok ? "OK" : "FAIL");
    if (!ok) {
        char *term = zstr_recv (pipe);
        zstr_free (&term);
        s_broker_destroy (b);
        return;
    }
    b->handle = zsock_resolve (b->router);
    log_info (NULL, "broker ready bus=%s events_in=%s events_out=%s instance=%s curve=%s",
              config_str (b->cfg, "bus"), config_str (b->cfg, "events_in"),
              config_str (b->cfg, "events_out"), b->instance, curve && *curve ? "on" : "off");
    b->heartbeat_at = clock_mono_ms () + b->heartbeat_ms;
    for (;;) {
        int64_t now = clock_mono_ms ();
        int64_t wait = b->heartbeat_at - now;
        if (b->queued && b->sweep_at - now < wait)
            wait = b->sweep_at - now;
        if (wait < 0)
            wait = 0;
        zmq_pollitem_t items[] = {
            {zsock_resolve (pipe), 0, ZMQ_POLLIN, 0},
            {b->handle, 0, ZMQ_POLLIN, 0},
        };
        if (zmq_poll (items, 2, wait) < 0 && errno != EINTR)
            break;
        if (items[0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv (pipe);
            int term = !command || strcmp (command, "$TERM") == 0;
            zstr_free (&command);
            if (term)
                break;
        }
        if (items[1].revents & ZMQ_POLLIN)
            for (int n = 0; n < 10000 && s_receive_one (b); n++)
                ;
        now = clock_mono_ms ();
        if (now >= b->heartbeat_at) {
            s_heartbeat (b, now);
            b->heartbeat_at = now + b->heartbeat_ms;
        }
        if (b->queued && now >= b->sweep_at) {
            s_sweep (b, now);
            b->sweep_at = now + SWEEP_MS;
        }
    }
    log_info (NULL, "broker stopping requests=%llu replies=%llu drops=%llu",
              (unsigned long long) b->requests, (unsigned long long) b->replies,
              (unsigned long long) b->drops);
    s_broker_destroy (b);
}

zactor_t *
broker_start (const config_t *cfg)
{
    broker_t *b = calloc (1, sizeof *b);
    if (!b)
        return NULL;
    b->cfg = cfg;
    b->heartbeat_ms = (int) config_int (cfg, "heartbeat_ms", 1000, 10, 60000, NULL);
    b->liveness = (int) config_int (cfg, "liveness", 3, 1, 100, NULL);
    if (b->heartbeat_ms <= 0 || b->liveness <= 0) {
        log_error (NULL, "heartbeat_ms must be 10..60000 and liveness 1..100");
        free (b);
        return NULL;
    }
    b->services = zhashx_new ();
    zhashx_set_destructor (b->services, s_service_free);
    b->workers = zhashx_new ();
    zhashx_set_destructor (b->workers, s_worker_free);
    b->started_at = clock_now_ms ();
    b->drop_log.burst = 5;
    ulid_make (b->instance);
    b->no_worker = s_canned (ST_UNAVAILABLE, "no worker answered before the deadline");
    b->worker_lost = s_canned (ST_UNAVAILABLE, "the worker handling the request stopped");
    b->queue_full = s_canned (ST_UNAVAILABLE, "the service's queue is full");
    b->too_many_services = s_canned (ST_UNAVAILABLE, "the broker knows too many services");
    b->bad_request = s_canned (ST_BAD_REQUEST,
                               "bad service name (a-z, 0-9, _ and -) or time-to-live (1..600000 ms)");
    zactor_t *actor = zactor_new (s_broker_actor, b);
    if (!actor)
        return NULL;
    char *status = zstr_recv (actor);
    int ok = status && strcmp (status, "OK") == 0;
    zstr_free (&status);
    if (!ok)
        zactor_destroy (&actor);
    return actor;
}

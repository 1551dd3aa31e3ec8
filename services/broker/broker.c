/*  broker: see broker.h. A message from a peer is its routing id, one
    header frame and, for requests, replies and batches, one payload frame
    (docs/bus.md). Payloads are never unpacked (except for the broker's own
    mmi service). The header a worker gets is built once, when the request
    arrives; a worker's REPLY header is that header with another command
    byte, so matching it to a request in hand is one comparison.

    What the broker sends a peer in one pass over its input (requests to a
    worker, replies to a client) is collected per peer and sent when the
    pass ends, as one BATCH when there are several: a message costs
    ZeroMQ, the kernel and three processes far more than its bytes cost
    us. Payloads too large to batch go alone and are never copied. */
#include "broker.h"
#include "bus.pb-c.h"
#include "bus_proto.h"
#include "clock.h"
#include "curve.h"
#include "log.h"
#include "status.h"
#include "u64map.h"
#include "ulid.h"

#include <errno.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>

#define MAX_FRAMES 3            /* routing id, header, payload */
#define MAX_SERVICES 1024
#define MAX_QUEUE 100000        /* requests waiting per service */
#define SWEEP_MS 5              /* how often queued deadlines are checked */
#define BATCH 10000             /* messages handled per wake-up, at most */
#define PASS 64                 /* messages handled before what they produced is sent */
#define SPARE_OUTS 64           /* collections kept for reuse */
#define CLOCK_EVERY 64          /* messages handled between two readings of the clock */
#define HEADER_AT (BUS_SIGNATURE_LEN + 1)   /* a header's fields start here */

typedef struct service_t service_t;
typedef struct worker_t worker_t;

/*  A request waiting for a worker: the REQUEST header the worker will get
    (it names the client and the request id) and the client's payload: the
    payload frame of a REQUEST that came alone, or a copy of a BATCH
    entry's (a reference into the BATCH's frame would keep all of it alive
    for the sake of one small request). */
typedef struct {
    zmq_msg_t header;
    zmq_msg_t payload;
    int64_t deadline;           /* monotonic ms */
} request_t;

/*  Requests waiting, first in first out: a ring that grows by doubling, so
    that queueing a request allocates nothing. */
typedef struct {
    request_t *items;
    size_t cap, head, len;
} queue_t;

struct service_t {
    char *name;
    size_t name_len;
    zlistx_t *waiting;          /* worker_t*: live workers with free credit, LRU first */
    queue_t queue;
    int64_t earliest;           /* no queued request's deadline is before this */
    size_t workers;
    size_t in_flight;
};

struct worker_t {
    uint64_t key;               /* s_peer_key of the address */
    uint8_t address[256];       /* routing id */
    size_t address_len;
    service_t *service;
    int credit;
    /*  Requests in hand: the REQUEST headers sent, oldest first, in a ring
        of `credit` slots. Workers mostly answer in order, so the search for
        a REPLY's request usually stops at the first. */
    zmq_msg_t *held;
    int held_head, n_held;
    void *waiting_handle;       /* in service->waiting, or NULL when full */
    int64_t expiry;
};

/*  What this pass produced for one peer, not sent yet. */
typedef struct out_t out_t;
struct out_t {
    uint64_t key;               /* s_peer_key of the address */
    uint8_t address[256];
    size_t address_len;
    bus_side_t side;
    bus_batch_t batch;
    out_t *next;                /* in the broker's dirty or spare list */
};

typedef struct {
    const config_t *cfg;
    zsock_t *pipe;
    zsock_t *router;
    void *handle;
    zactor_t *proxy;
    zactor_t *auth;
    zhashx_t *services;         /* name -> service_t* */
    service_t *last_service;    /* the one s_service found last */
    u64map_t *workers;          /* s_peer_key (routing id) -> worker_t* */
    u64map_t *outs;             /* s_peer_key (routing id) -> out_t*, this pass */
    out_t *dirty, *spare;
    size_t n_spare;
    uint8_t peer_secret[crypto_shorthash_KEYBYTES];
    uint8_t last_address[256];  /* the last routing id s_peer_key hashed */
    size_t last_len;
    uint64_t last_key;
    char instance[ULID_LEN + 1];
    int heartbeat_ms, liveness;
    int64_t now;                /* monotonic ms, read once per CLOCK_EVERY messages */
    int64_t heartbeat_at, sweep_at;
    size_t queued;
    /* counters (mmi.stats) */
    uint64_t requests, replies, drops, expired, worker_losses, lost_requests;
    uint64_t messages_in, messages_out;
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

/*  Workers are found by their routing id, which any peer may choose: a
    keyed hash, so that nobody can aim at a slot of the table. */
static uint64_t
s_peer_key (broker_t *b, const void *address, size_t len)
{
    /*  Messages come and go in runs for one peer: remember the last. */
    if (len == b->last_len && len && memcmp (address, b->last_address, len) == 0)
        return b->last_key;
    unsigned char out[crypto_shorthash_BYTES];
    crypto_shorthash (out, address, len, b->peer_secret);
    uint64_t key;
    memcpy (&key, out, sizeof key);
    key = key ? key : 1;        /* u64map keys are never 0 */
    if (len <= sizeof b->last_address) {
        memcpy (b->last_address, address, len);
        b->last_len = len;
        b->last_key = key;
    }
    return key;
}

static void
s_send (broker_t *b, const void *data, size_t len, int more)
{
    zmq_send (b->handle, data, len, (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT);
    if (!more)
        b->messages_out++;
}

/*  Sends a frame whose content moves to ZeroMQ (msg is left empty). */
static void
s_send_move (broker_t *b, zmq_msg_t *msg, int more)
{
    if (zmq_msg_send (msg, b->handle, (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (msg);
        zmq_msg_init (msg);
    }
    if (!more)
        b->messages_out++;
}

/* --- what a pass produced, per peer --- */

static void
s_out_send (broker_t *b, out_t *o)
{
    if (o->batch.count) {
        bus_batch_send (&o->batch, b->handle, o->side, o->address, o->address_len);
        b->messages_out++;
    }
}

/*  The collection for a peer, made when the pass has none yet. NULL when
    memory is short: the caller then sends at once. */
static out_t *
s_out (broker_t *b, bus_side_t side, const uint8_t *address, size_t len, uint64_t key)
{
    out_t *o = u64map_get (b->outs, key);
    if (o && (o->address_len != len || memcmp (o->address, address, len) != 0)) {
        /*  Another peer with the same key: its collection goes now. */
        s_out_send (b, o);
        memcpy (o->address, address, len);
        o->address_len = len;
        o->side = side;
        return o;
    }
    if (o)
        return o;
    if (len > sizeof o->address)
        return NULL;
    if (b->spare) {
        o = b->spare;
        b->spare = o->next;
        b->n_spare--;
    }
    else if (!(o = calloc (1, sizeof *o)))
        return NULL;
    if (u64map_put (b->outs, key, o)) {
        bus_batch_fini (&o->batch);
        free (o);
        return NULL;
    }
    o->key = key;
    memcpy (o->address, address, len);
    o->address_len = len;
    o->side = side;
    o->next = b->dirty;
    b->dirty = o;
    return o;
}

/*  The peer's collection, if this pass has one. */
static out_t *
s_out_find (broker_t *b, const uint8_t *address, size_t len, uint64_t key)
{
    out_t *o = u64map_get (b->outs, key);
    if (o && o->address_len == len && memcmp (o->address, address, len) == 0)
        return o;
    return NULL;
}

/*  Sends what the pass collected for one peer, before something that must
    come after it. */
static void
s_out_flush_peer (broker_t *b, const uint8_t *address, size_t len, uint64_t key)
{
    out_t *o = s_out_find (b, address, len, key);
    if (o)
        s_out_send (b, o);
}

/*  The end of a pass: every collection goes. */
static void
s_out_flush (broker_t *b)
{
    while (b->dirty) {
        out_t *o = b->dirty;
        b->dirty = o->next;
        s_out_send (b, o);
        u64map_remove (b->outs, o->key);
        if (b->n_spare < SPARE_OUTS) {
            o->next = b->spare;
            b->spare = o;
            b->n_spare++;
        }
        else {
            bus_batch_fini (&o->batch);
            free (o);
        }
    }
}

static void
s_out_free_list (out_t *o)
{
    while (o) {
        out_t *next = o->next;
        bus_batch_fini (&o->batch);
        free (o);
        o = next;
    }
}

/*  A REQUEST or REPLY for a peer: into its collection, or alone when too
    large to batch (then after what was collected, and moved, not copied,
    when `payload` holds it). */
static void
s_out_add (broker_t *b, bus_side_t side, const uint8_t *address, size_t address_len,
           uint64_t key, const uint8_t *header, size_t header_len, zmq_msg_t *payload,
           const void *bytes, size_t len)
{
    if (payload) {
        bytes = zmq_msg_data (payload);
        len = zmq_msg_size (payload);
    }
    out_t *o = len <= BUS_BATCH_PAYLOAD ? s_out (b, side, address, address_len, key) : NULL;
    if (o) {
        if (bus_batch_full (&o->batch, len))
            s_out_send (b, o);
        if (bus_batch_add (&o->batch, header, header_len, bytes, len) == 0)
            return;
    }
    s_out_flush_peer (b, address, address_len, key);
    s_send (b, address, address_len, 1);
    s_send (b, header, header_len, 1);
    if (payload)
        s_send_move (b, payload, 0);
    else
        s_send (b, bytes, len, 0);
}

/*  A ROUTER drops a message to an unknown peer silently; with
    ZMQ_ROUTER_MANDATORY unset that is what we want for vanished clients.

    A REPLY to a client: its routing id, the header, and either `payload`
    (moved) or `bytes`. */
static void
s_client_reply (broker_t *b, const uint8_t *address, size_t address_len, const uint8_t *id,
                size_t id_len, const char *service, size_t service_len, zmq_msg_t *payload,
                const void *bytes, size_t len)
{
    bus_header_t h = {.side = BUS_CLIENT, .command = BUS_CLIENT_REPLY, .id = id, .id_len = id_len,
                      .service = (const uint8_t *) service, .service_len = service_len};
    uint8_t header[BUS_HEADER_MAX];
    size_t size = bus_header_build (header, &h, BUS_FROM_BROKER);
    if (!size)
        return;
    s_out_add (b, BUS_CLIENT, address, address_len, s_peer_key (b, address, address_len), header,
               size, payload, bytes, len);
}

/*  Answers a request that will not reach a worker (or whose worker is
    gone) from the REQUEST header that was meant for the worker. */
static void
s_answer_from_header (broker_t *b, zmq_msg_t *header, service_t *s, ProtobufCBinaryData *reply)
{
    bus_header_t h;
    if (bus_header_parse (zmq_msg_data (header), zmq_msg_size (header), BUS_FROM_BROKER, &h))
        return;     /* cannot happen: we built it */
    s_client_reply (b, h.address, h.address_len, h.id, h.id_len, s->name, s->name_len, NULL,
                    reply->data, reply->len);
}

static void
s_worker_command (broker_t *b, const uint8_t *address, size_t address_len, uint8_t cmd)
{
    s_out_flush_peer (b, address, address_len, s_peer_key (b, address, address_len));
    uint8_t header[HEADER_AT];
    memcpy (header, BUS_WORKER_HEADER, BUS_SIGNATURE_LEN);
    header[BUS_SIGNATURE_LEN] = cmd;
    s_send (b, address, address_len, 1);
    s_send (b, header, sizeof header, 0);
}

/* --- the queue of a service --- */

static int
s_queue_push (queue_t *q, request_t *r)
{
    if (q->len == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        request_t *items = malloc (cap * sizeof *items);
        if (!items)
            return -1;
        /*  zmq_msg_t moves by copying its bytes, as ZeroMQ's own queues do. */
        for (size_t i = 0; i < q->len; i++)
            items[i] = q->items[(q->head + i) % q->cap];
        free (q->items);
        q->items = items;
        q->cap = cap;
        q->head = 0;
    }
    q->items[(q->head + q->len) % q->cap] = *r;
    q->len++;
    return 0;
}

static void
s_queue_pop (queue_t *q, request_t *r)
{
    *r = q->items[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    if (q->len == 0 && q->cap > 1024) {
        /*  A burst is over: give its memory back. */
        free (q->items);
        q->items = NULL;
        q->cap = q->head = 0;
    }
}

static void
s_request_close (request_t *r)
{
    zmq_msg_close (&r->header);
    zmq_msg_close (&r->payload);
}

/* --- services --- */

static void s_service_free (void **item);

/*  Answers every waiting request of a service with `reply`. */
static void
s_queue_answer_all (broker_t *b, service_t *s, ProtobufCBinaryData *reply)
{
    request_t r;
    while (s->queue.len) {
        s_queue_pop (&s->queue, &r);
        s_answer_from_header (b, &r.header, s, reply);
        s_request_close (&r);
        b->queued--;
        b->expired++;
    }
    s->earliest = INT64_MAX;
}

/*  Forgets a service no worker serves, answering what waited for it. Used
    to make room: requests for made-up names must not keep real services
    from registering. `for_worker` allows dropping one with waiting
    requests. Returns 1 if one was forgotten. */
static int
s_service_evict (broker_t *b, int for_worker)
{
    for (service_t *old = zhashx_first (b->services); old; old = zhashx_next (b->services)) {
        if (old->workers > 0 || (!for_worker && old->queue.len > 0))
            continue;
        s_queue_answer_all (b, old, &b->no_worker);
        if (b->last_service == old)
            b->last_service = NULL;
        char *key = (char *) zhashx_cursor (b->services);
        zhashx_delete (b->services, key);
        return 1;
    }
    return 0;
}

static service_t *
s_service (broker_t *b, const char *name, int create, int for_worker)
{
    /*  The requests of a batch mostly name one service. */
    if (b->last_service && strcmp (b->last_service->name, name) == 0)
        return b->last_service;
    service_t *s = zhashx_lookup (b->services, name);
    if (s) {
        b->last_service = s;
        return s;
    }
    if (!create)
        return NULL;
    if (zhashx_size (b->services) >= MAX_SERVICES && !s_service_evict (b, 0)
        && !(for_worker && s_service_evict (b, 1)))
        return NULL;
    s = calloc (1, sizeof *s);
    if (!s)
        return NULL;
    s->name = strdup (name);
    s->name_len = strlen (name);
    s->waiting = zlistx_new ();
    s->earliest = INT64_MAX;
    zhashx_insert (b->services, name, s);
    return s;
}

static void
s_service_free (void **item)
{
    service_t *s = *item;
    if (!s)
        return;
    request_t r;
    while (s->queue.len) {
        s_queue_pop (&s->queue, &r);
        s_request_close (&r);
    }
    free (s->queue.items);
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
    while (s->queue.len && zlistx_size (s->waiting)) {
        worker_t *w = zlistx_first (s->waiting);
        request_t r;
        s_queue_pop (&s->queue, &r);
        b->queued--;
        zmq_msg_t *held = &w->held[(w->held_head + w->n_held) % w->credit];
        zmq_msg_init (held);
        zmq_msg_copy (held, &r.header);
        w->n_held++;
        s_out_add (b, BUS_WORKER, w->address, w->address_len, w->key, zmq_msg_data (&r.header),
                   zmq_msg_size (&r.header), &r.payload, NULL, 0);
        s_request_close (&r);
        s->in_flight++;
        if (w->n_held >= w->credit) {
            zlistx_delete (s->waiting, w->waiting_handle);
            w->waiting_handle = NULL;
        }
        else
            zlistx_move_end (s->waiting, w->waiting_handle);
    }
    if (s->queue.len == 0)
        s->earliest = INT64_MAX;
}

/* --- workers --- */

static worker_t *
s_worker_find (broker_t *b, zmq_msg_t *address, uint64_t *key_out)
{
    size_t len = zmq_msg_size (address);
    const uint8_t *data = zmq_msg_data (address);
    uint64_t key = s_peer_key (b, data, len);
    *key_out = key;
    worker_t *w = u64map_get (b->workers, key);
    if (w && (w->address_len != len || memcmp (w->address, data, len) != 0))
        return NULL;    /* another peer's key: this one is unknown */
    return w;
}

/*  The i-th request in hand (0: the oldest). */
static zmq_msg_t *
s_held (worker_t *w, int i)
{
    return &w->held[(w->held_head + i) % w->credit];
}

/*  Which request in hand a REPLY header answers: the REQUEST header sent
    for it has the same bytes after the command. -1 if none. */
static int
s_held_find (worker_t *w, const uint8_t *header, size_t size)
{
    for (int i = 0; i < w->n_held; i++) {
        zmq_msg_t *m = s_held (w, i);
        if (zmq_msg_size (m) == size
            && memcmp ((uint8_t *) zmq_msg_data (m) + HEADER_AT, header + HEADER_AT,
                       size - HEADER_AT)
                   == 0)
            return i;
    }
    return -1;
}

/*  Forgets the i-th request in hand, keeping the others in order. */
static void
s_held_remove (worker_t *w, int i)
{
    zmq_msg_close (s_held (w, i));
    for (int j = i; j > 0; j--)
        *s_held (w, j) = *s_held (w, j - 1);
    w->held_head = (w->held_head + 1) % w->credit;
    w->n_held--;
}

static void
s_worker_delete (broker_t *b, worker_t *w, int lost)
{
    service_t *s = w->service;
    if (w->waiting_handle)
        zlistx_delete (s->waiting, w->waiting_handle);
    /*  Requests collected for it but not sent are in hand too: they are
        answered below and must not reach the worker afterwards. */
    out_t *o = s_out_find (b, w->address, w->address_len, w->key);
    if (o)
        bus_batch_reset (&o->batch);
    while (w->n_held) {
        if (lost) {
            s_answer_from_header (b, s_held (w, 0), s, &b->worker_lost);
            b->lost_requests++;
        }
        s_held_remove (w, 0);
        s->in_flight--;
    }
    s->workers--;
    u64map_remove (b->workers, w->key);
    free (w->held);
    free (w);
}

static void
s_worker_register (broker_t *b, zmq_msg_t *address, uint64_t key, const bus_header_t *h)
{
    const uint8_t *addr = zmq_msg_data (address);
    size_t addr_len = zmq_msg_size (address);
    char name[BUS_SERVICE_MAX + 1];
    if (!bus_service_valid (h->service, h->service_len) || h->number < 1
        || h->number > BUS_CREDIT_MAX) {
        /*  Tell the worker, or it would wait in vain for requests. */
        s_drop (b, "malformed READY", "worker");
        s_worker_command (b, addr, addr_len, BUS_WORKER_DISCONNECT);
        return;
    }
    memcpy (name, h->service, h->service_len);
    name[h->service_len] = 0;
    if (strcmp (name, BUS_MMI_SERVICE) == 0) {
        s_drop (b, "READY for the broker's own service", "worker");
        s_worker_command (b, addr, addr_len, BUS_WORKER_DISCONNECT);
        return;
    }
    if (u64map_get (b->workers, key) || addr_len > sizeof ((worker_t *) 0)->address) {
        s_drop (b, "routing id collides with a registered worker's", "worker");
        s_worker_command (b, addr, addr_len, BUS_WORKER_DISCONNECT);
        return;
    }
    service_t *s = s_service (b, name, 1, 1);
    worker_t *w = s ? calloc (1, sizeof *w) : NULL;
    if (w)
        w->held = calloc (h->number, sizeof (zmq_msg_t));
    if (!w || !w->held || u64map_put (b->workers, key, w)) {
        if (w)
            free (w->held);
        free (w);
        s_drop (b, s ? "out of memory" : "too many services", "worker");
        s_worker_command (b, addr, addr_len, BUS_WORKER_DISCONNECT);
        return;
    }
    w->key = key;
    memcpy (w->address, addr, addr_len);
    w->address_len = addr_len;
    w->service = s;
    w->credit = (int) h->number;
    w->expiry = b->now + (int64_t) b->heartbeat_ms * b->liveness;
    w->waiting_handle = zlistx_add_end (s->waiting, w);
    s->workers++;
    log_info (NULL, "worker registered service=%s credit=%d workers=%zu", name, w->credit,
              s->workers);
    s_dispatch (b, s);
}

/*  A REPLY: its header's bytes, and its payload in `payload` or `bytes`. */
static void
s_worker_reply (broker_t *b, worker_t *w, const uint8_t *header, size_t header_len,
                const bus_header_t *h, zmq_msg_t *payload, const void *bytes, size_t len)
{
    int i = s_held_find (w, header, header_len);
    if (i < 0) {
        s_drop (b, "reply to a request the worker does not hold", "worker");
        return;
    }
    service_t *s = w->service;
    s_client_reply (b, h->address, h->address_len, h->id, h->id_len, s->name, s->name_len,
                    payload, bytes, len);
    s_held_remove (w, i);
    s->in_flight--;
    b->replies++;
    if (!w->waiting_handle)
        w->waiting_handle = zlistx_add_end (s->waiting, w);
    s_dispatch (b, s);
}

/*  The entries of a registered worker's BATCH, each as if it came alone:
    only REPLYs may. */
static void
s_worker_batch (broker_t *b, worker_t *w, zmq_msg_t *entries)
{
    size_t at = 0, header_len, len;
    const uint8_t *header, *payload;
    const uint8_t *data = zmq_msg_data (entries);
    size_t size = zmq_msg_size (entries);
    while (bus_batch_next (data, size, &at, &header, &header_len, &payload, &len)) {
        bus_header_t h;
        const char *why = bus_batch_entry (header, header_len, BUS_TO_BROKER, BUS_WORKER,
                                           BUS_WORKER_REPLY, &h);
        if (why)
            s_drop (b, why, "worker");
        else
            s_worker_reply (b, w, header, header_len, &h, NULL, payload, len);
    }
}

/*  A message with a worker signature. `why` says what is wrong with its
    layout or frame count (NULL: nothing). */
static void
s_on_worker (broker_t *b, zmq_msg_t *f, const bus_header_t *h, const char *why)
{
    uint64_t key;
    worker_t *w = s_worker_find (b, &f[0], &key);
    if (w)
        w->expiry = b->now + (int64_t) b->heartbeat_ms * b->liveness;
    if (w && h->command == BUS_WORKER_READY) {
        /*  READY twice is a protocol error (MDP): forget and disconnect. */
        s_drop (b, "worker sent READY twice", "worker");
        s_worker_delete (b, w, 1);
        s_worker_command (b, zmq_msg_data (&f[0]), zmq_msg_size (&f[0]), BUS_WORKER_DISCONNECT);
    }
    else if (why) {
        s_drop (b, why, "worker");
        /*  A peer we do not know (a bad READY, or it thinks it registered
            with a broker that restarted) is told to register again. */
        if (!w && h->command != BUS_WORKER_DISCONNECT)
            s_worker_command (b, zmq_msg_data (&f[0]), zmq_msg_size (&f[0]),
                              BUS_WORKER_DISCONNECT);
    }
    else if (h->command == BUS_WORKER_READY)
        s_worker_register (b, &f[0], key, h);
    else if (!w) {
        /*  An unknown worker: the broker restarted or forgot it. Tell it to
            register again (unless it is saying goodbye). */
        if (h->command != BUS_WORKER_DISCONNECT) {
            s_drop (b, "message from an unregistered worker", "worker");
            s_worker_command (b, zmq_msg_data (&f[0]), zmq_msg_size (&f[0]),
                              BUS_WORKER_DISCONNECT);
        }
    }
    else if (h->command == BUS_WORKER_REPLY)
        s_worker_reply (b, w, zmq_msg_data (&f[1]), zmq_msg_size (&f[1]), h, &f[2], NULL, 0);
    else if (h->command == BUS_WORKER_BATCH)
        s_worker_batch (b, w, &f[2]);
    else if (h->command == BUS_WORKER_DISCONNECT) {
        log_info (NULL, "worker disconnected service=%s", w->service->name);
        s_worker_delete (b, w, 1);
    }
    /*  HEARTBEAT: the expiry is refreshed above. */
}

/* --- the mmi service --- */

static void
s_mmi (broker_t *b, const uint8_t *client, size_t client_len, const bus_header_t *h,
       const uint8_t *payload, size_t payload_len)
{
    Bus__Request *req = bus__request__unpack (NULL, payload_len, payload);
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
            items[i].queued = (uint32_t) s->queue.len;
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
        st.workers = u64map_size (b->workers);
        st.started_at = b->started_at;
        st.messages_in = b->messages_in;
        st.messages_out = b->messages_out;
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
    s_client_reply (b, client, client_len, h->id, h->id_len, BUS_MMI_SERVICE,
                    strlen (BUS_MMI_SERVICE), NULL, buf, len);
    free (buf);
    free (body);
    if (req)
        bus__request__free_unpacked (req, NULL);
}

/* --- clients --- */

static void
s_client_heartbeat (broker_t *b, zmq_msg_t *client, const bus_header_t *h)
{
    if (h->nonce_len > BUS_NONCE_MAX) {
        s_drop (b, "heartbeat nonce longer than 32 bytes", "client");
        return;
    }
    /*  Answer with our instance id and the client's nonce. */
    bus_header_t answer = {.side = BUS_CLIENT,
                           .command = BUS_CLIENT_HEARTBEAT,
                           .instance = (const uint8_t *) b->instance,
                           .instance_len = ULID_LEN,
                           .nonce = h->nonce,
                           .nonce_len = h->nonce_len};
    uint8_t header[BUS_HEADER_MAX];
    size_t size = bus_header_build (header, &answer, BUS_FROM_BROKER);
    /*  After the replies this pass made for the client (docs/bus.md §8.3). */
    const uint8_t *address = zmq_msg_data (client);
    size_t len = zmq_msg_size (client);
    s_out_flush_peer (b, address, len, s_peer_key (b, address, len));
    s_send (b, address, len, 1);
    s_send (b, header, size, 0);
}

/*  A client's REQUEST, alone (`payload` holds the payload, which moves to
    the queue) or from a batch (`bytes`, copied). */
static void
s_client_request (broker_t *b, const uint8_t *client, size_t client_len, const bus_header_t *h,
                  zmq_msg_t *payload, const uint8_t *bytes, size_t bytes_len)
{
    if (h->id_len == 0 || h->id_len > BUS_ID_MAX) {
        s_drop (b, "request id not 1..32 bytes", "client");
        return;
    }
    if (!bus_service_valid (h->service, h->service_len) || h->number < 1
        || h->number > BUS_TTL_MAX_MS) {
        /*  The request can be answered: say what is wrong rather than let
            the client wait for its deadline. */
        s_drop (b, "bad service name or time-to-live", "client");
        s_client_reply (b, client, client_len, h->id, h->id_len, (const char *) h->service,
                        h->service_len <= BUS_SERVICE_MAX ? h->service_len : 0, NULL,
                        b->bad_request.data, b->bad_request.len);
        return;
    }
    b->requests++;
    char name[BUS_SERVICE_MAX + 1];
    memcpy (name, h->service, h->service_len);
    name[h->service_len] = 0;
    if (payload) {
        bytes = zmq_msg_data (payload);
        bytes_len = zmq_msg_size (payload);
    }
    if (strcmp (name, BUS_MMI_SERVICE) == 0) {
        s_mmi (b, client, client_len, h, bytes, bytes_len);
        return;
    }
    service_t *s = s_service (b, name, 1, 0);
    ProtobufCBinaryData *refusal = !s                           ? &b->too_many_services
                                   : s->queue.len >= MAX_QUEUE ? &b->queue_full
                                                                : NULL;
    request_t r;
    bus_header_t for_worker = {.side = BUS_WORKER,
                               .command = BUS_WORKER_REQUEST,
                               .address = client,
                               .address_len = client_len,
                               .id = h->id,
                               .id_len = h->id_len};
    uint8_t header[BUS_HEADER_MAX];
    size_t size = refusal ? 0 : bus_header_build (header, &for_worker, BUS_FROM_BROKER);
    if (!refusal && (!size || zmq_msg_init_size (&r.header, size)))
        refusal = &b->queue_full;
    if (refusal) {
        s_client_reply (b, client, client_len, h->id, h->id_len, name, h->service_len, NULL,
                        refusal->data, refusal->len);
        return;
    }
    memcpy (zmq_msg_data (&r.header), header, size);
    if (payload) {
        zmq_msg_init (&r.payload);
        zmq_msg_move (&r.payload, payload);
    }
    else if (zmq_msg_init_size (&r.payload, bytes_len) == 0) {
        if (bytes_len)
            memcpy (zmq_msg_data (&r.payload), bytes, bytes_len);
    }
    else {
        zmq_msg_close (&r.header);
        s_client_reply (b, client, client_len, h->id, h->id_len, name, h->service_len, NULL,
                        b->queue_full.data, b->queue_full.len);
        return;
    }
    r.deadline = b->now + (int64_t) h->number;
    if (s_queue_push (&s->queue, &r)) {
        s_request_close (&r);
        s_client_reply (b, client, client_len, h->id, h->id_len, name, h->service_len, NULL,
                        b->queue_full.data, b->queue_full.len);
        return;
    }
    if (r.deadline < s->earliest)
        s->earliest = r.deadline;
    b->queued++;
    s_dispatch (b, s);
}

static void
s_on_client (broker_t *b, zmq_msg_t *f, const bus_header_t *h)
{
    const uint8_t *client = zmq_msg_data (&f[0]);
    size_t client_len = zmq_msg_size (&f[0]);
    if (h->command == BUS_CLIENT_HEARTBEAT) {
        s_client_heartbeat (b, &f[0], h);
        return;
    }
    if (h->command == BUS_CLIENT_REQUEST) {
        s_client_request (b, client, client_len, h, &f[2], NULL, 0);
        return;
    }
    /*  A BATCH, checked: its entries, each as if it came alone. */
    const uint8_t *data = zmq_msg_data (&f[2]), *header, *payload;
    size_t size = zmq_msg_size (&f[2]), at = 0, header_len, len;
    while (bus_batch_next (data, size, &at, &header, &header_len, &payload, &len)) {
        bus_header_t eh;
        const char *why = bus_batch_entry (header, header_len, BUS_TO_BROKER, BUS_CLIENT,
                                           BUS_CLIENT_REQUEST, &eh);
        if (why)
            s_drop (b, why, "client");
        else
            s_client_request (b, client, client_len, &eh, NULL, payload, len);
    }
}

/* --- receiving --- */

/*  Why a peer of an earlier version is not answered, or NULL. Version 1
    sends an empty frame, then PBC01 or PBW01; version 2 starts its header
    with PBC02 or PBW02. */
static const char *
s_old_version (zmq_msg_t *f, int count)
{
    if (count >= 3 && zmq_msg_size (&f[1]) == 0 && zmq_msg_size (&f[2]) == 5
        && (memcmp (zmq_msg_data (&f[2]), "PBC01", 5) == 0
            || memcmp (zmq_msg_data (&f[2]), "PBW01", 5) == 0))
        return "protocol version 1 (PBC01, PBW01) is not spoken here";
    if (count >= 2 && zmq_msg_size (&f[1]) >= 5
        && (memcmp (zmq_msg_data (&f[1]), "PBC02", 5) == 0
            || memcmp (zmq_msg_data (&f[1]), "PBW02", 5) == 0))
        return "protocol version 2 (PBC02, PBW02) is not spoken here";
    return NULL;
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
    b->messages_in++;
    bus_header_t h;
    const char *why = NULL, *old = s_old_version (f, count);
    if (count >= 2)
        why = bus_header_parse (zmq_msg_data (&f[1]), zmq_msg_size (&f[1]), BUS_TO_BROKER, &h);
    if (count < 2)
        s_drop (b, "no header frame", "peer");
    else if (old)
        s_drop (b, old, "peer");
    else if (why && !h.side)
        s_drop (b, why, "peer");
    else {
        if (!why && (extra || count != 1 + h.frames))
            why = h.frames == 1 ? "the command has a header frame only"
                                : "the command has a header and a payload frame";
        if (!why && (h.command == BUS_CLIENT_BATCH || h.command == BUS_WORKER_BATCH))
            why = bus_batch_check (zmq_msg_data (&f[2]), zmq_msg_size (&f[2]), h.number);
        if (h.side == BUS_WORKER)
            s_on_worker (b, f, &h, why);
        else if (why)
            s_drop (b, why, "client");
        else
            s_on_client (b, f, &h);
    }
    for (int i = 0; i < count; i++)
        zmq_msg_close (&f[i]);
    return 1;
}

/* --- timers --- */

static void
s_heartbeat (broker_t *b, int64_t now)
{
    /*  Collect first: deleting while iterating the map is not allowed. */
    zlistx_t *dead = zlistx_new ();
    size_t cursor = 0;
    uint64_t key;
    void *value;
    while (u64map_next (b->workers, &cursor, &key, &value)) {
        worker_t *w = value;
        if (w->expiry <= now)
            zlistx_add_end (dead, w);
        else
            s_worker_command (b, w->address, w->address_len, BUS_WORKER_HEARTBEAT);
    }
    for (worker_t *w = zlistx_first (dead); w; w = zlistx_next (dead)) {
        log_warn (NULL, "worker lost service=%s in_hand=%d", w->service->name, w->n_held);
        b->worker_losses++;
        s_worker_delete (b, w, 1);
    }
    zlistx_destroy (&dead);
}

/*  Answers the queued requests whose deadline has come, keeping the order
    of the others. A service is looked at only when its earliest deadline
    has come. */
static void
s_sweep (broker_t *b, int64_t now)
{
    for (service_t *s = zhashx_first (b->services); s; s = zhashx_next (b->services)) {
        queue_t *q = &s->queue;
        if (q->len == 0 || s->earliest > now)
            continue;
        size_t kept = 0, n = q->len;
        int64_t earliest = INT64_MAX;
        for (size_t i = 0; i < n; i++) {
            request_t *r = &q->items[(q->head + i) % q->cap];
            if (r->deadline > now) {
                if (r->deadline < earliest)
                    earliest = r->deadline;
                if (kept != i)
                    q->items[(q->head + kept) % q->cap] = *r;
                kept++;
                continue;
            }
            s_answer_from_header (b, &r->header, s, &b->no_worker);
            s_request_close (r);
            b->queued--;
            b->expired++;
        }
        q->len = kept;
        s->earliest = earliest;
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
    /*  Workers first: they point at their services. */
    if (b->workers) {
        size_t cursor = 0;
        uint64_t key;
        void *value;
        while (u64map_next (b->workers, &cursor, &key, &value)) {
            worker_t *w = value;
            while (w->n_held)
                s_held_remove (w, 0);
            free (w->held);
            free (w);
        }
        u64map_destroy (&b->workers);
    }
    zhashx_destroy (&b->services);
    s_out_free_list (b->dirty);
    s_out_free_list (b->spare);
    u64map_destroy (&b->outs);
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
        /*  Drain what has arrived before polling again: one zmq_poll per
            batch, not per message. */
        if (items[1].revents & ZMQ_POLLIN)
            for (int n = 0; n < BATCH; n++) {
                if (n % CLOCK_EVERY == 0)
                    b->now = clock_mono_ms ();
                if (n > 0 && n % PASS == 0)
                    s_out_flush (b);
                if (!s_receive_one (b))
                    break;
            }
        now = clock_mono_ms ();
        if (now >= b->heartbeat_at) {
            s_heartbeat (b, now);
            b->heartbeat_at = now + b->heartbeat_ms;
        }
        if (b->queued && now >= b->sweep_at) {
            s_sweep (b, now);
            b->sweep_at = now + SWEEP_MS;
        }
        s_out_flush (b);
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
    if (sodium_init () < 0) {
        log_error (NULL, "cannot initialise libsodium");
        free (b);
        return NULL;
    }
    b->services = zhashx_new ();
    zhashx_set_destructor (b->services, s_service_free);
    b->workers = u64map_new ();
    b->outs = u64map_new ();
    randombytes_buf (b->peer_secret, sizeof b->peer_secret);
    b->started_at = clock_now_ms ();
    b->drop_log.burst = 5;
    ulid_make (b->instance);
    b->no_worker = s_canned (ST_UNAVAILABLE, "no worker answered before the deadline");
    b->worker_lost = s_canned (ST_UNAVAILABLE, "the worker handling the request stopped");
    b->queue_full = s_canned (ST_UNAVAILABLE, "the service's queue is full");
    b->too_many_services = s_canned (ST_UNAVAILABLE, "the broker knows too many services");
    b->bad_request = s_canned (ST_BAD_REQUEST,
                               "bad service name (a-z, 0-9, _ and -) or time-to-live (1..600000 ms)");
    zactor_t *actor = b->workers && b->outs ? zactor_new (s_broker_actor, b) : NULL;
    if (!actor) {
        s_broker_destroy (b);
        return NULL;
    }
    char *status = zstr_recv (actor);
    int ok = status && strcmp (status, "OK") == 0;
    zstr_free (&status);
    if (!ok)
        zactor_destroy (&actor);
    return actor;
}

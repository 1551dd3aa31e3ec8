/*  bus_client: asynchronous calls through the broker (see bus_client.h and
    docs/bus.md). Each call keeps its packed request so it can be sent again;
    each sending is an attempt with its own number inside the request id, so
    a late reply to an abandoned attempt is recognised and dropped. Timers
    (deadlines, retry backoff) live in a binary heap with lazy deletion: an
    entry whose time no longer matches its call's timer is skipped. Calls
    started while the client is held (inside bus_client_process, or between
    bus_client_batch_begin and _end) are collected and leave together, as
    one BATCH when there are several. */
#include "bus_client.h"
#include "bus_proto.h"
#include "bus_socket.h"
#include "clock.h"
#include "curve.h"
#include "log.h"
#include "u64map.h"

#include <czmq.h>
#include <errno.h>
#include <sodium.h>
#include <string.h>

#define DEFAULT_TIMEOUT_MS 5000
#define BACKOFF_FIRST_MS 20
#define BACKOFF_MAX_MS 1000
#define ID_LEN 12               /* call id (8) + attempt (4), big-endian */

typedef struct {
    uint64_t id;
    uint32_t attempt;
    char service[BUS_SERVICE_MAX + 1];
    size_t service_len;
    uint8_t *request;           /* packed bus.Request, in the same allocation as the call */
    size_t request_len;
    int64_t deadline;           /* monotonic ms */
    int64_t timer_at;           /* when the heap should wake us for this call */
    int state;                  /* CALL_SENT, CALL_BACKOFF, CALL_FAILED */
    int retryable;
    int64_t sent_at;            /* monotonic ms of the current attempt's sending */
    const char *fail_message;   /* for CALL_FAILED */
    status_t fail_status;
    bus_reply_fn *callback;
    void *arg;
} call_t;

enum { CALL_SENT = 1, CALL_BACKOFF, CALL_FAILED };

typedef struct {
    int64_t at;
    uint64_t id;
} timer_t_;

struct bus_client_t {
    zsock_t *sock;
    void *handle;               /* zsock_resolve (sock) */
    u64map_t *calls;
    timer_t_ *heap;
    size_t heap_len, heap_cap;
    uint64_t next_id;
    int heartbeat_ms;
    int liveness;
    int64_t last_recv;          /* monotonic ms of the last message from the broker */
    int64_t next_heartbeat;
    size_t sent;                /* calls in state CALL_SENT */
    char broker[64];            /* broker instance from heartbeats */
    /*  Heartbeats awaiting an answer: each carries a nonce the broker
        echoes, so we know when the heartbeat that revealed a new broker
        instance was sent, and which calls went out before it. */
    struct {
        uint64_t nonce;
        int64_t sent_at;
    } hb[16];
    int hb_next;
    uint64_t hb_nonce;
    int64_t hb_sent_at;         /* the last heartbeat's sending */
    log_limit_t drop_log;
    /*  Requests collected while held, and which attempts they are. */
    int held;
    bus_batch_t out;
    struct {
        uint64_t id;
        uint32_t attempt;
    } *out_calls;
    size_t out_cap;
};

/* --- timer heap --- */

static void
s_heap_push (bus_client_t *self, int64_t at, uint64_t id)
{
    if (self->heap_len == self->heap_cap) {
        size_t cap = self->heap_cap ? self->heap_cap * 2 : 256;
        timer_t_ *heap = realloc (self->heap, cap * sizeof *heap);
        if (!heap)
            return;     /* the call then ends at the next heap pass of a sibling */
        self->heap = heap;
        self->heap_cap = cap;
    }
    size_t i = self->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (self->heap[parent].at <= at)
            break;
        self->heap[i] = self->heap[parent];
        i = parent;
    }
    self->heap[i].at = at;
    self->heap[i].id = id;
}

static void
s_heap_pop (bus_client_t *self)
{
    timer_t_ last = self->heap[--self->heap_len];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= self->heap_len)
            break;
        if (child + 1 < self->heap_len && self->heap[child + 1].at < self->heap[child].at)
            child++;
        if (self->heap[child].at >= last.at)
            break;
        self->heap[i] = self->heap[child];
        i = child;
    }
    if (self->heap_len)
        self->heap[i] = last;
}

static void
s_call_timer (bus_client_t *self, call_t *call, int64_t at)
{
    call->timer_at = at;
    s_heap_push (self, at, call->id);
}

/* --- construction --- */

bus_client_t *
bus_client_new (const bus_client_opts_t *opts)
{
    bus_client_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->heartbeat_ms = opts->heartbeat_ms > 0 ? opts->heartbeat_ms : 1000;
    self->liveness = opts->liveness > 0 ? opts->liveness : 3;
    self->calls = u64map_new ();
    if (!self->calls)
        goto fail;
    self->sock = bus_socket_connect_with (ZMQ_DEALER, opts->endpoint, opts->curve_dir,
                                          opts->curve_cert, self->heartbeat_ms, self->liveness);
    if (!self->sock)
        goto fail;
    self->handle = zsock_resolve (self->sock);
    randombytes_buf (&self->next_id, sizeof self->next_id);
    self->next_id = (self->next_id >> 16) | 1;  /* room to count, never 0 */
    self->last_recv = clock_mono_ms ();
    self->hb_sent_at = self->last_recv - self->heartbeat_ms;
    self->drop_log.burst = 5;
    return self;
fail:
    bus_client_destroy (&self);
    return NULL;
}

bus_client_t *
bus_client_new_from_config (const config_t *cfg)
{
    bus_client_opts_t opts = {
        .endpoint = config_str (cfg, "bus"),
        .curve_dir = config_str (cfg, "curve"),
        .curve_cert = config_str (cfg, "curve_cert"),
        .heartbeat_ms = (int) config_int (cfg, "heartbeat_ms", 1000, 10, 60000, NULL),
        .liveness = (int) config_int (cfg, "liveness", 3, 1, 100, NULL),
    };
    return bus_client_new (&opts);
}

static void
s_call_free (call_t *call)
{
    free (call);
}

void
bus_client_destroy (bus_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bus_client_t *self = *self_p;
    if (self->calls) {
        size_t cursor = 0;
        uint64_t key;
        void *value;
        while (u64map_next (self->calls, &cursor, &key, &value))
            s_call_free (value);
        u64map_destroy (&self->calls);
    }
    zsock_destroy (&self->sock);
    free (self->heap);
    bus_batch_fini (&self->out);
    free (self->out_calls);
    free (self);
    *self_p = NULL;
}

/* --- sending --- */

static void s_set_state (bus_client_t *self, call_t *call, int state);
static void s_fail_later (bus_client_t *self, call_t *call, status_t status, const char *message,
                          int64_t now);

/*  Sends what was collected. If ZeroMQ refuses it (the DEALER is at its
    high-water mark), each call in it fails as a refused single call does. */
static int
s_flush (bus_client_t *self)
{
    uint32_t n = self->out.count;
    if (n == 0)
        return 0;
    if (bus_batch_send (&self->out, self->handle, BUS_CLIENT, NULL, 0) == 0)
        return 0;
    int64_t now = clock_mono_ms ();
    for (uint32_t i = 0; i < n; i++) {
        call_t *call = u64map_get (self->calls, self->out_calls[i].id);
        if (call && call->state == CALL_SENT && call->attempt == self->out_calls[i].attempt)
            s_fail_later (self, call, ST_UNAVAILABLE, "bus send queue is full", now);
    }
    return -1;
}

/*  Collects an attempt while held. -1 when it must go alone. */
static int
s_collect (bus_client_t *self, call_t *call, const uint8_t *header, size_t size)
{
    if (!self->held || call->request_len > BUS_BATCH_PAYLOAD)
        return -1;
    if (bus_batch_full (&self->out, call->request_len))
        s_flush (self);
    if (self->out.count == self->out_cap) {
        size_t cap = self->out_cap ? self->out_cap * 2 : 64;
        void *calls = realloc (self->out_calls, cap * sizeof *self->out_calls);
        if (!calls)
            return -1;
        self->out_calls = calls;
        self->out_cap = cap;
    }
    if (bus_batch_add (&self->out, header, size, call->request, call->request_len))
        return -1;
    self->out_calls[self->out.count - 1].id = call->id;
    self->out_calls[self->out.count - 1].attempt = call->attempt;
    return 0;
}

/*  Sends the current attempt: a header frame and the payload frame, or
    into the collection while held. A DEALER either takes the whole message
    or, at its high-water mark, refuses the first frame: no partial
    messages. */
static int
s_transmit (bus_client_t *self, call_t *call, int64_t now)
{
    uint8_t id[ID_LEN];
    for (int i = 0; i < 8; i++)
        id[i] = (uint8_t) (call->id >> (56 - 8 * i));
    for (int i = 0; i < 4; i++)
        id[8 + i] = (uint8_t) (call->attempt >> (24 - 8 * i));
    /*  The broker gives up a little before we do, so that its answer
        (queued too long: unavailable) rather than our own timer decides. */
    int64_t left = call->deadline - now;
    left = left > 200 ? left - 50 : left * 3 / 4;
    bus_header_t h = {.side = BUS_CLIENT,
                      .command = BUS_CLIENT_REQUEST,
                      .number = (uint32_t) (left < 1 ? 1 : left),
                      .id = id,
                      .id_len = ID_LEN,
                      .service = (const uint8_t *) call->service,
                      .service_len = call->service_len};
    uint8_t header[BUS_HEADER_MAX];
    size_t size = bus_header_build (header, &h, BUS_TO_BROKER);
    call->sent_at = now;
    if (s_collect (self, call, header, size) == 0)
        return 0;
    s_flush (self);     /* what was collected goes first */
    if (zmq_send (self->handle, header, size, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -1;
    zmq_send (self->handle, call->request, call->request_len, ZMQ_DONTWAIT);
    return 0;
}

static void
s_heartbeat (bus_client_t *self, int64_t now)
{
    /*  The calls collected so far were started before this heartbeat and
        must leave before it (docs/bus.md §8.3). */
    s_flush (self);
    uint64_t nonce = ++self->hb_nonce;
    bus_header_t h = {.side = BUS_CLIENT,
                      .command = BUS_CLIENT_HEARTBEAT,
                      .nonce = (const uint8_t *) &nonce,
                      .nonce_len = sizeof nonce};
    uint8_t header[BUS_HEADER_MAX];
    size_t size = bus_header_build (header, &h, BUS_TO_BROKER);
    if (zmq_send (self->handle, header, size, ZMQ_DONTWAIT) == (int) size) {
        self->hb[self->hb_next].nonce = nonce;
        self->hb[self->hb_next].sent_at = now;
        self->hb_next = (self->hb_next + 1) % 16;
        self->hb_sent_at = now;
    }
}

/*  Before the first call after a quiet spell, a heartbeat: its answer
    (which comes before the call's, ZeroMQ keeps order) tells us whether
    the broker restarted meanwhile without making the call look lost. */
static void
s_heartbeat_if_quiet (bus_client_t *self, int64_t now)
{
    if (self->sent == 0 && now - self->hb_sent_at >= self->heartbeat_ms)
        s_heartbeat (self, now);
}

static void
s_set_state (bus_client_t *self, call_t *call, int state)
{
    if (call->state == CALL_SENT && state != CALL_SENT)
        self->sent--;
    if (call->state != CALL_SENT && state == CALL_SENT) {
        if (self->sent == 0) {
            /*  Liveness counts from the first call in flight. */
            self->last_recv = clock_mono_ms ();
            self->next_heartbeat = self->last_recv + self->heartbeat_ms;
        }
        self->sent++;
    }
    call->state = state;
}

static void
s_fail_later (bus_client_t *self, call_t *call, status_t status, const char *message, int64_t now)
{
    s_set_state (self, call, CALL_FAILED);
    call->fail_status = status;
    call->fail_message = message;
    s_call_timer (self, call, now);
}

uint64_t
bus_client_send (bus_client_t *self, const char *service, const char *method,
                 const ProtobufCMessage *body, const bus_call_opts_t *opts,
                 bus_reply_fn *callback, void *arg)
{
    static const bus_call_opts_t defaults = {0};
    if (!opts)
        opts = &defaults;
    size_t service_len = strlen (service);
    if (service_len == 0 || service_len > BUS_SERVICE_MAX)
        return 0;
    int timeout = opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    if (timeout > BUS_TTL_MAX_MS)
        timeout = BUS_TTL_MAX_MS;

    Bus__Request req = BUS__REQUEST__INIT;
    req.method = (char *) method;
    uint8_t small[512];
    uint8_t *body_buf = NULL;
    if (body) {
        size_t len = protobuf_c_message_get_packed_size (body);
        body_buf = len <= sizeof small ? small : malloc (len);
        if (!body_buf)
            return 0;
        protobuf_c_message_pack (body, body_buf);
        req.body.data = body_buf;
        req.body.len = len;
    }
    req.caller = (Bus__Caller *) opts->caller;
    req.trace_id = (char *) (opts->trace_id ? opts->trace_id : "");
    req.idempotency_key = (char *) (opts->idempotency_key ? opts->idempotency_key : "");
    req.deadline_ms = clock_now_ms () + timeout;

    /*  One allocation: the call, then its packed request. */
    size_t request_len = bus__request__get_packed_size (&req);
    call_t *call = calloc (1, sizeof *call + request_len);
    if (!call) {
        if (body_buf != small)
            free (body_buf);
        return 0;
    }
    call->request = (uint8_t *) (call + 1);
    call->request_len = request_len;
    bus__request__pack (&req, call->request);
    if (body_buf != small)
        free (body_buf);

    memcpy (call->service, service, service_len + 1);
    call->service_len = service_len;
    call->id = self->next_id++;
    call->retryable = (opts->flags & BUS_CALL_RETRY)
                      || (opts->idempotency_key && *opts->idempotency_key);
    call->callback = callback;
    call->arg = arg;
    int64_t now = clock_mono_ms ();
    call->deadline = now + timeout;
    if (u64map_put (self->calls, call->id, call)) {
        s_call_free (call);
        return 0;
    }
    if (call->request_len > BUS_MAX_MESSAGE - 4096) {
        /*  The broker would cut our connection for it, losing every other
            call in flight: refuse it here. */
        s_fail_later (self, call, ST_PAYLOAD_TOO_LARGE, "the request is too large for the bus", now);
        return call->id;
    }
    s_heartbeat_if_quiet (self, now);
    if (s_transmit (self, call, now) == 0) {
        s_set_state (self, call, CALL_SENT);
        s_call_timer (self, call, call->deadline);
    }
    else
        s_fail_later (self, call, ST_UNAVAILABLE, "bus send queue is full", now);
    return call->id;
}

void
bus_client_cancel (bus_client_t *self, uint64_t id)
{
    call_t *call = u64map_remove (self->calls, id);
    if (call) {
        s_set_state (self, call, 0);
        s_call_free (call);
    }
}

void
bus_client_batch_begin (bus_client_t *self)
{
    self->held++;
}

int
bus_client_batch_end (bus_client_t *self)
{
    if (self->held > 0 && --self->held == 0 && self->out.count) {
        s_flush (self);
        return 1;
    }
    return 0;
}

int
bus_client_fd (bus_client_t *self)
{
    return zsock_fd (self->sock);
}

size_t
bus_client_pending (bus_client_t *self)
{
    return u64map_size (self->calls);
}

const char *
bus_client_broker_instance (bus_client_t *self)
{
    return self->broker;
}

/* --- completing --- */

static void
s_finish (bus_client_t *self, call_t *call, const Bus__Reply *reply)
{
    u64map_remove (self->calls, call->id);
    s_set_state (self, call, 0);
    bus_reply_fn *callback = call->callback;
    void *arg = call->arg;
    s_call_free (call);
    if (callback)
        callback (arg, reply);
}

static void
s_finish_status (bus_client_t *self, call_t *call, status_t status, const char *message)
{
    Bus__Reply reply = BUS__REPLY__INIT;
    reply.status = status;
    reply.message = (char *) message;
    s_finish (self, call, &reply);
}

static void
s_finish_unavailable (bus_client_t *self, call_t *call, const char *message)
{
    s_finish_status (self, call, ST_UNAVAILABLE, message);
}

/*  The call's attempt failed with `unavailable`: try again after a backoff
    if it is safe and time remains, otherwise report. */
static void
s_retry_or_fail (bus_client_t *self, call_t *call, const Bus__Reply *reply, const char *why,
                 int64_t now)
{
    if (call->retryable) {
        int64_t backoff = BACKOFF_FIRST_MS << (call->attempt < 6 ? call->attempt : 6);
        if (backoff > BACKOFF_MAX_MS)
            backoff = BACKOFF_MAX_MS;
        backoff = backoff / 2 + randombytes_uniform ((uint32_t) backoff / 2 + 1);
        if (now + backoff < call->deadline) {
            s_set_state (self, call, CALL_BACKOFF);
            s_call_timer (self, call, now + backoff);
            return;
        }
    }
    if (reply)
        s_finish (self, call, reply);
    else
        s_finish_unavailable (self, call, why);
}

/*  Every call sent before now is presumed lost (the broker restarted or
    stopped answering). */
static void
s_calls_lost (bus_client_t *self, const char *why, int64_t now, int64_t sent_before)
{
    /*  Collect ids first: a callback may start or cancel other calls, so
        each id is looked up again before it is handled. */
    size_t n = 0, cap = self->sent ? self->sent : 1;
    uint64_t *ids = malloc (cap * sizeof *ids);
    if (!ids)
        return;
    size_t cursor = 0;
    uint64_t key;
    void *value;
    while (n < cap && u64map_next (self->calls, &cursor, &key, &value))
        if (((call_t *) value)->state == CALL_SENT)
            ids[n++] = key;
    for (size_t i = 0; i < n; i++) {
        call_t *call = u64map_get (self->calls, ids[i]);
        if (!call || call->state != CALL_SENT || call->sent_at >= sent_before)
            continue;
        call->attempt++;        /* whatever the old attempt answers is stale */
        s_retry_or_fail (self, call, NULL, why, now);
    }
    free (ids);
}

static void
s_dropped (bus_client_t *self, const char *why)
{
    unsigned long suppressed;
    if (log_limit_allow (&self->drop_log, &suppressed))
        log_warn (NULL, "bus client dropped a message reason=\"%s\" suppressed=%lu", why,
                  suppressed);
}

static void
s_on_reply (bus_client_t *self, const bus_header_t *h, const void *payload, size_t len,
            int64_t now)
{
    if (h->id_len != ID_LEN) {
        s_dropped (self, "a reply with a request id we never send");
        return;
    }
    const uint8_t *id = h->id;
    uint64_t call_id = 0;
    uint32_t attempt = 0;
    for (int i = 0; i < 8; i++)
        call_id = (call_id << 8) | id[i];
    for (int i = 8; i < 12; i++)
        attempt = (attempt << 8) | id[i];
    call_t *call = u64map_get (self->calls, call_id);
    if (!call || call->attempt != attempt || call->state != CALL_SENT)
        return;         /* cancelled, timed out or superseded: not an error */
    Bus__Reply *reply = bus__reply__unpack (NULL, len, payload);
    if (!reply) {
        s_finish_unavailable (self, call, "malformed reply from the bus");
        return;
    }
    if (reply->status == ST_UNAVAILABLE) {
        call->attempt++;
        s_retry_or_fail (self, call, reply, NULL, now);
    }
    else
        s_finish (self, call, reply);
    bus__reply__free_unpacked (reply, NULL);
}

static void
s_on_heartbeat (bus_client_t *self, const bus_header_t *h, int64_t now)
{
    size_t len = h->instance_len;
    if (len == 0 || len >= sizeof self->broker)
        return;
    char instance[64];
    memcpy (instance, h->instance, len);
    instance[len] = 0;
    /*  When our heartbeat left: calls sent before it may have gone to a
        broker that no longer exists. */
    int64_t sent_at = now;
    if (h->nonce_len == sizeof (uint64_t)) {
        uint64_t nonce;
        memcpy (&nonce, h->nonce, sizeof nonce);
        for (int i = 0; i < 16; i++)
            if (self->hb[i].nonce == nonce && nonce)
                sent_at = self->hb[i].sent_at;
    }
    if (self->broker[0] && strcmp (self->broker, instance) != 0) {
        log_info (NULL, "bus broker restarted in_flight=%zu", self->sent);
        s_calls_lost (self, "the broker restarted", now, sent_at);
    }
    memcpy (self->broker, instance, len + 1);
}

#define MAX_FRAMES 2

/*  A BATCH of REPLYs (checked): each as if it came alone. */
static void
s_on_batch (bus_client_t *self, zmq_msg_t *entries, int64_t now)
{
    const uint8_t *data = zmq_msg_data (entries), *header, *payload;
    size_t size = zmq_msg_size (entries), at = 0, header_len, len;
    while (bus_batch_next (data, size, &at, &header, &header_len, &payload, &len)) {
        bus_header_t h;
        const char *why = bus_batch_entry (header, header_len, BUS_FROM_BROKER, BUS_CLIENT,
                                           BUS_CLIENT_REPLY, &h);
        if (why)
            s_dropped (self, why);
        else
            s_on_reply (self, &h, payload, len, now);
    }
}

/*  Reads until nothing is left: a receive that finds nothing also takes
    in ZeroMQ's pending commands, which is what re-arms the descriptor. */
static void
s_receive (bus_client_t *self)
{
    for (;;) {
        zmq_msg_t frames[MAX_FRAMES];
        int count = 0, more = 1, extra = 0;
        while (more) {
            zmq_msg_t part;
            zmq_msg_init (&part);
            if (zmq_msg_recv (&part, self->handle, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close (&part);
                if (count == 0 && !extra)
                    goto done;
                break;
            }
            more = zmq_msg_more (&part);
            if (count < MAX_FRAMES)
                frames[count++] = part;
            else {
                zmq_msg_close (&part);
                extra = 1;
            }
        }
        int64_t now = clock_mono_ms ();
        self->last_recv = now;
        bus_header_t h;
        const char *why = bus_header_parse (zmq_msg_data (&frames[0]), zmq_msg_size (&frames[0]),
                                            BUS_FROM_BROKER, &h);
        if (!why && (extra || count != h.frames || h.side != BUS_CLIENT))
            why = "wrong number of frames or a worker's command";
        if (!why && h.command == BUS_CLIENT_BATCH)
            why = bus_batch_check (zmq_msg_data (&frames[1]), zmq_msg_size (&frames[1]),
                                   h.number);
        if (why)
            s_dropped (self, why);
        else if (h.command == BUS_CLIENT_REPLY)
            s_on_reply (self, &h, zmq_msg_data (&frames[1]), zmq_msg_size (&frames[1]), now);
        else if (h.command == BUS_CLIENT_BATCH)
            s_on_batch (self, &frames[1], now);
        else
            s_on_heartbeat (self, &h, now);
        for (int i = 0; i < count; i++)
            zmq_msg_close (&frames[i]);
    }
done:
    return;
}

static void
s_timers (bus_client_t *self, int64_t now)
{
    while (self->heap_len && self->heap[0].at <= now) {
        timer_t_ t = self->heap[0];
        s_heap_pop (self);
        call_t *call = u64map_get (self->calls, t.id);
        if (!call || call->timer_at != t.at)
            continue;
        if (call->state == CALL_FAILED)
            s_finish_status (self, call, call->fail_status, call->fail_message);
        else if (call->state == CALL_BACKOFF) {
            s_heartbeat_if_quiet (self, now);
            if (s_transmit (self, call, now) == 0) {
                s_set_state (self, call, CALL_SENT);
                s_call_timer (self, call, call->deadline);
            }
            else
                s_finish_unavailable (self, call, "bus send queue is full");
        }
        else if (now >= call->deadline)
            s_finish_unavailable (self, call, "deadline exceeded");
    }
}

int
bus_client_process (bus_client_t *self)
{
    /*  Calls the callbacks start leave together at the end. */
    bus_client_batch_begin (self);
    s_receive (self);
    int64_t now = clock_mono_ms ();
    if (self->sent > 0) {
        if (now - self->last_recv > (int64_t) self->heartbeat_ms * self->liveness) {
            log_warn (NULL, "bus broker not answering in_flight=%zu", self->sent);
            self->last_recv = now;
            s_calls_lost (self, "the broker is not answering", now, now + 1);
        }
        else if (now >= self->next_heartbeat) {
            s_heartbeat (self, now);
            self->next_heartbeat = now + self->heartbeat_ms;
        }
    }
    s_timers (self, now);
    bus_client_batch_end (self);
    /*  Sending may have consumed the descriptor's edge: look again. The
        callbacks of what arrives meanwhile send at once: held again, what
        they start would wait for the next call of ours. */
    s_receive (self);
    now = clock_mono_ms ();
    int64_t wait = -1;
    if (self->heap_len)
        wait = self->heap[0].at - now;
    if (self->sent > 0) {
        int64_t hb = self->next_heartbeat - now;
        if (wait < 0 || hb < wait)
            wait = hb;
    }
    if (wait < 0 && (self->heap_len || self->sent > 0))
        wait = 0;
    return wait > 60000 ? 60000 : (int) wait;
}

/* --- blocking call --- */

typedef struct {
    int done;
    arena_t *arena;
    Bus__Reply *reply;          /* copy, in arena (or malloc'd fields when no arena) */
    status_t status;
    uint8_t *body;
    size_t body_len;
} sync_t;

static char *
s_copy (arena_t *arena, const char *text)
{
    return arena ? arena_strdup (arena, text ? text : "") : NULL;
}

static void
s_sync_done (void *arg, const Bus__Reply *reply)
{
    sync_t *sync = arg;
    sync->done = 1;
    sync->status = reply->status;
    if (reply->body.len) {
        sync->body = sync->arena ? arena_alloc (sync->arena, reply->body.len)
                                 : malloc (reply->body.len);
        if (sync->body) {
            memcpy (sync->body, reply->body.data, reply->body.len);
            sync->body_len = reply->body.len;
        }
    }
    if (sync->arena) {
        Bus__Reply *copy = arena_msg (sync->arena, &bus__reply__descriptor);
        copy->status = reply->status;
        copy->code = s_copy (sync->arena, reply->code);
        copy->message = s_copy (sync->arena, reply->message);
        copy->field = s_copy (sync->arena, reply->field);
        copy->reason = s_copy (sync->arena, reply->reason);
        copy->retry_after = reply->retry_after;
        copy->body.data = sync->body;
        copy->body.len = sync->body_len;
        sync->reply = copy;
    }
}

status_t
bus_client_call (bus_client_t *self, const char *service, const char *method,
                 const ProtobufCMessage *body, const bus_call_opts_t *opts,
                 const ProtobufCMessageDescriptor *reply_desc, arena_t *arena,
                 ProtobufCMessage **reply_out, Bus__Reply **result)
{
    sync_t sync = {.arena = arena, .status = ST_UNAVAILABLE};
    if (reply_out)
        *reply_out = NULL;
    if (result)
        *result = NULL;
    uint64_t id = bus_client_send (self, service, method, body, opts, s_sync_done, &sync);
    if (!id)
        return ST_INTERNAL;
    s_flush (self);     /* even inside a batch: we wait for it */
    while (!sync.done) {
        int wait = bus_client_process (self);
        if (sync.done)
            break;
        /*  Inside a batch, what the processing started (our retry among
            it) would wait for the batch's end. Refused, its calls fail
            now: process again at once. */
        if (s_flush (self) < 0)
            wait = 0;
        zmq_pollitem_t item = {self->handle, 0, ZMQ_POLLIN, 0};
        if (zmq_poll (&item, 1, wait) < 0 && errno == EINTR && zsys_interrupted) {
            bus_client_cancel (self, id);
            return ST_UNAVAILABLE;
        }
    }
    if (sync.status == ST_OK && reply_desc && reply_out) {
        ProtobufCMessage *msg = protobuf_c_message_unpack (
            reply_desc, arena ? arena_allocator (arena) : NULL, sync.body_len, sync.body);
        if (!msg) {
            log_error (opts ? opts->trace_id : NULL, "bus reply does not unpack method=%s",
                       method);
            sync.status = ST_INTERNAL;
        }
        *reply_out = msg;
    }
    if (result)
        *result = sync.reply;
    if (!arena)
        free (sync.body);
    return sync.status;
}

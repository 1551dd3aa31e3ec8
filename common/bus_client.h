/*  bus_client: calls services through the broker (docs/bus.md). Many calls
    may be in flight; each has a deadline. It never blocks: the owner polls
    bus_client_fd() for input and calls bus_client_process() when it is
    readable and when the time it returned has passed (the gateway does this
    from its event loop). Calls that are read-only (BUS_CALL_RETRY) or carry
    an idempotency key are retried with backoff when the broker answers
    `unavailable` (their worker died) or is lost, until their deadline.
    bus_client_call() is a blocking wrapper for service code. Not thread-safe:
    one client per thread. */
#ifndef PARTA_BUS_CLIENT_H
#define PARTA_BUS_CLIENT_H

#include "arena.h"
#include "bus.pb-c.h"
#include "config.h"
#include "status.h"

#include <stdint.h>

typedef struct bus_client_t bus_client_t;

typedef struct {
    const char *endpoint;       /* broker ROUTER, e.g. tcp://127.0.0.1:7600 */
    const char *curve_dir;      /* NULL: no CURVE */
    const char *curve_cert;     /* NULL: curve_dir/client.cert_secret */
    int heartbeat_ms;           /* default 1000 */
    int liveness;               /* default 3 */
} bus_client_opts_t;

#define BUS_CALL_RETRY 1        /* read-only: safe to send again */

typedef struct {
    int timeout_ms;             /* default 5000 */
    int flags;                  /* BUS_CALL_RETRY */
    const Bus__Caller *caller;
    const char *trace_id;
    const char *idempotency_key;
} bus_call_opts_t;

/*  Called once per call with the reply envelope (borrowed for the duration
    of the callback). Failures the client detects itself (deadline, broker
    lost, send queue full) arrive as a reply with status UNAVAILABLE. */
typedef void (bus_reply_fn) (void *arg, const Bus__Reply *reply);

bus_client_t *bus_client_new (const bus_client_opts_t *opts);
/*  Options from a process configuration (bus, curve, heartbeat_ms, liveness). */
bus_client_t *bus_client_new_from_config (const config_t *cfg);
void bus_client_destroy (bus_client_t **self_p);

/*  Starts a call. `body` may be NULL (empty message). Returns the call's id
    (never 0), or 0 if the request could not even be built (the callback is
    not called then). */
uint64_t bus_client_send (bus_client_t *self, const char *service, const char *method,
                          const ProtobufCMessage *body, const bus_call_opts_t *opts,
                          bus_reply_fn *callback, void *arg);

/*  Between these, calls are collected rather than sent, and leave together
    (one BATCH message, docs/bus.md) at the outermost _end: for a caller
    that starts several calls at once. Calls started from reply callbacks
    inside bus_client_process are collected the same way. */
void bus_client_batch_begin (bus_client_t *self);
/*  1 when it sent something: sending may hide the arrival of replies from
    the descriptor's edge, so an owner that polls the descriptor then runs
    bus_client_process once more (the gateway at its loop's next turn). */
int bus_client_batch_end (bus_client_t *self);

/*  Forgets a call: its callback will not be called. */
void bus_client_cancel (bus_client_t *self, uint64_t id);

/*  A descriptor to poll for input (POLLIN). ZeroMQ signals it edge-style:
    after it fires, call bus_client_process, which drains everything. */
int bus_client_fd (bus_client_t *self);

/*  Receives replies, runs callbacks, handles deadlines, retries and
    heartbeats. Returns milliseconds until it wants to run again (-1: only
    when input arrives). */
int bus_client_process (bus_client_t *self);

/*  Calls in flight. */
size_t bus_client_pending (bus_client_t *self);

/*  Blocking call. On OK and with `reply_desc`, unpacks the reply body into
    *reply_out, allocated from `arena` (or with malloc when arena is NULL:
    free it with protobuf_c_message_free_unpacked). `result` (may be NULL)
    receives the whole reply envelope, allocated from `arena` likewise.
    Other calls' callbacks may run meanwhile. Returns the status. */
status_t bus_client_call (bus_client_t *self, const char *service, const char *method,
                          const ProtobufCMessage *body, const bus_call_opts_t *opts,
                          const ProtobufCMessageDescriptor *reply_desc, arena_t *arena,
                          ProtobufCMessage **reply_out, Bus__Reply **result);

/*  The broker instance seen in the last heartbeat ("" before any). */
const char *bus_client_broker_instance (bus_client_t *self);

#endif

/*  bus_worker: the common half of every service. A service is a table of
    methods (Redis's command table is the model): name, handler, flags. The
    worker, a CZMQ actor, registers the service with the broker, unpacks each
    request with the method's descriptor, runs the checks the flags ask for,
    calls the handler, packs the reply and counts calls and latency. Writes
    run in a transaction with the idempotency record and the outbox, and the
    worker publishes committed events (outbox.h). Handlers never see frames.
    Every service also answers sys.ping, sys.stats and sys.replay. */
#ifndef PARTA_BUS_WORKER_H
#define PARTA_BUS_WORKER_H

#include "arena.h"
#include "bus.pb-c.h"
#include "bus_client.h"
#include "config.h"
#include "db.h"
#include "status.h"

#include <czmq.h>

typedef struct bus_call_t bus_call_t;

/*  A handler reads the unpacked request and, on success, sets *reply to a
    message of the method's output type built from bus_call_arena(). It
    returns ST_OK or the status from bus_call_fail(). */
typedef status_t (bus_handler_fn) (bus_call_t *call, const void *request, void **reply);

enum {
    BUS_AUTH = 1 << 0,          /* a signed-in caller is required: else unauthorized */
    BUS_WRITE = 1 << 1,         /* runs in a transaction; idempotency key honoured */
    BUS_OPERATOR = 1 << 2,      /* platform operators only: else forbidden */
    BUS_ORG_MEMBER = 1 << 3,    /* caller holds a role in request.org_id: else not_found */
    BUS_ORG_STAFF = 1 << 4,     /* admin, administration or teacher there: else forbidden */
    BUS_ORG_ADMIN = 1 << 5,     /* admin there: else forbidden */
    BUS_NOTXN = 1 << 6,         /* with BUS_WRITE: the handler runs its own transactions
                                   (it calls other services and must not hold the lock) */
    BUS_ANON_IDEM = 1 << 7,     /* with BUS_WRITE: an anonymous caller's idempotency key is
                                   honoured, scoped to their address; only for methods
                                   whose reply holds no secret (never a token) */
};

#define BUS_LATENCY_BUCKETS 6   /* <=100us, <=1ms, <=10ms, <=100ms, <=1s, more */

typedef struct {
    const char *name;           /* "identity.login": "<service>.<rpc name>" */
    bus_handler_fn *handler;
    int flags;
    /* filled by the worker */
    const ProtobufCMethodDescriptor *desc;
    uint64_t calls, errors, total_us, max_us;
    uint64_t buckets[BUS_LATENCY_BUCKETS];
} bus_method_t;

/*  Events a service consumes (event_consumer.h). */
typedef struct event_handler_t event_handler_t;

typedef struct {
    const char *name;                               /* "identity" */
    const ProtobufCServiceDescriptor *descriptor;   /* from the service's .proto */
    bus_method_t *methods;                          /* ends with a row whose name is NULL */
    const char *const *migrations;                  /* db.h */
    const event_handler_t *events;                  /* NULL: consumes nothing */
    const config_opt_t *options;                    /* extra configuration, may be NULL */
    /*  Builds the service's context from the configuration (NULL is a valid
        context); returns -1 to refuse to start. */
    int (*init) (const config_t *cfg, void **context);
    void (*fini) (void *context);
    /*  Runs every tick_ms in the worker's executor, inside a write
        transaction (events allowed), for work nobody asks for: expiring,
        reminding. Every instance runs it, so it must be idempotent. May
        be NULL. */
    status_t (*tick) (bus_call_t *call);
    int tick_ms;
} bus_service_t;

/*  Runs a service process: configuration, database, worker and consumer
    actors, until SIGINT or SIGTERM. Returns the exit status. */
int bus_service_main (bus_service_t *service, int argc, char **argv);

/*  Starts only the worker actor (tests start several in one process).
    `context` is handed to handlers. */
zactor_t *bus_worker_start (const config_t *cfg, bus_service_t *service, void *context);

/* --- what a handler may use --- */

arena_t *bus_call_arena (bus_call_t *call);
db_t *bus_call_db (bus_call_t *call);
void *bus_call_context (bus_call_t *call);
const Bus__Caller *bus_call_caller (bus_call_t *call);   /* NULL: public call */
const char *bus_call_user (bus_call_t *call);            /* "" when none */
const char *bus_call_trace (bus_call_t *call);
const char *bus_call_idempotency_key (bus_call_t *call);
const char *bus_call_method (bus_call_t *call);
const config_t *bus_call_config (bus_call_t *call);
/*  The time of the call, fixed for its whole duration (unix ms). */
int64_t bus_call_now (bus_call_t *call);
/*  Milliseconds left before the caller gives up (at least 1). */
int bus_call_time_left (bus_call_t *call);
/*  A client for calling other services from this worker thread. */
bus_client_t *bus_call_client (bus_call_t *call);

/*  Records a failure: returns `status` so handlers can write
    `return bus_call_fail (call, ST_BAD_REQUEST, "phone", "...")`.
    `field` may be NULL. */
status_t bus_call_fail (bus_call_t *call, status_t status, const char *field, const char *fmt,
                        ...) __attribute__ ((format (printf, 4, 5)));
/*  Forgets a failure recorded earlier (a courtesy lookup that failed but
    does not make the call fail). */
void bus_call_clear (bus_call_t *call);
/*  A specific error code ("invitation_revoked") for the reply. */
void bus_call_set_code (bus_call_t *call, const char *code);
void bus_call_set_reason (bus_call_t *call, const char *reason);
void bus_call_set_retry_after (bus_call_t *call, int seconds);

/*  Adds an event to the outbox in the call's transaction (BUS_WRITE
    methods). `payload` may be NULL. 0 or -1. */
int bus_call_event (bus_call_t *call, const char *type, const char *org_id,
                    const ProtobufCMessage *payload);

/* --- handler helpers --- */

/*  The database could not do it (busy, full): unavailable, try again. */
status_t bus_call_db_error (bus_call_t *call);
/*  `value` must be a ULID: bad_request naming `field` when absent or not. */
status_t bus_call_check_id (bus_call_t *call, const char *field, const char *value);
/*  A page size as asked: 0 means the default (50), more than 200 is 200. */
uint32_t bus_page_limit (uint32_t asked);
/*  Calls another service on behalf of this call's caller (its caller, trace
    and 3 s). A failure there is recorded as this call's failure with its
    status, field, code and message; the status is returned. `reply` may
    be NULL when only success matters. */
status_t bus_call_forward (bus_call_t *call, const char *service, const char *method,
                           const ProtobufCMessage *request,
                           const ProtobufCMessageDescriptor *reply_desc, void **reply);

/* --- caller helpers --- */

const Bus__Membership *bus_caller_membership (const Bus__Caller *caller, const char *org_id);
int bus_caller_has_role (const Bus__Caller *caller, const char *org_id, Bus__Role role);
int bus_caller_is_staff (const Bus__Caller *caller, const char *org_id);

#endif

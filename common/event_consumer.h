/*  event_consumer: applies the events a service follows, exactly once and in
    order per source (DESIGN §4). A CZMQ actor with its own SUB socket, its
    own database connection and its own bus client. It keeps the last
    sequence number per source in event_cursor, updated in the same
    transaction as the handler's effects; drops duplicates; and on a gap, a
    beacon ahead of it, a new epoch or at start it asks the source for what
    it missed with sys.replay. */
#ifndef PARTA_EVENT_CONSUMER_H
#define PARTA_EVENT_CONSUMER_H

#include "arena.h"
#include "bus_client.h"
#include "config.h"
#include "db.h"
#include "events.pb-c.h"
#include "status.h"

#include <czmq.h>

typedef struct event_ctx_t event_ctx_t;
typedef struct event_handler_t event_handler_t;

/*  Applies one event inside the consumer's transaction. Return ST_OK when
    applied; ST_UNAVAILABLE or ST_INTERNAL to roll back and try again later
    (a service it calls is down); any other status skips the event with a
    log line (it can never apply, e.g. it names something unknown). */
typedef status_t (event_handler_fn) (event_ctx_t *ctx, const Ev__Event *event,
                                     const ProtobufCMessage *payload);

struct event_handler_t {
    const char *type;           /* exact type, or a prefix ending with '.' */
    const ProtobufCMessageDescriptor *payload;  /* NULL: the handler gets NULL */
    event_handler_fn *handler;
};

/*  Follows the sources named by the handlers' types (the part before the
    first dot). `handlers` ends with a row whose type is NULL. */
zactor_t *event_consumer_start (const config_t *cfg, const char *service, const char *db_path,
                                const struct event_handler_t *handlers, void *context);

db_t *event_ctx_db (event_ctx_t *ctx);
arena_t *event_ctx_arena (event_ctx_t *ctx);
void *event_ctx_context (event_ctx_t *ctx);
const config_t *event_ctx_config (event_ctx_t *ctx);
bus_client_t *event_ctx_client (event_ctx_t *ctx);
/*  Adds an event of this service to its outbox, in the same transaction. */
int event_ctx_emit (event_ctx_t *ctx, const char *type, const char *org_id,
                    const ProtobufCMessage *payload);

#endif

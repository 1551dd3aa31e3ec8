/*  outbox: the transactional outbox (DESIGN §4). A change and the events it
    causes are written in one sqlite transaction; the publisher sends the
    rows in order on the broker's XSUB, each with its per-service gap-free
    sequence number (the row's seq). When several instances of a service
    share a database, one holds a lease (a row in outbox_state) and
    publishes for all; the others take over when it lapses. The holder
    notices other connections' commits through PRAGMA data_version and
    announces its head once a second ("sys.head") so consumers can tell they
    missed something even when nothing new happens. */
#ifndef PARTA_OUTBOX_H
#define PARTA_OUTBOX_H

#include "arena.h"
#include "bus.pb-c.h"
#include "config.h"
#include "db.h"
#include "events.pb-c.h"

#include <stdint.h>

/*  Appends an event; call inside the transaction of the change. 0 or -1. */
int outbox_add (db_t *db, const char *type, const char *org_id, const char *actor_id,
                const char *trace_id, int64_t at_ms, const ProtobufCMessage *payload);

/*  The outbox's epoch (made with the database), borrowed from a cache. */
const char *outbox_epoch (db_t *db);
uint64_t outbox_head (db_t *db);
uint64_t outbox_published (db_t *db);

/*  Fills `reply` with up to `limit` (1..500) events from `from_seq` on,
    allocated from `arena`, and the oldest seq still kept. 0 or -1. */
int outbox_replay (db_t *db, const char *source, uint64_t from_seq, uint32_t limit,
                   arena_t *arena, Bus__ReplayReply *reply);

/*  Deletes published events written before `before_ms`, at most `batch`
    of them; the newest published row always stays (it carries the head).
    Returns how many went, or -1. */
int outbox_prune (db_t *db, int64_t before_ms, int batch);

/*  Builds the envelope of the row the statement is on (columns seq, id,
    type, org_id, actor_id, at, payload, trace_id). Borrowed strings. */
void outbox_event_from_row (sqlite3_stmt *stmt, const char *source, const char *epoch,
                            Ev__Event *event);

typedef struct outbox_pub_t outbox_pub_t;

/*  A publisher for `source` over `db`, connecting to cfg's events_in. The
    lease holder also prunes events older than cfg's outbox_keep_days. */
outbox_pub_t *outbox_pub_new (db_t *db, const char *source, const config_t *cfg);
void outbox_pub_destroy (outbox_pub_t **self_p);
/*  Publishes what this connection just committed (when holding the lease). */
void outbox_pub_flush (outbox_pub_t *self);
/*  Lease renewal, other connections' commits, the head beacon. Returns
    milliseconds until it wants to run again. */
int outbox_pub_tick (outbox_pub_t *self);
int outbox_pub_is_holder (outbox_pub_t *self);

#endif

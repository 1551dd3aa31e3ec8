/*  echo_service: see echo_service.h. */
#include "echo_service.h"
#include "clock.h"

#include <czmq.h>
#include <unistd.h>

static const char *const s_migrations[] = {
    "CREATE TABLE counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    NULL,
};

static __thread char s_instance[32];
static __thread pid_t s_pid;        /* getpid is a system call each time */

static status_t
s_echo (bus_call_t *call, const void *request, void **reply)
{
    const Echo__EchoRequest *req = request;
    if (req->sleep_ms)
        zclock_sleep ((int) (req->sleep_ms > 10000 ? 10000 : req->sleep_ms));
    Echo__EchoReply *out = arena_msg (bus_call_arena (call), &echo__echo_reply__descriptor);
    out->text = arena_strdup (bus_call_arena (call), req->text);
    if (!s_instance[0]) {
        s_pid = getpid ();
        snprintf (s_instance, sizeof s_instance, "%d-%p", (int) s_pid, (void *) &s_instance);
    }
    out->instance = s_instance;
    out->pid = s_pid;
    *reply = out;
    return ST_OK;
}

static status_t
s_count (bus_call_t *call, const void *request, void **reply)
{
    const Echo__CountRequest *req = request;
    if (!req->name || !*req->name)
        return bus_call_fail (call, ST_BAD_REQUEST, "name", "name is required");
    db_t *db = bus_call_db (call);
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO counter (name, value) VALUES (?, 1)"
                                      " ON CONFLICT (name) DO UPDATE SET value = value + 1"
                                      " RETURNING value");
    if (!stmt)
        return bus_call_fail (call, ST_INTERNAL, NULL, "database error");
    sqlite3_bind_text (stmt, 1, req->name, -1, SQLITE_TRANSIENT);
    if (sqlite3_step (stmt) != SQLITE_ROW) {
        sqlite3_reset (stmt);
        return bus_call_fail (call, ST_UNAVAILABLE, NULL, "database busy");
    }
    Echo__CountReply *out = arena_msg (bus_call_arena (call), &echo__count_reply__descriptor);
    out->value = sqlite3_column_int64 (stmt, 0);
    sqlite3_reset (stmt);
    *reply = out;
    return ST_OK;
}

static status_t
s_emit (bus_call_t *call, const void *request, void **reply)
{
    const Echo__EmitRequest *req = request;
    if (req->count == 0 || req->count > 100000)
        return bus_call_fail (call, ST_BAD_REQUEST, "count", "count must be 1..100000");
    for (uint32_t i = 0; i < req->count; i++) {
        Echo__Tick tick = ECHO__TICK__INIT;
        tick.n = i + 1;
        if (bus_call_event (call, "echo.tick", "", &tick.base))
            return bus_call_fail (call, ST_INTERNAL, NULL, "cannot write the outbox");
    }
    Echo__EmitReply *out = arena_msg (bus_call_arena (call), &echo__emit_reply__descriptor);
    sqlite3_stmt *stmt = db_stmt (bus_call_db (call), "SELECT max(seq) FROM outbox");
    if (stmt && sqlite3_step (stmt) == SQLITE_ROW)
        out->last_seq = (uint64_t) sqlite3_column_int64 (stmt, 0);
    if (stmt)
        sqlite3_reset (stmt);
    *reply = out;
    return ST_OK;
}

static bus_method_t s_methods[] = {
    {"echo.echo", s_echo, 0},
    {"echo.count", s_count, BUS_WRITE},
    {"echo.emit", s_emit, BUS_WRITE},
    {NULL, NULL, 0},
};

bus_service_t echo_service = {
    .name = "echo",
    .descriptor = &echo__echo__descriptor,
    .methods = s_methods,
    .migrations = s_migrations,
};

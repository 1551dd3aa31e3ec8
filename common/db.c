/*  db: sqlite helpers (see db.h). */
#include "db.h"
#include "log.h"
#include "ulid.h"

#include <czmq.h>
#include <stdio.h>
#include <string.h>

struct db_t {
    sqlite3 *handle;
    char *path;
    zhashx_t *stmts;            /* sql text -> sqlite3_stmt */
    int depth;
};

/*  Tables the common code uses in every service database. */
static const char s_common_schema[] =
    "CREATE TABLE IF NOT EXISTS parta_meta ("
    "  key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS outbox ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  id TEXT NOT NULL, type TEXT NOT NULL,"
    "  org_id TEXT NOT NULL DEFAULT '', actor_id TEXT NOT NULL DEFAULT '',"
    "  at INTEGER NOT NULL, payload BLOB, trace_id TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE IF NOT EXISTS outbox_state ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  published INTEGER NOT NULL DEFAULT 0,"
    "  holder TEXT NOT NULL DEFAULT '', lease_until INTEGER NOT NULL DEFAULT 0);"
    "INSERT OR IGNORE INTO outbox_state (id) VALUES (1);"
    "CREATE TABLE IF NOT EXISTS idempotency ("
    "  caller TEXT NOT NULL, method TEXT NOT NULL, key TEXT NOT NULL,"
    "  reply BLOB NOT NULL, at INTEGER NOT NULL, request_hash BLOB,"
    "  PRIMARY KEY (caller, method, key)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS idempotency_at ON idempotency (at);"
    "CREATE TABLE IF NOT EXISTS idempotency_claim ("
    "  caller TEXT NOT NULL, method TEXT NOT NULL, key TEXT NOT NULL, until INTEGER NOT NULL,"
    "  PRIMARY KEY (caller, method, key)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS event_cursor ("
    "  source TEXT PRIMARY KEY, epoch TEXT NOT NULL, seq INTEGER NOT NULL);";

static int (*s_open_hook) (sqlite3 *handle);

void
db_set_open_hook (int (*hook) (sqlite3 *handle))
{
    s_open_hook = hook;
}

static void
s_stmt_destroy (void **item)
{
    sqlite3_finalize ((sqlite3_stmt *) *item);
    *item = NULL;
}

static int
s_exec (sqlite3 *handle, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec (handle, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf (err, errlen, "%s", msg ? msg : sqlite3_errmsg (handle));
        sqlite3_free (msg);
        return -1;
    }
    return 0;
}

static int
s_user_version (sqlite3 *handle)
{
    sqlite3_stmt *stmt;
    int version = -1;
    if (sqlite3_prepare_v2 (handle, "PRAGMA user_version", -1, &stmt, NULL) == SQLITE_OK) {
        if (sqlite3_step (stmt) == SQLITE_ROW)
            version = sqlite3_column_int (stmt, 0);
        sqlite3_finalize (stmt);
    }
    return version;
}

/*  Applies migrations[version..] one by one, each with its user_version bump
    in the same transaction, so a crash leaves the schema at a whole version.
    Several instances may start at once: BEGIN IMMEDIATE serialises them and
    the version is read again inside the transaction. */
static int
s_migrate (sqlite3 *handle, const char *const *migrations, char *err, size_t errlen)
{
    int total = 0;
    while (migrations && migrations[total])
        total++;
    for (;;) {
        if (s_exec (handle, "BEGIN IMMEDIATE", err, errlen))
            return -1;
        int version = s_user_version (handle);
        if (version < 0) {
            snprintf (err, errlen, "cannot read user_version");
            goto fail;
        }
        if (version > total) {
            snprintf (err, errlen, "database schema version %d is newer than this program (%d)",
                      version, total);
            goto fail;
        }
        if (version == total)
            return s_exec (handle, "COMMIT", err, errlen);
        if (s_exec (handle, migrations[version], err, errlen))
            goto fail;
        char bump[64];
        snprintf (bump, sizeof bump, "PRAGMA user_version = %d", version + 1);
        if (s_exec (handle, bump, err, errlen) || s_exec (handle, "COMMIT", err, errlen))
            goto fail;
        log_info (NULL, "schema migrated version=%d", version + 1);
    }
fail:
    sqlite3_exec (handle, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

db_t *
db_open (const char *path, const char *const *migrations, const char *sync, char *err,
         size_t errlen)
{
    db_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    self->path = strdup (path);
    if (sqlite3_open_v2 (path, &self->handle,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL)
        != SQLITE_OK) {
        snprintf (err, errlen, "cannot open %s: %s", path,
                  self->handle ? sqlite3_errmsg (self->handle) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout (self->handle, 5000);
    sqlite3_extended_result_codes (self->handle, 1);
    if (s_open_hook && s_open_hook (self->handle)) {
        snprintf (err, errlen, "the connection hook failed");
        goto fail;
    }
    const char *mode = sync && strcmp (sync, "full") == 0 ? "FULL" : "NORMAL";
    if (sync && strcmp (sync, "full") != 0 && strcmp (sync, "normal") != 0) {
        snprintf (err, errlen, "sync must be normal or full, not '%s'", sync);
        goto fail;
    }
    /*  Switching a new database to WAL takes a lock the busy timeout does
        not cover: instances starting together retry it for a while. */
    int tries = 0;
    while (s_exec (self->handle, "PRAGMA journal_mode = WAL", err, errlen)) {
        if ((sqlite3_errcode (self->handle) & 0xff) != SQLITE_BUSY || ++tries > 100)
            goto fail;
        sqlite3_sleep (50);
    }
    char pragmas[256];
    snprintf (pragmas, sizeof pragmas, "PRAGMA synchronous = %s; PRAGMA foreign_keys = ON;", mode);
    if (s_exec (self->handle, pragmas, err, errlen))
        goto fail;
    if (s_exec (self->handle, "BEGIN IMMEDIATE", err, errlen))
        goto fail;
    if (s_exec (self->handle, s_common_schema, err, errlen)) {
        sqlite3_exec (self->handle, "ROLLBACK", NULL, NULL, NULL);
        goto fail;
    }
    /*  The outbox epoch: made once with the database, it tells consumers
        that sequence numbers started again (a new or restored database). */
    char epoch[ULID_LEN + 1];
    ulid_make (epoch);
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2 (self->handle,
                            "INSERT OR IGNORE INTO parta_meta (key, value) VALUES ('epoch', ?)", -1,
                            &stmt, NULL)
        != SQLITE_OK) {
        snprintf (err, errlen, "%s", sqlite3_errmsg (self->handle));
        sqlite3_exec (self->handle, "ROLLBACK", NULL, NULL, NULL);
        goto fail;
    }
    sqlite3_bind_text (stmt, 1, epoch, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step (stmt);
    sqlite3_finalize (stmt);
    if (rc != SQLITE_DONE || s_exec (self->handle, "COMMIT", err, errlen)) {
        if (rc != SQLITE_DONE)
            snprintf (err, errlen, "%s", sqlite3_errmsg (self->handle));
        sqlite3_exec (self->handle, "ROLLBACK", NULL, NULL, NULL);
        goto fail;
    }
    if (migrations && s_migrate (self->handle, migrations, err, errlen))
        goto fail;
    self->stmts = zhashx_new ();
    zhashx_set_destructor (self->stmts, s_stmt_destroy);
    return self;
fail:
    db_destroy (&self);
    return NULL;
}

void
db_destroy (db_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    db_t *self = *self_p;
    zhashx_destroy (&self->stmts);
    if (self->handle)
        sqlite3_close_v2 (self->handle);
    free (self->path);
    free (self);
    *self_p = NULL;
}

sqlite3 *
db_handle (db_t *self)
{
    return self->handle;
}

const char *
db_path (db_t *self)
{
    return self->path;
}

sqlite3_stmt *
db_stmt (db_t *self, const char *sql)
{
    sqlite3_stmt *stmt = (sqlite3_stmt *) zhashx_lookup (self->stmts, sql);
    if (stmt) {
        sqlite3_reset (stmt);
        sqlite3_clear_bindings (stmt);
        return stmt;
    }
    if (sqlite3_prepare_v3 (self->handle, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL)
        != SQLITE_OK) {
        log_error (NULL, "sql prepare failed error=\"%s\" sql=\"%.120s\"",
                   sqlite3_errmsg (self->handle), sql);
        return NULL;
    }
    zhashx_insert (self->stmts, sql, stmt);
    return stmt;
}

int
db_exec (db_t *self, const char *sql)
{
    char err[256];
    if (s_exec (self->handle, sql, err, sizeof err)) {
        log_error (NULL, "sql failed error=\"%s\" sql=\"%.120s\"", err, sql);
        return -1;
    }
    return 0;
}

/*  Transaction control runs once or twice per request: through cached
    statements, not sqlite3_exec, which would compile the text every time. */
static int
s_txn_step (db_t *self, const char *sql)
{
    sqlite3_stmt *stmt = db_stmt (self, sql);
    if (!stmt)
        return -1;
    int rc = sqlite3_step (stmt);
    sqlite3_reset (stmt);
    if (rc != SQLITE_DONE) {
        log_error (NULL, "sql failed error=\"%s\" sql=\"%s\"", sqlite3_errmsg (self->handle), sql);
        return -1;
    }
    return 0;
}

int
db_begin (db_t *self)
{
    char sql[48];
    if (self->depth == 0)
        snprintf (sql, sizeof sql, "BEGIN IMMEDIATE");
    else
        snprintf (sql, sizeof sql, "SAVEPOINT sp%d", self->depth);
    if (s_txn_step (self, sql))
        return -1;
    self->depth++;
    return 0;
}

int
db_commit (db_t *self)
{
    if (self->depth <= 0)
        return -1;
    char sql[48];
    if (self->depth == 1)
        snprintf (sql, sizeof sql, "COMMIT");
    else
        snprintf (sql, sizeof sql, "RELEASE sp%d", self->depth - 1);
    if (s_txn_step (self, sql)) {
        /*  A failed COMMIT (disk full, I/O error) leaves the transaction
            open; roll it back so the connection stays usable. */
        db_rollback (self);
        return -1;
    }
    self->depth--;
    return 0;
}

int
db_rollback (db_t *self)
{
    if (self->depth <= 0)
        return -1;
    self->depth--;
    if (sqlite3_get_autocommit (self->handle)) {
        /*  sqlite already rolled the whole transaction back (it does so on
            some errors, such as SQLITE_FULL): nothing is left to undo. */
        self->depth = 0;
        return 0;
    }
    if (self->depth == 0)
        return s_txn_step (self, "ROLLBACK");
    char sql[48];
    snprintf (sql, sizeof sql, "ROLLBACK TO sp%d", self->depth);
    if (s_txn_step (self, sql))
        return -1;
    snprintf (sql, sizeof sql, "RELEASE sp%d", self->depth);
    return s_txn_step (self, sql);
}

int
db_txn_depth (db_t *self)
{
    return self->depth;
}

int
db_step_done (db_t *self, sqlite3_stmt *stmt, int *changes)
{
    int rc = sqlite3_step (stmt);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        log_error (NULL, "sql step failed error=\"%s\" sql=\"%.120s\"",
                   sqlite3_errmsg (self->handle), sqlite3_sql (stmt));
        sqlite3_reset (stmt);
        return -1;
    }
    if (changes)
        *changes = sqlite3_changes (self->handle);
    sqlite3_reset (stmt);
    return 0;
}

char *
db_meta_get (db_t *self, const char *key)
{
    sqlite3_stmt *stmt = db_stmt (self, "SELECT value FROM parta_meta WHERE key = ?");
    if (!stmt)
        return NULL;
    sqlite3_bind_text (stmt, 1, key, -1, SQLITE_TRANSIENT);
    char *value = NULL;
    if (sqlite3_step (stmt) == SQLITE_ROW)
        value = strdup ((const char *) sqlite3_column_text (stmt, 0));
    sqlite3_reset (stmt);
    return value;
}

int
db_meta_set (db_t *self, const char *key, const char *value)
{
    sqlite3_stmt *stmt = db_stmt (
        self, "INSERT INTO parta_meta (key, value) VALUES (?, ?)"
              " ON CONFLICT (key) DO UPDATE SET value = excluded.value");
    if (!stmt)
        return -1;
    sqlite3_bind_text (stmt, 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text (stmt, 2, value, -1, SQLITE_TRANSIENT);
    return db_step_done (self, stmt, NULL);
}

void
db_bind_text (sqlite3_stmt *stmt, int idx, const char *text)
{
    if (text)
        sqlite3_bind_text (stmt, idx, text, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null (stmt, idx);
}

const char *
db_col_text (sqlite3_stmt *stmt, int col)
{
    const unsigned char *t = sqlite3_column_text (stmt, col);
    return t ? (const char *) t : "";
}

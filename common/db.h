/*  db: a service's sqlite database. Opens with WAL, foreign keys, a busy
    timeout and `synchronous` from configuration; brings the schema up to date
    by PRAGMA user_version (one SQL script per version, each in a
    transaction); caches prepared statements by their SQL text; nests
    transactions with savepoints. The tables every service has (outbox,
    idempotency, event cursors) are created here too. One db_t per thread. */
#ifndef PARTA_DB_H
#define PARTA_DB_H

#include <stddef.h>

#include <sqlite3.h>
#include <stdint.h>

typedef struct db_t db_t;

/*  `migrations` is a NULL-terminated array; migrations[i] brings the schema
    from version i to i + 1. NULL leaves the service schema alone (a second
    connection to a database the process already migrated). `sync` is "normal" or "full". Returns NULL and
    writes the reason to err on failure. */
db_t *db_open (const char *path, const char *const *migrations, const char *sync, char *err,
               size_t errlen);
void db_destroy (db_t **self_p);

/*  A function every new connection of this process runs first (before
    migrations), e.g. to register an FTS5 tokenizer. Set once at start. */
void db_set_open_hook (int (*hook) (sqlite3 *handle));

sqlite3 *db_handle (db_t *self);
const char *db_path (db_t *self);

/*  A cached prepared statement for `sql`, reset with bindings cleared.
    Returns NULL (logged) if it does not compile. The statement stays the
    cache's: do not finalize it. */
sqlite3_stmt *db_stmt (db_t *self, const char *sql);

/*  Runs SQL without results (may hold several statements). 0 or -1. */
int db_exec (db_t *self, const char *sql);

/*  Transactions. The outermost db_begin is BEGIN IMMEDIATE (so a writer
    never fails to upgrade a read lock); nested ones are savepoints. */
int db_begin (db_t *self);
int db_commit (db_t *self);
int db_rollback (db_t *self);
int db_txn_depth (db_t *self);

/*  Steps a statement that returns no rows (INSERT/UPDATE/DELETE) and resets
    it. Returns 0, or -1 (logged) on error; *changes gets the row count. */
int db_step_done (db_t *self, sqlite3_stmt *stmt, int *changes);

/*  A value from the parta_meta table, or NULL; the caller frees. */
char *db_meta_get (db_t *self, const char *key);
int db_meta_set (db_t *self, const char *key, const char *value);

/*  Binding helpers: text is bound as a copy; NULL binds NULL. */
void db_bind_text (sqlite3_stmt *stmt, int idx, const char *text);
/*  Column text as a borrowed string, "" for NULL. */
const char *db_col_text (sqlite3_stmt *stmt, int col);

#endif

/*  Unit tests of db: schema migrations by user_version (fresh, upgrade, a
    failing script, a database newer than the program), nested transactions
    with savepoints, a COMMIT that fails, the statement cache, and the meta
    table. Each test works in its own temporary directory. */
#include "db.h"
#include "log.h"
#include "ulid.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

typedef struct {
    char dir[256];
    char path[320];
} fixture_t;

static int
s_setup (void **state)
{
    fixture_t *fx = calloc (1, sizeof *fx);
    if (!fx)
        return -1;
    const char *tmp = getenv ("TMPDIR");
    snprintf (fx->dir, sizeof fx->dir, "%s/parta-db-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp (fx->dir)) {
        free (fx);
        return -1;
    }
    snprintf (fx->path, sizeof fx->path, "%s/test.db", fx->dir);
    *state = fx;
    return 0;
}

/*  Removes the directory and the files in it (sqlite's -wal and -shm too). */
static int
s_teardown (void **state)
{
    fixture_t *fx = *state;
    DIR *d = opendir (fx->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir (d)) != NULL) {
            if (strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
                continue;
            char file[600];
            snprintf (file, sizeof file, "%s/%s", fx->dir, e->d_name);
            unlink (file);
        }
        closedir (d);
    }
    int rc = rmdir (fx->dir);
    free (fx);
    return rc;
}

static db_t *
s_open (const char *path, const char *const *migrations)
{
    char err[256] = "";
    db_t *db = db_open (path, migrations, "normal", err, sizeof err);
    if (!db)
        fail_msg ("db_open %s: %s", path, err);
    return db;
}

static long long
s_int (db_t *db, const char *sql)
{
    sqlite3_stmt *stmt = NULL;
    long long value = -999;
    if (sqlite3_prepare_v2 (db_handle (db), sql, -1, &stmt, NULL) != SQLITE_OK)
        fail_msg ("prepare %s: %s", sql, sqlite3_errmsg (db_handle (db)));
    if (sqlite3_step (stmt) == SQLITE_ROW)
        value = sqlite3_column_int64 (stmt, 0);
    sqlite3_finalize (stmt);
    return value;
}

static int
s_table_exists (db_t *db, const char *table)
{
    char sql[200];
    snprintf (sql, sizeof sql,
              "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '%s'", table);
    return s_int (db, sql) == 1;
}

/*  Version 1 creates without IF NOT EXISTS, so running it twice fails. */
static const char s_m1[] = "CREATE TABLE person (id INTEGER PRIMARY KEY, name TEXT NOT NULL);";
static const char s_m2[] = "ALTER TABLE person ADD COLUMN phone TEXT;"
                           "CREATE TABLE note (id INTEGER PRIMARY KEY,"
                           "  person INTEGER NOT NULL REFERENCES person (id), text TEXT);";
static const char s_m3_broken[] = "CREATE TABLE half_done (x);"
                                  "INSERT INTO person (name) VALUES ('ghost');"
                                  "INSERT INTO no_such_table VALUES (1);";

static void
test_fresh_database (void **state)
{
    fixture_t *fx = *state;
    const char *migrations[] = {s_m1, s_m2, NULL};
    db_t *db = s_open (fx->path, migrations);
    assert_int_equal (s_int (db, "PRAGMA user_version"), 2);
    assert_true (s_table_exists (db, "person"));
    assert_true (s_table_exists (db, "note"));
    assert_int_equal (s_int (db, "SELECT count(*) FROM pragma_table_info('person')"
                                 " WHERE name = 'phone'"),
                      1);
    /*  the tables of the common code */
    assert_true (s_table_exists (db, "parta_meta"));
    assert_true (s_table_exists (db, "outbox"));
    assert_true (s_table_exists (db, "outbox_state"));
    assert_true (s_table_exists (db, "idempotency"));
    assert_true (s_table_exists (db, "event_cursor"));
    assert_int_equal (s_int (db, "SELECT count(*) FROM outbox_state"), 1);
    /*  the connection's settings */
    sqlite3_stmt *stmt = NULL;
    assert_int_equal (sqlite3_prepare_v2 (db_handle (db), "PRAGMA journal_mode", -1, &stmt, NULL),
                      SQLITE_OK);
    assert_int_equal (sqlite3_step (stmt), SQLITE_ROW);
    assert_string_equal ((const char *) sqlite3_column_text (stmt, 0), "wal");
    sqlite3_finalize (stmt);
    assert_int_equal (s_int (db, "PRAGMA foreign_keys"), 1);
    assert_int_equal (s_int (db, "PRAGMA synchronous"), 1);     /* NORMAL */
    assert_string_equal (db_path (db), fx->path);
    /*  foreign keys are enforced */
    assert_int_equal (db_exec (db, "INSERT INTO note (person, text) VALUES (42, 'x')"), -1);
    db_destroy (&db);
    assert_null (db);
    db_destroy (&db);

    /*  "full" is honoured; anything else is refused with the reason */
    char err[256] = "";
    db = db_open (fx->path, migrations, "full", err, sizeof err);
    assert_non_null (db);
    assert_int_equal (s_int (db, "PRAGMA synchronous"), 2);
    db_destroy (&db);
    db = db_open (fx->path, migrations, "sometimes", err, sizeof err);
    assert_null (db);
    assert_non_null (strstr (err, "sometimes"));
}

static void
test_no_migrations (void **state)
{
    fixture_t *fx = *state;
    /*  An empty list is schema version 0; NULL leaves the version alone. */
    const char *none[] = {NULL};
    db_t *db = s_open (fx->path, none);
    assert_int_equal (s_int (db, "PRAGMA user_version"), 0);
    assert_true (s_table_exists (db, "outbox"));
    assert_int_equal (db_exec (db, "PRAGMA user_version = 9"), 0);
    db_destroy (&db);
    db = s_open (fx->path, NULL);
    assert_int_equal (s_int (db, "PRAGMA user_version"), 9);
    db_destroy (&db);
}

static void
test_upgrade (void **state)
{
    fixture_t *fx = *state;
    const char *v1[] = {s_m1, NULL};
    db_t *db = s_open (fx->path, v1);
    assert_int_equal (s_int (db, "PRAGMA user_version"), 1);
    assert_int_equal (db_exec (db, "INSERT INTO person (id, name) VALUES (1, 'Anna')"), 0);
    assert_false (s_table_exists (db, "note"));
    db_destroy (&db);

    /*  the same program again: nothing to do, version 1 is not re-run */
    db = s_open (fx->path, v1);
    assert_int_equal (s_int (db, "PRAGMA user_version"), 1);
    db_destroy (&db);

    /*  a newer program applies only what is missing and keeps the data */
    const char *v2[] = {s_m1, s_m2, NULL};
    db = s_open (fx->path, v2);
    assert_int_equal (s_int (db, "PRAGMA user_version"), 2);
    assert_int_equal (s_int (db, "SELECT count(*) FROM person WHERE name = 'Anna'"), 1);
    assert_int_equal (db_exec (db, "UPDATE person SET phone = '+7' WHERE id = 1"), 0);
    assert_int_equal (db_exec (db, "INSERT INTO note (person, text) VALUES (1, 'hi')"), 0);
    db_destroy (&db);
}

static void
test_failing_migration (void **state)
{
    fixture_t *fx = *state;
    const char *v1[] = {s_m1, NULL};
    db_t *db = s_open (fx->path, v1);
    assert_int_equal (db_exec (db, "INSERT INTO person (id, name) VALUES (1, 'Anna')"), 0);
    db_destroy (&db);

    /*  2 is fine, 3 fails halfway through its script */
    const char *v3[] = {s_m1, s_m2, s_m3_broken, NULL};
    char err[256] = "";
    db = db_open (fx->path, v3, "normal", err, sizeof err);
    assert_null (db);
    assert_non_null (strstr (err, "no_such_table"));

    /*  the schema is at version 2, whole: nothing of script 3 is left */
    const char *v2[] = {s_m1, s_m2, NULL};
    db = s_open (fx->path, v2);
    assert_int_equal (s_int (db, "PRAGMA user_version"), 2);
    assert_true (s_table_exists (db, "note"));
    assert_false (s_table_exists (db, "half_done"));
    assert_int_equal (s_int (db, "SELECT count(*) FROM person"), 1);
    db_destroy (&db);

    /*  a fixed script 3 then applies on top of 2 */
    const char *fixed[] = {s_m1, s_m2, "CREATE TABLE half_done (x);", NULL};
    db = s_open (fx->path, fixed);
    assert_int_equal (s_int (db, "PRAGMA user_version"), 3);
    assert_true (s_table_exists (db, "half_done"));
    db_destroy (&db);
}

static void
test_failing_first_migration (void **state)
{
    fixture_t *fx = *state;
    const char *broken[] = {"CREATE TABLE a (x); CREATE TABLE a (y);", NULL};
    char err[256] = "";
    db_t *db = db_open (fx->path, broken, "normal", err, sizeof err);
    assert_null (db);
    assert_non_null (strstr (err, "already exists"));
    db = s_open (fx->path, NULL);
    assert_int_equal (s_int (db, "PRAGMA user_version"), 0);
    assert_false (s_table_exists (db, "a"));
    db_destroy (&db);
}

static void
test_newer_database_refused (void **state)
{
    fixture_t *fx = *state;
    const char *v3[] = {s_m1, s_m2, "CREATE TABLE extra (x);", NULL};
    db_t *db = s_open (fx->path, v3);
    assert_int_equal (db_exec (db, "INSERT INTO person (id, name) VALUES (1, 'Anna')"), 0);
    db_destroy (&db);

    const char *v2[] = {s_m1, s_m2, NULL};
    char err[256] = "";
    db = db_open (fx->path, v2, "normal", err, sizeof err);
    assert_null (db);
    assert_non_null (strstr (err, "newer"));
    assert_non_null (strstr (err, "3"));

    /*  and it is left as it was */
    db = s_open (fx->path, v3);
    assert_int_equal (s_int (db, "PRAGMA user_version"), 3);
    assert_int_equal (s_int (db, "SELECT count(*) FROM person"), 1);
    db_destroy (&db);
}

static void
test_open_failure (void **state)
{
    fixture_t *fx = *state;
    char path[400];
    snprintf (path, sizeof path, "%s/missing/dir/test.db", fx->dir);
    char err[256] = "";
    db_t *db = db_open (path, NULL, "normal", err, sizeof err);
    assert_null (db);
    assert_non_null (strstr (err, path));

    /*  a file that is not a database */
    snprintf (path, sizeof path, "%s/garbage.db", fx->dir);
    FILE *f = fopen (path, "w");
    assert_non_null (f);
    for (int i = 0; i < 200; i++)
        fputs ("this is not an sqlite database. ", f);
    fclose (f);
    err[0] = 0;
    db = db_open (path, NULL, "normal", err, sizeof err);
    assert_null (db);
    assert_true (err[0] != 0);
}

static void
test_nested_transactions (void **state)
{
    fixture_t *fx = *state;
    const char *migrations[] = {s_m1, NULL};
    db_t *db = s_open (fx->path, migrations);
    db_t *other = s_open (fx->path, NULL);
    assert_int_equal (db_txn_depth (db), 0);

    assert_int_equal (db_begin (db), 0);
    assert_int_equal (db_txn_depth (db), 1);
    assert_int_equal (db_exec (db, "INSERT INTO person (id, name) VALUES (1, 'a')"), 0);

    assert_int_equal (db_begin (db), 0);
    assert_int_equal (db_txn_depth (db), 2);
    assert_int_equal (db_exec (db, "INSERT INTO person (id, name) VALUES (2, 'b')"), 0);
    assert_int_equal (db_rollback (db), 0);         /* only b goes */
    assert_int_equal (db_txn_depth (db), 1);
    assert_int_equal (s_int (db, "SELECT sum(id) FROM person"), 1);

    assert_int_equal (db_begin (db), 0);
    assert_int_equal (db_exec (db, "INSERT INTO person (id, name) VALUES (3, 'c')"), 0);
    assert_int_equal (db_begin (db), 0);            /* three deep */
    assert_int_equal (db_txn_depth (db), 3);
    assert_int_equal (db_exec (db, "INSERT INTO person (id, name) VALUES (4, 'd')"), 0);
    assert_int_equal (db_commit (db), 0);
    assert_int_equal (db_begin (db), 0);
    assert_int_equal (db_exec (db, "INSERT INTO person (id, name) VALUES (5, 'e')"), 0);
    assert_int_equal (db_rollback (db), 0);
    assert_int_equal (db_commit (db), 0);
    assert_int_equal (db_txn_depth (db), 1);

    /*  nothing is visible to another connection before the outer commit */
    assert_int_equal (s_int (other, "SELECT count(*) FROM person"), 0);
    assert_int_equal (db_commit (db), 0);
    assert_int_equal (db_txn_depth (db), 0);
    assert_int_equal (s_int (other, "SELECT sum(id) FROM person"), 1 + 3 + 4);

    /*  an outer rollback undoes committed savepoints too */
    assert_int_equal (db_begin (db), 0);
    assert_int_equal (db_begin (db), 0);
    assert_int_equal (db_exec (db, "INSERT INTO person (id, name) VALUES (6, 'f')"), 0);
    assert_int_equal (db_commit (db), 0);
    assert_int_equal (db_rollback (db), 0);
    assert_int_equal (db_txn_depth (db), 0);
    assert_int_equal (s_int (other, "SELECT sum(id) FROM person"), 1 + 3 + 4);

    /*  commit and rollback outside a transaction are errors */
    assert_int_equal (db_commit (db), -1);
    assert_int_equal (db_rollback (db), -1);
    assert_int_equal (db_txn_depth (db), 0);
    db_destroy (&other);
    db_destroy (&db);
}

static void
test_rollback_after_sqlite_rolled_back (void **state)
{
    fixture_t *fx = *state;
    const char *migrations[] = {s_m1, NULL};
    db_t *db = s_open (fx->path, migrations);
    assert_int_equal (db_begin (db), 0);
    assert_int_equal (db_begin (db), 0);
    assert_int_equal (db_exec (db, "INSERT INTO person (id, name) VALUES (1, 'a')"), 0);
    /*  as sqlite does by itself on some errors (SQLITE_FULL, I/O) */
    assert_int_equal (sqlite3_exec (db_handle (db), "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal (db_rollback (db), 0);
    assert_int_equal (db_txn_depth (db), 0);
    /*  the connection is usable again */
    assert_int_equal (db_begin (db), 0);
    assert_int_equal (db_exec (db, "INSERT INTO person (id, name) VALUES (2, 'b')"), 0);
    assert_int_equal (db_commit (db), 0);
    assert_int_equal (s_int (db, "SELECT count(*) FROM person"), 1);
    assert_int_equal (s_int (db, "SELECT sum(id) FROM person"), 2);
    db_destroy (&db);
}

static void
test_failed_commit_rolls_back (void **state)
{
    fixture_t *fx = *state;
    /*  A deferred foreign key is checked at COMMIT, which then fails and
        leaves the transaction open: db_commit must not leave it so. */
    const char *migrations[] = {
        "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER"
        "  REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
        NULL};
    db_t *db = s_open (fx->path, migrations);
    assert_int_equal (db_begin (db), 0);
    assert_int_equal (db_exec (db, "INSERT INTO parent (id) VALUES (1)"), 0);
    assert_int_equal (db_exec (db, "INSERT INTO child (id, parent) VALUES (1, 99)"), 0);
    assert_int_equal (db_commit (db), -1);
    assert_int_equal (db_txn_depth (db), 0);
    assert_true (sqlite3_get_autocommit (db_handle (db)));
    assert_int_equal (s_int (db, "SELECT count(*) FROM parent"), 0);
    assert_int_equal (s_int (db, "SELECT count(*) FROM child"), 0);

    /*  the same from inside a savepoint: the whole transaction is gone */
    assert_int_equal (db_begin (db), 0);
    assert_int_equal (db_begin (db), 0);
    assert_int_equal (db_exec (db, "INSERT INTO child (id, parent) VALUES (2, 99)"), 0);
    assert_int_equal (db_commit (db), 0);
    assert_int_equal (db_commit (db), -1);
    assert_int_equal (db_txn_depth (db), 0);
    assert_int_equal (s_int (db, "SELECT count(*) FROM child"), 0);

    /*  and the connection still writes */
    assert_int_equal (db_begin (db), 0);
    assert_int_equal (db_exec (db, "INSERT INTO parent (id) VALUES (5)"), 0);
    assert_int_equal (db_exec (db, "INSERT INTO child (id, parent) VALUES (5, 5)"), 0);
    assert_int_equal (db_commit (db), 0);
    assert_int_equal (s_int (db, "SELECT count(*) FROM child"), 1);
    db_destroy (&db);
}

static void
test_statement_cache (void **state)
{
    fixture_t *fx = *state;
    const char *migrations[] = {s_m1, NULL};
    db_t *db = s_open (fx->path, migrations);
    assert_int_equal (db_exec (db, "INSERT INTO person (id, name) VALUES (1, 'a'), (2, 'b');"
                                   "INSERT INTO person (id, name) VALUES (3, 'c')"),
                      0);

    const char *sql = "SELECT id, name FROM person WHERE id >= ? ORDER BY id";
    sqlite3_stmt *s1 = db_stmt (db, sql);
    assert_non_null (s1);
    sqlite3_bind_int (s1, 1, 2);
    assert_int_equal (sqlite3_step (s1), SQLITE_ROW);
    assert_int_equal (sqlite3_column_int (s1, 0), 2);

    /*  the same text (another buffer) is the same statement, reset and
        with its bindings cleared: NULL matches no row */
    char copy[128];
    snprintf (copy, sizeof copy, "%s", sql);
    sqlite3_stmt *s2 = db_stmt (db, copy);
    assert_ptr_equal (s1, s2);
    assert_int_equal (sqlite3_step (s2), SQLITE_DONE);
    s2 = db_stmt (db, sql);
    sqlite3_bind_int (s2, 1, 1);
    assert_int_equal (sqlite3_step (s2), SQLITE_ROW);
    assert_int_equal (sqlite3_column_int (s2, 0), 1);
    sqlite3_reset (s2);

    /*  other text, another statement */
    sqlite3_stmt *s3 = db_stmt (db, "SELECT count(*) FROM person");
    assert_non_null (s3);
    assert_ptr_not_equal (s1, s3);
    assert_int_equal (sqlite3_step (s3), SQLITE_ROW);
    assert_int_equal (sqlite3_column_int (s3, 0), 3);
    sqlite3_reset (s3);

    /*  SQL that does not compile gives NULL, and is not cached as such */
    assert_null (db_stmt (db, "SELEKT nonsense"));
    assert_null (db_stmt (db, "SELEKT nonsense"));
    assert_null (db_stmt (db, "SELECT * FROM no_such_table"));

    /*  a cached statement survives a schema change (re-prepared by sqlite) */
    assert_int_equal (db_exec (db, "ALTER TABLE person ADD COLUMN phone TEXT"), 0);
    s3 = db_stmt (db, "SELECT count(*) FROM person");
    assert_int_equal (sqlite3_step (s3), SQLITE_ROW);
    assert_int_equal (sqlite3_column_int (s3, 0), 3);
    sqlite3_reset (s3);
    db_destroy (&db);
}

static void
test_step_done_and_helpers (void **state)
{
    fixture_t *fx = *state;
    const char *migrations[] = {s_m1, s_m2, NULL};
    db_t *db = s_open (fx->path, migrations);
    sqlite3_stmt *ins;
    int changes = -1;
    for (int i = 1; i <= 3; i++) {
        ins = db_stmt (db, "INSERT INTO person (id, name, phone) VALUES (?, ?, ?)");
        sqlite3_bind_int (ins, 1, i);
        char name[16];
        snprintf (name, sizeof name, "p%d", i);
        db_bind_text (ins, 2, name);
        db_bind_text (ins, 3, i == 2 ? NULL : "+7");
        assert_int_equal (db_step_done (db, ins, &changes), 0);
        assert_int_equal (changes, 1);
    }
    sqlite3_stmt *upd = db_stmt (db, "UPDATE person SET phone = ? WHERE phone IS NOT NULL");
    db_bind_text (upd, 1, "+8");
    assert_int_equal (db_step_done (db, upd, &changes), 0);
    assert_int_equal (changes, 2);

    /*  a constraint violation is an error; the statement is usable after */
    ins = db_stmt (db, "INSERT INTO person (id, name, phone) VALUES (?, ?, ?)");
    sqlite3_bind_int (ins, 1, 1);
    db_bind_text (ins, 2, "duplicate");
    assert_int_equal (db_step_done (db, ins, &changes), -1);
    ins = db_stmt (db, "INSERT INTO person (id, name, phone) VALUES (?, ?, ?)");
    sqlite3_bind_int (ins, 1, 4);
    db_bind_text (ins, 2, NULL);            /* NOT NULL */
    assert_int_equal (db_step_done (db, ins, NULL), -1);
    ins = db_stmt (db, "INSERT INTO person (id, name, phone) VALUES (?, ?, ?)");
    sqlite3_bind_int (ins, 1, 4);
    db_bind_text (ins, 2, "p4");
    assert_int_equal (db_step_done (db, ins, NULL), 0);

    /*  NULL columns read as "" */
    sqlite3_stmt *sel = db_stmt (db, "SELECT name, phone FROM person WHERE id = ?");
    sqlite3_bind_int (sel, 1, 2);
    assert_int_equal (sqlite3_step (sel), SQLITE_ROW);
    assert_string_equal (db_col_text (sel, 0), "p2");
    assert_string_equal (db_col_text (sel, 1), "");
    assert_int_equal (sqlite3_column_type (sel, 1), SQLITE_NULL);
    sel = db_stmt (db, "SELECT name, phone FROM person WHERE id = ?");
    sqlite3_bind_int (sel, 1, 1);
    assert_int_equal (sqlite3_step (sel), SQLITE_ROW);
    assert_string_equal (db_col_text (sel, 1), "+8");
    sqlite3_reset (sel);

    /*  db_exec runs several statements and reports a failing one */
    assert_int_equal (db_exec (db, "DELETE FROM person WHERE id = 4;"
                                   " DELETE FROM person WHERE id = 3"),
                      0);
    assert_int_equal (s_int (db, "SELECT count(*) FROM person"), 2);
    assert_int_equal (db_exec (db, "DELETE FROM person WHERE id = 2; DELETE FROM nowhere"), -1);
    db_destroy (&db);
}

static void
test_meta (void **state)
{
    fixture_t *fx = *state;
    db_t *db = s_open (fx->path, NULL);
    assert_null (db_meta_get (db, "colour"));
    assert_int_equal (db_meta_set (db, "colour", "blue"), 0);
    char *value = db_meta_get (db, "colour");
    assert_non_null (value);
    assert_string_equal (value, "blue");
    free (value);
    assert_int_equal (db_meta_set (db, "colour", "green"), 0);
    value = db_meta_get (db, "colour");
    assert_string_equal (value, "green");
    free (value);
    assert_int_equal (db_meta_set (db, "empty", ""), 0);
    value = db_meta_get (db, "empty");
    assert_string_equal (value, "");
    free (value);
    assert_int_equal (s_int (db, "SELECT count(*) FROM parta_meta WHERE key = 'colour'"), 1);

    /*  every database gets an epoch, a ULID */
    char *epoch = db_meta_get (db, "epoch");
    assert_non_null (epoch);
    assert_true (ulid_valid (epoch));
    /*  inside a rolled-back transaction a set is undone */
    assert_int_equal (db_begin (db), 0);
    assert_int_equal (db_meta_set (db, "colour", "red"), 0);
    assert_int_equal (db_rollback (db), 0);
    db_destroy (&db);

    /*  values persist; the epoch is made once */
    db = s_open (fx->path, NULL);
    value = db_meta_get (db, "colour");
    assert_string_equal (value, "green");
    free (value);
    value = db_meta_get (db, "epoch");
    assert_string_equal (value, epoch);
    free (value);
    free (epoch);
    db_destroy (&db);
}

static void
test_two_connections_migrate_once (void **state)
{
    fixture_t *fx = *state;
    /*  a second instance that starts later finds the work done */
    const char *migrations[] = {s_m1, s_m2, NULL};
    db_t *a = s_open (fx->path, migrations);
    db_t *b = s_open (fx->path, migrations);
    assert_int_equal (s_int (b, "PRAGMA user_version"), 2);
    char *ea = db_meta_get (a, "epoch");
    char *eb = db_meta_get (b, "epoch");
    assert_string_equal (ea, eb);
    free (ea);
    free (eb);
    /*  one writes, the other reads it */
    assert_int_equal (db_exec (a, "INSERT INTO person (id, name) VALUES (1, 'a')"), 0);
    assert_int_equal (s_int (b, "SELECT count(*) FROM person"), 1);
    db_destroy (&a);
    db_destroy (&b);
}

int
main (void)
{
    log_init ("test", "error");     /* expected failures log; keep output short */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (test_fresh_database, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_no_migrations, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_upgrade, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_failing_migration, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_failing_first_migration, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_newer_database_refused, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_open_failure, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_nested_transactions, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_rollback_after_sqlite_rolled_back, s_setup,
                                         s_teardown),
        cmocka_unit_test_setup_teardown (test_failed_commit_rolls_back, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_statement_cache, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_step_done_and_helpers, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_meta, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_two_connections_migrate_once, s_setup, s_teardown),
    };
    return cmocka_run_group_tests_name ("db", tests, NULL, NULL);
}

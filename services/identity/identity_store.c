/*  identity_store: see identity_store.h. */
#include "identity_store.h"
#include "log.h"

#include <string.h>

const char *const idstore_migrations[] = {
    /* 1: users, codes, sessions, roles */
    "CREATE TABLE users ("
    "  id TEXT PRIMARY KEY, phone TEXT NOT NULL UNIQUE, full_name TEXT NOT NULL,"
    "  password_hash TEXT NOT NULL DEFAULT '',"
    "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE TABLE otp ("
    "  phone TEXT PRIMARY KEY, code_hash BLOB NOT NULL, expires_at INTEGER NOT NULL,"
    "  attempts_left INTEGER NOT NULL, created_at INTEGER NOT NULL);"
    "CREATE TABLE sessions ("
    "  id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users (id),"
    "  token_hash BLOB NOT NULL UNIQUE, created_at INTEGER NOT NULL,"
    "  last_seen_at INTEGER NOT NULL, user_agent TEXT NOT NULL DEFAULT '',"
    "  ip TEXT NOT NULL DEFAULT '', revoked_at INTEGER, revoke_reason TEXT);"
    "CREATE INDEX sessions_user ON sessions (user_id, revoked_at);"
    "CREATE TABLE org_roles ("
    "  org_id TEXT NOT NULL, user_id TEXT REFERENCES users (id), phone TEXT,"
    "  role INTEGER NOT NULL, verified INTEGER NOT NULL DEFAULT 0,"
    "  granted_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    "  CHECK ((user_id IS NULL) <> (phone IS NULL)));"
    "CREATE UNIQUE INDEX org_roles_user ON org_roles (org_id, user_id, role)"
    "  WHERE user_id IS NOT NULL;"
    "CREATE UNIQUE INDEX org_roles_phone ON org_roles (org_id, phone, role)"
    "  WHERE user_id IS NULL;"
    "CREATE INDEX org_roles_by_user ON org_roles (user_id);"
    "CREATE INDEX org_roles_by_phone ON org_roles (phone) WHERE phone IS NOT NULL;"
    /*  The key one-time codes are hashed with, made once per installation. */
    "INSERT INTO parta_meta (key, value) VALUES ('otp_key', hex (randomblob (32)));",
    NULL,
};

static void
s_copy (char *dst, size_t len, const char *src)
{
    snprintf (dst, len, "%s", src ? src : "");
}

static int
s_user_row (sqlite3_stmt *stmt, id_user_t *out)
{
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW) {
        s_copy (out->id, sizeof out->id, db_col_text (stmt, 0));
        s_copy (out->phone, sizeof out->phone, db_col_text (stmt, 1));
        s_copy (out->full_name, sizeof out->full_name, db_col_text (stmt, 2));
        s_copy (out->password_hash, sizeof out->password_hash, db_col_text (stmt, 3));
    }
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
idstore_user_by_phone (db_t *db, const char *phone, id_user_t *out)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT id, phone, full_name, password_hash FROM users"
                                      " WHERE phone = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, phone);
    return s_user_row (stmt, out);
}

int
idstore_user_by_id (db_t *db, const char *id, id_user_t *out)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT id, phone, full_name, password_hash FROM users"
                                      " WHERE id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, id);
    return s_user_row (stmt, out);
}

int
idstore_user_create (db_t *db, const id_user_t *user, int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO users (id, phone, full_name, password_hash,"
                                      " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, user->id);
    db_bind_text (stmt, 2, user->phone);
    db_bind_text (stmt, 3, user->full_name);
    db_bind_text (stmt, 4, user->password_hash);
    sqlite3_bind_int64 (stmt, 5, now);
    sqlite3_bind_int64 (stmt, 6, now);
    return db_step_done (db, stmt, NULL);
}

int
idstore_user_update (db_t *db, const char *id, const char *full_name, const char *password_hash,
                     int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE users SET full_name = coalesce (?, full_name),"
                                      " password_hash = coalesce (?, password_hash),"
                                      " updated_at = ? WHERE id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, full_name);
    db_bind_text (stmt, 2, password_hash);
    sqlite3_bind_int64 (stmt, 3, now);
    db_bind_text (stmt, 4, id);
    return db_step_done (db, stmt, NULL);
}

int
idstore_users_get (db_t *db, char **ids, size_t n, arena_t *arena, Identity__User ***items,
                   size_t *count)
{
    *items = arena_alloc (arena, (n ? n : 1) * sizeof (Identity__User *));
    *count = 0;
    sqlite3_stmt *stmt = db_stmt (db, "SELECT id, phone, full_name FROM users WHERE id = ?");
    if (!stmt)
        return -1;
    for (size_t i = 0; i < n; i++) {
        sqlite3_reset (stmt);
        db_bind_text (stmt, 1, ids[i]);
        if (sqlite3_step (stmt) == SQLITE_ROW) {
            Identity__User *u = arena_msg (arena, &identity__user__descriptor);
            u->id = arena_strdup (arena, db_col_text (stmt, 0));
            u->phone = arena_strdup (arena, db_col_text (stmt, 1));
            u->full_name = arena_strdup (arena, db_col_text (stmt, 2));
            (*items)[(*count)++] = u;
        }
    }
    sqlite3_reset (stmt);
    return 0;
}

/* --- one-time codes --- */

int
idstore_otp_key (db_t *db, unsigned char key[32])
{
    char *hex = db_meta_get (db, "otp_key");
    size_t len = 0;
    int rc = hex && sodium_hex2bin (key, 32, hex, strlen (hex), NULL, &len, NULL) == 0 && len == 32
                 ? 0
                 : -1;
    free (hex);
    return rc;
}

int
idstore_otp_put (db_t *db, const char *phone, const unsigned char hash[32], int64_t expires_at,
                 int attempts, int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT OR REPLACE INTO otp (phone, code_hash, expires_at,"
                                      " attempts_left, created_at) VALUES (?, ?, ?, ?, ?)");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, phone);
    sqlite3_bind_blob (stmt, 2, hash, 32, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (stmt, 3, expires_at);
    sqlite3_bind_int (stmt, 4, attempts);
    sqlite3_bind_int64 (stmt, 5, now);
    return db_step_done (db, stmt, NULL);
}

int
idstore_otp_get (db_t *db, const char *phone, unsigned char hash[32], int64_t *expires_at,
                 int *attempts_left)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT code_hash, expires_at, attempts_left FROM otp"
                                      " WHERE phone = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, phone);
    int rc = sqlite3_step (stmt);
    int found = 0;
    if (rc == SQLITE_ROW && sqlite3_column_bytes (stmt, 0) == 32) {
        memcpy (hash, sqlite3_column_blob (stmt, 0), 32);
        *expires_at = sqlite3_column_int64 (stmt, 1);
        *attempts_left = sqlite3_column_int (stmt, 2);
        found = 1;
    }
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? found : -1;
}

int
idstore_otp_set_attempts (db_t *db, const char *phone, int attempts_left)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE otp SET attempts_left = ? WHERE phone = ?");
    if (!stmt)
        return -1;
    sqlite3_bind_int (stmt, 1, attempts_left);
    db_bind_text (stmt, 2, phone);
    return db_step_done (db, stmt, NULL);
}

int
idstore_otp_delete (db_t *db, const char *phone)
{
    sqlite3_stmt *stmt = db_stmt (db, "DELETE FROM otp WHERE phone = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, phone);
    return db_step_done (db, stmt, NULL);
}

/* --- sessions --- */

int
idstore_session_create (db_t *db, const char *id, const char *user_id,
                        const unsigned char token_hash[32], int64_t now, const char *user_agent,
                        const char *ip)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO sessions (id, user_id, token_hash, created_at,"
                                      " last_seen_at, user_agent, ip) VALUES (?, ?, ?, ?, ?, ?, ?)");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, id);
    db_bind_text (stmt, 2, user_id);
    sqlite3_bind_blob (stmt, 3, token_hash, 32, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (stmt, 4, now);
    sqlite3_bind_int64 (stmt, 5, now);
    db_bind_text (stmt, 6, user_agent ? user_agent : "");
    db_bind_text (stmt, 7, ip ? ip : "");
    return db_step_done (db, stmt, NULL);
}

int
idstore_session_by_token (db_t *db, const unsigned char token_hash[32], id_session_t *out)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT id, user_id, created_at, last_seen_at,"
                                      " revoked_at IS NOT NULL FROM sessions WHERE token_hash = ?");
    if (!stmt)
        return -1;
    sqlite3_bind_blob (stmt, 1, token_hash, 32, SQLITE_STATIC);
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW) {
        s_copy (out->id, sizeof out->id, db_col_text (stmt, 0));
        s_copy (out->user_id, sizeof out->user_id, db_col_text (stmt, 1));
        out->created_at = sqlite3_column_int64 (stmt, 2);
        out->last_seen_at = sqlite3_column_int64 (stmt, 3);
        out->revoked = sqlite3_column_int (stmt, 4);
    }
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
idstore_session_touch (db_t *db, const char *id, int64_t now, const char *ip,
                       const char *user_agent)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE sessions SET last_seen_at = ?,"
                                      " ip = CASE WHEN ?2 = '' THEN ip ELSE ?2 END,"
                                      " user_agent = CASE WHEN ?3 = '' THEN user_agent ELSE ?3 END"
                                      " WHERE id = ?4");
    if (!stmt)
        return -1;
    sqlite3_bind_int64 (stmt, 1, now);
    db_bind_text (stmt, 2, ip ? ip : "");
    db_bind_text (stmt, 3, user_agent ? user_agent : "");
    db_bind_text (stmt, 4, id);
    return db_step_done (db, stmt, NULL);
}

int
idstore_sessions_list (db_t *db, const char *user_id, int64_t since, arena_t *arena,
                       Identity__Session ***items, size_t *count)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT id, created_at, last_seen_at, user_agent, ip"
                                      " FROM sessions WHERE user_id = ? AND revoked_at IS NULL"
                                      " AND last_seen_at >= ? ORDER BY created_at DESC LIMIT 200");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, user_id);
    sqlite3_bind_int64 (stmt, 2, since);
    *items = arena_alloc (arena, 200 * sizeof (Identity__Session *));
    *count = 0;
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        Identity__Session *s = arena_msg (arena, &identity__session__descriptor);
        s->id = arena_strdup (arena, db_col_text (stmt, 0));
        s->created_at = sqlite3_column_int64 (stmt, 1);
        s->last_seen_at = sqlite3_column_int64 (stmt, 2);
        s->user_agent = arena_strdup (arena, db_col_text (stmt, 3));
        s->ip = arena_strdup (arena, db_col_text (stmt, 4));
        (*items)[(*count)++] = s;
    }
    sqlite3_reset (stmt);
    return rc == SQLITE_DONE ? 0 : -1;
}

int
idstore_session_revoke (db_t *db, const char *user_id, const char *session_id, const char *reason,
                        int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE sessions SET revoked_at = ?, revoke_reason = ?"
                                      " WHERE id = ? AND user_id = ? AND revoked_at IS NULL");
    if (!stmt)
        return -1;
    sqlite3_bind_int64 (stmt, 1, now);
    db_bind_text (stmt, 2, reason);
    db_bind_text (stmt, 3, session_id);
    db_bind_text (stmt, 4, user_id);
    int changes = 0;
    if (db_step_done (db, stmt, &changes))
        return -1;
    return changes > 0;
}

int
idstore_sessions_end (db_t *db, const char *user_id, const char *keep, const char *reason,
                      int64_t now, arena_t *arena, char ***ids, size_t *count)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE sessions SET revoked_at = ?1, revoke_reason = ?2"
                                      " WHERE user_id = ?3 AND revoked_at IS NULL"
                                      " AND (?4 IS NULL OR id <> ?4) RETURNING id");
    if (!stmt)
        return -1;
    sqlite3_bind_int64 (stmt, 1, now);
    db_bind_text (stmt, 2, reason);
    db_bind_text (stmt, 3, user_id);
    db_bind_text (stmt, 4, keep);
    size_t cap = 16;
    *ids = arena_alloc (arena, cap * sizeof (char *));
    *count = 0;
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        if (*count == cap) {
            char **bigger = arena_alloc (arena, cap * 2 * sizeof (char *));
            memcpy (bigger, *ids, cap * sizeof (char *));
            *ids = bigger;
            cap *= 2;
        }
        (*ids)[(*count)++] = arena_strdup (arena, db_col_text (stmt, 0));
    }
    sqlite3_reset (stmt);
    return rc == SQLITE_DONE ? 0 : -1;
}

int
idstore_user_clear_password (db_t *db, const char *user_id, int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE users SET password_hash = '', updated_at = ? WHERE id = ?");
    if (!stmt)
        return -1;
    sqlite3_bind_int64 (stmt, 1, now);
    db_bind_text (stmt, 2, user_id);
    return db_step_done (db, stmt, NULL);
}

/* --- roles --- */

#define ROLE_COLUMNS "org_id, coalesce (user_id, ''), coalesce (phone, ''), role, verified, granted_at"

static Identity__OrgRole *
s_role_row (sqlite3_stmt *stmt, arena_t *arena)
{
    Identity__OrgRole *r = arena_msg (arena, &identity__org_role__descriptor);
    r->org_id = arena_strdup (arena, db_col_text (stmt, 0));
    r->user_id = arena_strdup (arena, db_col_text (stmt, 1));
    r->phone = arena_strdup (arena, db_col_text (stmt, 2));
    r->role = (Bus__Role) sqlite3_column_int (stmt, 3);
    r->verified = sqlite3_column_int (stmt, 4) != 0;
    r->granted_at = sqlite3_column_int64 (stmt, 5);
    return r;
}

/*  Collects the rows of a prepared, bound statement. */
static int
s_role_rows (sqlite3_stmt *stmt, arena_t *arena, Identity__OrgRole ***items, size_t *count)
{
    size_t cap = 16;
    *items = arena_alloc (arena, cap * sizeof (Identity__OrgRole *));
    *count = 0;
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        if (*count == cap) {
            Identity__OrgRole **bigger = arena_alloc (arena, cap * 2 * sizeof *bigger);
            memcpy (bigger, *items, cap * sizeof *bigger);
            *items = bigger;
            cap *= 2;
        }
        (*items)[(*count)++] = s_role_row (stmt, arena);
    }
    sqlite3_reset (stmt);
    return rc == SQLITE_DONE ? 0 : -1;
}

int
idstore_roles_by_user (db_t *db, const char *user_id, arena_t *arena, Identity__OrgRole ***items,
                       size_t *count)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT " ROLE_COLUMNS " FROM org_roles WHERE user_id = ?"
                                      " ORDER BY org_id, role");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, user_id);
    return s_role_rows (stmt, arena, items, count);
}

int
idstore_roles_by_org (db_t *db, const char *org_id, int role, arena_t *arena,
                      Identity__OrgRole ***items, size_t *count)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT " ROLE_COLUMNS " FROM org_roles WHERE org_id = ?"
                                      " AND (?2 = 0 OR role = ?2) ORDER BY role, granted_at");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    sqlite3_bind_int (stmt, 2, role);
    return s_role_rows (stmt, arena, items, count);
}

int
idstore_role_get (db_t *db, const char *org_id, const char *user_id, const char *phone, int role,
                  arena_t *arena, Identity__OrgRole **out)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT " ROLE_COLUMNS " FROM org_roles WHERE org_id = ?"
                                      " AND (user_id = ?2 OR (?2 IS NULL AND phone = ?3))"
                                      " AND role = ?4");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, user_id);
    db_bind_text (stmt, 3, phone);
    sqlite3_bind_int (stmt, 4, role);
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        *out = s_role_row (stmt, arena);
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
idstore_role_insert (db_t *db, const char *org_id, const char *user_id, const char *phone,
                     int role, int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO org_roles (org_id, user_id, phone, role,"
                                      " verified, granted_at, updated_at)"
                                      " VALUES (?, ?, ?, ?, 0, ?, ?)");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, user_id);
    db_bind_text (stmt, 3, user_id ? NULL : phone);
    sqlite3_bind_int (stmt, 4, role);
    sqlite3_bind_int64 (stmt, 5, now);
    sqlite3_bind_int64 (stmt, 6, now);
    return db_step_done (db, stmt, NULL);
}

int
idstore_role_delete (db_t *db, const char *org_id, const char *user_id, int role)
{
    sqlite3_stmt *stmt = db_stmt (db, "DELETE FROM org_roles WHERE org_id = ? AND user_id = ?"
                                      " AND role = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, user_id);
    sqlite3_bind_int (stmt, 3, role);
    int changes = 0;
    if (db_step_done (db, stmt, &changes))
        return -1;
    return changes;
}

int
idstore_role_delete_phone (db_t *db, const char *org_id, const char *phone, int role)
{
    sqlite3_stmt *stmt = db_stmt (db, "DELETE FROM org_roles WHERE org_id = ? AND user_id IS NULL"
                                      " AND phone = ? AND role = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, phone);
    sqlite3_bind_int (stmt, 3, role);
    int changes = 0;
    if (db_step_done (db, stmt, &changes))
        return -1;
    return changes;
}

int
idstore_role_set_verified (db_t *db, const char *org_id, const char *user_id, int verified,
                           int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE org_roles SET verified = ?, updated_at = ?"
                                      " WHERE org_id = ? AND user_id = ? AND role = ?");
    if (!stmt)
        return -1;
    sqlite3_bind_int (stmt, 1, verified ? 1 : 0);
    sqlite3_bind_int64 (stmt, 2, now);
    db_bind_text (stmt, 3, org_id);
    db_bind_text (stmt, 4, user_id);
    sqlite3_bind_int (stmt, 5, BUS__ROLE__ROLE_TEACHER);
    int changes = 0;
    if (db_step_done (db, stmt, &changes))
        return -1;
    return changes;
}

int
idstore_admin_count (db_t *db, const char *org_id)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT count(*) FROM org_roles WHERE org_id = ?"
                                      " AND role = ? AND user_id IS NOT NULL");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    sqlite3_bind_int (stmt, 2, BUS__ROLE__ROLE_ADMIN);
    int n = sqlite3_step (stmt) == SQLITE_ROW ? sqlite3_column_int (stmt, 0) : -1;
    sqlite3_reset (stmt);
    return n;
}

int
idstore_roles_bind_phone (db_t *db, const char *user_id, const char *phone, arena_t *arena,
                          Identity__OrgRole ***items, size_t *count)
{
    /*  A role the user already holds makes the waiting one redundant. */
    sqlite3_stmt *stmt = db_stmt (db, "DELETE FROM org_roles WHERE user_id IS NULL AND phone = ?1"
                                      " AND EXISTS (SELECT 1 FROM org_roles o WHERE"
                                      " o.user_id = ?2 AND o.org_id = org_roles.org_id"
                                      " AND o.role = org_roles.role)");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, phone);
    db_bind_text (stmt, 2, user_id);
    if (db_step_done (db, stmt, NULL))
        return -1;
    stmt = db_stmt (db, "UPDATE org_roles SET user_id = ?, phone = NULL WHERE user_id IS NULL"
                        " AND phone = ? RETURNING " ROLE_COLUMNS);
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, user_id);
    db_bind_text (stmt, 2, phone);
    return s_role_rows (stmt, arena, items, count);
}

int
idstore_user_orgs (db_t *db, const char *user_id, arena_t *arena, char ***ids, size_t *count)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT DISTINCT org_id FROM org_roles WHERE user_id = ?"
                                      " ORDER BY org_id LIMIT 1000");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, user_id);
    *ids = arena_alloc (arena, 1000 * sizeof (char *));
    *count = 0;
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW)
        (*ids)[(*count)++] = arena_strdup (arena, db_col_text (stmt, 0));
    sqlite3_reset (stmt);
    return rc == SQLITE_DONE ? 0 : -1;
}

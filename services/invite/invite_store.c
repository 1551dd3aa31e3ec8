/*  invite_store: see invite_store.h. */
#include "invite_store.h"

#include <stdio.h>
#include <string.h>

const char *const invstore_migrations[] = {
    /* 1 */
    "CREATE TABLE invitations ("
    "  id TEXT PRIMARY KEY, org_id TEXT NOT NULL, token_hash BLOB NOT NULL UNIQUE,"
    "  role INTEGER NOT NULL, unit_id TEXT NOT NULL DEFAULT '', chat_id TEXT NOT NULL DEFAULT '',"
    "  student_id TEXT NOT NULL DEFAULT '', creator_id TEXT NOT NULL, note TEXT NOT NULL DEFAULT '',"
    "  expires_at INTEGER NOT NULL, max_uses INTEGER NOT NULL, uses INTEGER NOT NULL DEFAULT 0,"
    "  revoked_at INTEGER, expiry_announced INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL);"
    "CREATE INDEX invitations_org ON invitations (org_id, id);"
    "CREATE INDEX invitations_expiry ON invitations (expires_at) WHERE expiry_announced = 0;"
    "CREATE TABLE redemptions ("
    "  invitation_id TEXT NOT NULL REFERENCES invitations (id), user_id TEXT NOT NULL,"
    "  state INTEGER NOT NULL, at INTEGER NOT NULL,"
    "  PRIMARY KEY (invitation_id, user_id)) WITHOUT ROWID;"
    "CREATE TABLE guesses ("
    "  ip TEXT PRIMARY KEY, window_start INTEGER NOT NULL, count INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE join_requests ("
    "  id TEXT PRIMARY KEY, org_id TEXT NOT NULL, user_id TEXT NOT NULL, role INTEGER NOT NULL,"
    "  unit_id TEXT NOT NULL DEFAULT '', message TEXT NOT NULL DEFAULT '',"
    "  status INTEGER NOT NULL, reason TEXT, created_at INTEGER NOT NULL,"
    "  decided_at INTEGER NOT NULL DEFAULT 0, decided_by TEXT);"
    /*  One pending request per user, org and role. */
    "CREATE UNIQUE INDEX join_pending ON join_requests (org_id, user_id, role) WHERE status = 1;"
    "CREATE INDEX join_org ON join_requests (org_id, status, id);"
    "CREATE INDEX join_user ON join_requests (user_id, id);",
    NULL,
};

static void
s_copy (char *dst, size_t len, const char *src)
{
    snprintf (dst, len, "%s", src ? src : "");
}

Invite__InvitationStatus
invstore_status (const inv_t *inv, int64_t now)
{
    if (inv->revoked)
        return INVITE__INVITATION_STATUS__INVITATION_STATUS_REVOKED;
    if (inv->uses >= inv->max_uses)
        return INVITE__INVITATION_STATUS__INVITATION_STATUS_USED;
    if (now >= inv->expires_at)
        return INVITE__INVITATION_STATUS__INVITATION_STATUS_EXPIRED;
    return INVITE__INVITATION_STATUS__INVITATION_STATUS_ACTIVE;
}

Invite__Invitation *
invstore_message (const inv_t *inv, int64_t now, arena_t *arena)
{
    Invite__Invitation *m = arena_msg (arena, &invite__invitation__descriptor);
    m->id = arena_strdup (arena, inv->id);
    m->role = (Bus__Role) inv->role;
    if (inv->unit_id[0]) {
        m->_unit_id_case = INVITE__INVITATION___UNIT_ID_UNIT_ID;
        m->unit_id = arena_strdup (arena, inv->unit_id);
    }
    if (inv->chat_id[0]) {
        m->_chat_id_case = INVITE__INVITATION___CHAT_ID_CHAT_ID;
        m->chat_id = arena_strdup (arena, inv->chat_id);
    }
    if (inv->student_id[0]) {
        m->_student_id_case = INVITE__INVITATION___STUDENT_ID_STUDENT_ID;
        m->student_id = arena_strdup (arena, inv->student_id);
    }
    m->expires_at = inv->expires_at;
    m->max_uses = inv->max_uses;
    m->uses = inv->uses;
    m->status = invstore_status (inv, now);
    m->note = arena_strdup (arena, inv->note);
    m->creator_id = arena_strdup (arena, inv->creator_id);
    m->created_at = inv->created_at;
    return m;
}

#define INV_COLUMNS                                                                          \
    "id, org_id, role, unit_id, chat_id, student_id, creator_id, note, expires_at, max_uses," \
    " uses, revoked_at IS NOT NULL, created_at"

static void
s_inv_row (sqlite3_stmt *stmt, inv_t *out)
{
    s_copy (out->id, sizeof out->id, db_col_text (stmt, 0));
    s_copy (out->org_id, sizeof out->org_id, db_col_text (stmt, 1));
    out->role = sqlite3_column_int (stmt, 2);
    s_copy (out->unit_id, sizeof out->unit_id, db_col_text (stmt, 3));
    s_copy (out->chat_id, sizeof out->chat_id, db_col_text (stmt, 4));
    s_copy (out->student_id, sizeof out->student_id, db_col_text (stmt, 5));
    s_copy (out->creator_id, sizeof out->creator_id, db_col_text (stmt, 6));
    s_copy (out->note, sizeof out->note, db_col_text (stmt, 7));
    out->expires_at = sqlite3_column_int64 (stmt, 8);
    out->max_uses = (uint32_t) sqlite3_column_int (stmt, 9);
    out->uses = (uint32_t) sqlite3_column_int (stmt, 10);
    out->revoked = sqlite3_column_int (stmt, 11);
    out->created_at = sqlite3_column_int64 (stmt, 12);
}

static int
s_one (sqlite3_stmt *stmt, inv_t *out)
{
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        s_inv_row (stmt, out);
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
invstore_insert (db_t *db, const inv_t *inv, const unsigned char token_hash[32])
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO invitations (id, org_id, token_hash, role,"
                                      " unit_id, chat_id, student_id, creator_id, note, expires_at,"
                                      " max_uses, created_at)"
                                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, inv->id);
    db_bind_text (stmt, 2, inv->org_id);
    sqlite3_bind_blob (stmt, 3, token_hash, 32, SQLITE_TRANSIENT);
    sqlite3_bind_int (stmt, 4, inv->role);
    db_bind_text (stmt, 5, inv->unit_id);
    db_bind_text (stmt, 6, inv->chat_id);
    db_bind_text (stmt, 7, inv->student_id);
    db_bind_text (stmt, 8, inv->creator_id);
    db_bind_text (stmt, 9, inv->note);
    sqlite3_bind_int64 (stmt, 10, inv->expires_at);
    sqlite3_bind_int (stmt, 11, (int) inv->max_uses);
    sqlite3_bind_int64 (stmt, 12, inv->created_at);
    return db_step_done (db, stmt, NULL);
}

int
invstore_by_token (db_t *db, const unsigned char token_hash[32], inv_t *out)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT " INV_COLUMNS " FROM invitations WHERE token_hash = ?");
    if (!stmt)
        return -1;
    sqlite3_bind_blob (stmt, 1, token_hash, 32, SQLITE_STATIC);
    return s_one (stmt, out);
}

int
invstore_get (db_t *db, const char *org_id, const char *id, inv_t *out)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT " INV_COLUMNS " FROM invitations"
                                      " WHERE id = ? AND org_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, id);
    db_bind_text (stmt, 2, org_id);
    return s_one (stmt, out);
}

int
invstore_list (db_t *db, const char *org_id, const char *creator, int status, int64_t now,
               const char *cursor, uint32_t limit, arena_t *arena, Invite__InvitationList *out)
{
    /*  The status is derived, as invstore_status does it. */
    sqlite3_stmt *stmt = db_stmt (
        db, "SELECT " INV_COLUMNS " FROM invitations WHERE org_id = ?1"
            " AND (?2 IS NULL OR creator_id = ?2) AND id > ?3 AND (?4 = 0 OR ?4 ="
            "  CASE WHEN revoked_at IS NOT NULL THEN 3 WHEN uses >= max_uses THEN 2"
            "       WHEN ?5 >= expires_at THEN 4 ELSE 1 END)"
            " ORDER BY id LIMIT ?6");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, creator);
    db_bind_text (stmt, 3, cursor ? cursor : "");
    sqlite3_bind_int (stmt, 4, status);
    sqlite3_bind_int64 (stmt, 5, now);
    sqlite3_bind_int (stmt, 6, (int) limit + 1);
    out->items = arena_alloc (arena, (limit + 1) * sizeof (Invite__Invitation *));
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        if (out->n_items == limit) {
            out->_next_case = INVITE__INVITATION_LIST___NEXT_NEXT;
            out->next = out->items[limit - 1]->id;
            break;
        }
        inv_t inv;
        s_inv_row (stmt, &inv);
        out->items[out->n_items++] = invstore_message (&inv, now, arena);
    }
    sqlite3_reset (stmt);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

int
invstore_revoke (db_t *db, const char *org_id, const char *id, int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE invitations SET revoked_at = ? WHERE id = ?"
                                      " AND org_id = ? AND revoked_at IS NULL");
    if (!stmt)
        return -1;
    sqlite3_bind_int64 (stmt, 1, now);
    db_bind_text (stmt, 2, id);
    db_bind_text (stmt, 3, org_id);
    int changes = 0;
    if (db_step_done (db, stmt, &changes))
        return -1;
    return changes;
}

int
invstore_revoke_unused (db_t *db, const char *org_id, int64_t created_before, int64_t now,
                        arena_t *arena, char ***ids, size_t *count)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE invitations SET revoked_at = ?1 WHERE org_id = ?2"
                                      " AND revoked_at IS NULL AND uses < max_uses AND expires_at > ?1"
                                      " AND created_at <= ?3 RETURNING id");
    if (!stmt)
        return -1;
    sqlite3_bind_int64 (stmt, 1, now);
    db_bind_text (stmt, 2, org_id);
    sqlite3_bind_int64 (stmt, 3, created_before);
    size_t cap = 64;
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
invstore_take_use (db_t *db, const char *id, int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE invitations SET uses = uses + 1 WHERE id = ?"
                                      " AND uses < max_uses AND revoked_at IS NULL AND expires_at > ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, id);
    sqlite3_bind_int64 (stmt, 2, now);
    int changes = 0;
    if (db_step_done (db, stmt, &changes))
        return -1;
    return changes;
}

int
invstore_release_use (db_t *db, const char *id)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE invitations SET uses = uses - 1 WHERE id = ? AND uses > 0");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, id);
    return db_step_done (db, stmt, NULL);
}

int
invstore_redemption (db_t *db, const char *inv_id, const char *user_id)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT state FROM redemptions WHERE invitation_id = ?"
                                      " AND user_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, inv_id);
    db_bind_text (stmt, 2, user_id);
    int rc = sqlite3_step (stmt);
    int state = rc == SQLITE_ROW ? sqlite3_column_int (stmt, 0) : 0;
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? state : -1;
}

int
invstore_redemption_set (db_t *db, const char *inv_id, const char *user_id, int state, int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO redemptions (invitation_id, user_id, state, at)"
                                      " VALUES (?, ?, ?, ?) ON CONFLICT (invitation_id, user_id)"
                                      " DO UPDATE SET state = excluded.state, at = excluded.at");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, inv_id);
    db_bind_text (stmt, 2, user_id);
    sqlite3_bind_int (stmt, 3, state);
    sqlite3_bind_int64 (stmt, 4, now);
    return db_step_done (db, stmt, NULL);
}

int
invstore_redemption_delete (db_t *db, const char *inv_id, const char *user_id)
{
    sqlite3_stmt *stmt = db_stmt (db, "DELETE FROM redemptions WHERE invitation_id = ? AND user_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, inv_id);
    db_bind_text (stmt, 2, user_id);
    return db_step_done (db, stmt, NULL);
}

int
invstore_expired_unannounced (db_t *db, int64_t now, int max, inv_t *out)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE invitations SET expiry_announced = 1"
                                      " WHERE id IN (SELECT id FROM invitations"
                                      "  WHERE expiry_announced = 0 AND expires_at <= ?1"
                                      "  AND revoked_at IS NULL AND uses < max_uses LIMIT ?2)"
                                      " RETURNING " INV_COLUMNS);
    if (!stmt)
        return -1;
    sqlite3_bind_int64 (stmt, 1, now);
    sqlite3_bind_int (stmt, 2, max);
    int n = 0, rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW && n < max)
        s_inv_row (stmt, &out[n++]);
    sqlite3_reset (stmt);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? n : -1;
}

int
invstore_guesses (db_t *db, const char *ip, int64_t now, int64_t window_ms, int *count,
                  int64_t *window_end)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT window_start, count FROM guesses WHERE ip = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, ip);
    *count = 0;
    *window_end = now;
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW && sqlite3_column_int64 (stmt, 0) + window_ms > now) {
        *count = sqlite3_column_int (stmt, 1);
        *window_end = sqlite3_column_int64 (stmt, 0) + window_ms;
    }
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

int
invstore_guess_bump (db_t *db, const char *ip, int64_t now, int64_t window_ms)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO guesses (ip, window_start, count) VALUES (?1, ?2, 1)"
                                      " ON CONFLICT (ip) DO UPDATE SET"
                                      " count = CASE WHEN window_start + ?3 > ?2 THEN count + 1 ELSE 1 END,"
                                      " window_start = CASE WHEN window_start + ?3 > ?2"
                                      "   THEN window_start ELSE ?2 END");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, ip);
    sqlite3_bind_int64 (stmt, 2, now);
    sqlite3_bind_int64 (stmt, 3, window_ms);
    return db_step_done (db, stmt, NULL);
}

/* --- join requests --- */

#define JOIN_COLUMNS                                                                        \
    "id, org_id, user_id, role, unit_id, message, status, coalesce (reason, ''),"          \
    " created_at, decided_at"

static void
s_join_row (sqlite3_stmt *stmt, join_t *j)
{
    s_copy (j->id, sizeof j->id, db_col_text (stmt, 0));
    s_copy (j->org_id, sizeof j->org_id, db_col_text (stmt, 1));
    s_copy (j->user_id, sizeof j->user_id, db_col_text (stmt, 2));
    j->role = sqlite3_column_int (stmt, 3);
    s_copy (j->unit_id, sizeof j->unit_id, db_col_text (stmt, 4));
    s_copy (j->message, sizeof j->message, db_col_text (stmt, 5));
    j->status = sqlite3_column_int (stmt, 6);
    s_copy (j->reason, sizeof j->reason, db_col_text (stmt, 7));
    j->created_at = sqlite3_column_int64 (stmt, 8);
    j->decided_at = sqlite3_column_int64 (stmt, 9);
}

int
invstore_join_insert (db_t *db, const join_t *j)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO join_requests (id, org_id, user_id, role,"
                                      " unit_id, message, status, created_at)"
                                      " VALUES (?, ?, ?, ?, ?, ?, 1, ?)");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, j->id);
    db_bind_text (stmt, 2, j->org_id);
    db_bind_text (stmt, 3, j->user_id);
    sqlite3_bind_int (stmt, 4, j->role);
    db_bind_text (stmt, 5, j->unit_id);
    db_bind_text (stmt, 6, j->message);
    sqlite3_bind_int64 (stmt, 7, j->created_at);
    return db_step_done (db, stmt, NULL);
}

int
invstore_join_pending_exists (db_t *db, const char *org_id, const char *user_id, int role)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT 1 FROM join_requests WHERE org_id = ? AND user_id = ?"
                                      " AND role = ? AND status = 1");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, user_id);
    sqlite3_bind_int (stmt, 3, role);
    int rc = sqlite3_step (stmt);
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
invstore_join_get (db_t *db, const char *org_id, const char *id, join_t *out)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT " JOIN_COLUMNS " FROM join_requests"
                                      " WHERE id = ? AND org_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, id);
    db_bind_text (stmt, 2, org_id);
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        s_join_row (stmt, out);
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
invstore_join_decide (db_t *db, const char *id, int status, const char *reason, const char *actor,
                      int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE join_requests SET status = ?, reason = ?,"
                                      " decided_at = ?, decided_by = ? WHERE id = ? AND status = 1");
    if (!stmt)
        return -1;
    sqlite3_bind_int (stmt, 1, status);
    db_bind_text (stmt, 2, reason);
    sqlite3_bind_int64 (stmt, 3, now);
    db_bind_text (stmt, 4, actor);
    db_bind_text (stmt, 5, id);
    int changes = 0;
    if (db_step_done (db, stmt, &changes))
        return -1;
    return changes;
}

int
invstore_join_list (db_t *db, const char *org_id, const char *user_id, int status,
                    const char *cursor, uint32_t limit, arena_t *arena, join_t **items,
                    size_t *count, int *more)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT " JOIN_COLUMNS " FROM join_requests"
                                      " WHERE (?1 IS NULL OR org_id = ?1) AND (?2 IS NULL OR user_id = ?2)"
                                      " AND (?3 = 0 OR status = ?3) AND id > ?4 ORDER BY id LIMIT ?5");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, user_id);
    sqlite3_bind_int (stmt, 3, status);
    db_bind_text (stmt, 4, cursor ? cursor : "");
    sqlite3_bind_int (stmt, 5, (int) limit + 1);
    *items = arena_alloc (arena, (limit + 1) * sizeof (join_t));
    *count = 0;
    *more = 0;
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        if (*count == limit) {
            *more = 1;
            break;
        }
        s_join_row (stmt, &(*items)[(*count)++]);
    }
    sqlite3_reset (stmt);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

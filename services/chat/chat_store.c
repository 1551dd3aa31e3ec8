/*  chat_store: see chat_store.h. */
#include "chat_store.h"
#include "ulid.h"

#include <stdio.h>
#include <string.h>

const char *const chatstore_migrations[] = {
    /* 1 */
    "CREATE TABLE chats ("
    "  id TEXT PRIMARY KEY, org_id TEXT NOT NULL, kind INTEGER NOT NULL, title TEXT NOT NULL,"
    "  description TEXT NOT NULL DEFAULT '', unit_id TEXT, audience INTEGER NOT NULL DEFAULT 0,"
    "  who_can_post INTEGER NOT NULL, archived INTEGER NOT NULL DEFAULT 0,"
    "  created_by TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL, last_seq INTEGER NOT NULL DEFAULT 0, direct_key TEXT UNIQUE);"
    "CREATE INDEX chats_org ON chats (org_id, audience, unit_id);"
    "CREATE TABLE members ("
    "  chat_id TEXT NOT NULL REFERENCES chats (id), user_id TEXT NOT NULL, role INTEGER NOT NULL,"
    "  muted_until INTEGER NOT NULL DEFAULT 0, read_seq INTEGER NOT NULL DEFAULT 0,"
    "  automatic INTEGER NOT NULL DEFAULT 0, joined_at INTEGER NOT NULL,"
    "  PRIMARY KEY (chat_id, user_id)) WITHOUT ROWID;"
    "CREATE INDEX members_user ON members (user_id, chat_id);"
    "CREATE TABLE messages ("
    "  rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, chat_id TEXT NOT NULL,"
    "  seq INTEGER NOT NULL, author_id TEXT NOT NULL, text TEXT NOT NULL,"
    "  reply_to TEXT, created_at INTEGER NOT NULL, edited_at INTEGER NOT NULL DEFAULT 0,"
    "  deleted INTEGER NOT NULL DEFAULT 0, client_id TEXT, UNIQUE (chat_id, seq));"
    "CREATE UNIQUE INDEX messages_client ON messages (chat_id, author_id, client_id)"
    "  WHERE client_id IS NOT NULL;"
    /*  The text before each edit or deletion, for the audit. */
    "CREATE TABLE message_history ("
    "  message_id TEXT NOT NULL, text TEXT NOT NULL, changed_at INTEGER NOT NULL,"
    "  changed_by TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX message_history_id ON message_history (message_id);"
    "CREATE VIRTUAL TABLE messages_fts USING fts5 (text, content = 'messages',"
    "  content_rowid = 'rowid', tokenize = 'parta');"
    "CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN"
    "  INSERT INTO messages_fts (rowid, text) VALUES (new.rowid, new.text); END;"
    "CREATE TRIGGER messages_au AFTER UPDATE OF text ON messages BEGIN"
    "  INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text);"
    "  INSERT INTO messages_fts (rowid, text) VALUES (new.rowid, new.text); END;"
    /*  The roster, as org and identity announce it. */
    "CREATE TABLE users (id TEXT PRIMARY KEY, full_name TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE orgs (id TEXT PRIMARY KEY, name TEXT NOT NULL, short_name TEXT NOT NULL)"
    "  WITHOUT ROWID;"
    "CREATE TABLE org_roles (org_id TEXT NOT NULL, user_id TEXT NOT NULL, role INTEGER NOT NULL,"
    "  PRIMARY KEY (org_id, user_id, role)) WITHOUT ROWID;"
    "CREATE TABLE units (id TEXT PRIMARY KEY, org_id TEXT NOT NULL, kind INTEGER NOT NULL,"
    "  name TEXT NOT NULL, code TEXT NOT NULL DEFAULT '', curator_id TEXT,"
    "  archived INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
    "CREATE TABLE unit_members (unit_id TEXT NOT NULL, user_id TEXT NOT NULL,"
    "  role INTEGER NOT NULL, PRIMARY KEY (unit_id, user_id)) WITHOUT ROWID;"
    "CREATE INDEX unit_members_user ON unit_members (user_id);"
    "CREATE TABLE guardians (org_id TEXT NOT NULL, parent_id TEXT NOT NULL,"
    "  student_id TEXT NOT NULL, PRIMARY KEY (org_id, parent_id, student_id)) WITHOUT ROWID;"
    "CREATE INDEX guardians_student ON guardians (student_id);",
    /* 2: the role the roster last gave an automatic member, so that a role
       an owner sets by hand stays until the roster's own role for them
       changes. Roles there now count as the roster's. */
    "ALTER TABLE members ADD COLUMN roster_role INTEGER NOT NULL DEFAULT 0;"
    "UPDATE members SET roster_role = role WHERE automatic = 1;",
    /* 3: a curator's groups, which a sync after a teacher's role change looks up. */
    "CREATE INDEX units_curator ON units (curator_id);",
    NULL,
};

static void
s_copy (char *dst, size_t len, const char *src)
{
    snprintf (dst, len, "%s", src ? src : "");
}

static int
s_done (sqlite3_stmt *stmt, int rc)
{
    sqlite3_reset (stmt);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

static int
s_changes (db_t *db, sqlite3_stmt *stmt)
{
    int changes = 0;
    if (db_step_done (db, stmt, &changes))
        return -1;
    return changes;
}

static char **
s_grow (arena_t *arena, char **items, size_t count, size_t *cap)
{
    if (count < *cap)
        return items;
    size_t cap2 = *cap ? *cap * 2 : 16;
    char **bigger = arena_alloc (arena, cap2 * sizeof (char *));
    if (count)
        memcpy (bigger, items, count * sizeof (char *));
    *cap = cap2;
    return bigger;
}

static int
s_ids (sqlite3_stmt *stmt, arena_t *arena, char ***ids, size_t *count)
{
    size_t cap = 0;
    *ids = NULL;
    *count = 0;
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        *ids = s_grow (arena, *ids, *count, &cap);
        (*ids)[(*count)++] = arena_strdup (arena, db_col_text (stmt, 0));
    }
    if (!*ids)
        *ids = arena_alloc (arena, sizeof (char *));
    return s_done (stmt, rc);
}

/* --- chats --- */

#define CHAT_COLUMNS                                                                          \
    "id, org_id, kind, title, description, coalesce (unit_id, ''), audience, who_can_post,"    \
    " archived, last_seq, created_by"

static void
s_chat_row (sqlite3_stmt *stmt, chat_t *c)
{
    s_copy (c->id, sizeof c->id, db_col_text (stmt, 0));
    s_copy (c->org_id, sizeof c->org_id, db_col_text (stmt, 1));
    c->kind = sqlite3_column_int (stmt, 2);
    s_copy (c->title, sizeof c->title, db_col_text (stmt, 3));
    s_copy (c->description, sizeof c->description, db_col_text (stmt, 4));
    s_copy (c->unit_id, sizeof c->unit_id, db_col_text (stmt, 5));
    c->audience = sqlite3_column_int (stmt, 6);
    c->who_can_post = sqlite3_column_int (stmt, 7);
    c->archived = sqlite3_column_int (stmt, 8);
    c->last_seq = (uint64_t) sqlite3_column_int64 (stmt, 9);
    s_copy (c->created_by, sizeof c->created_by, db_col_text (stmt, 10));
}

static int
s_chat_one (sqlite3_stmt *stmt, chat_t *out)
{
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        s_chat_row (stmt, out);
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
chatstore_chat_insert (db_t *db, const chat_t *c, const char *direct_key, int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO chats (id, org_id, kind, title, description,"
                                      " unit_id, audience, who_can_post, archived, created_by,"
                                      " created_at, updated_at, direct_key)"
                                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, c->id);
    db_bind_text (stmt, 2, c->org_id);
    sqlite3_bind_int (stmt, 3, c->kind);
    db_bind_text (stmt, 4, c->title);
    db_bind_text (stmt, 5, c->description);
    db_bind_text (stmt, 6, c->unit_id[0] ? c->unit_id : NULL);
    sqlite3_bind_int (stmt, 7, c->audience);
    sqlite3_bind_int (stmt, 8, c->who_can_post);
    sqlite3_bind_int (stmt, 9, c->archived);
    db_bind_text (stmt, 10, c->created_by);
    sqlite3_bind_int64 (stmt, 11, now);
    sqlite3_bind_int64 (stmt, 12, now);
    db_bind_text (stmt, 13, direct_key);
    return db_step_done (db, stmt, NULL);
}

int
chatstore_chat_get (db_t *db, const char *id, chat_t *out)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT " CHAT_COLUMNS " FROM chats WHERE id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, id);
    return s_chat_one (stmt, out);
}

int
chatstore_chat_by_direct_key (db_t *db, const char *key, chat_t *out)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT " CHAT_COLUMNS " FROM chats WHERE direct_key = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, key);
    return s_chat_one (stmt, out);
}

int
chatstore_direct_peer (db_t *db, const char *chat_id, const char *user_id, arena_t *arena,
                       char **peer_id, char **full_name)
{
    /*  The key names both people ("org:a:b", chat.c), so the peer is known
        even after they left the chat. */
    sqlite3_stmt *stmt = db_stmt (db, "SELECT direct_key FROM chats WHERE id = ?"
                                      " AND direct_key IS NOT NULL");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, chat_id);
    char key[128] = "";
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        s_copy (key, sizeof key, db_col_text (stmt, 0));
    sqlite3_reset (stmt);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? 0 : -1;
    char *a = strchr (key, ':');
    char *b = a ? strchr (a + 1, ':') : NULL;
    if (!b)
        return 0;
    *b++ = 0;
    a++;
    const char *peer = strcmp (a, user_id) == 0 ? b : a;
    stmt = db_stmt (db, "SELECT full_name FROM users WHERE id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, peer);
    rc = sqlite3_step (stmt);
    *peer_id = arena_strdup (arena, peer);
    *full_name = arena_strdup (arena, rc == SQLITE_ROW ? db_col_text (stmt, 0) : "");
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 1 : -1;
}

int
chatstore_chat_auto (db_t *db, const char *org_id, const char *unit_id, int audience, chat_t *out)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT " CHAT_COLUMNS " FROM chats WHERE org_id = ?"
                                      " AND audience = ? AND created_by = ''"
                                      " AND coalesce (unit_id, '') = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    sqlite3_bind_int (stmt, 2, audience);
    db_bind_text (stmt, 3, unit_id ? unit_id : "");
    return s_chat_one (stmt, out);
}

int
chatstore_chat_update (db_t *db, const chat_t *c, int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE chats SET title = ?, description = ?,"
                                      " who_can_post = ?, archived = ?, updated_at = ? WHERE id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, c->title);
    db_bind_text (stmt, 2, c->description);
    sqlite3_bind_int (stmt, 3, c->who_can_post);
    sqlite3_bind_int (stmt, 4, c->archived);
    sqlite3_bind_int64 (stmt, 5, now);
    db_bind_text (stmt, 6, c->id);
    return db_step_done (db, stmt, NULL);
}

int
chatstore_chat_take_seq (db_t *db, const char *chat_id, uint64_t last_seq)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE chats SET last_seq = ?2 + 1 WHERE id = ?1"
                                      " AND last_seq = ?2");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, chat_id);
    sqlite3_bind_int64 (stmt, 2, (sqlite3_int64) last_seq);
    return s_changes (db, stmt);
}

int
chatstore_org_chats (db_t *db, const char *org_id, arena_t *arena, char ***ids, size_t *count)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT id FROM chats WHERE org_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    return s_ids (stmt, arena, ids, count);
}

int
chatstore_user_chats (db_t *db, const char *user_id, const char *org_id, const char *cursor,
                      uint32_t limit, arena_t *arena, char ***ids, size_t *count)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT m.chat_id FROM members m JOIN chats c ON c.id = m.chat_id"
                                      " WHERE m.user_id = ?1 AND (?2 IS NULL OR c.org_id = ?2)"
                                      " AND m.chat_id > ?3 ORDER BY m.chat_id LIMIT ?4");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, user_id);
    db_bind_text (stmt, 2, org_id);
    db_bind_text (stmt, 3, cursor ? cursor : "");
    sqlite3_bind_int (stmt, 4, limit ? (int) limit : -1);
    return s_ids (stmt, arena, ids, count);
}

/* --- members --- */

int
chatstore_member_get (db_t *db, const char *chat_id, const char *user_id, membership_t *out)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT role, muted_until, read_seq, automatic, roster_role"
                                      " FROM members WHERE chat_id = ? AND user_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, chat_id);
    db_bind_text (stmt, 2, user_id);
    memset (out, 0, sizeof *out);
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW) {
        out->role = sqlite3_column_int (stmt, 0);
        out->muted_until = sqlite3_column_int64 (stmt, 1);
        out->read_seq = (uint64_t) sqlite3_column_int64 (stmt, 2);
        out->automatic = sqlite3_column_int (stmt, 3);
        out->roster_role = sqlite3_column_int (stmt, 4);
    }
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
chatstore_member_put (db_t *db, const char *chat_id, const char *user_id, int role, int automatic,
                      int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO members (chat_id, user_id, role, automatic,"
                                      " joined_at) VALUES (?1, ?2, ?3, ?4, ?5)"
                                      " ON CONFLICT (chat_id, user_id) DO UPDATE SET role = ?3,"
                                      " automatic = max (automatic, ?4)");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, chat_id);
    db_bind_text (stmt, 2, user_id);
    sqlite3_bind_int (stmt, 3, role);
    sqlite3_bind_int (stmt, 4, automatic);
    sqlite3_bind_int64 (stmt, 5, now);
    return db_step_done (db, stmt, NULL);
}

int
chatstore_member_put_roster (db_t *db, const char *chat_id, const char *user_id, int role,
                             int roster_role, int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO members (chat_id, user_id, role, automatic,"
                                      " roster_role, joined_at) VALUES (?1, ?2, ?3, 1, ?4, ?5)"
                                      " ON CONFLICT (chat_id, user_id) DO UPDATE SET role = ?3,"
                                      " automatic = 1, roster_role = ?4");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, chat_id);
    db_bind_text (stmt, 2, user_id);
    sqlite3_bind_int (stmt, 3, role);
    sqlite3_bind_int (stmt, 4, roster_role);
    sqlite3_bind_int64 (stmt, 5, now);
    return db_step_done (db, stmt, NULL);
}

int
chatstore_member_set (db_t *db, const char *chat_id, const char *user_id, int role,
                      int64_t muted_until)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE members SET role = ?, muted_until = ?"
                                      " WHERE chat_id = ? AND user_id = ?");
    if (!stmt)
        return -1;
    sqlite3_bind_int (stmt, 1, role);
    sqlite3_bind_int64 (stmt, 2, muted_until);
    db_bind_text (stmt, 3, chat_id);
    db_bind_text (stmt, 4, user_id);
    return s_changes (db, stmt);
}

int
chatstore_member_delete (db_t *db, const char *chat_id, const char *user_id)
{
    sqlite3_stmt *stmt = db_stmt (db, "DELETE FROM members WHERE chat_id = ? AND user_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, chat_id);
    db_bind_text (stmt, 2, user_id);
    return s_changes (db, stmt);
}

int
chatstore_member_read (db_t *db, const char *chat_id, const char *user_id, uint64_t seq)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE members SET read_seq = max (read_seq,"
                                      " min (?1, (SELECT last_seq FROM chats WHERE id = ?2)))"
                                      " WHERE chat_id = ?2 AND user_id = ?3");
    if (!stmt)
        return -1;
    sqlite3_bind_int64 (stmt, 1, (sqlite3_int64) (seq > INT64_MAX ? INT64_MAX : seq));
    db_bind_text (stmt, 2, chat_id);
    db_bind_text (stmt, 3, user_id);
    return s_changes (db, stmt);
}

int
chatstore_owner_count (db_t *db, const char *chat_id, int *count)
{
    /*  Owners the roster may take away (a student made owner of a chat
        following a group) do not count: they could leave it with none. */
    sqlite3_stmt *stmt = db_stmt (db, "SELECT count(*) FROM members WHERE chat_id = ? AND role = 1"
                                      " AND automatic = 0");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, chat_id);
    int rc = sqlite3_step (stmt);
    *count = rc == SQLITE_ROW ? sqlite3_column_int (stmt, 0) : 0;
    return s_done (stmt, rc);
}

int
chatstore_member_rows (db_t *db, const char *chat_id, arena_t *arena, member_row_t **rows,
                       size_t *count)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT user_id, role, automatic, roster_role FROM members"
                                      " WHERE chat_id = ? ORDER BY user_id");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, chat_id);
    size_t cap = 0;
    *rows = NULL;
    *count = 0;
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        if (*count == cap) {
            size_t cap2 = cap ? cap * 2 : 32;
            member_row_t *bigger = arena_alloc (arena, cap2 * sizeof (member_row_t));
            if (cap)
                memcpy (bigger, *rows, cap * sizeof (member_row_t));
            *rows = bigger;
            cap = cap2;
        }
        member_row_t *r = &(*rows)[(*count)++];
        r->user_id = arena_strdup (arena, db_col_text (stmt, 0));
        r->role = sqlite3_column_int (stmt, 1);
        r->automatic = sqlite3_column_int (stmt, 2);
        r->roster_role = sqlite3_column_int (stmt, 3);
    }
    if (!*rows)
        *rows = arena_alloc (arena, sizeof (member_row_t));
    return s_done (stmt, rc);
}

int
chatstore_members (db_t *db, const char *chat_id, const char *cursor, uint32_t limit,
                   arena_t *arena, char ***ids, int **roles, int64_t **muted, int **automatic,
                   size_t *count)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT user_id, role, muted_until, automatic FROM members"
                                      " WHERE chat_id = ? AND user_id > ? ORDER BY user_id LIMIT ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, chat_id);
    db_bind_text (stmt, 2, cursor ? cursor : "");
    sqlite3_bind_int (stmt, 3, limit ? (int) limit : -1);
    size_t cap = 0;
    char **idv = NULL;
    int *rolev = NULL, *autov = NULL;
    int64_t *mutedv = NULL;
    *count = 0;
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        if (*count == cap) {
            size_t cap2 = cap ? cap * 2 : 32;
            char **i2 = arena_alloc (arena, cap2 * sizeof (char *));
            int *r2 = arena_alloc (arena, cap2 * sizeof (int));
            int *a2 = arena_alloc (arena, cap2 * sizeof (int));
            int64_t *m2 = arena_alloc (arena, cap2 * sizeof (int64_t));
            if (cap) {
                memcpy (i2, idv, cap * sizeof (char *));
                memcpy (r2, rolev, cap * sizeof (int));
                memcpy (a2, autov, cap * sizeof (int));
                memcpy (m2, mutedv, cap * sizeof (int64_t));
            }
            idv = i2, rolev = r2, autov = a2, mutedv = m2, cap = cap2;
        }
        idv[*count] = arena_strdup (arena, db_col_text (stmt, 0));
        rolev[*count] = sqlite3_column_int (stmt, 1);
        mutedv[*count] = sqlite3_column_int64 (stmt, 2);
        autov[*count] = sqlite3_column_int (stmt, 3);
        (*count)++;
    }
    if (!idv) {
        idv = arena_alloc (arena, sizeof (char *));
        rolev = arena_alloc (arena, sizeof (int));
        autov = arena_alloc (arena, sizeof (int));
        mutedv = arena_alloc (arena, sizeof (int64_t));
    }
    *ids = idv;
    if (roles)
        *roles = rolev;
    if (muted)
        *muted = mutedv;
    if (automatic)
        *automatic = autov;
    return s_done (stmt, rc);
}

int
chatstore_unread (db_t *db, const char *chat_id, const char *user_id, uint64_t after,
                  uint64_t *count)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT count(*) FROM messages WHERE chat_id = ? AND seq > ?"
                                      " AND author_id <> ? AND deleted = 0");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, chat_id);
    sqlite3_bind_int64 (stmt, 2, (sqlite3_int64) after);
    db_bind_text (stmt, 3, user_id);
    int rc = sqlite3_step (stmt);
    *count = rc == SQLITE_ROW ? (uint64_t) sqlite3_column_int64 (stmt, 0) : 0;
    return s_done (stmt, rc);
}

/* --- messages --- */

#define MESSAGE_COLUMNS                                                                        \
    "m.id, m.chat_id, m.seq, m.author_id, coalesce (u.full_name, ''), m.text, m.reply_to,"      \
    " m.created_at, m.edited_at, m.deleted"

static Chat__Message *
s_message_row (sqlite3_stmt *stmt, arena_t *arena, message_head_t *head)
{
    Chat__Message *m = arena_msg (arena, &chat__message__descriptor);
    m->id = arena_strdup (arena, db_col_text (stmt, 0));
    m->chat_id = arena_strdup (arena, db_col_text (stmt, 1));
    m->seq = (uint64_t) sqlite3_column_int64 (stmt, 2);
    m->author = arena_msg (arena, &chat__author__descriptor);
    m->author->id = arena_strdup (arena, db_col_text (stmt, 3));
    m->author->full_name = arena_strdup (arena, db_col_text (stmt, 4));
    m->deleted = sqlite3_column_int (stmt, 9) != 0;
    m->text = m->deleted ? "" : arena_strdup (arena, db_col_text (stmt, 5));
    if (sqlite3_column_type (stmt, 6) != SQLITE_NULL) {
        m->_reply_to_case = CHAT__MESSAGE___REPLY_TO_REPLY_TO;
        m->reply_to = arena_strdup (arena, db_col_text (stmt, 6));
    }
    m->created_at = sqlite3_column_int64 (stmt, 7);
    m->edited_at = sqlite3_column_int64 (stmt, 8);
    m->attachments = arena_alloc (arena, sizeof (Chat__Attachment *));
    if (head) {
        s_copy (head->id, sizeof head->id, m->id);
        s_copy (head->chat_id, sizeof head->chat_id, m->chat_id);
        head->seq = m->seq;
        s_copy (head->author_id, sizeof head->author_id, m->author->id);
        s_copy (head->reply_to, sizeof head->reply_to, m->_reply_to_case ? m->reply_to : "");
        head->created_at = m->created_at;
        head->edited_at = m->edited_at;
        head->deleted = m->deleted;
    }
    return m;
}

int
chatstore_message_insert (db_t *db, const char *id, const char *chat_id, uint64_t seq,
                          const char *author_id, const char *text, const char *reply_to,
                          const char *client_id, int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO messages (id, chat_id, seq, author_id, text,"
                                      " reply_to, client_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, id);
    db_bind_text (stmt, 2, chat_id);
    sqlite3_bind_int64 (stmt, 3, (sqlite3_int64) seq);
    db_bind_text (stmt, 4, author_id);
    db_bind_text (stmt, 5, text);
    db_bind_text (stmt, 6, reply_to && *reply_to ? reply_to : NULL);
    db_bind_text (stmt, 7, client_id && *client_id ? client_id : NULL);
    sqlite3_bind_int64 (stmt, 8, now);
    return db_step_done (db, stmt, NULL);
}

int
chatstore_message_get (db_t *db, const char *chat_id, const char *id, arena_t *arena,
                       Chat__Message **out, message_head_t *head)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT " MESSAGE_COLUMNS " FROM messages m"
                                      " LEFT JOIN users u ON u.id = m.author_id"
                                      " WHERE m.id = ? AND m.chat_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, id);
    db_bind_text (stmt, 2, chat_id);
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        *out = s_message_row (stmt, arena, head);
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
chatstore_message_by_client (db_t *db, const char *chat_id, const char *author_id,
                             const char *client_id, arena_t *arena, Chat__Message **out)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT " MESSAGE_COLUMNS " FROM messages m"
                                      " LEFT JOIN users u ON u.id = m.author_id"
                                      " WHERE m.chat_id = ? AND m.author_id = ? AND m.client_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, chat_id);
    db_bind_text (stmt, 2, author_id);
    db_bind_text (stmt, 3, client_id);
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        *out = s_message_row (stmt, arena, NULL);
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
chatstore_message_last (db_t *db, const char *chat_id, arena_t *arena, Chat__Message **out)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT " MESSAGE_COLUMNS " FROM messages m"
                                      " LEFT JOIN users u ON u.id = m.author_id"
                                      " WHERE m.chat_id = ? ORDER BY m.seq DESC LIMIT 1");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, chat_id);
    int rc = sqlite3_step (stmt);
    *out = rc == SQLITE_ROW ? s_message_row (stmt, arena, NULL) : NULL;
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static int
s_history_add (db_t *db, const char *id, const char *text, const char *actor, int64_t now,
               int deleted)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO message_history (message_id, text, changed_at,"
                                      " changed_by, deleted) VALUES (?, ?, ?, ?, ?)");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, id);
    db_bind_text (stmt, 2, text);
    sqlite3_bind_int64 (stmt, 3, now);
    db_bind_text (stmt, 4, actor);
    sqlite3_bind_int (stmt, 5, deleted);
    return db_step_done (db, stmt, NULL);
}

int
chatstore_message_edit (db_t *db, const char *id, const char *old_text, const char *new_text,
                        const char *editor, int64_t now)
{
    if (s_history_add (db, id, old_text, editor, now, 0))
        return -1;
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE messages SET text = ?, edited_at = ? WHERE id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, new_text);
    sqlite3_bind_int64 (stmt, 2, now);
    db_bind_text (stmt, 3, id);
    return db_step_done (db, stmt, NULL);
}

int
chatstore_message_delete (db_t *db, const char *id, const char *actor, int64_t now)
{
    /*  The text is kept in the history (the audit may need it) and leaves
        the message and the search index. */
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO message_history (message_id, text, changed_at,"
                                      " changed_by, deleted) SELECT id, text, ?, ?, 1 FROM messages"
                                      " WHERE id = ?");
    if (!stmt)
        return -1;
    sqlite3_bind_int64 (stmt, 1, now);
    db_bind_text (stmt, 2, actor);
    db_bind_text (stmt, 3, id);
    if (db_step_done (db, stmt, NULL))
        return -1;
    stmt = db_stmt (db, "UPDATE messages SET text = '', deleted = 1 WHERE id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, id);
    return db_step_done (db, stmt, NULL);
}

int
chatstore_history (db_t *db, const char *chat_id, uint64_t before, const uint64_t *after,
                   uint32_t limit, arena_t *arena, Chat__Message ***items, size_t *count, int *more)
{
    sqlite3_stmt *stmt;
    if (after) {
        stmt = db_stmt (db, "SELECT " MESSAGE_COLUMNS " FROM messages m"
                            " LEFT JOIN users u ON u.id = m.author_id"
                            " WHERE m.chat_id = ? AND m.seq > ? ORDER BY m.seq LIMIT ?");
        if (!stmt)
            return -1;
        sqlite3_bind_int64 (stmt, 2, (sqlite3_int64) (*after > INT64_MAX ? INT64_MAX : *after));
    }
    else {
        stmt = db_stmt (db, "SELECT " MESSAGE_COLUMNS " FROM messages m"
                            " LEFT JOIN users u ON u.id = m.author_id"
                            " WHERE m.chat_id = ? AND m.seq < ? ORDER BY m.seq DESC LIMIT ?");
        if (!stmt)
            return -1;
        sqlite3_bind_int64 (stmt, 2, before ? (sqlite3_int64) (before > INT64_MAX ? INT64_MAX : before)
                                            : INT64_MAX);
    }
    db_bind_text (stmt, 1, chat_id);
    sqlite3_bind_int (stmt, 3, (int) limit + 1);
    *items = arena_alloc (arena, (limit + 1) * sizeof (Chat__Message *));
    *count = 0;
    *more = 0;
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        if (*count == limit) {
            *more = 1;
            break;
        }
        (*items)[(*count)++] = s_message_row (stmt, arena, NULL);
    }
    if (!after)     /* newest first from the query: give them oldest first */
        for (size_t i = 0; i < *count / 2; i++) {
            Chat__Message *t = (*items)[i];
            (*items)[i] = (*items)[*count - 1 - i];
            (*items)[*count - 1 - i] = t;
        }
    return s_done (stmt, rc);
}

int
chatstore_search (db_t *db, const char *user_id, const char *match, const char *chat_id,
                  char **orgs, size_t n_orgs, const char *cursor, uint32_t limit, arena_t *arena,
                  Chat__Message ***items, size_t *count, int *more)
{
    /*  Orgs come as a comma list so the statement stays cacheable. */
    char org_list[4096] = ",";
    for (size_t i = 0; i < n_orgs; i++) {
        size_t used = strlen (org_list);
        snprintf (org_list + used, sizeof org_list - used, "%s,", orgs[i]);
    }
    sqlite3_stmt *stmt = db_stmt (
        db, "SELECT " MESSAGE_COLUMNS " FROM messages_fts f"
            " JOIN messages m ON m.rowid = f.rowid"
            " JOIN members mb ON mb.chat_id = m.chat_id AND mb.user_id = ?1"
            " JOIN chats c ON c.id = m.chat_id"
            " LEFT JOIN users u ON u.id = m.author_id"
            " WHERE messages_fts MATCH ?2 AND m.deleted = 0"
            " AND (?3 IS NULL OR m.chat_id = ?3)"
            " AND instr (?4, ',' || c.org_id || ',') > 0"
            " AND (?5 = '' OR m.id < ?5)"
            " ORDER BY m.id DESC LIMIT ?6");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, user_id);
    db_bind_text (stmt, 2, match);
    db_bind_text (stmt, 3, chat_id);
    db_bind_text (stmt, 4, org_list);
    db_bind_text (stmt, 5, cursor ? cursor : "");
    sqlite3_bind_int (stmt, 6, (int) limit + 1);
    *items = arena_alloc (arena, (limit + 1) * sizeof (Chat__Message *));
    *count = 0;
    *more = 0;
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        if (*count == limit) {
            *more = 1;
            break;
        }
        (*items)[(*count)++] = s_message_row (stmt, arena, NULL);
    }
    return s_done (stmt, rc);
}

/* --- the roster mirror --- */

int
chatstore_user_full_name (db_t *db, const char *user_id, arena_t *arena, char **full_name)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT full_name FROM users WHERE id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, user_id);
    int rc = sqlite3_step (stmt);
    *full_name = arena_strdup (arena, rc == SQLITE_ROW ? db_col_text (stmt, 0) : "");
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
chatstore_user_name (db_t *db, const char *user_id, const char *full_name)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO users (id, full_name) VALUES (?1, ?2)"
                                      " ON CONFLICT (id) DO UPDATE SET full_name = ?2");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, user_id);
    db_bind_text (stmt, 2, full_name);
    return db_step_done (db, stmt, NULL);
}

int
chatstore_users_missing (db_t *db, char **ids, size_t n, arena_t *arena, char ***missing,
                         size_t *count)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT 1 FROM users WHERE id = ?");
    if (!stmt)
        return -1;
    *missing = arena_alloc (arena, (n ? n : 1) * sizeof (char *));
    *count = 0;
    for (size_t i = 0; i < n; i++) {
        sqlite3_reset (stmt);
        db_bind_text (stmt, 1, ids[i]);
        int rc = sqlite3_step (stmt);
        if (rc == SQLITE_DONE)
            (*missing)[(*count)++] = ids[i];
        else if (rc != SQLITE_ROW) {
            sqlite3_reset (stmt);
            return -1;
        }
    }
    sqlite3_reset (stmt);
    return 0;
}

int
chatstore_org_put (db_t *db, const char *org_id, const char *name, const char *short_name)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO orgs (id, name, short_name) VALUES (?1, ?2, ?3)"
                                      " ON CONFLICT (id) DO UPDATE SET name = ?2, short_name = ?3");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, name);
    db_bind_text (stmt, 3, short_name);
    return db_step_done (db, stmt, NULL);
}

int
chatstore_org_short_name (db_t *db, const char *org_id, char *out, size_t len)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT short_name FROM orgs WHERE id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    int rc = sqlite3_step (stmt);
    s_copy (out, len, rc == SQLITE_ROW ? db_col_text (stmt, 0) : "");
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
chatstore_role_put (db_t *db, const char *org_id, const char *user_id, int role, int present)
{
    sqlite3_stmt *stmt = db_stmt (db, present ? "INSERT OR IGNORE INTO org_roles (org_id, user_id,"
                                                " role) VALUES (?, ?, ?)"
                                              : "DELETE FROM org_roles WHERE org_id = ?"
                                                " AND user_id = ? AND role = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, user_id);
    sqlite3_bind_int (stmt, 3, role);
    return db_step_done (db, stmt, NULL);
}

int
chatstore_roles_of (db_t *db, const char *org_id, const char *user_id, int *mask)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT role FROM org_roles WHERE org_id = ? AND user_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, user_id);
    *mask = 0;
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW)
        *mask |= 1 << sqlite3_column_int (stmt, 0);
    return s_done (stmt, rc);
}

int
chatstore_unit_put (db_t *db, const unit_t *u)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO units (id, org_id, kind, name, code, curator_id,"
                                      " archived) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                                      " ON CONFLICT (id) DO UPDATE SET name = ?4, code = ?5,"
                                      " curator_id = ?6, archived = ?7");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, u->id);
    db_bind_text (stmt, 2, u->org_id);
    sqlite3_bind_int (stmt, 3, u->kind);
    db_bind_text (stmt, 4, u->name);
    db_bind_text (stmt, 5, u->code);
    db_bind_text (stmt, 6, u->curator_id[0] ? u->curator_id : NULL);
    sqlite3_bind_int (stmt, 7, u->archived);
    return db_step_done (db, stmt, NULL);
}

int
chatstore_unit_get (db_t *db, const char *unit_id, unit_t *out)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT id, org_id, kind, name, code, coalesce (curator_id, ''),"
                                      " archived FROM units WHERE id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, unit_id);
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW) {
        s_copy (out->id, sizeof out->id, db_col_text (stmt, 0));
        s_copy (out->org_id, sizeof out->org_id, db_col_text (stmt, 1));
        out->kind = sqlite3_column_int (stmt, 2);
        s_copy (out->name, sizeof out->name, db_col_text (stmt, 3));
        s_copy (out->code, sizeof out->code, db_col_text (stmt, 4));
        s_copy (out->curator_id, sizeof out->curator_id, db_col_text (stmt, 5));
        out->archived = sqlite3_column_int (stmt, 6);
    }
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
chatstore_unit_set_curator (db_t *db, const char *unit_id, const char *user_id)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE units SET curator_id = ? WHERE id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, user_id && *user_id ? user_id : NULL);
    db_bind_text (stmt, 2, unit_id);
    return db_step_done (db, stmt, NULL);
}

int
chatstore_unit_member_put (db_t *db, const char *unit_id, const char *user_id, int role, int present)
{
    sqlite3_stmt *stmt = db_stmt (db, present ? "INSERT OR REPLACE INTO unit_members (unit_id,"
                                                " user_id, role) VALUES (?, ?, ?)"
                                              : "DELETE FROM unit_members WHERE unit_id = ?"
                                                " AND user_id = ? AND ?3 = ?3");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, unit_id);
    db_bind_text (stmt, 2, user_id);
    sqlite3_bind_int (stmt, 3, role);
    return db_step_done (db, stmt, NULL);
}

int
chatstore_student_units (db_t *db, const char *user_id, arena_t *arena, char ***ids, size_t *count)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT unit_id FROM unit_members WHERE user_id = ? AND role = 4");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, user_id);
    return s_ids (stmt, arena, ids, count);
}

int
chatstore_guardian_put (db_t *db, const char *org_id, const char *parent_id, const char *student_id,
                        int present)
{
    sqlite3_stmt *stmt = db_stmt (db, present ? "INSERT OR IGNORE INTO guardians (org_id, parent_id,"
                                                " student_id) VALUES (?, ?, ?)"
                                              : "DELETE FROM guardians WHERE org_id = ?"
                                                " AND parent_id = ? AND student_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, parent_id);
    db_bind_text (stmt, 3, student_id);
    return db_step_done (db, stmt, NULL);
}

/*  Member roles: owner 1, moderator 2, member 3 (chat.proto MemberRole).
    Org roles: admin 1, administration 2, teacher 3, student 4, parent 5. */

/*  SQL: the user holds the role in the org (as identity last said). */
#define HOLDS(org, user, role)                                                               \
    " AND EXISTS (SELECT 1 FROM org_roles r WHERE r.org_id = " org " AND r.user_id = " user \
    " AND r.role = " role ")"

int
chatstore_roster_units (db_t *db, const char *org_id, const char *user_id, arena_t *arena,
                        char ***ids, size_t *count)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT m.unit_id FROM unit_members m JOIN units u"
                                      " ON u.id = m.unit_id WHERE m.user_id = ?2 AND u.org_id = ?1"
                                      " UNION SELECT id FROM units WHERE org_id = ?1 AND curator_id = ?2"
                                      " UNION SELECT m.unit_id FROM guardians g JOIN unit_members m"
                                      " ON m.user_id = g.student_id AND m.role = 4 JOIN units u"
                                      " ON u.id = m.unit_id AND u.org_id = ?1 WHERE g.org_id = ?1"
                                      " AND g.parent_id = ?2");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, user_id);
    return s_ids (stmt, arena, ids, count);
}

int
chatstore_desired (db_t *db, const chat_t *chat, chatstore_want_fn *fn, void *arg)
{
    sqlite3_stmt *stmt;
    int automatic = chat->created_by[0] == 0;
    switch (chat->audience) {
    case CHAT__AUDIENCE__AUDIENCE_ALL:
        /*  Everyone in the org reads; admins post (API.md: "everyone
            reads, admins post"). */
        stmt = db_stmt (db, "SELECT user_id, min (CASE WHEN role = 1 THEN 2 ELSE 3 END)"
                            " FROM org_roles WHERE org_id = ? GROUP BY user_id");
        if (!stmt)
            return -1;
        db_bind_text (stmt, 1, chat->org_id);
        break;
    case CHAT__AUDIENCE__AUDIENCE_STAFF:
        /*  Admins, administration and teachers; admins and administration
            post. */
        stmt = db_stmt (db, "SELECT user_id, min (CASE WHEN role IN (1, 2) THEN 2 ELSE 3 END)"
                            " FROM org_roles WHERE org_id = ? AND role IN (1, 2, 3) GROUP BY user_id");
        if (!stmt)
            return -1;
        db_bind_text (stmt, 1, chat->org_id);
        break;
    case CHAT__AUDIENCE__AUDIENCE_STUDENTS:
        /*  The group's students; its curator owns the automatic chat. Only
            people who hold the role in the org now: org and identity
            announce separately, and whichever came first, a student without
            the student role (or a curator without the teacher role) is not
            in, and comes in when the role does. */
        stmt = db_stmt (db, "SELECT m.user_id, 3 FROM unit_members m JOIN units u ON u.id = m.unit_id"
                            " WHERE m.unit_id = ?1 AND m.role = 4" HOLDS ("u.org_id", "m.user_id", "4")
                            " UNION ALL SELECT curator_id, 1 FROM units u WHERE id = ?1 AND ?2"
                            " AND curator_id IS NOT NULL" HOLDS ("u.org_id", "u.curator_id", "3"));
        if (!stmt)
            return -1;
        db_bind_text (stmt, 1, chat->unit_id);
        sqlite3_bind_int (stmt, 2, automatic);
        break;
    case CHAT__AUDIENCE__AUDIENCE_PARENTS:
        /*  The guardians (holding the parent role) of the group's students
            (holding the student role); the curator owns it. */
        stmt = db_stmt (db, "SELECT DISTINCT g.parent_id, 3 FROM guardians g JOIN unit_members m"
                            " ON m.user_id = g.student_id AND m.role = 4 JOIN units u ON u.id = m.unit_id"
                            " WHERE m.unit_id = ?1 AND g.org_id = u.org_id"
                            HOLDS ("u.org_id", "m.user_id", "4")
                            HOLDS ("u.org_id", "g.parent_id", "5")
                            " UNION ALL SELECT curator_id, 1 FROM units u WHERE id = ?1 AND ?2"
                            " AND curator_id IS NOT NULL" HOLDS ("u.org_id", "u.curator_id", "3"));
        if (!stmt)
            return -1;
        db_bind_text (stmt, 1, chat->unit_id);
        sqlite3_bind_int (stmt, 2, automatic);
        break;
    default:
        return 0;
    }
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW)
        fn (arg, db_col_text (stmt, 0), sqlite3_column_int (stmt, 1));
    return s_done (stmt, rc);
}

/*  org_store: see org_store.h. */
#include "org_store.h"
#include "text.h"

#include <stdio.h>
#include <string.h>

const char *const orgstore_migrations[] = {
    /* 1 */
    "CREATE TABLE applications ("
    "  id TEXT PRIMARY KEY, status INTEGER NOT NULL, org_name TEXT NOT NULL,"
    "  short_name TEXT NOT NULL, region TEXT NOT NULL, inn TEXT NOT NULL,"
    "  admin_full_name TEXT NOT NULL, admin_phone TEXT NOT NULL, admin_email TEXT NOT NULL,"
    "  order_number TEXT NOT NULL, order_date TEXT NOT NULL, org_id TEXT, reason TEXT,"
    "  created_at INTEGER NOT NULL, decided_at INTEGER NOT NULL DEFAULT 0, decided_by TEXT);"
    "CREATE INDEX applications_status ON applications (status, id);"
    "CREATE TABLE orgs ("
    "  id TEXT PRIMARY KEY, name TEXT NOT NULL, name_fold TEXT NOT NULL,"
    "  short_name TEXT NOT NULL, region TEXT NOT NULL, address TEXT NOT NULL DEFAULT '',"
    "  phone TEXT NOT NULL DEFAULT '', email TEXT NOT NULL DEFAULT '',"
    "  website TEXT NOT NULL DEFAULT '', description TEXT NOT NULL DEFAULT '',"
    "  staff_unit_id TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE TABLE units ("
    "  id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs (id), kind INTEGER NOT NULL,"
    "  name TEXT NOT NULL, parent_id TEXT REFERENCES units (id), code TEXT, year INTEGER,"
    "  curator_id TEXT, archived INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE INDEX units_org ON units (org_id, kind, id);"
    "CREATE INDEX units_curator ON units (org_id, curator_id) WHERE curator_id IS NOT NULL;"
    "CREATE TABLE unit_members ("
    "  unit_id TEXT NOT NULL REFERENCES units (id), user_id TEXT NOT NULL,"
    "  org_id TEXT NOT NULL, role INTEGER NOT NULL, unit_kind INTEGER NOT NULL,"
    "  joined_at INTEGER NOT NULL, PRIMARY KEY (unit_id, user_id)) WITHOUT ROWID;"
    /*  A student is in at most one group of an org. */
    "CREATE UNIQUE INDEX one_group_per_student ON unit_members (org_id, user_id)"
    "  WHERE unit_kind = 2 AND role = 4;"
    "CREATE INDEX unit_members_user ON unit_members (org_id, user_id);"
    "CREATE TABLE leaves ("
    "  org_id TEXT NOT NULL, user_id TEXT NOT NULL, unit_id TEXT NOT NULL,"
    "  PRIMARY KEY (org_id, user_id)) WITHOUT ROWID;"
    "CREATE TABLE guardians ("
    "  org_id TEXT NOT NULL, parent_id TEXT NOT NULL, student_id TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL, PRIMARY KEY (org_id, parent_id, student_id)) WITHOUT ROWID;"
    "CREATE INDEX guardians_student ON guardians (org_id, student_id);"
    "CREATE TABLE movements ("
    "  id TEXT PRIMARY KEY, org_id TEXT NOT NULL, user_id TEXT NOT NULL, kind INTEGER NOT NULL,"
    "  unit_id TEXT, from_unit_id TEXT, order_number TEXT NOT NULL, effective_date TEXT NOT NULL,"
    "  note TEXT NOT NULL, actor_id TEXT NOT NULL, created_at INTEGER NOT NULL);"
    "CREATE INDEX movements_org ON movements (org_id, id);"
    "CREATE INDEX movements_user ON movements (org_id, user_id, id);",
    NULL,
};

static char *
s_dup (arena_t *arena, sqlite3_stmt *stmt, int col)
{
    return arena_strdup (arena, db_col_text (stmt, col));
}

static int
s_done (sqlite3_stmt *stmt, int rc)
{
    sqlite3_reset (stmt);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

/* Grows an arena array of pointers by doubling. */
static void **
s_grow (arena_t *arena, void **items, size_t count, size_t *cap)
{
    if (count < *cap)
        return items;
    size_t cap2 = *cap ? *cap * 2 : 16;
    void **bigger = arena_alloc (arena, cap2 * sizeof (void *));
    if (count)
        memcpy (bigger, items, count * sizeof (void *));
    *cap = cap2;
    return bigger;
}

/* --- applications --- */

#define APP_COLUMNS                                                                         \
    "id, status, org_name, short_name, region, inn, admin_full_name, admin_phone,"        \
    " admin_email, order_number, order_date, org_id, reason, created_at, decided_at"

static Org__Application *
s_application_row (sqlite3_stmt *stmt, arena_t *arena)
{
    Org__Application *a = arena_msg (arena, &org__application__descriptor);
    a->id = s_dup (arena, stmt, 0);
    a->status = (Org__ApplicationStatus) sqlite3_column_int (stmt, 1);
    a->org_name = s_dup (arena, stmt, 2);
    a->short_name = s_dup (arena, stmt, 3);
    a->region = s_dup (arena, stmt, 4);
    a->inn = s_dup (arena, stmt, 5);
    a->admin = arena_msg (arena, &org__application_admin__descriptor);
    a->admin->full_name = s_dup (arena, stmt, 6);
    a->admin->phone = s_dup (arena, stmt, 7);
    a->admin->email = s_dup (arena, stmt, 8);
    a->order_number = s_dup (arena, stmt, 9);
    a->order_date = s_dup (arena, stmt, 10);
    if (sqlite3_column_type (stmt, 11) != SQLITE_NULL) {
        a->_org_id_case = ORG__APPLICATION___ORG_ID_ORG_ID;
        a->org_id = s_dup (arena, stmt, 11);
    }
    if (sqlite3_column_type (stmt, 12) != SQLITE_NULL) {
        a->_reason_case = ORG__APPLICATION___REASON_REASON;
        a->reason = s_dup (arena, stmt, 12);
    }
    a->created_at = sqlite3_column_int64 (stmt, 13);
    a->decided_at = sqlite3_column_int64 (stmt, 14);
    return a;
}

int
orgstore_application_insert (db_t *db, const char *id, const Org__ApplicationCreateRequest *req,
                             const char *admin_phone, int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO applications (id, status, org_name, short_name,"
                                      " region, inn, admin_full_name, admin_phone, admin_email,"
                                      " order_number, order_date, created_at)"
                                      " VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, id);
    db_bind_text (stmt, 2, req->org_name);
    db_bind_text (stmt, 3, req->short_name);
    db_bind_text (stmt, 4, req->region);
    db_bind_text (stmt, 5, req->inn);
    db_bind_text (stmt, 6, req->admin->full_name);
    db_bind_text (stmt, 7, admin_phone);
    db_bind_text (stmt, 8, req->admin->email);
    db_bind_text (stmt, 9, req->order_number);
    db_bind_text (stmt, 10, req->order_date);
    sqlite3_bind_int64 (stmt, 11, now);
    return db_step_done (db, stmt, NULL);
}

int
orgstore_application_get (db_t *db, const char *id, arena_t *arena, Org__Application **out)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT " APP_COLUMNS " FROM applications WHERE id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, id);
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        *out = s_application_row (stmt, arena);
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
orgstore_applications_list (db_t *db, int status, const char *cursor, uint32_t limit,
                            arena_t *arena, Org__ApplicationList *out)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT " APP_COLUMNS " FROM applications"
                                      " WHERE (?1 = 0 OR status = ?1) AND id > ?2"
                                      " ORDER BY id LIMIT ?3");
    if (!stmt)
        return -1;
    sqlite3_bind_int (stmt, 1, status);
    db_bind_text (stmt, 2, cursor ? cursor : "");
    sqlite3_bind_int (stmt, 3, (int) limit + 1);
    out->items = arena_alloc (arena, (limit + 1) * sizeof (Org__Application *));
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        if (out->n_items == limit) {
            out->_next_case = ORG__APPLICATION_LIST___NEXT_NEXT;
            out->next = out->items[limit - 1]->id;
            break;
        }
        out->items[out->n_items++] = s_application_row (stmt, arena);
    }
    return s_done (stmt, rc);
}

int
orgstore_application_set_org (db_t *db, const char *id, const char *org_id)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE applications SET org_id = ? WHERE id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, id);
    return db_step_done (db, stmt, NULL);
}

int
orgstore_application_decide (db_t *db, const char *id, int status, const char *reason,
                             const char *actor, int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE applications SET status = ?, reason = ?,"
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

/* --- orgs --- */

#define ORG_COLUMNS "id, name, short_name, region, address, phone, email, website, description"

static Org__Org *
s_org_row (sqlite3_stmt *stmt, arena_t *arena)
{
    Org__Org *o = arena_msg (arena, &org__org__descriptor);
    o->id = s_dup (arena, stmt, 0);
    o->name = s_dup (arena, stmt, 1);
    o->short_name = s_dup (arena, stmt, 2);
    o->region = s_dup (arena, stmt, 3);
    o->address = s_dup (arena, stmt, 4);
    o->phone = s_dup (arena, stmt, 5);
    o->email = s_dup (arena, stmt, 6);
    o->website = s_dup (arena, stmt, 7);
    o->description = s_dup (arena, stmt, 8);
    return o;
}

int
orgstore_org_insert (db_t *db, const Org__Org *org, const char *staff_unit_id, int64_t now)
{
    char fold[2048];
    text_fold (org->name, fold, sizeof fold);
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO orgs (id, name, name_fold, short_name, region,"
                                      " staff_unit_id, created_at, updated_at)"
                                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org->id);
    db_bind_text (stmt, 2, org->name);
    db_bind_text (stmt, 3, fold);
    db_bind_text (stmt, 4, org->short_name);
    db_bind_text (stmt, 5, org->region);
    db_bind_text (stmt, 6, staff_unit_id);
    sqlite3_bind_int64 (stmt, 7, now);
    sqlite3_bind_int64 (stmt, 8, now);
    return db_step_done (db, stmt, NULL);
}

int
orgstore_org_get (db_t *db, const char *id, arena_t *arena, Org__Org **out)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT " ORG_COLUMNS " FROM orgs WHERE id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, id);
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        *out = s_org_row (stmt, arena);
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
orgstore_org_update (db_t *db, const Org__Org *o, int64_t now)
{
    char fold[2048];
    text_fold (o->name, fold, sizeof fold);
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE orgs SET name = ?, name_fold = ?, short_name = ?,"
                                      " region = ?, address = ?, phone = ?, email = ?, website = ?,"
                                      " description = ?, updated_at = ? WHERE id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, o->name);
    db_bind_text (stmt, 2, fold);
    db_bind_text (stmt, 3, o->short_name);
    db_bind_text (stmt, 4, o->region);
    db_bind_text (stmt, 5, o->address);
    db_bind_text (stmt, 6, o->phone);
    db_bind_text (stmt, 7, o->email);
    db_bind_text (stmt, 8, o->website);
    db_bind_text (stmt, 9, o->description);
    sqlite3_bind_int64 (stmt, 10, now);
    db_bind_text (stmt, 11, o->id);
    return db_step_done (db, stmt, NULL);
}

int
orgstore_org_staff_unit (db_t *db, const char *org_id, char *out, size_t len)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT staff_unit_id FROM orgs WHERE id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        snprintf (out, len, "%s", db_col_text (stmt, 0));
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
orgstore_org_search (db_t *db, const char *fold, const char *cursor, uint32_t limit,
                     arena_t *arena, Org__OrgList *out)
{
    /*  Substring match on the folded name; LIKE's wildcards in the query
        are escaped so they match themselves. */
    char pattern[1100];
    size_t j = 0;
    pattern[j++] = '%';
    for (const char *p = fold; *p && j + 3 < sizeof pattern; p++) {
        if (*p == '%' || *p == '_' || *p == '\\')
            pattern[j++] = '\\';
        pattern[j++] = *p;
    }
    pattern[j++] = '%';
    pattern[j] = 0;
    sqlite3_stmt *stmt = db_stmt (db, "SELECT id, name, short_name, region FROM orgs"
                                      " WHERE name_fold LIKE ?1 ESCAPE '\\' AND id > ?2"
                                      " ORDER BY id LIMIT ?3");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, pattern);
    db_bind_text (stmt, 2, cursor ? cursor : "");
    sqlite3_bind_int (stmt, 3, (int) limit + 1);
    out->items = arena_alloc (arena, (limit + 1) * sizeof (Org__OrgBrief *));
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        if (out->n_items == limit) {
            out->_next_case = ORG__ORG_LIST___NEXT_NEXT;
            out->next = out->items[limit - 1]->id;
            break;
        }
        Org__OrgBrief *b = arena_msg (arena, &org__org_brief__descriptor);
        b->id = s_dup (arena, stmt, 0);
        b->name = s_dup (arena, stmt, 1);
        b->short_name = s_dup (arena, stmt, 2);
        b->region = s_dup (arena, stmt, 3);
        out->items[out->n_items++] = b;
    }
    return s_done (stmt, rc);
}

/* --- units --- */

#define UNIT_COLUMNS                                                                         \
    "u.id, u.kind, u.name, u.parent_id, u.code, u.year, u.curator_id, u.archived,"         \
    " (SELECT count(*) FROM unit_members m WHERE m.unit_id = u.id)"

static Org__Unit *
s_unit_row (sqlite3_stmt *stmt, arena_t *arena)
{
    Org__Unit *u = arena_msg (arena, &org__unit__descriptor);
    u->id = s_dup (arena, stmt, 0);
    u->kind = (Bus__UnitKind) sqlite3_column_int (stmt, 1);
    u->name = s_dup (arena, stmt, 2);
    if (sqlite3_column_type (stmt, 3) != SQLITE_NULL) {
        u->_parent_id_case = ORG__UNIT___PARENT_ID_PARENT_ID;
        u->parent_id = s_dup (arena, stmt, 3);
    }
    if (sqlite3_column_type (stmt, 4) != SQLITE_NULL) {
        u->_code_case = ORG__UNIT___CODE_CODE;
        u->code = s_dup (arena, stmt, 4);
    }
    if (sqlite3_column_type (stmt, 5) != SQLITE_NULL) {
        u->_year_case = ORG__UNIT___YEAR_YEAR;
        u->year = sqlite3_column_int (stmt, 5);
    }
    if (sqlite3_column_type (stmt, 6) != SQLITE_NULL) {
        u->_curator_id_case = ORG__UNIT___CURATOR_ID_CURATOR_ID;
        u->curator_id = s_dup (arena, stmt, 6);
    }
    u->archived = sqlite3_column_int (stmt, 7) != 0;
    u->member_count = (uint32_t) sqlite3_column_int (stmt, 8);
    return u;
}

int
orgstore_unit_insert (db_t *db, const char *id, const char *org_id, int kind, const char *name,
                      const char *parent_id, const char *code, int has_year, int year, int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO units (id, org_id, kind, name, parent_id, code,"
                                      " year, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, id);
    db_bind_text (stmt, 2, org_id);
    sqlite3_bind_int (stmt, 3, kind);
    db_bind_text (stmt, 4, name);
    db_bind_text (stmt, 5, parent_id);
    db_bind_text (stmt, 6, code);
    if (has_year)
        sqlite3_bind_int (stmt, 7, year);
    else
        sqlite3_bind_null (stmt, 7);
    sqlite3_bind_int64 (stmt, 8, now);
    sqlite3_bind_int64 (stmt, 9, now);
    return db_step_done (db, stmt, NULL);
}

int
orgstore_unit_get (db_t *db, const char *org_id, const char *unit_id, arena_t *arena,
                   Org__Unit **out)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT " UNIT_COLUMNS " FROM units u"
                                      " WHERE u.id = ? AND u.org_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, unit_id);
    db_bind_text (stmt, 2, org_id);
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        *out = s_unit_row (stmt, arena);
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
orgstore_unit_update (db_t *db, const char *org_id, const Org__Unit *u, int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE units SET name = ?, parent_id = ?, code = ?, year = ?,"
                                      " archived = ?, updated_at = ? WHERE id = ? AND org_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, u->name);
    db_bind_text (stmt, 2, u->_parent_id_case ? u->parent_id : NULL);
    db_bind_text (stmt, 3, u->_code_case ? u->code : NULL);
    if (u->_year_case)
        sqlite3_bind_int (stmt, 4, u->year);
    else
        sqlite3_bind_null (stmt, 4);
    sqlite3_bind_int (stmt, 5, u->archived ? 1 : 0);
    sqlite3_bind_int64 (stmt, 6, now);
    db_bind_text (stmt, 7, u->id);
    db_bind_text (stmt, 8, org_id);
    return db_step_done (db, stmt, NULL);
}

int
orgstore_units_list (db_t *db, const char *org_id, int kind, const char *parent_id,
                     int include_archived, const char *only_for_user, const char *cursor,
                     uint32_t limit, arena_t *arena, Org__UnitList *out)
{
    /*  only_for_user: units the user belongs to, or their linked students
        belong to (what students and parents may see). */
    sqlite3_stmt *stmt = db_stmt (
        db, "SELECT " UNIT_COLUMNS " FROM units u WHERE u.org_id = ?1"
            " AND (?2 = 0 OR u.kind = ?2) AND (?3 = '' OR u.parent_id = ?3)"
            " AND (?4 OR u.archived = 0) AND u.id > ?5"
            " AND (?6 IS NULL OR u.id IN (SELECT unit_id FROM unit_members WHERE org_id = ?1"
            "   AND (user_id = ?6 OR user_id IN (SELECT student_id FROM guardians"
            "        WHERE org_id = ?1 AND parent_id = ?6))))"
            " ORDER BY u.id LIMIT ?7");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    sqlite3_bind_int (stmt, 2, kind);
    db_bind_text (stmt, 3, parent_id ? parent_id : "");
    sqlite3_bind_int (stmt, 4, include_archived ? 1 : 0);
    db_bind_text (stmt, 5, cursor ? cursor : "");
    db_bind_text (stmt, 6, only_for_user);
    sqlite3_bind_int (stmt, 7, (int) limit + 1);
    out->items = arena_alloc (arena, (limit + 1) * sizeof (Org__Unit *));
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        if (out->n_items == limit) {
            out->_next_case = ORG__UNIT_LIST___NEXT_NEXT;
            out->next = out->items[limit - 1]->id;
            break;
        }
        out->items[out->n_items++] = s_unit_row (stmt, arena);
    }
    return s_done (stmt, rc);
}

int
orgstore_unit_is_ancestor (db_t *db, const char *ancestor, const char *unit)
{
    sqlite3_stmt *stmt = db_stmt (db, "WITH RECURSIVE up (id, depth) AS ("
                                      "  SELECT ?2, 0 UNION ALL"
                                      "  SELECT u.parent_id, up.depth + 1 FROM units u JOIN up"
                                      "  ON u.id = up.id WHERE u.parent_id IS NOT NULL AND up.depth < 1000)"
                                      " SELECT 1 FROM up WHERE id = ?1 LIMIT 1");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, ancestor);
    db_bind_text (stmt, 2, unit);
    int rc = sqlite3_step (stmt);
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
orgstore_unit_set_curator (db_t *db, const char *unit_id, const char *user_id, int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "UPDATE units SET curator_id = ?, updated_at = ? WHERE id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, user_id);
    sqlite3_bind_int64 (stmt, 2, now);
    db_bind_text (stmt, 3, unit_id);
    return db_step_done (db, stmt, NULL);
}

static int
s_id_list (sqlite3_stmt *stmt, arena_t *arena, char ***ids, size_t *count)
{
    size_t cap = 0;
    *ids = NULL;
    *count = 0;
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        *ids = (char **) s_grow (arena, (void **) *ids, *count, &cap);
        (*ids)[(*count)++] = s_dup (arena, stmt, 0);
    }
    if (!*ids)
        *ids = arena_alloc (arena, sizeof (char *));
    return s_done (stmt, rc);
}

int
orgstore_curated_units (db_t *db, const char *org_id, const char *user_id, arena_t *arena,
                        char ***ids, size_t *count)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT id FROM units WHERE org_id = ? AND curator_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, user_id);
    return s_id_list (stmt, arena, ids, count);
}

/* --- unit members --- */

int
orgstore_member_add (db_t *db, const char *org_id, const char *unit_id, int unit_kind,
                     const char *user_id, int role, int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT OR IGNORE INTO unit_members (unit_id, user_id, org_id,"
                                      " role, unit_kind, joined_at) VALUES (?, ?, ?, ?, ?, ?)");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, unit_id);
    db_bind_text (stmt, 2, user_id);
    db_bind_text (stmt, 3, org_id);
    sqlite3_bind_int (stmt, 4, role);
    sqlite3_bind_int (stmt, 5, unit_kind);
    sqlite3_bind_int64 (stmt, 6, now);
    int changes = 0;
    if (db_step_done (db, stmt, &changes))
        return -1;
    return changes;
}

int
orgstore_member_remove (db_t *db, const char *unit_id, const char *user_id)
{
    sqlite3_stmt *stmt = db_stmt (db, "DELETE FROM unit_members WHERE unit_id = ? AND user_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, unit_id);
    db_bind_text (stmt, 2, user_id);
    int changes = 0;
    if (db_step_done (db, stmt, &changes))
        return -1;
    return changes;
}

int
orgstore_member_in (db_t *db, const char *unit_id, const char *user_id)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT 1 FROM unit_members WHERE unit_id = ? AND user_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, unit_id);
    db_bind_text (stmt, 2, user_id);
    int rc = sqlite3_step (stmt);
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
orgstore_student_group (db_t *db, const char *org_id, const char *user_id, char *out, size_t len)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT unit_id FROM unit_members WHERE org_id = ?"
                                      " AND user_id = ? AND unit_kind = 2 AND role = 4");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, user_id);
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        snprintf (out, len, "%s", db_col_text (stmt, 0));
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
orgstore_user_units (db_t *db, const char *org_id, const char *user_id, arena_t *arena,
                     Bus__UnitRef ***items, size_t *count)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT u.id, u.name, u.kind FROM unit_members m"
                                      " JOIN units u ON u.id = m.unit_id"
                                      " WHERE m.org_id = ? AND m.user_id = ? ORDER BY u.id");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, user_id);
    size_t cap = 0;
    *items = NULL;
    *count = 0;
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        *items = (Bus__UnitRef **) s_grow (arena, (void **) *items, *count, &cap);
        Bus__UnitRef *r = arena_msg (arena, &bus__unit_ref__descriptor);
        r->id = s_dup (arena, stmt, 0);
        r->name = s_dup (arena, stmt, 1);
        r->kind = (Bus__UnitKind) sqlite3_column_int (stmt, 2);
        (*items)[(*count)++] = r;
    }
    if (!*items)
        *items = arena_alloc (arena, sizeof (Bus__UnitRef *));
    return s_done (stmt, rc);
}

int
orgstore_unit_members (db_t *db, const char *unit_id, const char *cursor, uint32_t limit,
                       arena_t *arena, char ***ids, int **roles, size_t *count)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT user_id, role FROM unit_members WHERE unit_id = ?"
                                      " AND user_id > ? ORDER BY user_id LIMIT ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, unit_id);
    db_bind_text (stmt, 2, cursor ? cursor : "");
    sqlite3_bind_int (stmt, 3, (int) limit);
    *ids = arena_alloc (arena, (limit + 1) * sizeof (char *));
    *roles = arena_alloc (arena, (limit + 1) * sizeof (int));
    *count = 0;
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        (*ids)[*count] = s_dup (arena, stmt, 0);
        (*roles)[*count] = sqlite3_column_int (stmt, 1);
        (*count)++;
    }
    return s_done (stmt, rc);
}

int
orgstore_memberships (db_t *db, const char *org_id, orgstore_membership_fn *fn, void *arg)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT m.user_id, u.id, u.name, u.kind FROM unit_members m"
                                      " JOIN units u ON u.id = m.unit_id WHERE m.org_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW)
        fn (arg, db_col_text (stmt, 0), db_col_text (stmt, 1), db_col_text (stmt, 2),
            sqlite3_column_int (stmt, 3));
    return s_done (stmt, rc);
}

/* --- leaves --- */

int
orgstore_leave_set (db_t *db, const char *org_id, const char *user_id, const char *unit_id)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT OR REPLACE INTO leaves (org_id, user_id, unit_id)"
                                      " VALUES (?, ?, ?)");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, user_id);
    db_bind_text (stmt, 3, unit_id);
    return db_step_done (db, stmt, NULL);
}

int
orgstore_leave_get (db_t *db, const char *org_id, const char *user_id, char *out, size_t len)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT unit_id FROM leaves WHERE org_id = ? AND user_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, user_id);
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        snprintf (out, len, "%s", db_col_text (stmt, 0));
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
orgstore_leave_clear (db_t *db, const char *org_id, const char *user_id)
{
    sqlite3_stmt *stmt = db_stmt (db, "DELETE FROM leaves WHERE org_id = ? AND user_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, user_id);
    return db_step_done (db, stmt, NULL);
}

/* --- guardians --- */

int
orgstore_guardian_add (db_t *db, const char *org_id, const char *parent_id, const char *student_id,
                       int64_t now)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT OR IGNORE INTO guardians (org_id, parent_id,"
                                      " student_id, created_at) VALUES (?, ?, ?, ?)");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, parent_id);
    db_bind_text (stmt, 3, student_id);
    sqlite3_bind_int64 (stmt, 4, now);
    int changes = 0;
    if (db_step_done (db, stmt, &changes))
        return -1;
    return changes;
}

int
orgstore_guardian_remove (db_t *db, const char *org_id, const char *parent_id,
                          const char *student_id)
{
    sqlite3_stmt *stmt = db_stmt (db, "DELETE FROM guardians WHERE org_id = ? AND parent_id = ?"
                                      " AND student_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, parent_id);
    db_bind_text (stmt, 3, student_id);
    int changes = 0;
    if (db_step_done (db, stmt, &changes))
        return -1;
    return changes;
}

int
orgstore_guardian_exists (db_t *db, const char *org_id, const char *parent_id,
                          const char *student_id)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT created_at FROM guardians WHERE org_id = ?"
                                      " AND parent_id = ? AND student_id = ?");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, parent_id);
    db_bind_text (stmt, 3, student_id);
    int rc = sqlite3_step (stmt);
    sqlite3_reset (stmt);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
orgstore_guardian_students (db_t *db, const char *org_id, const char *parent_id, arena_t *arena,
                            char ***ids, size_t *count)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT student_id FROM guardians WHERE org_id = ?"
                                      " AND parent_id = ? ORDER BY student_id");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, parent_id);
    return s_id_list (stmt, arena, ids, count);
}

int
orgstore_guardian_parents (db_t *db, const char *org_id, const char *student_id, arena_t *arena,
                           char ***ids, size_t *count)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT parent_id FROM guardians WHERE org_id = ?"
                                      " AND student_id = ? ORDER BY parent_id");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, student_id);
    return s_id_list (stmt, arena, ids, count);
}

/* --- movements --- */

int
orgstore_movement_insert (db_t *db, const char *org_id, const Org__Movement *m)
{
    sqlite3_stmt *stmt = db_stmt (db, "INSERT INTO movements (id, org_id, user_id, kind, unit_id,"
                                      " from_unit_id, order_number, effective_date, note, actor_id,"
                                      " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, m->id);
    db_bind_text (stmt, 2, org_id);
    db_bind_text (stmt, 3, m->user_id);
    sqlite3_bind_int (stmt, 4, m->kind);
    db_bind_text (stmt, 5, m->_unit_id_case ? m->unit_id : NULL);
    db_bind_text (stmt, 6, m->_from_unit_id_case ? m->from_unit_id : NULL);
    db_bind_text (stmt, 7, m->order_number);
    db_bind_text (stmt, 8, m->effective_date);
    db_bind_text (stmt, 9, m->note);
    db_bind_text (stmt, 10, m->actor_id);
    sqlite3_bind_int64 (stmt, 11, m->created_at);
    return db_step_done (db, stmt, NULL);
}

int
orgstore_movements_list (db_t *db, const char *org_id, const char *user_id, const char *cursor,
                         uint32_t limit, arena_t *arena, Org__MovementList *out)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT id, kind, user_id, unit_id, from_unit_id, order_number,"
                                      " effective_date, note, actor_id, created_at FROM movements"
                                      " WHERE org_id = ?1 AND (?2 = '' OR user_id = ?2) AND id > ?3"
                                      " ORDER BY id LIMIT ?4");
    if (!stmt)
        return -1;
    db_bind_text (stmt, 1, org_id);
    db_bind_text (stmt, 2, user_id ? user_id : "");
    db_bind_text (stmt, 3, cursor ? cursor : "");
    sqlite3_bind_int (stmt, 4, (int) limit + 1);
    out->items = arena_alloc (arena, (limit + 1) * sizeof (Org__Movement *));
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        if (out->n_items == limit) {
            out->_next_case = ORG__MOVEMENT_LIST___NEXT_NEXT;
            out->next = out->items[limit - 1]->id;
            break;
        }
        Org__Movement *m = arena_msg (arena, &org__movement__descriptor);
        m->id = s_dup (arena, stmt, 0);
        m->kind = (Org__MovementKind) sqlite3_column_int (stmt, 1);
        m->user_id = s_dup (arena, stmt, 2);
        if (sqlite3_column_type (stmt, 3) != SQLITE_NULL) {
            m->_unit_id_case = ORG__MOVEMENT___UNIT_ID_UNIT_ID;
            m->unit_id = s_dup (arena, stmt, 3);
        }
        if (sqlite3_column_type (stmt, 4) != SQLITE_NULL) {
            m->_from_unit_id_case = ORG__MOVEMENT___FROM_UNIT_ID_FROM_UNIT_ID;
            m->from_unit_id = s_dup (arena, stmt, 4);
        }
        m->order_number = s_dup (arena, stmt, 5);
        m->effective_date = s_dup (arena, stmt, 6);
        m->note = s_dup (arena, stmt, 7);
        m->actor_id = s_dup (arena, stmt, 8);
        m->created_at = sqlite3_column_int64 (stmt, 9);
        out->items[out->n_items++] = m;
    }
    return s_done (stmt, rc);
}

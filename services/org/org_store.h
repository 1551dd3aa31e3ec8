/*  org_store: every SQL statement of the org service: applications, orgs
    (the card), units, unit members, guardians, movements. Results come
    back as protobuf messages allocated in the call's arena. Functions
    return 0 (or a count / 1 found, 0 not) and -1 on a database error. */
#ifndef PARTA_ORG_STORE_H
#define PARTA_ORG_STORE_H

#include "arena.h"
#include "db.h"
#include "org.pb-c.h"

#include <stdint.h>

extern const char *const orgstore_migrations[];

/* --- applications --- */
int orgstore_application_insert (db_t *db, const char *id, const Org__ApplicationCreateRequest *req,
                                 const char *admin_phone, int64_t now);
int orgstore_application_get (db_t *db, const char *id, arena_t *arena, Org__Application **out);
int orgstore_applications_list (db_t *db, int status, const char *cursor, uint32_t limit,
                                arena_t *arena, Org__ApplicationList *out);
int orgstore_application_set_org (db_t *db, const char *id, const char *org_id);
int orgstore_application_decide (db_t *db, const char *id, int status, const char *reason,
                                 const char *actor, int64_t now);

/* --- orgs --- */
int orgstore_org_insert (db_t *db, const Org__Org *org, const char *staff_unit_id, int64_t now);
int orgstore_org_get (db_t *db, const char *id, arena_t *arena, Org__Org **out);
int orgstore_org_update (db_t *db, const Org__Org *org, int64_t now);
int orgstore_org_staff_unit (db_t *db, const char *org_id, char *out, size_t len);
int orgstore_org_search (db_t *db, const char *fold, const char *cursor, uint32_t limit,
                         arena_t *arena, Org__OrgList *out);

/* --- units --- */
int orgstore_unit_insert (db_t *db, const char *id, const char *org_id, int kind, const char *name,
                          const char *parent_id, const char *code, int has_year, int year,
                          int64_t now);
/*  The unit if it belongs to org_id (1), else 0. */
int orgstore_unit_get (db_t *db, const char *org_id, const char *unit_id, arena_t *arena,
                       Org__Unit **out);
int orgstore_unit_update (db_t *db, const char *org_id, const Org__Unit *unit, int64_t now);
int orgstore_units_list (db_t *db, const char *org_id, int kind, const char *parent_id,
                         int include_archived, const char *only_for_user, const char *cursor,
                         uint32_t limit, arena_t *arena, Org__UnitList *out);
/*  1 if `ancestor` is `unit` or one of its ancestors. */
int orgstore_unit_is_ancestor (db_t *db, const char *ancestor, const char *unit);
int orgstore_unit_set_curator (db_t *db, const char *unit_id, const char *user_id, int64_t now);
/*  Groups a user curates in an org (ids into arena). */
int orgstore_curated_units (db_t *db, const char *org_id, const char *user_id, arena_t *arena,
                            char ***ids, size_t *count);

/* --- members of units --- */
int orgstore_member_add (db_t *db, const char *org_id, const char *unit_id, int unit_kind,
                         const char *user_id, int role, int64_t now);
int orgstore_member_remove (db_t *db, const char *unit_id, const char *user_id);
int orgstore_member_in (db_t *db, const char *unit_id, const char *user_id);
/*  The active group of a student in an org: 1 with its id, 0 none. */
int orgstore_student_group (db_t *db, const char *org_id, const char *user_id, char *out,
                            size_t len);
/*  Units of a user in an org. */
int orgstore_user_units (db_t *db, const char *org_id, const char *user_id, arena_t *arena,
                         Bus__UnitRef ***items, size_t *count);
/*  Members of a unit (user id and role), ordered by user id after cursor. */
int orgstore_unit_members (db_t *db, const char *unit_id, const char *cursor, uint32_t limit,
                           arena_t *arena, char ***ids, int **roles, size_t *count);
/*  Every (user, unit) membership of an org, for the members listing. */
typedef void (orgstore_membership_fn) (void *arg, const char *user_id, const char *unit_id,
                                       const char *name, int kind);
int orgstore_memberships (db_t *db, const char *org_id, orgstore_membership_fn *fn, void *arg);

/* --- academic leave: where a student returns to --- */
int orgstore_leave_set (db_t *db, const char *org_id, const char *user_id, const char *unit_id);
int orgstore_leave_get (db_t *db, const char *org_id, const char *user_id, char *out, size_t len);
int orgstore_leave_clear (db_t *db, const char *org_id, const char *user_id);

/* --- guardians --- */
int orgstore_guardian_add (db_t *db, const char *org_id, const char *parent_id,
                           const char *student_id, int64_t now);
int orgstore_guardian_remove (db_t *db, const char *org_id, const char *parent_id,
                              const char *student_id);
int orgstore_guardian_exists (db_t *db, const char *org_id, const char *parent_id,
                              const char *student_id);
int orgstore_guardian_students (db_t *db, const char *org_id, const char *parent_id,
                                arena_t *arena, char ***ids, size_t *count);
int orgstore_guardian_parents (db_t *db, const char *org_id, const char *student_id,
                               arena_t *arena, char ***ids, size_t *count);

/* --- movements --- */
int orgstore_movement_insert (db_t *db, const char *org_id, const Org__Movement *m);
int orgstore_movements_list (db_t *db, const char *org_id, const char *user_id,
                             const char *cursor, uint32_t limit, arena_t *arena,
                             Org__MovementList *out);

#endif

/*  identity_store: every SQL statement of the identity service: users,
    one-time codes, sessions, org roles. Handlers (identity.c) speak in
    these terms; lists come back as protobuf messages built in an arena. */
#ifndef PARTA_IDENTITY_STORE_H
#define PARTA_IDENTITY_STORE_H

#include "arena.h"
#include "db.h"
#include "identity.pb-c.h"

#include <sodium.h>
#include <stdint.h>

extern const char *const idstore_migrations[];

typedef struct {
    char id[32];
    char phone[20];
    char full_name[840];
    char password_hash[crypto_pwhash_STRBYTES];
} id_user_t;

typedef struct {
    char id[32];
    char user_id[32];
    int64_t created_at;
    int64_t last_seen_at;
    int revoked;
} id_session_t;

/*  1 found, 0 not found, -1 database error. */
int idstore_user_by_phone (db_t *db, const char *phone, id_user_t *out);
int idstore_user_by_id (db_t *db, const char *id, id_user_t *out);
int idstore_user_create (db_t *db, const id_user_t *user, int64_t now);
/*  NULL leaves a column as it is. */
int idstore_user_update (db_t *db, const char *id, const char *full_name,
                         const char *password_hash, int64_t now);
/*  Users by id, in `arena`; unknown ids are left out. */
int idstore_users_get (db_t *db, char **ids, size_t n, arena_t *arena, Identity__User ***items,
                       size_t *count);

/*  The secret the code hashes are keyed with (made by the migration). */
int idstore_otp_key (db_t *db, unsigned char key[32]);
int idstore_otp_put (db_t *db, const char *phone, const unsigned char hash[32], int64_t expires_at,
                     int attempts, int64_t now);
int idstore_otp_get (db_t *db, const char *phone, unsigned char hash[32], int64_t *expires_at,
                     int *attempts_left);
int idstore_otp_set_attempts (db_t *db, const char *phone, int attempts_left);
int idstore_otp_delete (db_t *db, const char *phone);

int idstore_session_create (db_t *db, const char *id, const char *user_id,
                            const unsigned char token_hash[32], int64_t now,
                            const char *user_agent, const char *ip);
int idstore_session_by_token (db_t *db, const unsigned char token_hash[32], id_session_t *out);
int idstore_session_touch (db_t *db, const char *id, int64_t now, const char *ip,
                           const char *user_agent);
/*  Live sessions of a user (not revoked, used within `since`). */
int idstore_sessions_list (db_t *db, const char *user_id, int64_t since, arena_t *arena,
                           Identity__Session ***items, size_t *count);
/*  Revokes one session of `user_id`: 1 revoked, 0 no such live session. */
int idstore_session_revoke (db_t *db, const char *user_id, const char *session_id,
                            const char *reason, int64_t now);
/*  Ends every live session of a user except `keep` (may be NULL), in one
    statement however many there are; their ids go to `ids` (arena). */
int idstore_sessions_end (db_t *db, const char *user_id, const char *keep, const char *reason,
                          int64_t now, arena_t *arena, char ***ids, size_t *count);
int idstore_user_clear_password (db_t *db, const char *user_id, int64_t now);

/*  Roles. */
int idstore_roles_by_user (db_t *db, const char *user_id, arena_t *arena,
                           Identity__OrgRole ***items, size_t *count);
int idstore_roles_by_org (db_t *db, const char *org_id, int role, arena_t *arena,
                          Identity__OrgRole ***items, size_t *count);
/*  The row for (org, user or phone, role): 1 found, 0 not. */
int idstore_role_get (db_t *db, const char *org_id, const char *user_id, const char *phone,
                      int role, arena_t *arena, Identity__OrgRole **out);
int idstore_role_insert (db_t *db, const char *org_id, const char *user_id, const char *phone,
                         int role, int64_t now);
int idstore_role_delete (db_t *db, const char *org_id, const char *user_id, int role);
/*  Withdraws a role still waiting for a phone: 1 deleted, 0 none. */
int idstore_role_delete_phone (db_t *db, const char *org_id, const char *phone, int role);
int idstore_role_set_verified (db_t *db, const char *org_id, const char *user_id, int verified,
                               int64_t now);
int idstore_admin_count (db_t *db, const char *org_id);
/*  Gives a new user the roles waiting for their phone; the rows bound are
    returned (for events). */
int idstore_roles_bind_phone (db_t *db, const char *user_id, const char *phone, arena_t *arena,
                              Identity__OrgRole ***items, size_t *count);
/*  Org ids where the user holds any role. */
int idstore_user_orgs (db_t *db, const char *user_id, arena_t *arena, char ***ids, size_t *count);

#endif

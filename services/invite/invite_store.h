/*  invite_store: every SQL statement of the invite service: invitations
    (only token hashes), redemptions, guessing counters, join requests. */
#ifndef PARTA_INVITE_STORE_H
#define PARTA_INVITE_STORE_H

#include "arena.h"
#include "db.h"
#include "invite.pb-c.h"

#include <stdint.h>

extern const char *const invstore_migrations[];

typedef struct {
    char id[32];
    char org_id[32];
    int role;
    char unit_id[32];           /* "" when none */
    char chat_id[32];
    char student_id[32];
    char creator_id[32];
    char note[2048];
    int64_t expires_at;
    uint32_t max_uses;
    uint32_t uses;
    int revoked;
    int64_t created_at;
} inv_t;

/*  The status an invitation shows at `now`. */
Invite__InvitationStatus invstore_status (const inv_t *inv, int64_t now);
/*  The invitation as the API shows it (no token), in `arena`. */
Invite__Invitation *invstore_message (const inv_t *inv, int64_t now, arena_t *arena);

int invstore_insert (db_t *db, const inv_t *inv, const unsigned char token_hash[32]);
int invstore_by_token (db_t *db, const unsigned char token_hash[32], inv_t *out);
int invstore_get (db_t *db, const char *org_id, const char *id, inv_t *out);
/*  `creator` NULL lists everyone's. */
int invstore_list (db_t *db, const char *org_id, const char *creator, int status, int64_t now,
                   const char *cursor, uint32_t limit, arena_t *arena, Invite__InvitationList *out);
int invstore_revoke (db_t *db, const char *org_id, const char *id, int64_t now);
/*  Revokes the org's active invitations nobody used, created before
    `created_before`; their ids go to `ids` (arena). */
int invstore_revoke_unused (db_t *db, const char *org_id, int64_t created_before, int64_t now,
                            arena_t *arena, char ***ids, size_t *count);
/*  Takes one use if one is left: 1 taken, 0 none left (or revoked/expired). */
int invstore_take_use (db_t *db, const char *id, int64_t now);
int invstore_release_use (db_t *db, const char *id);

/*  Redemptions: 0 none, 1 pending (effects not all done), 2 done. */
int invstore_redemption (db_t *db, const char *inv_id, const char *user_id);
int invstore_redemption_set (db_t *db, const char *inv_id, const char *user_id, int state,
                             int64_t now);
int invstore_redemption_delete (db_t *db, const char *inv_id, const char *user_id);

/*  Invitations that expired and were not yet announced; marks them. */
int invstore_expired_unannounced (db_t *db, int64_t now, int max, inv_t *out);

/*  Guessing protection: unknown tokens per address in a fixed window. */
int invstore_guesses (db_t *db, const char *ip, int64_t now, int64_t window_ms, int *count,
                      int64_t *window_end);
int invstore_guess_bump (db_t *db, const char *ip, int64_t now, int64_t window_ms);

/*  Join requests. */
typedef struct {
    char id[32];
    char org_id[32];
    char user_id[32];
    int role;
    char unit_id[32];
    char message[4100];
    int status;
    char reason[4100];
    int64_t created_at;
    int64_t decided_at;
} join_t;

int invstore_join_insert (db_t *db, const join_t *j);
/*  1 when the user has a pending request for (org, role). */
int invstore_join_pending_exists (db_t *db, const char *org_id, const char *user_id, int role);
int invstore_join_get (db_t *db, const char *org_id, const char *id, join_t *out);
int invstore_join_decide (db_t *db, const char *id, int status, const char *reason,
                          const char *actor, int64_t now);
/*  `org_id` or `user_id` selects (the other NULL). */
int invstore_join_list (db_t *db, const char *org_id, const char *user_id, int status,
                        const char *cursor, uint32_t limit, arena_t *arena, join_t **items,
                        size_t *count, int *more);

#endif

/*  chat_store: every SQL statement of the chat service: chats, members,
    messages (with their search index and edit history), read markers, and
    the mirror of the org's roster (roles, units, unit members, guardians,
    names) that automatic chats follow. Functions return 0 (or 1 found / 0
    not) and -1 on a database error. */
#ifndef PARTA_CHAT_STORE_H
#define PARTA_CHAT_STORE_H

#include "arena.h"
#include "chat.pb-c.h"
#include "db.h"

#include <stdint.h>

extern const char *const chatstore_migrations[];

typedef struct {
    char id[32];
    char org_id[32];
    int kind;
    char title[1024];
    char description[8200];
    char unit_id[32];
    int audience;
    int who_can_post;
    int archived;
    uint64_t last_seq;
    char created_by[32];
} chat_t;

typedef struct {
    int role;                   /* 0: not a member */
    int64_t muted_until;
    uint64_t read_seq;
    int automatic;              /* taken in from the roster */
    int roster_role;            /* the role the roster last gave them (0: none) */
} membership_t;

/*  A member as the roster sync sees them. */
typedef struct {
    char *user_id;
    int role;
    int automatic;
    int roster_role;
} member_row_t;

/* --- chats --- */
int chatstore_chat_insert (db_t *db, const chat_t *chat, const char *direct_key, int64_t now);
int chatstore_chat_get (db_t *db, const char *id, chat_t *out);
int chatstore_chat_by_direct_key (db_t *db, const char *key, chat_t *out);
/*  The automatic chat of an org (unit_id NULL) or a unit for an audience. */
int chatstore_chat_auto (db_t *db, const char *org_id, const char *unit_id, int audience, chat_t *out);
int chatstore_chat_update (db_t *db, const chat_t *chat, int64_t now);
/*  The other person of a direct chat, seen from `user_id`, and their name
    ("" when not known yet): 1, or 0 when the chat is not a direct one. */
int chatstore_direct_peer (db_t *db, const char *chat_id, const char *user_id, arena_t *arena,
                           char **peer_id, char **full_name);
/*  Takes the chat's next message sequence number, last_seq + 1, where
    last_seq is what the caller read in this same write transaction: 1
    when taken, 0 when the chat's last_seq is not that (so nothing was
    taken), -1 on error. */
int chatstore_chat_take_seq (db_t *db, const char *chat_id, uint64_t last_seq);
/*  Chat ids of an org (all of them), into the arena. */
int chatstore_org_chats (db_t *db, const char *org_id, arena_t *arena, char ***ids, size_t *count);
/*  Chat ids a user is a member of, within an org (NULL: any org). */
int chatstore_user_chats (db_t *db, const char *user_id, const char *org_id, const char *cursor,
                          uint32_t limit, arena_t *arena, char ***ids, size_t *count);

/* --- members --- */
int chatstore_member_get (db_t *db, const char *chat_id, const char *user_id, membership_t *out);
int chatstore_member_put (db_t *db, const char *chat_id, const char *user_id, int role,
                          int automatic, int64_t now);
/*  Puts an automatic member: the roster takes them in (or keeps them) with
    `role`, and `roster_role` is the role the roster gives them now. */
int chatstore_member_put_roster (db_t *db, const char *chat_id, const char *user_id, int role,
                                 int roster_role, int64_t now);
int chatstore_member_set (db_t *db, const char *chat_id, const char *user_id, int role,
                          int64_t muted_until);
int chatstore_member_delete (db_t *db, const char *chat_id, const char *user_id);
int chatstore_member_read (db_t *db, const char *chat_id, const char *user_id, uint64_t seq);
/*  How many owners a chat has. */
int chatstore_owner_count (db_t *db, const char *chat_id, int *count);
/*  Every member of a chat, ordered by user id, into the arena. */
int chatstore_member_rows (db_t *db, const char *chat_id, arena_t *arena, member_row_t **rows,
                           size_t *count);
/*  Member ids of a chat (all when limit is 0), after `cursor`. */
int chatstore_members (db_t *db, const char *chat_id, const char *cursor, uint32_t limit,
                       arena_t *arena, char ***ids, int **roles, int64_t **muted, int **automatic,
                       size_t *count);
/*  Messages after `seq` by others, not deleted. */
int chatstore_unread (db_t *db, const char *chat_id, const char *user_id, uint64_t after,
                      uint64_t *count);

/* --- messages --- */
typedef struct {
    char id[32];
    char chat_id[32];
    uint64_t seq;
    char author_id[32];
    char reply_to[32];
    int64_t created_at;
    int64_t edited_at;
    int deleted;
} message_head_t;

int chatstore_message_insert (db_t *db, const char *id, const char *chat_id, uint64_t seq,
                              const char *author_id, const char *text, const char *reply_to,
                              const char *client_id, int64_t now);
/*  1 with the message (text into arena), 0 not in this chat. */
int chatstore_message_get (db_t *db, const char *chat_id, const char *id, arena_t *arena,
                           Chat__Message **out, message_head_t *head);
int chatstore_message_by_client (db_t *db, const char *chat_id, const char *author_id,
                                 const char *client_id, arena_t *arena, Chat__Message **out);
int chatstore_message_last (db_t *db, const char *chat_id, arena_t *arena, Chat__Message **out);
int chatstore_message_edit (db_t *db, const char *id, const char *old_text, const char *new_text,
                            const char *editor, int64_t now);
int chatstore_message_delete (db_t *db, const char *id, const char *actor, int64_t now);
/*  History, ascending: the `limit` messages after `*after` (exclusive;
    after=0 is from the first), or without `after` the `limit` before
    `before` (exclusive, 0 = the newest). */
int chatstore_history (db_t *db, const char *chat_id, uint64_t before, const uint64_t *after,
                       uint32_t limit, arena_t *arena, Chat__Message ***items, size_t *count,
                       int *more);
/*  Full text over the chats `user_id` belongs to (and in orgs `orgs`),
    newest first; `match` is an FTS5 expression. */
int chatstore_search (db_t *db, const char *user_id, const char *match, const char *chat_id,
                      char **orgs, size_t n_orgs, const char *cursor, uint32_t limit,
                      arena_t *arena, Chat__Message ***items, size_t *count, int *more);

/* --- the roster mirror --- */
int chatstore_user_name (db_t *db, const char *user_id, const char *full_name);
/*  A user's full name into the arena ("" when not known yet): 1, or 0 when
    not known, -1 on error. */
int chatstore_user_full_name (db_t *db, const char *user_id, arena_t *arena, char **full_name);
int chatstore_users_missing (db_t *db, char **ids, size_t n, arena_t *arena, char ***missing,
                             size_t *count);
int chatstore_org_put (db_t *db, const char *org_id, const char *name, const char *short_name);
int chatstore_org_short_name (db_t *db, const char *org_id, char *out, size_t len);
int chatstore_role_put (db_t *db, const char *org_id, const char *user_id, int role, int present);
/*  Roles of a user in an org as a bit mask of (1 << role). */
int chatstore_roles_of (db_t *db, const char *org_id, const char *user_id, int *mask);
typedef struct {
    char id[32];
    char org_id[32];
    int kind;
    char name[1024];
    char code[128];
    char curator_id[32];
    int archived;
} unit_t;
int chatstore_unit_put (db_t *db, const unit_t *unit);
int chatstore_unit_get (db_t *db, const char *unit_id, unit_t *out);
int chatstore_unit_set_curator (db_t *db, const char *unit_id, const char *user_id);
int chatstore_unit_member_put (db_t *db, const char *unit_id, const char *user_id, int role,
                               int present);
/*  The groups a student is in (for guardians' parents chats). */
int chatstore_student_units (db_t *db, const char *user_id, arena_t *arena, char ***ids,
                             size_t *count);
int chatstore_guardian_put (db_t *db, const char *org_id, const char *parent_id,
                            const char *student_id, int present);

/*  The units whose rosters count `user_id` in the org: the units they are
    a member of, the groups they curate, the groups of the students they
    are a guardian of. A change of their roles may change those units'
    chats. */
int chatstore_roster_units (db_t *db, const char *org_id, const char *user_id, arena_t *arena,
                            char ***ids, size_t *count);

/*  Who should be in an automatic chat, with the role each should have:
    computed from the mirror alone, so the same mirror gives the same
    members whatever order the events that built it came in. Only people
    holding the matching role in the org count. */
typedef void (chatstore_want_fn) (void *arg, const char *user_id, int role);
int chatstore_desired (db_t *db, const chat_t *chat, chatstore_want_fn *fn, void *arg);

#endif

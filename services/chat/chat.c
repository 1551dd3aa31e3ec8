/*  chat: chats and channels, their members, messages, read markers and
    search (API.md "Chats", policy 2, 3А-3Е, 4.6), and the automatic chats
    that follow the org's roster: every group's chat and parents chat, every
    org's general and staff channels. The roster arrives as org and identity
    events (mirrored in our database); after each one the affected automatic
    chats are recomputed from the mirror, so whatever order events come in,
    and after a restart's replay, membership ends up right. All SQL is in
    chat_store.c. */
#include "chat.pb-c.h"
#include "bus_worker.h"
#include "chat_fts.h"
#include "chat_store.h"
#include "clock.h"
#include "event_consumer.h"
#include "identity.pb-c.h"
#include "log.h"
#include "org.pb-c.h"
#include "text.h"
#include "ulid.h"

#include <string.h>

#define ROLE_BIT(r) (1 << (r))
#define TEXT_MAX 4096
#define MEMBERS_MAX 1000

enum {
    OWNER = CHAT__MEMBER_ROLE__MEMBER_ROLE_OWNER,
    MODERATOR = CHAT__MEMBER_ROLE__MEMBER_ROLE_MODERATOR,
    MEMBER = CHAT__MEMBER_ROLE__MEMBER_ROLE_MEMBER,
    READONLY = CHAT__MEMBER_ROLE__MEMBER_ROLE_READONLY,
};

/* --- what both handlers and event handlers need --- */

/*  Where changes are written and announced: a request's call, or an
    event's context in the consumer. */
typedef struct {
    db_t *db;
    arena_t *arena;
    int64_t now;
    bus_call_t *call;
    event_ctx_t *ectx;
} env_t;

static env_t
s_env_call (bus_call_t *call)
{
    env_t e = {bus_call_db (call), bus_call_arena (call), bus_call_now (call), call, NULL};
    return e;
}

static int
s_emit (env_t *e, const char *type, const char *org_id, const ProtobufCMessage *payload)
{
    return e->call ? bus_call_event (e->call, type, org_id, payload)
                   : event_ctx_emit (e->ectx, type, org_id, payload);
}

/*  Every member of a chat (recipients of its events). */
static int
s_recipients (env_t *e, const char *chat_id, char ***ids, size_t *count)
{
    return chatstore_members (e->db, chat_id, NULL, 0, e->arena, ids, NULL, NULL, NULL, count);
}

static int
s_member_event (env_t *e, const char *type, const chat_t *chat, const char *user_id, int role,
                const char *reason)
{
    Chat__MemberEvent ev = CHAT__MEMBER_EVENT__INIT;
    ev.chat_id = (char *) chat->id;
    ev.user_id = (char *) user_id;
    ev.role = (Chat__MemberRole) role;
    ev.reason = (char *) reason;
    if (s_recipients (e, chat->id, &ev.recipients, &ev.n_recipients))
        return -1;
    /*  The user themself hears of it too (after a removal they are no
        longer among the members). */
    char **all = arena_alloc (e->arena, (ev.n_recipients + 1) * sizeof (char *));
    memcpy (all, ev.recipients, ev.n_recipients * sizeof (char *));
    int present = 0;
    for (size_t i = 0; i < ev.n_recipients; i++)
        present |= strcmp (all[i], user_id) == 0;
    if (!present)
        all[ev.n_recipients++] = (char *) user_id;
    ev.recipients = all;
    return s_emit (e, type, chat->org_id, &ev.base);
}

static int
s_chat_event (env_t *e, const char *type, const chat_t *chat)
{
    Chat__ChatEvent ev = CHAT__CHAT_EVENT__INIT;
    ev.chat_id = (char *) chat->id;
    ev.kind = (Chat__ChatKind) chat->kind;
    ev.title = (char *) chat->title;
    ev.audience = (Chat__Audience) chat->audience;
    ev.unit_id = (char *) chat->unit_id;
    ev.archived = chat->archived;
    ev.who_can_post = (Chat__WhoCanPost) chat->who_can_post;
    if (s_recipients (e, chat->id, &ev.member_ids, &ev.n_member_ids))
        return -1;
    return s_emit (e, type, chat->org_id, &ev.base);
}

/* --- automatic membership --- */

typedef struct {
    zhashx_t *want;             /* user_id -> role (as a pointer-sized int) */
} desired_t;

static void
s_want (void *arg, const char *user_id, int role)
{
    desired_t *d = arg;
    if (!user_id || !*user_id)
        return;
    intptr_t have = (intptr_t) zhashx_lookup (d->want, user_id);
    if (!have || role < have)   /* the stronger role wins: owner 1 < member 3 */
        zhashx_update (d->want, user_id, (void *) (intptr_t) role);
}

/*  Makes an automatic (roster-following) chat's members what the mirror
    says they should be. Hand-added members of hand-made chats are left
    alone; in the automatic chats the roster wants them is enough to make
    them the roster's.

    Roles: a member the roster takes in gets the role it gives them (the
    curator owner, admins moderators in the channels, everyone else
    member), and it is remembered as their roster role. An owner or
    moderator may then set another role by hand (readonly, moderator): it
    stays for as long as the roster's role for that member stays what it
    was, and gives way when that changes (a teacher made admin moderates
    the channels). The curator's ownership is the roster's and always
    holds. */
static int
s_sync_chat (env_t *e, const chat_t *chat)
{
    if (chat->audience == CHAT__AUDIENCE__AUDIENCE_UNSPECIFIED)
        return 0;
    desired_t d = {zhashx_new ()};
    zhashx_set_destructor (d.want, NULL);
    zhashx_set_duplicator (d.want, NULL);
    int rc = -1;
    if (chatstore_desired (e->db, chat, s_want, &d))
        goto out;
    member_row_t *rows;
    size_t n = 0;
    if (chatstore_member_rows (e->db, chat->id, e->arena, &rows, &n))
        goto out;
    /*  Remove automatic members no longer wanted; follow the roster's
        role changes. */
    for (size_t i = 0; i < n; i++) {
        const member_row_t *r = &rows[i];
        int want = (int) (intptr_t) zhashx_lookup (d.want, r->user_id);
        if (!want) {
            if (r->automatic
                && (chatstore_member_delete (e->db, chat->id, r->user_id) < 0
                    || s_member_event (e, "chat.member_removed", chat, r->user_id, r->role, "roster")))
                goto out;
            continue;
        }
        zhashx_delete (d.want, r->user_id);
        /*  Someone in an automatic chat by another way (an invitation
            naming the chat, accepted before the roster said so) whom the
            roster wants is the roster's from now on, so that it also takes
            them out when they leave the group. */
        int adopt = !r->automatic && chat->created_by[0] == 0;
        if (!adopt
            && (!r->automatic || (r->roster_role == want && (want != OWNER || r->role == OWNER))))
            continue;
        int role = adopt ? (want == OWNER ? OWNER : r->role)
                         : r->roster_role == want && want != OWNER ? r->role : want;
        if (chatstore_member_put_roster (e->db, chat->id, r->user_id, role, want, e->now)
            || (role != r->role
                && s_member_event (e, "chat.member_added", chat, r->user_id, role, "roster")))
            goto out;
    }
    /*  Add the missing. */
    for (void *v = zhashx_first (d.want); v; v = zhashx_next (d.want)) {
        const char *user = zhashx_cursor (d.want);
        int role = (int) (intptr_t) v;
        if (chatstore_member_put_roster (e->db, chat->id, user, role, role, e->now)
            || s_member_event (e, "chat.member_added", chat, user, role, "roster"))
            goto out;
    }
    rc = 0;
out:
    zhashx_destroy (&d.want);
    return rc;
}

/*  Every chat of an org that follows the roster of `unit_id` (NULL: the
    org-wide ones), including hand-made chats given a unit and audience. */
static int
s_sync_org (env_t *e, const char *org_id, const char *unit_id)
{
    char **ids;
    size_t n = 0;
    if (chatstore_org_chats (e->db, org_id, e->arena, &ids, &n))
        return -1;
    for (size_t i = 0; i < n; i++) {
        chat_t chat;
        if (chatstore_chat_get (e->db, ids[i], &chat) != 1)
            continue;
        if (chat.audience == CHAT__AUDIENCE__AUDIENCE_UNSPECIFIED)
            continue;
        if (unit_id ? strcmp (chat.unit_id, unit_id) != 0 : chat.unit_id[0] != 0)
            continue;
        if (s_sync_chat (e, &chat))
            return -1;
    }
    return 0;
}

/*  A user with no role left in an org leaves every chat of it, the
    hand-made and direct ones too: nobody outside an org reads its chats. */
static int
s_left_org (env_t *e, const char *org_id, const char *user_id)
{
    char **ids;
    size_t n = 0;
    if (chatstore_user_chats (e->db, user_id, org_id, NULL, 0, e->arena, &ids, &n))
        return -1;
    for (size_t i = 0; i < n; i++) {
        chat_t chat;
        membership_t m;
        if (chatstore_chat_get (e->db, ids[i], &chat) != 1
            || chatstore_member_get (e->db, chat.id, user_id, &m) != 1)
            continue;
        if (chatstore_member_delete (e->db, chat.id, user_id) < 0
            || s_member_event (e, "chat.member_removed", &chat, user_id, m.role, "left_org"))
            return -1;
    }
    return 0;
}

/*  Creates an automatic chat unless it exists; syncs it either way. */
static int
s_ensure_auto (env_t *e, const char *org_id, const char *unit_id, int audience, int kind,
               int who_can_post, const char *title)
{
    chat_t chat;
    int found = chatstore_chat_auto (e->db, org_id, unit_id, audience, &chat);
    if (found < 0)
        return -1;
    if (!found) {
        memset (&chat, 0, sizeof chat);
        ulid_make (chat.id);
        snprintf (chat.org_id, sizeof chat.org_id, "%s", org_id);
        chat.kind = kind;
        snprintf (chat.title, sizeof chat.title, "%s", title);
        snprintf (chat.unit_id, sizeof chat.unit_id, "%s", unit_id ? unit_id : "");
        chat.audience = audience;
        chat.who_can_post = who_can_post;
        if (chatstore_chat_insert (e->db, &chat, NULL, e->now) || s_sync_chat (e, &chat)
            || s_chat_event (e, "chat.created", &chat))
            return -1;
        return 0;
    }
    return s_sync_chat (e, &chat);
}

/*  Titles of a group's chats: «ТМ-21 Трактористы», «Родители ТМ-21». */
static void
s_group_titles (const unit_t *u, char *group, char *parents, size_t len)
{
    if (u->code[0]) {
        snprintf (group, len, "%s %s", u->code, u->name);
        snprintf (parents, len, "Родители %s", u->code);
    }
    else {
        snprintf (group, len, "%s", u->name);
        snprintf (parents, len, "Родители: %s", u->name);
    }
}

static int
s_unit_chats (env_t *e, const unit_t *u)
{
    if (u->kind != BUS__UNIT_KIND__UNIT_KIND_GROUP)
        return 0;
    char group[1200], parents[1200];
    s_group_titles (u, group, parents, sizeof group);
    if (s_ensure_auto (e, u->org_id, u->id, CHAT__AUDIENCE__AUDIENCE_STUDENTS,
                       CHAT__CHAT_KIND__CHAT_KIND_GROUP, CHAT__WHO_CAN_POST__WHO_CAN_POST_ALL, group)
        || s_ensure_auto (e, u->org_id, u->id, CHAT__AUDIENCE__AUDIENCE_PARENTS,
                          CHAT__CHAT_KIND__CHAT_KIND_GROUP, CHAT__WHO_CAN_POST__WHO_CAN_POST_ALL,
                          parents))
        return -1;
    /*  A renamed or archived group: its automatic chats follow. */
    int audiences[2] = {CHAT__AUDIENCE__AUDIENCE_STUDENTS, CHAT__AUDIENCE__AUDIENCE_PARENTS};
    const char *titles[2] = {group, parents};
    for (int i = 0; i < 2; i++) {
        chat_t chat;
        if (chatstore_chat_auto (e->db, u->org_id, u->id, audiences[i], &chat) != 1)
            continue;
        if (strcmp (chat.title, titles[i]) != 0 || chat.archived != u->archived) {
            snprintf (chat.title, sizeof chat.title, "%s", titles[i]);
            chat.archived = u->archived;
            if (chatstore_chat_update (e->db, &chat, e->now) || s_chat_event (e, "chat.updated", &chat))
                return -1;
        }
    }
    return 0;
}

static int
s_org_channels (env_t *e, const char *org_id)
{
    char short_name[256];
    if (chatstore_org_short_name (e->db, org_id, short_name, sizeof short_name) < 0)
        return -1;
    char general[400];
    snprintf (general, sizeof general, "Общий канал%s%s", short_name[0] ? " " : "", short_name);
    return s_ensure_auto (e, org_id, NULL, CHAT__AUDIENCE__AUDIENCE_ALL, CHAT__CHAT_KIND__CHAT_KIND_CHANNEL,
                          CHAT__WHO_CAN_POST__WHO_CAN_POST_MODERATORS, general)
           || s_ensure_auto (e, org_id, NULL, CHAT__AUDIENCE__AUDIENCE_STAFF,
                             CHAT__CHAT_KIND__CHAT_KIND_CHANNEL,
                             CHAT__WHO_CAN_POST__WHO_CAN_POST_MODERATORS, "Сотрудники");
}

/* --- the roster, from events --- */

static env_t
s_env_event (event_ctx_t *ctx)
{
    env_t e = {event_ctx_db (ctx), event_ctx_arena (ctx), clock_now_ms (), NULL, ctx};
    return e;
}

static status_t
s_on_org_created (event_ctx_t *ctx, const Ev__Event *event, const ProtobufCMessage *payload)
{
    const Org__OrgEvent *p = (const Org__OrgEvent *) payload;
    env_t e = s_env_event (ctx);
    if (chatstore_org_put (e.db, event->org_id, p->name, p->short_name) || s_org_channels (&e, event->org_id))
        return ST_INTERNAL;
    return ST_OK;
}

static status_t
s_on_org_updated (event_ctx_t *ctx, const Ev__Event *event, const ProtobufCMessage *payload)
{
    const Org__OrgEvent *p = (const Org__OrgEvent *) payload;
    env_t e = s_env_event (ctx);
    return chatstore_org_put (e.db, event->org_id, p->name, p->short_name) ? ST_INTERNAL : ST_OK;
}

static status_t
s_on_unit (event_ctx_t *ctx, const Ev__Event *event, const ProtobufCMessage *payload)
{
    const Org__UnitEvent *p = (const Org__UnitEvent *) payload;
    env_t e = s_env_event (ctx);
    unit_t u;
    memset (&u, 0, sizeof u);
    snprintf (u.id, sizeof u.id, "%s", p->unit_id);
    snprintf (u.org_id, sizeof u.org_id, "%s", event->org_id);
    u.kind = p->kind;
    snprintf (u.name, sizeof u.name, "%s", p->name);
    snprintf (u.code, sizeof u.code, "%s", p->code);
    snprintf (u.curator_id, sizeof u.curator_id, "%s", p->curator_id);
    u.archived = p->archived;
    if (chatstore_unit_put (e.db, &u) || s_unit_chats (&e, &u) || s_sync_org (&e, event->org_id, u.id))
        return ST_INTERNAL;
    return ST_OK;
}

static status_t
s_on_member (event_ctx_t *ctx, const Ev__Event *event, const ProtobufCMessage *payload)
{
    const Org__MemberEvent *p = (const Org__MemberEvent *) payload;
    env_t e = s_env_event (ctx);
    int present = strcmp (event->type, "org.unit.member_added") == 0;
    if (chatstore_unit_member_put (e.db, p->unit_id, p->user_id, p->role, present)
        || s_sync_org (&e, event->org_id, p->unit_id))
        return ST_INTERNAL;
    return ST_OK;
}

static status_t
s_on_curator (event_ctx_t *ctx, const Ev__Event *event, const ProtobufCMessage *payload)
{
    const Org__CuratorEvent *p = (const Org__CuratorEvent *) payload;
    env_t e = s_env_event (ctx);
    int set = strcmp (event->type, "org.curator.set") == 0;
    unit_t u;
    int found = chatstore_unit_get (e.db, p->unit_id, &u);
    if (found < 0)
        return ST_INTERNAL;
    /*  An unset for a curator already replaced changes nothing. */
    if (!set && found && strcmp (u.curator_id, p->user_id) != 0)
        return ST_OK;
    if (chatstore_unit_set_curator (e.db, p->unit_id, set ? p->user_id : NULL)
        || s_sync_org (&e, event->org_id, p->unit_id))
        return ST_INTERNAL;
    return ST_OK;
}

static status_t
s_on_guardian (event_ctx_t *ctx, const Ev__Event *event, const ProtobufCMessage *payload)
{
    const Org__GuardianEvent *p = (const Org__GuardianEvent *) payload;
    env_t e = s_env_event (ctx);
    int present = strcmp (event->type, "org.guardian.linked") == 0;
    if (chatstore_guardian_put (e.db, event->org_id, p->parent_id, p->student_id, present))
        return ST_INTERNAL;
    char **units;
    size_t n = 0;
    if (chatstore_student_units (e.db, p->student_id, e.arena, &units, &n))
        return ST_INTERNAL;
    for (size_t i = 0; i < n; i++)
        if (s_sync_org (&e, event->org_id, units[i]))
            return ST_INTERNAL;
    if (p->unit_id && *p->unit_id && s_sync_org (&e, event->org_id, p->unit_id))
        return ST_INTERNAL;
    return ST_OK;
}

static status_t
s_on_role (event_ctx_t *ctx, const Ev__Event *event, const ProtobufCMessage *payload)
{
    const Identity__RoleChanged *p = (const Identity__RoleChanged *) payload;
    env_t e = s_env_event (ctx);
    if (!p->user_id || !*p->user_id || !p->org_id || !*p->org_id)
        return ST_OK;   /* a role still waiting for its phone */
    int present = strcmp (event->type, "identity.role.revoked") != 0;
    if (chatstore_role_put (e.db, p->org_id, p->user_id, p->role, present))
        return ST_INTERNAL;
    int mask = 0;
    if (chatstore_roles_of (e.db, p->org_id, p->user_id, &mask))
        return ST_INTERNAL;
    if (!mask && s_left_org (&e, p->org_id, p->user_id))
        return ST_INTERNAL;
    /*  Automatic chats count only people holding the matching role, so a
        role changes every roster the user is in: the org's channels, and
        the chats of the units they are in, curate, or have a child in.
        Org's events about the same people may have come before or after
        this one; either way the chats end up as the roster says. */
    char **units;
    size_t n = 0;
    if (s_sync_org (&e, p->org_id, NULL)
        || chatstore_roster_units (e.db, p->org_id, p->user_id, e.arena, &units, &n))
        return ST_INTERNAL;
    for (size_t i = 0; i < n; i++)
        if (s_sync_org (&e, p->org_id, units[i]))
            return ST_INTERNAL;
    return ST_OK;
}

static status_t
s_on_user (event_ctx_t *ctx, const Ev__Event *event, const ProtobufCMessage *payload)
{
    (void) event;
    const Identity__UserUpdated *p = (const Identity__UserUpdated *) payload;
    return chatstore_user_name (event_ctx_db (ctx), p->user_id, p->full_name) ? ST_INTERNAL : ST_OK;
}

static const event_handler_t s_events[] = {
    {"org.created", &org__org_event__descriptor, s_on_org_created},
    {"org.updated", &org__org_event__descriptor, s_on_org_updated},
    {"org.unit.created", &org__unit_event__descriptor, s_on_unit},
    {"org.unit.updated", &org__unit_event__descriptor, s_on_unit},
    {"org.unit.archived", &org__unit_event__descriptor, s_on_unit},
    {"org.unit.member_added", &org__member_event__descriptor, s_on_member},
    {"org.unit.member_removed", &org__member_event__descriptor, s_on_member},
    {"org.curator.set", &org__curator_event__descriptor, s_on_curator},
    {"org.curator.unset", &org__curator_event__descriptor, s_on_curator},
    {"org.guardian.linked", &org__guardian_event__descriptor, s_on_guardian},
    {"org.guardian.unlinked", &org__guardian_event__descriptor, s_on_guardian},
    {"identity.role.granted", &identity__role_changed__descriptor, s_on_role},
    {"identity.role.revoked", &identity__role_changed__descriptor, s_on_role},
    /*  The registered and updated payloads share their fields' layout. */
    {"identity.user.registered", &identity__user_updated__descriptor, s_on_user},
    {"identity.user.updated", &identity__user_updated__descriptor, s_on_user},
    {NULL, NULL, NULL},
};

/* --- request helpers --- */

/*  The chat and the caller's place in it. Not a member, or no longer in
    the chat's org: the chat does not exist as far as they can tell. With
    org_admin_too an admin of the chat's org finds it too, as a non-member
    (m->role 0): for deleting messages in any chat of their org. */
static status_t
s_find_chat (bus_call_t *call, const char *chat_id, int org_admin_too, chat_t *chat, membership_t *m)
{
    if (bus_call_check_id (call, "chat_id", chat_id))
        return ST_BAD_REQUEST;
    memset (m, 0, sizeof *m);
    int found = chatstore_chat_get (bus_call_db (call), chat_id, chat);
    if (found < 0)
        return bus_call_db_error (call);
    if (found) {
        int member = chatstore_member_get (bus_call_db (call), chat_id, bus_call_user (call), m);
        if (member < 0)
            return bus_call_db_error (call);
        found = member
                || (org_admin_too
                    && bus_caller_has_role (bus_call_caller (call), chat->org_id, BUS__ROLE__ROLE_ADMIN));
    }
    if (!found || !bus_caller_membership (bus_call_caller (call), chat->org_id))
        return bus_call_fail (call, ST_NOT_FOUND, "chat_id", "no such chat");
    return ST_OK;
}

static status_t
s_access (bus_call_t *call, const char *chat_id, chat_t *chat, membership_t *m)
{
    return s_find_chat (call, chat_id, 0, chat, m);
}

static int
s_moderates (const membership_t *m)
{
    return m->role == OWNER || m->role == MODERATOR;
}

/*  A hand-made chat is run by its owners: the last one neither steps down
    nor leaves (they name another owner first). Automatic chats are owned
    by the roster, direct chats by nobody. ST_OK or a 409 already failed. */
static status_t
s_keeps_an_owner (bus_call_t *call, const chat_t *chat, const membership_t *them)
{
    if (them->role != OWNER || !chat->created_by[0] || chat->kind == CHAT__CHAT_KIND__CHAT_KIND_DIRECT)
        return ST_OK;
    int owners = 0;
    if (chatstore_owner_count (bus_call_db (call), chat->id, &owners))
        return bus_call_db_error (call);
    if (owners > 1)
        return ST_OK;
    bus_call_set_code (call, "last_owner");
    return bus_call_fail (call, ST_CONFLICT, "user_id",
                          "this is the chat's last owner: name another owner first");
}

/*  Authors' names come from identity's events; ask identity for any we
    have not heard of yet (a user who registered before this database). */
static void
s_fill_names (bus_call_t *call, char **ids, size_t n)
{
    char **missing;
    size_t n_missing = 0;
    if (!n || chatstore_users_missing (bus_call_db (call), ids, n, bus_call_arena (call), &missing,
                                       &n_missing)
        || !n_missing)
        return;
    Identity__UsersGetRequest req = IDENTITY__USERS_GET_REQUEST__INIT;
    req.ids = missing;
    req.n_ids = n_missing;
    Identity__UserList *list = NULL;
    bus_call_opts_t opts = {.timeout_ms = 2000, .flags = BUS_CALL_RETRY, .trace_id = bus_call_trace (call)};
    if (bus_client_call (bus_call_client (call), "identity", "identity.users_get", &req.base, &opts,
                         &identity__user_list__descriptor, bus_call_arena (call),
                         (ProtobufCMessage **) &list, NULL)
        != ST_OK)
        return;
    for (size_t i = 0; i < list->n_items; i++)
        chatstore_user_name (bus_call_db (call), list->items[i]->id, list->items[i]->full_name);
}

static void
s_fill_message_names (bus_call_t *call, Chat__Message **items, size_t n)
{
    char **ids = arena_alloc (bus_call_arena (call), (n ? n : 1) * sizeof (char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!items[i]->author->full_name[0])
            ids[k++] = items[i]->author->id;
    if (!k)
        return;
    s_fill_names (call, ids, k);
    Chat__Message *again;
    for (size_t i = 0; i < n; i++)
        if (!items[i]->author->full_name[0]
            && chatstore_message_get (bus_call_db (call), items[i]->chat_id, items[i]->id,
                                      bus_call_arena (call), &again, NULL) == 1)
            items[i]->author->full_name = again->author->full_name;
}

/*  A direct chat has no title of its own: each side sees it named after
    the other person. */
static char *
s_direct_title (bus_call_t *call, const chat_t *c)
{
    db_t *db = bus_call_db (call);
    arena_t *arena = bus_call_arena (call);
    char *peer = NULL, *name = NULL;
    if (chatstore_direct_peer (db, c->id, bus_call_user (call), arena, &peer, &name) != 1)
        return arena_strdup (arena, c->title);
    if (!*name) {
        s_fill_names (call, &peer, 1);
        chatstore_direct_peer (db, c->id, bus_call_user (call), arena, &peer, &name);
    }
    return name;
}

/*  A chat as the API shows it to the caller. */
static Chat__Chat *
s_chat_message (bus_call_t *call, const chat_t *c, const membership_t *m)
{
    arena_t *arena = bus_call_arena (call);
    Chat__Chat *out = arena_msg (arena, &chat__chat__descriptor);
    out->id = arena_strdup (arena, c->id);
    out->org_id = arena_strdup (arena, c->org_id);
    out->kind = (Chat__ChatKind) c->kind;
    out->title = c->kind == CHAT__CHAT_KIND__CHAT_KIND_DIRECT ? s_direct_title (call, c)
                                                             : arena_strdup (arena, c->title);
    out->description = arena_strdup (arena, c->description);
    if (c->unit_id[0]) {
        out->_unit_id_case = CHAT__CHAT___UNIT_ID_UNIT_ID;
        out->unit_id = arena_strdup (arena, c->unit_id);
    }
    out->audience = (Chat__Audience) c->audience;
    out->who_can_post = (Chat__WhoCanPost) c->who_can_post;
    out->archived = c->archived;
    out->last_seq = c->last_seq;
    if (m) {
        out->role = (Chat__MemberRole) m->role;
        out->muted_until = m->muted_until;
        chatstore_unread (bus_call_db (call), c->id, bus_call_user (call), m->read_seq, &out->unread);
    }
    if (chatstore_message_last (bus_call_db (call), c->id, arena, &out->last_message) == 1
        && out->last_message)
        s_fill_message_names (call, &out->last_message, 1);
    return out;
}

/*  Roles in an org of users the caller names (identity knows best). */
static status_t
s_roles (bus_call_t *call, const char *org_id, const char *user_id, int *mask)
{
    Identity__RolesByUserRequest req = IDENTITY__ROLES_BY_USER_REQUEST__INIT;
    req.user_id = (char *) user_id;
    Identity__RoleList *list = NULL;
    bus_call_opts_t opts = {.timeout_ms = 3000, .flags = BUS_CALL_RETRY, .trace_id = bus_call_trace (call)};
    status_t st = bus_client_call (bus_call_client (call), "identity", "identity.roles_by_user",
                                   &req.base, &opts, &identity__role_list__descriptor,
                                   bus_call_arena (call), (ProtobufCMessage **) &list, NULL);
    if (st != ST_OK)
        return bus_call_fail (call, ST_UNAVAILABLE, NULL, "cannot check the user's roles right now");
    *mask = 0;
    for (size_t i = 0; i < list->n_items; i++)
        if (strcmp (list->items[i]->org_id, org_id) == 0)
            *mask |= ROLE_BIT (list->items[i]->role);
    return ST_OK;
}

/*  Policy: only a verified teacher or an admin brings students or
    parents into a chat. */
static int
s_may_include_pupils (bus_call_t *call, const char *org_id)
{
    const Bus__Caller *caller = bus_call_caller (call);
    if (bus_caller_has_role (caller, org_id, BUS__ROLE__ROLE_ADMIN))
        return 1;
    const Bus__Membership *m = bus_caller_membership (caller, org_id);
    return bus_caller_has_role (caller, org_id, BUS__ROLE__ROLE_TEACHER) && m->verified;
}

/*  Methods that ask identity first (BUS_NOTXN) write in a transaction of
    their own afterwards. */
static status_t
s_txn_end (bus_call_t *call, int failed)
{
    db_t *db = bus_call_db (call);
    if (failed || db_commit (db)) {
        if (db_txn_depth (db))
            db_rollback (db);
        return bus_call_db_error (call);
    }
    return ST_OK;
}

/* --- chats --- */

static status_t
s_my_chats (bus_call_t *call, const void *request, void **reply)
{
    const Chat__MyChatsRequest *req = request;
    uint32_t limit = bus_page_limit (req->limit);
    char **ids;
    size_t n = 0;
    if (chatstore_user_chats (bus_call_db (call), bus_call_user (call), NULL, req->cursor, limit + 1,
                              bus_call_arena (call), &ids, &n))
        return bus_call_db_error (call);
    Chat__ChatList *out = arena_msg (bus_call_arena (call), &chat__chat_list__descriptor);
    out->items = arena_alloc (bus_call_arena (call), (n ? n : 1) * sizeof (Chat__Chat *));
    for (size_t i = 0; i < n && out->n_items < limit; i++) {
        chat_t c;
        membership_t m;
        if (chatstore_chat_get (bus_call_db (call), ids[i], &c) != 1
            || chatstore_member_get (bus_call_db (call), ids[i], bus_call_user (call), &m) != 1)
            continue;
        if (!bus_caller_membership (bus_call_caller (call), c.org_id))
            continue;
        out->items[out->n_items++] = s_chat_message (call, &c, &m);
    }
    if (n > limit) {
        out->_next_case = CHAT__CHAT_LIST___NEXT_NEXT;
        out->next = ids[limit - 1];
    }
    *reply = out;
    return ST_OK;
}

static status_t
s_text (bus_call_t *call, const char *field, const char *in, size_t min, size_t max, char **out)
{
    size_t cap = max * 4 + 1;
    *out = arena_alloc (bus_call_arena (call), cap);
    const char *problem = text_check_line (in ? in : "", min, max, *out, cap);
    if (problem)
        return bus_call_fail (call, ST_BAD_REQUEST, field, "%s %s (at most %zu characters)", field,
                              problem, max);
    return ST_OK;
}

static status_t
s_create (bus_call_t *call, const void *request, void **reply)
{
    const Chat__CreateRequest *req = request;
    status_t st_txn;
    env_t e = s_env_call (call);
    const Bus__Caller *caller = bus_call_caller (call);
    if (!bus_caller_is_staff (caller, req->org_id))
        return bus_call_fail (call, ST_FORBIDDEN, NULL, "only staff create chats");
    if (req->kind != CHAT__CHAT_KIND__CHAT_KIND_GROUP && req->kind != CHAT__CHAT_KIND__CHAT_KIND_CHANNEL)
        return bus_call_fail (call, ST_BAD_REQUEST, "kind", "kind is group or channel (direct chats: POST /direct)");
    char *title, *description = NULL;
    if (s_text (call, "title", req->title, 1, 200, &title))
        return ST_BAD_REQUEST;
    description = arena_alloc (e.arena, 2000 * 4 + 1);
    if (text_check_multiline (req->description ? req->description : "", 0, 2000, description, 2000 * 4 + 1))
        return bus_call_fail (call, ST_BAD_REQUEST, "description", "description is at most 2000 characters");
    chat_t chat;
    memset (&chat, 0, sizeof chat);
    int pupils = 0;
    int with_unit = req->_unit_id_case && req->unit_id && *req->unit_id;
    /*  An audience makes the chat follow a roster: a group's (students,
        parents: the group is named) or the whole org's (all, staff: no
        unit, which would mean nothing there). Without an audience a unit
        only says what the chat is about; its members are whoever is added. */
    if (req->audience == CHAT__AUDIENCE__AUDIENCE_STUDENTS || req->audience == CHAT__AUDIENCE__AUDIENCE_PARENTS) {
        if (!with_unit)
            return bus_call_fail (call, ST_BAD_REQUEST, "unit_id",
                                  "a chat for a group's students or parents names the group");
        pupils = 1;
    }
    else if (req->audience) {
        if (with_unit)
            return bus_call_fail (call, ST_BAD_REQUEST, "unit_id",
                                  "a chat for the whole organisation or its staff has no unit_id");
        if (req->audience != CHAT__AUDIENCE__AUDIENCE_ALL && req->audience != CHAT__AUDIENCE__AUDIENCE_STAFF)
            return bus_call_fail (call, ST_BAD_REQUEST, "audience",
                                  "audience is all, students, parents or staff");
        if (!bus_caller_has_role (caller, req->org_id, BUS__ROLE__ROLE_ADMIN)
            && !bus_caller_has_role (caller, req->org_id, BUS__ROLE__ROLE_ADMINISTRATION))
            return bus_call_fail (call, ST_FORBIDDEN, "audience",
                                  "only admins and administration make org-wide chats");
        /*  Everyone in the org, its students and parents too: admins only
            (administration that also teaches included). */
        pupils = req->audience == CHAT__AUDIENCE__AUDIENCE_ALL;
        if (pupils && !bus_caller_has_role (caller, req->org_id, BUS__ROLE__ROLE_ADMIN))
            return bus_call_fail (call, ST_FORBIDDEN, "audience",
                                  "only admins make a chat for the whole organisation");
    }
    if (with_unit) {
        if (bus_call_check_id (call, "unit_id", req->unit_id))
            return ST_BAD_REQUEST;
        unit_t u;
        int found = chatstore_unit_get (e.db, req->unit_id, &u);
        if (found < 0)
            return bus_call_db_error (call);
        if (!found || strcmp (u.org_id, req->org_id) != 0)
            return bus_call_fail (call, ST_NOT_FOUND, "unit_id", "no such unit");
        if (u.kind != BUS__UNIT_KIND__UNIT_KIND_GROUP && pupils)
            return bus_call_fail (call, ST_BAD_REQUEST, "unit_id", "unit_id must be a group");
        snprintf (chat.unit_id, sizeof chat.unit_id, "%s", u.id);
    }
    if (req->n_member_ids > MEMBERS_MAX)
        return bus_call_fail (call, ST_BAD_REQUEST, "member_ids", "at most 1000 members at once");
    int *masks = arena_alloc (e.arena, (req->n_member_ids + 1) * sizeof (int));
    for (size_t i = 0; i < req->n_member_ids; i++) {
        if (bus_call_check_id (call, "member_ids", req->member_ids[i]))
            return ST_BAD_REQUEST;
        status_t st = s_roles (call, req->org_id, req->member_ids[i], &masks[i]);
        if (st != ST_OK)
            return st;
        if (!masks[i])
            return bus_call_fail (call, ST_BAD_REQUEST, "member_ids",
                                  "%s is not a member of this organisation", req->member_ids[i]);
        if (masks[i] & (ROLE_BIT (BUS__ROLE__ROLE_STUDENT) | ROLE_BIT (BUS__ROLE__ROLE_PARENT)))
            pupils = 1;
    }
    if (pupils && !s_may_include_pupils (call, req->org_id))
        return bus_call_fail (call, ST_FORBIDDEN, NULL,
                              "only a verified teacher or an admin makes chats with students or parents");
    ulid_make (chat.id);
    snprintf (chat.org_id, sizeof chat.org_id, "%s", req->org_id);
    chat.kind = req->kind;
    snprintf (chat.title, sizeof chat.title, "%s", title);
    snprintf (chat.description, sizeof chat.description, "%s", description);
    chat.audience = req->audience;
    chat.who_can_post = req->kind == CHAT__CHAT_KIND__CHAT_KIND_CHANNEL
                            ? CHAT__WHO_CAN_POST__WHO_CAN_POST_MODERATORS
                            : CHAT__WHO_CAN_POST__WHO_CAN_POST_ALL;
    snprintf (chat.created_by, sizeof chat.created_by, "%s", bus_call_user (call));
    if (db_begin (e.db))
        return bus_call_db_error (call);
    int failed = chatstore_chat_insert (e.db, &chat, NULL, e.now)
                 || chatstore_member_put (e.db, chat.id, bus_call_user (call), OWNER, 0, e.now);
    for (size_t i = 0; i < req->n_member_ids && !failed; i++)
        if (strcmp (req->member_ids[i], bus_call_user (call)) != 0)
            failed = chatstore_member_put (e.db, chat.id, req->member_ids[i], MEMBER, 0, e.now) != 0;
    failed = failed || s_sync_chat (&e, &chat) || s_chat_event (&e, "chat.created", &chat);
    if ((st_txn = s_txn_end (call, failed)))
        return st_txn;
    membership_t m;
    chatstore_member_get (e.db, chat.id, bus_call_user (call), &m);
    *reply = s_chat_message (call, &chat, &m);
    return ST_OK;
}

static status_t
s_direct (bus_call_t *call, const void *request, void **reply)
{
    const Chat__DirectRequest *req = request;
    env_t e = s_env_call (call);
    const char *me = bus_call_user (call);
    if (bus_call_check_id (call, "user_id", req->user_id))
        return ST_BAD_REQUEST;
    if (strcmp (req->user_id, me) == 0)
        return bus_call_fail (call, ST_BAD_REQUEST, "user_id", "a direct chat is with someone else");
    /*  Both in this org: nobody outside it finds or writes to its people. */
    int mask = 0;
    status_t st = s_roles (call, req->org_id, req->user_id, &mask);
    if (st != ST_OK)
        return st;
    if (!mask)
        return bus_call_fail (call, ST_NOT_FOUND, "user_id", "no such member of this organisation");
    char key[128];
    const char *a = strcmp (me, req->user_id) < 0 ? me : req->user_id;
    const char *b = a == me ? req->user_id : me;
    snprintf (key, sizeof key, "%s:%s:%s", req->org_id, a, b);
    chat_t chat;
    if (db_begin (e.db))
        return bus_call_db_error (call);
    int found = chatstore_chat_by_direct_key (e.db, key, &chat);
    int failed = found < 0;
    if (!found) {
        memset (&chat, 0, sizeof chat);
        ulid_make (chat.id);
        snprintf (chat.org_id, sizeof chat.org_id, "%s", req->org_id);
        chat.kind = CHAT__CHAT_KIND__CHAT_KIND_DIRECT;
        chat.who_can_post = CHAT__WHO_CAN_POST__WHO_CAN_POST_ALL;
        snprintf (chat.created_by, sizeof chat.created_by, "%s", me);
        failed = chatstore_chat_insert (e.db, &chat, key, e.now)
                 || chatstore_member_put (e.db, chat.id, me, MEMBER, 0, e.now)
                 || chatstore_member_put (e.db, chat.id, req->user_id, MEMBER, 0, e.now)
                 || s_chat_event (&e, "chat.created", &chat);
    }
    else if (found > 0) {
        /*  Both are in the org now (checked above): whoever left the chat,
            or left the org and came back, is in it again. */
        const char *people[2] = {me, req->user_id};
        for (int i = 0; i < 2 && !failed; i++) {
            membership_t m;
            int in = chatstore_member_get (e.db, chat.id, people[i], &m);
            failed = in < 0
                     || (in == 0
                         && (chatstore_member_put (e.db, chat.id, people[i], MEMBER, 0, e.now)
                             || s_member_event (&e, "chat.member_added", &chat, people[i], MEMBER, "direct")));
        }
    }
    if ((st = s_txn_end (call, failed)))
        return st;
    /*  Both names known before the reply: the title is the other's. */
    char *ids[2] = {(char *) req->user_id, (char *) me};
    s_fill_names (call, ids, 2);
    membership_t m;
    chatstore_member_get (e.db, chat.id, me, &m);
    Chat__Chat *out = s_chat_message (call, &chat, &m);
    *reply = out;
    if (!found)
        bus_call_set_reason (call, "created");
    return ST_OK;
}

static status_t
s_get (bus_call_t *call, const void *request, void **reply)
{
    const Chat__ChatIdRequest *req = request;
    chat_t chat;
    membership_t m;
    status_t st = s_access (call, req->chat_id, &chat, &m);
    if (st != ST_OK)
        return st;
    *reply = s_chat_message (call, &chat, &m);
    return ST_OK;
}

/*  For invite: the chat and the caller's role in it, members or not. */
static status_t
s_get_internal (bus_call_t *call, const void *request, void **reply)
{
    const Chat__ChatIdRequest *req = request;
    if (bus_call_check_id (call, "chat_id", req->chat_id))
        return ST_BAD_REQUEST;
    chat_t chat;
    int found = chatstore_chat_get (bus_call_db (call), req->chat_id, &chat);
    if (found < 0)
        return bus_call_db_error (call);
    if (!found)
        return bus_call_fail (call, ST_NOT_FOUND, "chat_id", "no such chat");
    membership_t m;
    if (chatstore_member_get (bus_call_db (call), chat.id, bus_call_user (call), &m) < 0)
        return bus_call_db_error (call);
    *reply = s_chat_message (call, &chat, m.role ? &m : NULL);
    return ST_OK;
}

static status_t
s_update (bus_call_t *call, const void *request, void **reply)
{
    const Chat__UpdateRequest *req = request;
    env_t e = s_env_call (call);
    chat_t chat;
    membership_t m;
    status_t st = s_access (call, req->chat_id, &chat, &m);
    if (st != ST_OK)
        return st;
    if (!s_moderates (&m))
        return bus_call_fail (call, ST_FORBIDDEN, NULL, "only the chat's owners and moderators change it");
    if (chat.kind == CHAT__CHAT_KIND__CHAT_KIND_DIRECT)
        return bus_call_fail (call, ST_BAD_REQUEST, NULL, "a direct chat has nothing to change");
    if (req->_title_case) {
        char *title;
        if (s_text (call, "title", req->title, 1, 200, &title))
            return ST_BAD_REQUEST;
        snprintf (chat.title, sizeof chat.title, "%s", title);
    }
    if (req->_description_case) {
        char text[2000 * 4 + 1];
        if (text_check_multiline (req->description ? req->description : "", 0, 2000, text, sizeof text))
            return bus_call_fail (call, ST_BAD_REQUEST, "description", "description is at most 2000 characters");
        snprintf (chat.description, sizeof chat.description, "%s", text);
    }
    if (req->_who_can_post_case) {
        if (req->who_can_post == CHAT__WHO_CAN_POST__WHO_CAN_POST_UNSPECIFIED)
            return bus_call_fail (call, ST_BAD_REQUEST, "who_can_post", "who_can_post is all or moderators");
        if (chat.kind == CHAT__CHAT_KIND__CHAT_KIND_CHANNEL
            && req->who_can_post == CHAT__WHO_CAN_POST__WHO_CAN_POST_ALL)
            return bus_call_fail (call, ST_BAD_REQUEST, "who_can_post", "in a channel only moderators post");
        chat.who_can_post = req->who_can_post;
    }
    if (req->_archived_case)
        chat.archived = req->archived;
    if (chatstore_chat_update (e.db, &chat, e.now) || s_chat_event (&e, "chat.updated", &chat))
        return bus_call_db_error (call);
    *reply = s_chat_message (call, &chat, &m);
    return ST_OK;
}

/* --- members --- */

static Chat__Member *
s_member_message (bus_call_t *call, const char *user_id, int role, int64_t muted)
{
    arena_t *arena = bus_call_arena (call);
    Chat__Member *m = arena_msg (arena, &chat__member__descriptor);
    m->user = arena_msg (arena, &chat__person__descriptor);
    m->user->id = arena_strdup (arena, user_id);
    m->user->full_name = "";
    m->role = (Chat__MemberRole) role;
    m->muted_until = muted;
    return m;
}

static status_t
s_members (bus_call_t *call, const void *request, void **reply)
{
    const Chat__MembersRequest *req = request;
    chat_t chat;
    membership_t me;
    status_t st = s_access (call, req->chat_id, &chat, &me);
    if (st != ST_OK)
        return st;
    uint32_t limit = bus_page_limit (req->limit);
    char **ids;
    int *roles;
    int64_t *muted;
    size_t n = 0;
    if (chatstore_members (bus_call_db (call), chat.id, req->cursor, limit + 1, bus_call_arena (call),
                           &ids, &roles, &muted, NULL, &n))
        return bus_call_db_error (call);
    Chat__MemberList *out = arena_msg (bus_call_arena (call), &chat__member_list__descriptor);
    if (n > limit) {
        n = limit;
        out->_next_case = CHAT__MEMBER_LIST___NEXT_NEXT;
        out->next = ids[limit - 1];
    }
    s_fill_names (call, ids, n);
    out->items = arena_alloc (bus_call_arena (call), (n ? n : 1) * sizeof (Chat__Member *));
    sqlite3_stmt *name = db_stmt (bus_call_db (call), "SELECT full_name FROM users WHERE id = ?");
    for (size_t i = 0; i < n; i++) {
        Chat__Member *m = s_member_message (call, ids[i], roles[i], muted[i]);
        if (name) {
            sqlite3_reset (name);
            db_bind_text (name, 1, ids[i]);
            if (sqlite3_step (name) == SQLITE_ROW)
                m->user->full_name = arena_strdup (bus_call_arena (call), db_col_text (name, 0));
        }
        out->items[out->n_items++] = m;
    }
    if (name)
        sqlite3_reset (name);
    *reply = out;
    return ST_OK;
}

static status_t
s_members_add (bus_call_t *call, const void *request, void **reply)
{
    const Chat__MembersAddRequest *req = request;
    env_t e = s_env_call (call);
    chat_t chat;
    membership_t me;
    status_t st = s_access (call, req->chat_id, &chat, &me);
    if (st != ST_OK)
        return st;
    if (!s_moderates (&me))
        return bus_call_fail (call, ST_FORBIDDEN, NULL, "only the chat's owners and moderators add members");
    if (chat.kind == CHAT__CHAT_KIND__CHAT_KIND_DIRECT)
        return bus_call_fail (call, ST_BAD_REQUEST, NULL, "a direct chat is for two");
    int role = req->role ? (int) req->role : MEMBER;
    if (role == OWNER || (role == MODERATOR && me.role != OWNER))
        return bus_call_fail (call, ST_FORBIDDEN, "role", "only an owner names moderators; owners are not added");
    if (req->n_user_ids == 0 || req->n_user_ids > MEMBERS_MAX)
        return bus_call_fail (call, ST_BAD_REQUEST, "user_ids", "user_ids: 1 to 1000 ids");
    for (size_t i = 0; i < req->n_user_ids; i++) {
        if (bus_call_check_id (call, "user_ids", req->user_ids[i]))
            return ST_BAD_REQUEST;
        int mask = 0;
        if ((st = s_roles (call, chat.org_id, req->user_ids[i], &mask)))
            return st;
        if (!mask)
            return bus_call_fail (call, ST_BAD_REQUEST, "user_ids", "%s is not a member of this organisation",
                                  req->user_ids[i]);
        if ((mask & (ROLE_BIT (BUS__ROLE__ROLE_STUDENT) | ROLE_BIT (BUS__ROLE__ROLE_PARENT)))
            && !s_may_include_pupils (call, chat.org_id))
            return bus_call_fail (call, ST_FORBIDDEN, "user_ids",
                                  "only a verified teacher or an admin adds students or parents");
    }
    if (db_begin (e.db))
        return bus_call_db_error (call);
    int failed = 0;
    for (size_t i = 0; i < req->n_user_ids && !failed; i++) {
        membership_t m;
        if (chatstore_member_get (e.db, chat.id, req->user_ids[i], &m) < 0) {
            failed = 1;
            break;
        }
        if (m.role)
            continue;
        failed = chatstore_member_put (e.db, chat.id, req->user_ids[i], role, 0, e.now)
                 || s_member_event (&e, "chat.member_added", &chat, req->user_ids[i], role, "added");
    }
    if ((st = s_txn_end (call, failed)))
        return st;
    Chat__MembersRequest list = CHAT__MEMBERS_REQUEST__INIT;
    list.chat_id = chat.id;
    list.limit = UINT32_MAX;     /* the most a page holds */
    return s_members (call, &list, reply);
}

static status_t
s_member_update (bus_call_t *call, const void *request, void **reply)
{
    const Chat__MemberUpdateRequest *req = request;
    env_t e = s_env_call (call);
    chat_t chat;
    membership_t me, them;
    status_t st = s_access (call, req->chat_id, &chat, &me);
    if (st != ST_OK)
        return st;
    if (bus_call_check_id (call, "user_id", req->user_id))
        return ST_BAD_REQUEST;
    if (chatstore_member_get (e.db, chat.id, req->user_id, &them) < 0)
        return bus_call_db_error (call);
    if (!them.role)
        return bus_call_fail (call, ST_NOT_FOUND, "user_id", "not a member of this chat");
    if (!s_moderates (&me) || (them.role == OWNER && me.role != OWNER))
        return bus_call_fail (call, ST_FORBIDDEN, NULL, "only the chat's owners and moderators change members");
    int role = them.role;
    int64_t muted = them.muted_until;
    if (req->_role_case) {
        if (req->role == CHAT__MEMBER_ROLE__MEMBER_ROLE_UNSPECIFIED)
            return bus_call_fail (call, ST_BAD_REQUEST, "role", "role is owner, moderator, member or readonly");
        int want = (int) req->role;
        if ((want == OWNER || want == MODERATOR || them.role == MODERATOR) && me.role != OWNER)
            return bus_call_fail (call, ST_FORBIDDEN, "role", "only an owner names owners and moderators");
        if (want != OWNER && (st = s_keeps_an_owner (call, &chat, &them)))
            return st;
        /*  Other roles set by hand stay through roster changes (s_sync_chat);
            a curator's ownership of the group's chats is the roster's. */
        if (want != OWNER && them.automatic && them.roster_role == OWNER) {
            bus_call_set_code (call, "roster_chat");
            return bus_call_fail (call, ST_CONFLICT, "role",
                                  "the group's curator owns this chat by the roster");
        }
        role = req->role;
    }
    if (req->_muted_until_case) {
        if (them.role == OWNER)
            return bus_call_fail (call, ST_FORBIDDEN, "muted_until", "an owner cannot be muted");
        muted = req->muted_until;
    }
    if (chatstore_member_set (e.db, chat.id, req->user_id, role, muted) < 0
        || (role != them.role && s_member_event (&e, "chat.member_added", &chat, req->user_id, role, "role")))
        return bus_call_db_error (call);
    *reply = s_member_message (call, req->user_id, role, muted);
    return ST_OK;
}

static status_t
s_member_remove (bus_call_t *call, const void *request, void **reply)
{
    (void) reply;
    const Chat__MemberRemoveRequest *req = request;
    env_t e = s_env_call (call);
    chat_t chat;
    membership_t me, them;
    status_t st = s_access (call, req->chat_id, &chat, &me);
    if (st != ST_OK)
        return st;
    if (bus_call_check_id (call, "user_id", req->user_id))
        return ST_BAD_REQUEST;
    int self = strcmp (req->user_id, bus_call_user (call)) == 0;
    if (chatstore_member_get (e.db, chat.id, req->user_id, &them) < 0)
        return bus_call_db_error (call);
    if (!them.role)
        return bus_call_fail (call, ST_NOT_FOUND, "user_id", "not a member of this chat");
    if (!self && (!s_moderates (&me) || them.role == OWNER))
        return bus_call_fail (call, ST_FORBIDDEN, NULL, "only owners and moderators remove members");
    if (them.automatic) {
        bus_call_set_code (call, "roster_chat");
        return bus_call_fail (call, ST_CONFLICT, "user_id",
                              "membership of this chat follows the organisation's roster");
    }
    if ((st = s_keeps_an_owner (call, &chat, &them)))
        return st;
    if (chatstore_member_delete (e.db, chat.id, req->user_id) < 0
        || s_member_event (&e, "chat.member_removed", &chat, req->user_id, them.role, self ? "left" : "removed"))
        return bus_call_db_error (call);
    return ST_OK;
}

static status_t
s_member_join (bus_call_t *call, const void *request, void **reply)
{
    (void) reply;
    const Chat__MemberJoinRequest *req = request;
    env_t e = s_env_call (call);
    if (bus_call_check_id (call, "chat_id", req->chat_id) || bus_call_check_id (call, "user_id", req->user_id))
        return ST_BAD_REQUEST;
    chat_t chat;
    int found = chatstore_chat_get (e.db, req->chat_id, &chat);
    if (found < 0)
        return bus_call_db_error (call);
    if (!found)
        return bus_call_fail (call, ST_NOT_FOUND, "chat_id", "no such chat");
    if (chat.archived) {
        bus_call_set_code (call, "chat_archived");
        return bus_call_fail (call, ST_CONFLICT, "chat_id", "the chat is archived");
    }
    membership_t m;
    if (chatstore_member_get (e.db, chat.id, req->user_id, &m) < 0)
        return bus_call_db_error (call);
    if (m.role)
        return ST_OK;
    int role = chat.kind == CHAT__CHAT_KIND__CHAT_KIND_CHANNEL ? READONLY : MEMBER;
    if (chatstore_member_put (e.db, chat.id, req->user_id, role, 0, e.now)
        || s_member_event (&e, "chat.member_added", &chat, req->user_id, role, "invitation"))
        return bus_call_db_error (call);
    return ST_OK;
}

static status_t
s_audience (bus_call_t *call, const void *request, void **reply)
{
    const Chat__AudienceRequest *req = request;
    chat_t chat;
    membership_t m;
    status_t st = s_access (call, req->chat_id, &chat, &m);
    if (st != ST_OK)
        return st;
    Chat__AudienceReply *out = arena_msg (bus_call_arena (call), &chat__audience_reply__descriptor);
    if (chatstore_members (bus_call_db (call), chat.id, NULL, 0, bus_call_arena (call), &out->user_ids,
                           NULL, NULL, NULL, &out->n_user_ids))
        return bus_call_db_error (call);
    *reply = out;
    return ST_OK;
}

/* --- messages --- */

static status_t
s_history (bus_call_t *call, const void *request, void **reply)
{
    const Chat__HistoryRequest *req = request;
    chat_t chat;
    membership_t m;
    status_t st = s_access (call, req->chat_id, &chat, &m);
    if (st != ST_OK)
        return st;
    if (req->_before_case && req->_after_case)
        return bus_call_fail (call, ST_BAD_REQUEST, "after", "give before or after, not both");
    uint32_t limit = bus_page_limit (req->limit);
    Chat__MessageList *out = arena_msg (bus_call_arena (call), &chat__message_list__descriptor);
    int more = 0;
    /*  after=0 is a real position (before the first message), so whether
        `after` was given decides the direction, not its value. */
    if (chatstore_history (bus_call_db (call), chat.id, req->_before_case ? req->before : 0,
                           req->_after_case ? &req->after : NULL, limit, bus_call_arena (call),
                           &out->items, &out->n_items, &more))
        return bus_call_db_error (call);
    s_fill_message_names (call, out->items, out->n_items);
    if (more && out->n_items) {
        out->_next_case = CHAT__MESSAGE_LIST___NEXT_NEXT;
        /*  The seq to pass next: before the oldest, or after the newest. */
        uint64_t next = req->_after_case ? out->items[out->n_items - 1]->seq : out->items[0]->seq;
        out->next = arena_printf (bus_call_arena (call), "%llu", (unsigned long long) next);
    }
    *reply = out;
    return ST_OK;
}

static status_t
s_may_post (bus_call_t *call, const chat_t *chat, const membership_t *m)
{
    if (chat->archived) {
        bus_call_set_code (call, "chat_archived");
        return bus_call_fail (call, ST_CONFLICT, NULL, "the chat is archived");
    }
    int moderator = s_moderates (m);
    if (m->role == READONLY || (!moderator && (chat->kind == CHAT__CHAT_KIND__CHAT_KIND_CHANNEL
                                               || chat->who_can_post == CHAT__WHO_CAN_POST__WHO_CAN_POST_MODERATORS)))
        return bus_call_fail (call, ST_FORBIDDEN, NULL, "only the chat's moderators post here");
    if (m->muted_until > bus_call_now (call)) {
        bus_call_set_code (call, "muted");
        return bus_call_fail (call, ST_FORBIDDEN, NULL, "you are muted in this chat for now");
    }
    return ST_OK;
}

static int
s_message_event (env_t *e, const char *type, const chat_t *chat, Chat__Message *msg,
                 const char *previous)
{
    Chat__MessageEvent ev = CHAT__MESSAGE_EVENT__INIT;
    ev.message = msg;
    ev.previous_text = (char *) (previous ? previous : "");
    if (s_recipients (e, chat->id, &ev.recipients, &ev.n_recipients))
        return -1;
    return s_emit (e, type, chat->org_id, &ev.base);
}

static status_t
s_post (bus_call_t *call, const void *request, void **reply)
{
    const Chat__PostRequest *req = request;
    env_t e = s_env_call (call);
    const char *me = bus_call_user (call);
    chat_t chat;
    membership_t m;
    status_t st = s_access (call, req->chat_id, &chat, &m);
    if (st != ST_OK)
        return st;
    if ((st = s_may_post (call, &chat, &m)))
        return st;
    if (req->n_attachments)
        return bus_call_fail (call, ST_BAD_REQUEST, "attachments", "no such file");
    char *text = arena_alloc (e.arena, TEXT_MAX * 4 + 1);
    const char *problem = text_check_multiline (req->text ? req->text : "", 1, TEXT_MAX, text, TEXT_MAX * 4 + 1);
    if (problem)
        return bus_call_fail (call, ST_BAD_REQUEST, "text", "text %s (1 to 4096 characters)", problem);
    if (req->client_id && strlen (req->client_id) > 64)
        return bus_call_fail (call, ST_BAD_REQUEST, "client_id", "client_id is at most 64 characters");
    if (req->client_id && *req->client_id) {
        /*  A retried post: the message it made the first time. */
        Chat__Message *done = NULL;
        int found = chatstore_message_by_client (e.db, chat.id, me, req->client_id, e.arena, &done);
        if (found < 0)
            return bus_call_db_error (call);
        if (found) {
            s_fill_message_names (call, &done, 1);
            *reply = done;
            return ST_OK;
        }
    }
    if (req->_reply_to_case && req->reply_to && *req->reply_to) {
        Chat__Message *orig = NULL;
        if (bus_call_check_id (call, "reply_to", req->reply_to))
            return ST_BAD_REQUEST;
        int found = chatstore_message_get (e.db, chat.id, req->reply_to, e.arena, &orig, NULL);
        if (found < 0)
            return bus_call_db_error (call);
        if (!found)
            return bus_call_fail (call, ST_BAD_REQUEST, "reply_to", "reply_to must be a message of this chat");
    }
    /*  The chat was read in this write transaction, so its last_seq is
        current: the next number is taken without reading it again. */
    uint64_t seq = chat.last_seq + 1;
    const char *reply_to = req->_reply_to_case && req->reply_to && *req->reply_to ? req->reply_to : NULL;
    char *id = arena_alloc (e.arena, ULID_LEN + 1);
    ulid_make (id);
    if (chatstore_chat_take_seq (e.db, chat.id, chat.last_seq) != 1
        || chatstore_message_insert (e.db, id, chat.id, seq, me, text, reply_to, req->client_id, e.now))
        return bus_call_db_error (call);
    /*  Your own message is read. */
    chatstore_member_read (e.db, chat.id, me, seq);
    /*  The message as a read of its row would give it. */
    Chat__Message *msg = arena_msg (e.arena, &chat__message__descriptor);
    msg->id = id;
    msg->chat_id = arena_strdup (e.arena, chat.id);
    msg->seq = seq;
    msg->author = arena_msg (e.arena, &chat__author__descriptor);
    msg->author->id = arena_strdup (e.arena, me);
    if (chatstore_user_full_name (e.db, me, e.arena, &msg->author->full_name) < 0)
        return bus_call_db_error (call);
    msg->text = text;
    if (reply_to) {
        msg->_reply_to_case = CHAT__MESSAGE___REPLY_TO_REPLY_TO;
        msg->reply_to = arena_strdup (e.arena, reply_to);
    }
    msg->created_at = e.now;
    msg->attachments = arena_alloc (e.arena, sizeof (Chat__Attachment *));
    s_fill_message_names (call, &msg, 1);
    if (s_message_event (&e, "chat.message.posted", &chat, msg, NULL))
        return bus_call_db_error (call);
    *reply = msg;
    return ST_OK;
}

static status_t
s_edit (bus_call_t *call, const void *request, void **reply)
{
    const Chat__EditRequest *req = request;
    env_t e = s_env_call (call);
    chat_t chat;
    membership_t m;
    status_t st = s_access (call, req->chat_id, &chat, &m);
    if (st != ST_OK)
        return st;
    if (bus_call_check_id (call, "id", req->id))
        return ST_BAD_REQUEST;
    Chat__Message *msg = NULL;
    message_head_t head;
    int found = chatstore_message_get (e.db, chat.id, req->id, e.arena, &msg, &head);
    if (found < 0)
        return bus_call_db_error (call);
    if (!found || head.deleted)
        return bus_call_fail (call, ST_NOT_FOUND, "id", "no such message");
    if (strcmp (head.author_id, bus_call_user (call)) != 0)
        return bus_call_fail (call, ST_FORBIDDEN, NULL, "only its author edits a message");
    if (chat.archived) {
        bus_call_set_code (call, "chat_archived");
        return bus_call_fail (call, ST_CONFLICT, NULL, "the chat is archived");
    }
    char *text = arena_alloc (e.arena, TEXT_MAX * 4 + 1);
    const char *problem = text_check_multiline (req->text ? req->text : "", 1, TEXT_MAX, text, TEXT_MAX * 4 + 1);
    if (problem)
        return bus_call_fail (call, ST_BAD_REQUEST, "text", "text %s (1 to 4096 characters)", problem);
    char *previous = msg->text;
    if (chatstore_message_edit (e.db, msg->id, previous, text, bus_call_user (call), e.now)
        || chatstore_message_get (e.db, chat.id, req->id, e.arena, &msg, NULL) != 1)
        return bus_call_db_error (call);
    s_fill_message_names (call, &msg, 1);
    if (s_message_event (&e, "chat.message.edited", &chat, msg, previous))
        return bus_call_db_error (call);
    *reply = msg;
    return ST_OK;
}

static status_t
s_delete (bus_call_t *call, const void *request, void **reply)
{
    (void) reply;
    const Chat__MessageIdRequest *req = request;
    env_t e = s_env_call (call);
    chat_t chat;
    membership_t m;
    status_t st = s_find_chat (call, req->chat_id, 1, &chat, &m);
    if (st != ST_OK)
        return st;
    if (bus_call_check_id (call, "id", req->id))
        return ST_BAD_REQUEST;
    Chat__Message *msg = NULL;
    message_head_t head;
    int found = chatstore_message_get (e.db, chat.id, req->id, e.arena, &msg, &head);
    if (found < 0)
        return bus_call_db_error (call);
    if (!found || head.deleted)
        return bus_call_fail (call, ST_NOT_FOUND, "id", "no such message");
    /*  An org admin may delete in any chat of the org (moderation), member
        or not; reading stays for members. */
    int allowed = strcmp (head.author_id, bus_call_user (call)) == 0 || s_moderates (&m)
                  || bus_caller_has_role (bus_call_caller (call), chat.org_id, BUS__ROLE__ROLE_ADMIN);
    if (!allowed)
        return bus_call_fail (call, ST_FORBIDDEN, NULL,
                              "only its author, the chat's moderators and the org's admins delete a message");
    if (chatstore_message_delete (e.db, msg->id, bus_call_user (call), e.now)
        || chatstore_message_get (e.db, chat.id, req->id, e.arena, &msg, NULL) != 1
        || s_message_event (&e, "chat.message.deleted", &chat, msg, NULL))
        return bus_call_db_error (call);
    return ST_OK;
}

static status_t
s_read (bus_call_t *call, const void *request, void **reply)
{
    (void) reply;
    const Chat__ReadRequest *req = request;
    env_t e = s_env_call (call);
    chat_t chat;
    membership_t m;
    status_t st = s_access (call, req->chat_id, &chat, &m);
    if (st != ST_OK)
        return st;
    if (!req->_seq_case)
        return bus_call_fail (call, ST_BAD_REQUEST, "seq", "seq (the last message read) is required");
    if (req->seq > chat.last_seq)
        return bus_call_fail (call, ST_BAD_REQUEST, "seq", "seq is beyond the chat's last message (%llu)",
                              (unsigned long long) chat.last_seq);
    if (chatstore_member_read (e.db, chat.id, bus_call_user (call), req->seq) < 0)
        return bus_call_db_error (call);
    Chat__ReadEvent ev = CHAT__READ_EVENT__INIT;
    ev.chat_id = chat.id;
    ev.user_id = (char *) bus_call_user (call);
    ev.seq = req->seq > m.read_seq ? req->seq : m.read_seq;
    if (s_emit (&e, "chat.read", chat.org_id, &ev.base))
        return bus_call_db_error (call);
    return ST_OK;
}

static status_t
s_search (bus_call_t *call, const void *request, void **reply)
{
    const Chat__SearchRequest *req = request;
    arena_t *arena = bus_call_arena (call);
    if (!req->q || !text_utf8_valid (req->q, strlen (req->q)))
        return bus_call_fail (call, ST_BAD_REQUEST, "q", "q must be UTF-8 text");
    if (!*req->q || text_utf8_length (req->q) > 512)
        return bus_call_fail (call, ST_BAD_REQUEST, "q", "q is 1 to 512 characters");
    char *match = chat_fts_query (req->q);
    if (!match)
        return bus_call_fail (call, ST_BAD_REQUEST, "q", "q has no word to search for");
    const char *chat_id = NULL;
    if (req->_chat_id_case && req->chat_id && *req->chat_id) {
        chat_t chat;
        membership_t m;
        status_t st = s_access (call, req->chat_id, &chat, &m);
        if (st != ST_OK) {
            free (match);
            return st;
        }
        chat_id = req->chat_id;
    }
    /*  Only chats of orgs the caller is in now. */
    const Bus__Caller *caller = bus_call_caller (call);
    char **orgs = arena_alloc (arena, (caller->n_orgs + 1) * sizeof (char *));
    for (size_t i = 0; i < caller->n_orgs; i++)
        orgs[i] = caller->orgs[i]->org_id;
    uint32_t limit = bus_page_limit (req->limit);
    Chat__MessageList *out = arena_msg (arena, &chat__message_list__descriptor);
    int more = 0;
    int rc = chatstore_search (bus_call_db (call), bus_call_user (call), match, chat_id, orgs,
                               caller->n_orgs, req->cursor, limit, arena, &out->items, &out->n_items,
                               &more);
    free (match);
    if (rc)
        return bus_call_db_error (call);
    s_fill_message_names (call, out->items, out->n_items);
    if (more && out->n_items) {
        out->_next_case = CHAT__MESSAGE_LIST___NEXT_NEXT;
        out->next = out->items[out->n_items - 1]->id;
    }
    *reply = out;
    return ST_OK;
}

/* --- the service --- */

static int
s_init (const config_t *cfg, void **context)
{
    (void) cfg;
    *context = NULL;
    /*  Every connection (worker, consumer) needs the search tokenizer. */
    db_set_open_hook (chat_fts_register);
    return 0;
}

static bus_method_t s_methods[] = {
    {"chat.my_chats", s_my_chats, BUS_AUTH},
    {"chat.create", s_create, BUS_ORG_MEMBER | BUS_WRITE | BUS_NOTXN},
    {"chat.direct", s_direct, BUS_ORG_MEMBER | BUS_WRITE | BUS_NOTXN},
    {"chat.get", s_get, BUS_AUTH},
    {"chat.get_internal", s_get_internal, 0},
    {"chat.update", s_update, BUS_AUTH | BUS_WRITE},
    {"chat.members", s_members, BUS_AUTH},
    {"chat.members_add", s_members_add, BUS_AUTH | BUS_WRITE | BUS_NOTXN},
    {"chat.member_update", s_member_update, BUS_AUTH | BUS_WRITE},
    {"chat.member_remove", s_member_remove, BUS_AUTH | BUS_WRITE},
    {"chat.member_join", s_member_join, BUS_WRITE},
    {"chat.history", s_history, BUS_AUTH},
    {"chat.post", s_post, BUS_AUTH | BUS_WRITE},
    {"chat.edit", s_edit, BUS_AUTH | BUS_WRITE},
    {"chat.delete", s_delete, BUS_AUTH | BUS_WRITE},
    {"chat.read", s_read, BUS_AUTH | BUS_WRITE},
    {"chat.search", s_search, BUS_AUTH},
    {"chat.audience", s_audience, BUS_AUTH},
    {NULL, NULL, 0},
};

bus_service_t chat_service = {
    .name = "chat",
    .descriptor = &chat__chat_service__descriptor,
    .methods = s_methods,
    .migrations = chatstore_migrations,
    .events = s_events,
    .init = s_init,
};

/*  invite: invitation links in a role into a group or chat, their
    acceptance, annulling unclaimed links, and join requests (API.md
    "Invitations and join requests", policy 3А, 3В-3Е). Accepting grants the
    role in identity, joins the unit in org, links the guardian, joins the
    chat in chat; the use is reserved first, so two people racing for the
    last one cannot both get it, and a redemption left half done (a service
    was down) is finished by accepting again. All SQL is in invite_store.c. */
#include "invite.pb-c.h"
#include "bus_worker.h"
#include "chat.pb-c.h"
#include "clock.h"
#include "identity.pb-c.h"
#include "invite_store.h"
#include "log.h"
#include "org.pb-c.h"
#include "text.h"
#include "ulid.h"

#include <sodium.h>
#include <string.h>

#define ROLE_BIT(r) (1 << (r))
#define HOUR_MS (3600LL * 1000)
#define REDEMPTION_PENDING 1
#define REDEMPTION_DONE 2

typedef struct {
    char public_url[512];
    int guesses;                /* unknown tokens allowed per address ... */
    int64_t guess_window_ms;    /* ... in this window */
} invite_ctx_t;

/* --- helpers --- */

static status_t
s_roles_of (bus_call_t *call, const char *org_id, const char *user_id, int *mask, int *verified)
{
    Identity__RolesByUserRequest req = IDENTITY__ROLES_BY_USER_REQUEST__INIT;
    req.user_id = (char *) user_id;
    Identity__RoleList *list = NULL;
    status_t st = bus_call_forward (call, "identity", "identity.roles_by_user", &req.base,
                          &identity__role_list__descriptor, (void **) &list);
    if (st != ST_OK)
        return st;
    *mask = 0;
    if (verified)
        *verified = 0;
    for (size_t i = 0; i < list->n_items; i++)
        if (strcmp (list->items[i]->org_id, org_id) == 0) {
            *mask |= ROLE_BIT (list->items[i]->role);
            if (verified && list->items[i]->role == BUS__ROLE__ROLE_TEACHER)
                *verified = list->items[i]->verified;
        }
    return ST_OK;
}

static status_t
s_unit (bus_call_t *call, const char *org_id, const char *unit_id, Org__Unit **unit)
{
    Org__UnitIdRequest req = ORG__UNIT_ID_REQUEST__INIT;
    req.org_id = (char *) org_id;
    req.unit_id = (char *) unit_id;
    return bus_call_forward (call, "org", "org.unit_get", &req.base, &org__unit__descriptor, (void **) unit);
}

static status_t
s_chat (bus_call_t *call, const char *chat_id, Chat__Chat **chat)
{
    Chat__ChatIdRequest req = CHAT__CHAT_ID_REQUEST__INIT;
    req.chat_id = (char *) chat_id;
    return bus_call_forward (call, "chat", "chat.get_internal", &req.base, &chat__chat__descriptor,
                   (void **) chat);
}

static int
s_event (bus_call_t *call, const char *type, const inv_t *inv, const char *user_id)
{
    Invite__InvitationEvent ev = INVITE__INVITATION_EVENT__INIT;
    ev.invitation_id = (char *) inv->id;
    ev.role = (Bus__Role) inv->role;
    ev.unit_id = (char *) inv->unit_id;
    ev.chat_id = (char *) inv->chat_id;
    ev.student_id = (char *) inv->student_id;
    ev.user_id = (char *) (user_id ? user_id : "");
    ev.uses = inv->uses;
    ev.max_uses = inv->max_uses;
    return bus_call_event (call, type, inv->org_id, &ev.base);
}

static status_t
s_txn_begin (bus_call_t *call)
{
    return db_begin (bus_call_db (call)) ? bus_call_db_error (call) : ST_OK;
}

static status_t
s_txn_end (bus_call_t *call, status_t st)
{
    db_t *db = bus_call_db (call);
    if (st == ST_OK ? db_commit (db) : db_rollback (db)) {
        if (db_txn_depth (db))
            db_rollback (db);
        return st == ST_OK ? bus_call_db_error (call) : st;
    }
    return st;
}

/* --- creating --- */

/*  Who may invite (policy 3А, 3В): an admin, any role anywhere in the org;
    a verified teacher, students and parents into a group they curate or a
    chat they own or moderate. */
static status_t
s_may_invite (bus_call_t *call, const Invite__CreateRequest *req, Org__Unit *unit, Chat__Chat *chat)
{
    const Bus__Caller *caller = bus_call_caller (call);
    if (bus_caller_has_role (caller, req->org_id, BUS__ROLE__ROLE_ADMIN))
        return ST_OK;
    const Bus__Membership *m = bus_caller_membership (caller, req->org_id);
    int teacher = bus_caller_has_role (caller, req->org_id, BUS__ROLE__ROLE_TEACHER);
    if (!teacher || !m->verified)
        return bus_call_fail (call, ST_FORBIDDEN, NULL,
                              "only admins and verified teachers may invite");
    if (req->role != BUS__ROLE__ROLE_STUDENT && req->role != BUS__ROLE__ROLE_PARENT)
        return bus_call_fail (call, ST_FORBIDDEN, "role", "teachers invite students and parents");
    /*  Every place named must be theirs, and at least one is named. */
    int unit_ok = !unit || (unit->_curator_id_case && strcmp (unit->curator_id, caller->user_id) == 0);
    int chat_ok = !chat || chat->role == CHAT__MEMBER_ROLE__MEMBER_ROLE_OWNER
                  || chat->role == CHAT__MEMBER_ROLE__MEMBER_ROLE_MODERATOR;
    if ((unit || chat) && unit_ok && chat_ok)
        return ST_OK;
    return bus_call_fail (call, ST_FORBIDDEN, !unit_ok || !chat ? "unit_id" : "chat_id",
                          "teachers invite into a group they curate or a chat they run");
}

static status_t
s_create (bus_call_t *call, const void *request, void **reply)
{
    const Invite__CreateRequest *req = request;
    invite_ctx_t *ctx = bus_call_context (call);
    arena_t *arena = bus_call_arena (call);
    if (req->role < BUS__ROLE__ROLE_ADMIN || req->role > BUS__ROLE__ROLE_PARENT)
        return bus_call_fail (call, ST_BAD_REQUEST, "role",
                              "role is admin, administration, teacher, student or parent");
    inv_t inv;
    memset (&inv, 0, sizeof inv);
    Org__Unit *unit = NULL;
    Chat__Chat *chat = NULL;
    status_t st;
    if (req->_unit_id_case && req->unit_id && *req->unit_id) {
        if ((st = bus_call_check_id (call, "unit_id", req->unit_id)) || (st = s_unit (call, req->org_id, req->unit_id, &unit)))
            return st;
        if (unit->archived)
            return bus_call_fail (call, ST_CONFLICT, "unit_id", "the unit is archived");
        int fits = (req->role == BUS__ROLE__ROLE_STUDENT && unit->kind == BUS__UNIT_KIND__UNIT_KIND_GROUP)
                   || (req->role == BUS__ROLE__ROLE_TEACHER && unit->kind == BUS__UNIT_KIND__UNIT_KIND_STAFF)
                   || (req->role == BUS__ROLE__ROLE_PARENT && unit->kind == BUS__UNIT_KIND__UNIT_KIND_GROUP);
        if (!fits)
            return bus_call_fail (call, ST_BAD_REQUEST, "unit_id",
                                  "students and parents are invited into a group, teachers into the staff group");
        snprintf (inv.unit_id, sizeof inv.unit_id, "%s", unit->id);
    }
    if (req->_chat_id_case && req->chat_id && *req->chat_id) {
        if ((st = bus_call_check_id (call, "chat_id", req->chat_id)) || (st = s_chat (call, req->chat_id, &chat)))
            return st;
        if (strcmp (chat->org_id, req->org_id) != 0)
            return bus_call_fail (call, ST_NOT_FOUND, "chat_id", "no such chat");
        if (chat->archived)
            return bus_call_fail (call, ST_CONFLICT, "chat_id", "the chat is archived");
        if (chat->kind == CHAT__CHAT_KIND__CHAT_KIND_DIRECT)
            return bus_call_fail (call, ST_BAD_REQUEST, "chat_id",
                                  "a direct chat is between two people: nobody is invited into it");
        snprintf (inv.chat_id, sizeof inv.chat_id, "%s", chat->id);
    }
    if ((st = s_may_invite (call, req, unit, chat)))
        return st;
    if (req->_student_id_case && req->student_id && *req->student_id) {
        if (req->role != BUS__ROLE__ROLE_PARENT)
            return bus_call_fail (call, ST_BAD_REQUEST, "student_id",
                                  "only an invitation for a parent names a student");
        if ((st = bus_call_check_id (call, "student_id", req->student_id)))
            return st;
        int mask = 0;
        if ((st = s_roles_of (call, req->org_id, req->student_id, &mask, NULL)))
            return st;
        if (!(mask & ROLE_BIT (BUS__ROLE__ROLE_STUDENT)))
            return bus_call_fail (call, ST_BAD_REQUEST, "student_id",
                                  "student_id must be a student of this organisation");
        /*  A curator names students of their own group only (as when they
            link a guardian directly). */
        if (!bus_caller_has_role (bus_call_caller (call), req->org_id, BUS__ROLE__ROLE_ADMIN)) {
            Org__SummaryRequest sreq = ORG__SUMMARY_REQUEST__INIT;
            char *orgs[1] = {(char *) req->org_id};
            sreq.user_id = req->student_id;
            sreq.org_ids = orgs;
            sreq.n_org_ids = 1;
            Org__SummaryReply *summary = NULL;
            if ((st = bus_call_forward (call, "org", "org.summary", &sreq.base, &org__summary_reply__descriptor,
                              (void **) &summary)))
                return st;
            int in_group = 0;
            for (size_t i = 0; summary->n_items && i < summary->items[0]->n_units; i++)
                in_group |= unit && strcmp (summary->items[0]->units[i]->id, unit->id) == 0;
            if (!in_group)
                return bus_call_fail (call, ST_FORBIDDEN, "student_id",
                                      "a curator names students of their own group");
        }
        snprintf (inv.student_id, sizeof inv.student_id, "%s", req->student_id);
    }
    uint32_t hours = req->_expires_in_hours_case ? req->expires_in_hours : 168;
    if (hours < 1 || hours > 720)
        return bus_call_fail (call, ST_BAD_REQUEST, "expires_in_hours", "expires_in_hours is 1..720");
    uint32_t max_uses = req->_max_uses_case ? req->max_uses : 1;
    if (max_uses < 1 || max_uses > 500)
        return bus_call_fail (call, ST_BAD_REQUEST, "max_uses", "max_uses is 1..500");
    const char *problem = text_check_line (req->note ? req->note : "", 0, 500, inv.note, sizeof inv.note);
    if (problem)
        return bus_call_fail (call, ST_BAD_REQUEST, "note", "note %s (at most 500 characters)", problem);
    /*  256 random bits; only their hash is kept. */
    unsigned char raw[32], hash[32];
    randombytes_buf (raw, sizeof raw);
    char token[sodium_base64_ENCODED_LEN (32, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    sodium_bin2base64 (token, sizeof token, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    crypto_hash_sha256 (hash, (const unsigned char *) token, strlen (token));
    ulid_make (inv.id);
    snprintf (inv.org_id, sizeof inv.org_id, "%s", req->org_id);
    inv.role = req->role;
    snprintf (inv.creator_id, sizeof inv.creator_id, "%s", bus_call_user (call));
    inv.created_at = bus_call_now (call);
    inv.expires_at = inv.created_at + hours * HOUR_MS;
    inv.max_uses = max_uses;
    if ((st = s_txn_begin (call)))
        return st;
    int bad = invstore_insert (bus_call_db (call), &inv, hash) || s_event (call, "invite.created", &inv, NULL);
    if ((st = s_txn_end (call, bad ? bus_call_db_error (call) : ST_OK)))
        return st;
    Invite__Invitation *out = invstore_message (&inv, bus_call_now (call), arena);
    out->_token_case = INVITE__INVITATION___TOKEN_TOKEN;
    out->token = arena_strdup (arena, token);
    out->_url_case = INVITE__INVITATION___URL_URL;
    out->url = arena_printf (arena, "%s/join/%s", ctx->public_url, token);
    sodium_memzero (token, sizeof token);
    *reply = out;
    return ST_OK;
}

static int
s_is_admin (bus_call_t *call, const char *org_id)
{
    return bus_caller_has_role (bus_call_caller (call), org_id, BUS__ROLE__ROLE_ADMIN);
}

static status_t
s_list (bus_call_t *call, const void *request, void **reply)
{
    const Invite__ListRequest *req = request;
    const char *creator = NULL;
    if (!s_is_admin (call, req->org_id)) {
        if (!bus_caller_has_role (bus_call_caller (call), req->org_id, BUS__ROLE__ROLE_TEACHER))
            return bus_call_fail (call, ST_FORBIDDEN, NULL,
                                  "admins see every invitation, teachers their own");
        creator = bus_call_user (call);
    }
    Invite__InvitationList *out = arena_msg (bus_call_arena (call), &invite__invitation_list__descriptor);
    if (invstore_list (bus_call_db (call), req->org_id, creator, req->status, bus_call_now (call),
                       req->cursor, bus_page_limit (req->limit), bus_call_arena (call), out))
        return bus_call_db_error (call);
    *reply = out;
    return ST_OK;
}

static status_t
s_revoke (bus_call_t *call, const void *request, void **reply)
{
    (void) reply;
    const Invite__IdRequest *req = request;
    if (bus_call_check_id (call, "id", req->id))
        return ST_BAD_REQUEST;
    inv_t inv;
    int found = invstore_get (bus_call_db (call), req->org_id, req->id, &inv);
    if (found < 0)
        return bus_call_db_error (call);
    if (!found)
        return bus_call_fail (call, ST_NOT_FOUND, "id", "no such invitation");
    if (!s_is_admin (call, req->org_id) && strcmp (inv.creator_id, bus_call_user (call)) != 0)
        return bus_call_fail (call, ST_FORBIDDEN, NULL, "only admins and its creator revoke an invitation");
    int changed = invstore_revoke (bus_call_db (call), req->org_id, req->id, bus_call_now (call));
    if (changed < 0)
        return bus_call_db_error (call);
    if (changed && s_event (call, "invite.revoked", &inv, NULL))
        return bus_call_db_error (call);
    return ST_OK;
}

/*  Policy 3А: "аннулирует невостребованные ссылки-приглашения". */
static status_t
s_revoke_unused (bus_call_t *call, const void *request, void **reply)
{
    const Invite__RevokeUnusedRequest *req = request;
    int64_t now = bus_call_now (call);
    int64_t before = now;
    if (req->_older_than_hours_case) {
        if (req->older_than_hours > 24 * 365)
            return bus_call_fail (call, ST_BAD_REQUEST, "older_than_hours", "older_than_hours is 0..8760");
        before = now - (int64_t) req->older_than_hours * HOUR_MS;
    }
    char **ids;
    size_t n = 0;
    if (invstore_revoke_unused (bus_call_db (call), req->org_id, before, now, bus_call_arena (call), &ids, &n))
        return bus_call_db_error (call);
    for (size_t i = 0; i < n; i++) {
        inv_t inv;
        if (invstore_get (bus_call_db (call), req->org_id, ids[i], &inv) == 1
            && s_event (call, "invite.revoked", &inv, NULL))
            return bus_call_db_error (call);
    }
    Invite__RevokeUnusedReply *out = arena_msg (bus_call_arena (call), &invite__revoke_unused_reply__descriptor);
    out->revoked = (uint32_t) n;
    *reply = out;
    return ST_OK;
}

/* --- the link --- */

/*  Guessing protection: past the allowance of unknown tokens per address,
    every lookup from it is refused until the window ends. */
static status_t
s_guard (bus_call_t *call)
{
    invite_ctx_t *ctx = bus_call_context (call);
    const Bus__Caller *caller = bus_call_caller (call);
    if (!caller || !caller->ip || !*caller->ip)
        return ST_OK;
    int count = 0;
    int64_t until = 0;
    if (invstore_guesses (bus_call_db (call), caller->ip, bus_call_now (call), ctx->guess_window_ms,
                          &count, &until))
        return bus_call_db_error (call);
    if (count >= ctx->guesses) {
        bus_call_set_retry_after (call, (int) ((until - bus_call_now (call)) / 1000 + 1));
        return bus_call_fail (call, ST_RATE_LIMITED, NULL,
                              "too many unknown invitation links from this address, try later");
    }
    return ST_OK;
}

static status_t
s_lookup (bus_call_t *call, const char *token, inv_t *inv)
{
    status_t st = s_guard (call);
    if (st != ST_OK)
        return st;
    if (!token || !*token || strlen (token) > 128)
        return bus_call_fail (call, ST_NOT_FOUND, "token", "no such invitation");
    unsigned char hash[32];
    crypto_hash_sha256 (hash, (const unsigned char *) token, strlen (token));
    int found = invstore_by_token (bus_call_db (call), hash, inv);
    if (found < 0)
        return bus_call_db_error (call);
    if (!found) {
        const Bus__Caller *caller = bus_call_caller (call);
        invite_ctx_t *ctx = bus_call_context (call);
        if (caller && caller->ip && *caller->ip)
            invstore_guess_bump (bus_call_db (call), caller->ip, bus_call_now (call), ctx->guess_window_ms);
        return bus_call_fail (call, ST_NOT_FOUND, "token", "no such invitation");
    }
    return ST_OK;
}

/*  What the link shows before anyone signs in: org, role, unit and chat
    names, status and expiry. No members, no phones. */
static status_t
s_preview (bus_call_t *call, const void *request, void **reply)
{
    const Invite__TokenRequest *req = request;
    arena_t *arena = bus_call_arena (call);
    inv_t inv;
    status_t st = s_lookup (call, req->token, &inv);
    if (st != ST_OK)
        return st;
    Invite__Preview *out = arena_msg (arena, &invite__preview__descriptor);
    out->org = arena_msg (arena, &invite__ref__descriptor);
    out->org->id = arena_strdup (arena, inv.org_id);
    out->org->name = out->org->id;
    Org__SummaryRequest sreq = ORG__SUMMARY_REQUEST__INIT;
    char *ids[1] = {inv.org_id};
    sreq.org_ids = ids;
    sreq.n_org_ids = 1;
    sreq.user_id = "";
    Org__SummaryReply *summary = NULL;
    if (bus_call_forward (call, "org", "org.summary", &sreq.base, &org__summary_reply__descriptor,
                (void **) &summary) == ST_OK && summary->n_items)
        out->org->name = summary->items[0]->name;
    if (inv.unit_id[0]) {
        Org__Unit *unit = NULL;
        out->unit = arena_msg (arena, &invite__ref__descriptor);
        out->unit->id = arena_strdup (arena, inv.unit_id);
        out->unit->name = "";
        if (s_unit (call, inv.org_id, inv.unit_id, &unit) == ST_OK)
            out->unit->name = unit->name;
    }
    if (inv.chat_id[0]) {
        Chat__Chat *chat = NULL;
        out->chat = arena_msg (arena, &invite__chat_ref__descriptor);
        out->chat->id = arena_strdup (arena, inv.chat_id);
        out->chat->title = "";
        if (s_chat (call, inv.chat_id, &chat) == ST_OK)
            out->chat->title = chat->title;
    }
    out->role = (Bus__Role) inv.role;
    out->status = invstore_status (&inv, bus_call_now (call));
    out->expires_at = inv.expires_at;
    /*  The lookups above were courtesy: their failures are not the caller's. */
    bus_call_clear (call);
    *reply = out;
    return ST_OK;
}

/*  What org does when someone joins: a student joins their group and
    every teacher the staff group (org picks it when no unit is named); a
    parent is linked to the named student. With check_only, org only says
    whether it can be done (the parent's role is not needed yet). */
static status_t
s_org_steps (bus_call_t *call, const char *org_id, int role, const char *unit_id,
             const char *student_id, const char *user_id, int check_only)
{
    status_t st;
    if ((unit_id && *unit_id && role == BUS__ROLE__ROLE_STUDENT) || role == BUS__ROLE__ROLE_TEACHER) {
        Org__UnitJoinRequest join = ORG__UNIT_JOIN_REQUEST__INIT;
        join.org_id = (char *) org_id;
        join.unit_id = (char *) (unit_id ? unit_id : "");
        join.user_id = (char *) user_id;
        join.role = (Bus__Role) role;
        join.check_only = check_only;
        if ((st = bus_call_forward (call, "org", "org.unit_join", &join.base, NULL, NULL)))
            return st;
    }
    if (student_id && *student_id) {
        Org__GuardianAddRequest g = ORG__GUARDIAN_ADD_REQUEST__INIT;
        g.org_id = (char *) org_id;
        g.parent_id = (char *) user_id;
        g.student_id = (char *) student_id;
        g.check_only = check_only;
        if ((st = bus_call_forward (call, "org", "org.guardian_add", &g.base, NULL, NULL)))
            return st;
    }
    return ST_OK;
}

/*  Whether joining can be done at all, asked of each service without
    changing anything: what would refuse for good (an archived group or
    chat, a student already in another group, a named student who is no
    longer one) refuses before the role is granted, so a refused join
    leaves nothing behind. */
static status_t
s_join_check (bus_call_t *call, const char *org_id, int role, const char *unit_id,
              const char *student_id, const char *chat_id, const char *user_id)
{
    status_t st = s_org_steps (call, org_id, role, unit_id, student_id, user_id, 1);
    if (st != ST_OK)
        return st;
    if (chat_id && *chat_id) {
        Chat__Chat *chat = NULL;
        if ((st = s_chat (call, chat_id, &chat)))
            return st;
        if (chat->archived)
            return bus_call_fail (call, ST_CONFLICT, "chat_id", "the chat is archived");
        if (chat->kind == CHAT__CHAT_KIND__CHAT_KIND_DIRECT)
            return bus_call_fail (call, ST_BAD_REQUEST, "chat_id", "nobody joins a direct chat");
    }
    return ST_OK;
}

/*  The effects of joining: the role, the unit, the guardian link, the chat,
    after s_join_check said they can be had. Each is idempotent, so a retry
    after a partial failure (a service down midway) is safe. */
static status_t
s_join_effects (bus_call_t *call, const char *org_id, int role, const char *unit_id,
                const char *student_id, const char *chat_id, const char *user_id)
{
    status_t st = s_join_check (call, org_id, role, unit_id, student_id, chat_id, user_id);
    if (st != ST_OK)
        return st;
    Identity__RoleGrantRequest grant = IDENTITY__ROLE_GRANT_REQUEST__INIT;
    grant.org_id = (char *) org_id;
    grant.user_id = (char *) user_id;
    grant.role = (Bus__Role) role;
    st = bus_call_forward (call, "identity", "identity.role_grant", &grant.base,
                           &identity__org_role__descriptor, NULL);
    if (st == ST_OK)
        st = s_org_steps (call, org_id, role, unit_id, student_id, user_id, 0);
    if (st != ST_OK)
        return st;
    if (chat_id && *chat_id) {
        Chat__MemberJoinRequest j = CHAT__MEMBER_JOIN_REQUEST__INIT;
        j.chat_id = (char *) chat_id;
        j.user_id = (char *) user_id;
        if ((st = bus_call_forward (call, "chat", "chat.member_join", &j.base, NULL, NULL)))
            return st;
    }
    return ST_OK;
}

static status_t
s_gone (bus_call_t *call, Invite__InvitationStatus status)
{
    const char *code = status == INVITE__INVITATION_STATUS__INVITATION_STATUS_REVOKED ? "invitation_revoked"
                       : status == INVITE__INVITATION_STATUS__INVITATION_STATUS_EXPIRED
                           ? "invitation_expired"
                           : "invitation_used_up";
    bus_call_set_code (call, code);
    return bus_call_fail (call, ST_GONE, "token",
                          status == INVITE__INVITATION_STATUS__INVITATION_STATUS_REVOKED
                              ? "the invitation was revoked"
                          : status == INVITE__INVITATION_STATUS__INVITATION_STATUS_EXPIRED
                              ? "the invitation has expired"
                              : "the invitation has been used up");
}

static status_t
s_accept (bus_call_t *call, const void *request, void **reply)
{
    const Invite__TokenRequest *req = request;
    db_t *db = bus_call_db (call);
    arena_t *arena = bus_call_arena (call);
    const char *user = bus_call_user (call);
    inv_t inv;
    status_t st = s_lookup (call, req->token, &inv);
    if (st != ST_OK)
        return st;
    Invite__Accepted *out = arena_msg (arena, &invite__accepted__descriptor);
    out->org_id = arena_strdup (arena, inv.org_id);
    out->role = (Bus__Role) inv.role;
    if (inv.unit_id[0]) {
        out->_unit_id_case = INVITE__ACCEPTED___UNIT_ID_UNIT_ID;
        out->unit_id = arena_strdup (arena, inv.unit_id);
    }
    if (inv.chat_id[0]) {
        out->_chat_id_case = INVITE__ACCEPTED___CHAT_ID_CHAT_ID;
        out->chat_id = arena_strdup (arena, inv.chat_id);
    }
    int state = invstore_redemption (db, inv.id, user);
    if (state < 0)
        return bus_call_db_error (call);
    if (state == REDEMPTION_DONE) {
        *reply = out;       /* accepting again: the same answer, nothing done */
        return ST_OK;
    }
    if (state == 0) {
        Invite__InvitationStatus status = invstore_status (&inv, bus_call_now (call));
        if (status != INVITE__INVITATION_STATUS__INVITATION_STATUS_ACTIVE)
            return s_gone (call, status);
        /*  Reserve a use: the conditional update lets exactly one of two
            racing callers take the last one. */
        if ((st = s_txn_begin (call)))
            return st;
        int taken = invstore_take_use (db, inv.id, bus_call_now (call));
        if (taken > 0
            && invstore_redemption_set (db, inv.id, user, REDEMPTION_PENDING, bus_call_now (call)))
            taken = -1;
        st = s_txn_end (call, taken < 0 ? bus_call_db_error (call) : ST_OK);
        if (st != ST_OK)
            return st;
        if (!taken) {
            if (invstore_get (db, inv.org_id, inv.id, &inv) != 1)
                return bus_call_db_error (call);
            Invite__InvitationStatus now_status = invstore_status (&inv, bus_call_now (call));
            return s_gone (call, now_status == INVITE__INVITATION_STATUS__INVITATION_STATUS_ACTIVE
                                     ? INVITE__INVITATION_STATUS__INVITATION_STATUS_USED
                                     : now_status);
        }
        inv.uses++;
    }
    st = s_join_effects (call, inv.org_id, inv.role, inv.unit_id, inv.student_id, inv.chat_id, user);
    if (st == ST_UNAVAILABLE || st == ST_INTERNAL)
        return st;      /* the reservation stays: accepting again finishes it */
    status_t fx = st;
    if ((st = s_txn_begin (call)))
        return st;
    if (fx != ST_OK) {
        /*  It can never apply (the student is in another group, say): give
            the use back and say why. */
        int bad = invstore_release_use (db, inv.id) || invstore_redemption_delete (db, inv.id, user);
        s_txn_end (call, bad ? ST_UNAVAILABLE : ST_OK);
        return fx;
    }
    int bad = invstore_redemption_set (db, inv.id, user, REDEMPTION_DONE, bus_call_now (call))
              || s_event (call, "invite.accepted", &inv, user);
    if ((st = s_txn_end (call, bad ? bus_call_db_error (call) : ST_OK)))
        return st;
    *reply = out;
    return ST_OK;
}

/* --- join requests --- */

static Invite__JoinRequest *
s_join_message (bus_call_t *call, const join_t *j, Identity__User *user, int with_phone)
{
    arena_t *arena = bus_call_arena (call);
    Invite__JoinRequest *m = arena_msg (arena, &invite__join_request__descriptor);
    m->id = arena_strdup (arena, j->id);
    m->org_id = arena_strdup (arena, j->org_id);
    m->user = arena_msg (arena, &invite__join_user__descriptor);
    m->user->id = arena_strdup (arena, j->user_id);
    m->user->full_name = user ? user->full_name : "";
    if (with_phone && user) {
        m->user->_phone_case = INVITE__JOIN_USER___PHONE_PHONE;
        m->user->phone = user->phone;
    }
    m->role = (Bus__Role) j->role;
    if (j->unit_id[0]) {
        m->_unit_id_case = INVITE__JOIN_REQUEST___UNIT_ID_UNIT_ID;
        m->unit_id = arena_strdup (arena, j->unit_id);
    }
    m->message = arena_strdup (arena, j->message);
    m->status = (Invite__RequestStatus) j->status;
    if (j->status == INVITE__REQUEST_STATUS__REQUEST_STATUS_REJECTED) {
        m->_reason_case = INVITE__JOIN_REQUEST___REASON_REASON;
        m->reason = arena_strdup (arena, j->reason);
    }
    m->created_at = j->created_at;
    m->decided_at = j->decided_at;
    return m;
}

static status_t
s_users (bus_call_t *call, join_t *items, size_t n, Identity__UserList **out)
{
    Identity__UsersGetRequest req = IDENTITY__USERS_GET_REQUEST__INIT;
    req.ids = arena_alloc (bus_call_arena (call), (n ? n : 1) * sizeof (char *));
    for (size_t i = 0; i < n; i++)
        req.ids[req.n_ids++] = items[i].user_id;
    return bus_call_forward (call, "identity", "identity.users_get", &req.base,
                   &identity__user_list__descriptor, (void **) out);
}

static Identity__User *
s_user_in (Identity__UserList *list, const char *id)
{
    for (size_t i = 0; list && i < list->n_items; i++)
        if (strcmp (list->items[i]->id, id) == 0)
            return list->items[i];
    return NULL;
}

static status_t
s_join_create (bus_call_t *call, const void *request, void **reply)
{
    const Invite__JoinCreateRequest *req = request;
    if (bus_call_check_id (call, "org_id", req->org_id))
        return ST_BAD_REQUEST;
    if (req->role != BUS__ROLE__ROLE_STUDENT && req->role != BUS__ROLE__ROLE_TEACHER
        && req->role != BUS__ROLE__ROLE_PARENT)
        return bus_call_fail (call, ST_BAD_REQUEST, "role", "ask to join as a student, teacher or parent");
    join_t j;
    memset (&j, 0, sizeof j);
    /*  The org must exist; names are public (GET /v1/orgs?q= finds them). */
    Org__SummaryRequest sreq = ORG__SUMMARY_REQUEST__INIT;
    char *ids[1] = {(char *) req->org_id};
    sreq.org_ids = ids;
    sreq.n_org_ids = 1;
    sreq.user_id = "";
    Org__SummaryReply *summary = NULL;
    status_t st = bus_call_forward (call, "org", "org.summary", &sreq.base, &org__summary_reply__descriptor,
                          (void **) &summary);
    if (st != ST_OK)
        return st;
    if (!summary->n_items)
        return bus_call_fail (call, ST_NOT_FOUND, "org_id", "no such organisation");
    if (req->_unit_id_case && req->unit_id && *req->unit_id) {
        Org__Unit *unit = NULL;
        if ((st = bus_call_check_id (call, "unit_id", req->unit_id)) || (st = s_unit (call, req->org_id, req->unit_id, &unit)))
            return st;
        int fits = (req->role == BUS__ROLE__ROLE_STUDENT && unit->kind == BUS__UNIT_KIND__UNIT_KIND_GROUP)
                   || (req->role == BUS__ROLE__ROLE_TEACHER && unit->kind == BUS__UNIT_KIND__UNIT_KIND_STAFF);
        if (!fits || unit->archived)
            return bus_call_fail (call, ST_BAD_REQUEST, "unit_id",
                                  "students ask for a group, teachers for the staff group");
        snprintf (j.unit_id, sizeof j.unit_id, "%s", unit->id);
    }
    const char *problem = text_check_multiline (req->message ? req->message : "", 0, 1000, j.message,
                                                sizeof j.message);
    if (problem)
        return bus_call_fail (call, ST_BAD_REQUEST, "message", "message %s (at most 1000 characters)", problem);
    int mask = 0;
    if ((st = s_roles_of (call, req->org_id, bus_call_user (call), &mask, NULL)))
        return st;
    if (mask & ROLE_BIT (req->role)) {
        bus_call_set_code (call, "already_member");
        return bus_call_fail (call, ST_CONFLICT, "role", "you already hold this role here");
    }
    db_t *db = bus_call_db (call);
    if ((st = s_txn_begin (call)))
        return st;
    int dup = invstore_join_pending_exists (db, req->org_id, bus_call_user (call), req->role);
    if (dup) {
        s_txn_end (call, ST_CONFLICT);
        if (dup < 0)
            return bus_call_db_error (call);
        bus_call_set_code (call, "request_pending");
        return bus_call_fail (call, ST_CONFLICT, "role", "you already asked to join in this role");
    }
    ulid_make (j.id);
    snprintf (j.org_id, sizeof j.org_id, "%s", req->org_id);
    snprintf (j.user_id, sizeof j.user_id, "%s", bus_call_user (call));
    j.role = req->role;
    j.created_at = bus_call_now (call);
    Invite__JoinRequestEvent ev = INVITE__JOIN_REQUEST_EVENT__INIT;
    ev.request_id = j.id;
    ev.user_id = j.user_id;
    ev.role = (Bus__Role) j.role;
    ev.unit_id = j.unit_id;
    int bad = invstore_join_insert (db, &j)
              || bus_call_event (call, "invite.join_request.created", j.org_id, &ev.base);
    if ((st = s_txn_end (call, bad ? bus_call_db_error (call) : ST_OK)))
        return st;
    Invite__JoinCreated *out = arena_msg (bus_call_arena (call), &invite__join_created__descriptor);
    out->id = arena_strdup (bus_call_arena (call), j.id);
    out->status = INVITE__REQUEST_STATUS__REQUEST_STATUS_PENDING;
    *reply = out;
    return ST_OK;
}

static status_t
s_join_list_common (bus_call_t *call, const char *org_id, const char *user_id, int status,
                    const char *cursor, uint32_t limit, int with_phone, void **reply)
{
    join_t *items;
    size_t n = 0;
    int more = 0;
    limit = bus_page_limit (limit);
    if (invstore_join_list (bus_call_db (call), org_id, user_id, status, cursor, limit,
                            bus_call_arena (call), &items, &n, &more))
        return bus_call_db_error (call);
    Identity__UserList *users = NULL;
    status_t st = n ? s_users (call, items, n, &users) : ST_OK;
    if (st != ST_OK)
        return st;
    Invite__JoinRequestList *out = arena_msg (bus_call_arena (call), &invite__join_request_list__descriptor);
    out->items = arena_alloc (bus_call_arena (call), (n ? n : 1) * sizeof (Invite__JoinRequest *));
    for (size_t i = 0; i < n; i++)
        out->items[out->n_items++] = s_join_message (call, &items[i], s_user_in (users, items[i].user_id), with_phone);
    if (more) {
        out->_next_case = INVITE__JOIN_REQUEST_LIST___NEXT_NEXT;
        out->next = out->items[n - 1]->id;
    }
    *reply = out;
    return ST_OK;
}

static status_t
s_join_list (bus_call_t *call, const void *request, void **reply)
{
    const Invite__JoinListRequest *req = request;
    /*  No phones: the people asking are not members of the org yet
        (API.md: a phone is shown to admins of an org the user is in). */
    return s_join_list_common (call, req->org_id, NULL, req->status, req->cursor, req->limit, 0, reply);
}

static status_t
s_my_join_requests (bus_call_t *call, const void *request, void **reply)
{
    const Invite__MyJoinRequests *req = request;
    return s_join_list_common (call, NULL, bus_call_user (call), 0, req->cursor, req->limit, 1, reply);
}

static status_t
s_join_decide (bus_call_t *call, const Invite__JoinDecideRequest *req, int approve, void **reply)
{
    db_t *db = bus_call_db (call);
    if (bus_call_check_id (call, "id", req->id))
        return ST_BAD_REQUEST;
    join_t j;
    int found = invstore_join_get (db, req->org_id, req->id, &j);
    if (found < 0)
        return bus_call_db_error (call);
    if (!found)
        return bus_call_fail (call, ST_NOT_FOUND, "id", "no such join request");
    if (j.status != INVITE__REQUEST_STATUS__REQUEST_STATUS_PENDING) {
        bus_call_set_code (call, "request_decided");
        return bus_call_fail (call, ST_CONFLICT, "id", "the request was decided already");
    }
    char reason[4100] = "";
    if (!approve) {
        const char *problem = text_check_multiline (req->reason ? req->reason : "", 0, 1000, reason,
                                                    sizeof reason);
        if (problem)
            return bus_call_fail (call, ST_BAD_REQUEST, "reason", "reason %s (at most 1000 characters)", problem);
    }
    status_t st;
    if (approve && (st = s_join_effects (call, j.org_id, j.role, j.unit_id, NULL, NULL, j.user_id)))
        return st;
    int status = approve ? INVITE__REQUEST_STATUS__REQUEST_STATUS_APPROVED
                         : INVITE__REQUEST_STATUS__REQUEST_STATUS_REJECTED;
    if ((st = s_txn_begin (call)))
        return st;
    int changed = invstore_join_decide (db, j.id, status, approve ? NULL : reason, bus_call_user (call),
                                        bus_call_now (call));
    Invite__JoinRequestEvent ev = INVITE__JOIN_REQUEST_EVENT__INIT;
    ev.request_id = j.id;
    ev.user_id = j.user_id;
    ev.role = (Bus__Role) j.role;
    ev.unit_id = j.unit_id;
    ev.reason = reason;
    int bad = changed < 0
              || (changed > 0
                  && bus_call_event (call, approve ? "invite.join_request.approved"
                                                   : "invite.join_request.rejected",
                                     j.org_id, &ev.base));
    if ((st = s_txn_end (call, bad ? bus_call_db_error (call) : ST_OK)))
        return st;
    if (invstore_join_get (db, req->org_id, req->id, &j) != 1)
        return bus_call_db_error (call);
    join_t one[1] = {j};
    Identity__UserList *users = NULL;
    s_users (call, one, 1, &users);
    bus_call_clear (call);
    *reply = s_join_message (call, &j, s_user_in (users, j.user_id), 1);
    return ST_OK;
}

static status_t
s_join_approve (bus_call_t *call, const void *request, void **reply)
{
    return s_join_decide (call, request, 1, reply);
}

static status_t
s_join_reject (bus_call_t *call, const void *request, void **reply)
{
    return s_join_decide (call, request, 0, reply);
}

/* --- periodic: announce expiries --- */

static status_t
s_tick (bus_call_t *call)
{
    inv_t expired[100];
    int n = invstore_expired_unannounced (bus_call_db (call), bus_call_now (call), 100, expired);
    if (n < 0)
        return bus_call_db_error (call);
    for (int i = 0; i < n; i++)
        if (s_event (call, "invite.expired", &expired[i], NULL))
            return bus_call_db_error (call);
    return ST_OK;
}

/* --- the service --- */

static const config_opt_t s_options[] = {
    {"public_url", NULL, "the address users open links at (default: http://<PARTA_HTTP>)"},
    {"invite_guesses", "30/3600",
     "unknown invitation tokens allowed per address: N/seconds, then refused until the window ends"},
    {NULL, NULL, NULL},
};

static int
s_init (const config_t *cfg, void **context)
{
    invite_ctx_t *ctx = calloc (1, sizeof *ctx);
    if (!ctx)
        return -1;
    const char *url = config_str (cfg, "public_url");
    if (url && *url)
        snprintf (ctx->public_url, sizeof ctx->public_url, "%s", url);
    else
        snprintf (ctx->public_url, sizeof ctx->public_url, "http://%s", config_str (cfg, "http"));
    size_t len = strlen (ctx->public_url);
    while (len && ctx->public_url[len - 1] == '/')
        ctx->public_url[--len] = 0;
    int n = 0, secs = 0;
    const char *spec = config_str (cfg, "invite_guesses");
    if (!spec || sscanf (spec, "%d/%d", &n, &secs) != 2 || n < 1 || secs < 1) {
        log_error (NULL, "invite_guesses must be N/seconds, e.g. 30/3600");
        free (ctx);
        return -1;
    }
    ctx->guesses = n;
    ctx->guess_window_ms = (int64_t) secs * 1000;
    *context = ctx;
    return 0;
}

static void
s_fini (void *context)
{
    free (context);
}

static bus_method_t s_methods[] = {
    {"invite.create", s_create, BUS_ORG_MEMBER | BUS_WRITE | BUS_NOTXN},
    {"invite.list", s_list, BUS_ORG_MEMBER},
    {"invite.revoke", s_revoke, BUS_ORG_MEMBER | BUS_WRITE},
    {"invite.revoke_unused", s_revoke_unused, BUS_ORG_ADMIN | BUS_WRITE},
    {"invite.preview", s_preview, 0},
    {"invite.accept", s_accept, BUS_AUTH | BUS_WRITE | BUS_NOTXN},
    {"invite.join_create", s_join_create, BUS_AUTH | BUS_WRITE | BUS_NOTXN},
    {"invite.join_list", s_join_list, BUS_ORG_ADMIN},
    {"invite.join_approve", s_join_approve, BUS_ORG_ADMIN | BUS_WRITE | BUS_NOTXN},
    {"invite.join_reject", s_join_reject, BUS_ORG_ADMIN | BUS_WRITE | BUS_NOTXN},
    {"invite.my_join_requests", s_my_join_requests, BUS_AUTH},
    {NULL, NULL, 0},
};

bus_service_t invite_service = {
    .name = "invite",
    .descriptor = &invite__invite__descriptor,
    .methods = s_methods,
    .migrations = invstore_migrations,
    .options = s_options,
    .init = s_init,
    .fini = s_fini,
    .tick = s_tick,
    .tick_ms = 5000,
};

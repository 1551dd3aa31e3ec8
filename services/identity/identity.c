/*  identity: users, one-time codes, sessions, org roles and operators
    (DESIGN §5, API.md "Auth and account"). The method table is at the end;
    all SQL is in identity_store.c. */
#include "identity.pb-c.h"
#include "bus_worker.h"
#include "clock.h"
#include "identity_store.h"
#include "log.h"
#include "org.pb-c.h"
#include "sms.h"
#include "text.h"
#include "ulid.h"

#include <sodium.h>
#include <string.h>

#define CODE_TTL_MS (5 * 60 * 1000)
#define CODE_ATTEMPTS 5
#define SESSION_IDLE_MS (30LL * 24 * 3600 * 1000)
#define TOUCH_EVERY_MS 60000
#define FULL_NAME_MIN 2
#define FULL_NAME_MAX 200
#define PASSWORD_MIN 8
#define PASSWORD_MAX 256
#define COMMENT_MAX 2000
#define MAX_OPERATORS 64

/*  argon2id as OWASP recommends it: 19 MiB, 2 passes. */
#define PW_OPSLIMIT 2
#define PW_MEMLIMIT (19U * 1024 * 1024)

typedef struct {
    char operators[MAX_OPERATORS][20];
    int n_operators;
    sms_sender_t *sms;
} identity_t;

/* --- helpers --- */

static int
s_is_operator (identity_t *ctx, const char *phone)
{
    for (int i = 0; i < ctx->n_operators; i++)
        if (strcmp (ctx->operators[i], phone) == 0)
            return 1;
    return 0;
}

static status_t
s_phone (bus_call_t *call, const char *in, char *out)
{
    if (!in || !*in)
        return bus_call_fail (call, ST_BAD_REQUEST, "phone", "phone is required");
    if (text_phone_normalize (in, out, 20))
        return bus_call_fail (call, ST_BAD_REQUEST, "phone",
                              "phone must be a mobile number such as +79991234567");
    return ST_OK;
}

static status_t
s_full_name (bus_call_t *call, const char *in, char *out, size_t outlen)
{
    if (!in || !*in)
        return bus_call_fail (call, ST_BAD_REQUEST, "full_name", "full_name is required");
    const char *problem = text_check_line (in, FULL_NAME_MIN, FULL_NAME_MAX, out, outlen);
    if (problem)
        return bus_call_fail (call, ST_BAD_REQUEST, "full_name", "full_name %s (2 to 200 characters)",
                              problem);
    return ST_OK;
}

static status_t
s_password_valid (bus_call_t *call, const char *password)
{
    size_t len = strlen (password);
    if (!text_utf8_valid (password, len))
        return bus_call_fail (call, ST_BAD_REQUEST, "password", "password must be valid text");
    if (text_utf8_length (password) < PASSWORD_MIN)
        return bus_call_fail (call, ST_BAD_REQUEST, "password",
                              "password must have at least 8 characters");
    if (len > PASSWORD_MAX)
        return bus_call_fail (call, ST_BAD_REQUEST, "password", "password is too long");
    return ST_OK;
}

static status_t
s_password_hash (bus_call_t *call, const char *password, char hash[crypto_pwhash_STRBYTES])
{
    size_t len = strlen (password);
    if (s_password_valid (call, password) != ST_OK)
        return ST_BAD_REQUEST;
    if (crypto_pwhash_str (hash, password, len, PW_OPSLIMIT, PW_MEMLIMIT) != 0)
        return bus_call_fail (call, ST_UNAVAILABLE, NULL, "out of memory hashing the password");
    return ST_OK;
}

static void
s_code_hash (const unsigned char key[32], const char *phone, const char *code,
             unsigned char out[32])
{
    crypto_generichash_state st;
    crypto_generichash_init (&st, key, 32, 32);
    crypto_generichash_update (&st, (const unsigned char *) phone, strlen (phone));
    crypto_generichash_update (&st, (const unsigned char *) ":", 1);
    crypto_generichash_update (&st, (const unsigned char *) code, strlen (code));
    crypto_generichash_final (&st, out, 32);
}

/*  Checks a one-time code and spends an attempt. Runs in the caller's
    transaction, which must be committed even when the code is wrong: the
    attempt counts. */
static status_t
s_code_check (bus_call_t *call, const char *phone, const char *code)
{
    db_t *db = bus_call_db (call);
    if (!code || !*code)
        return bus_call_fail (call, ST_BAD_REQUEST, "code", "code is required");
    size_t n = strlen (code);
    int digits = n == 6;
    for (size_t i = 0; i < n && digits; i++)
        digits = code[i] >= '0' && code[i] <= '9';
    if (!digits)
        return bus_call_fail (call, ST_BAD_REQUEST, "code", "code is the 6 digits we sent");
    unsigned char stored[32], key[32], given[32];
    int64_t expires_at = 0;
    int attempts = 0;
    int found = idstore_otp_get (db, phone, stored, &expires_at, &attempts);
    if (found < 0 || idstore_otp_key (db, key))
        return bus_call_db_error (call);
    if (!found || attempts <= 0) {
        bus_call_set_code (call, "invalid_code");
        return bus_call_fail (call, ST_UNAUTHORIZED, "code",
                              "no valid code for this phone: ask for a new one");
    }
    if (bus_call_now (call) > expires_at) {
        idstore_otp_delete (db, phone);
        bus_call_set_code (call, "code_expired");
        return bus_call_fail (call, ST_UNAUTHORIZED, "code", "the code has expired: ask for a new one");
    }
    s_code_hash (key, phone, code, given);
    if (sodium_memcmp (given, stored, 32) != 0) {
        attempts--;
        /*  The attempt must count: if it cannot be recorded, nothing more. */
        if ((attempts <= 0 ? idstore_otp_delete (db, phone) : idstore_otp_set_attempts (db, phone, attempts)))
            return bus_call_db_error (call);
        bus_call_set_code (call, "invalid_code");
        return bus_call_fail (call, ST_UNAUTHORIZED, "code",
                              attempts > 0 ? "wrong code" : "wrong code; that was the last try, ask for a new one");
    }
    if (idstore_otp_delete (db, phone))
        return bus_call_db_error (call);
    return ST_OK;
}

static Identity__User *
s_user_msg (arena_t *arena, const id_user_t *u)
{
    Identity__User *m = arena_msg (arena, &identity__user__descriptor);
    m->id = arena_strdup (arena, u->id);
    m->phone = arena_strdup (arena, u->phone);
    m->full_name = arena_strdup (arena, u->full_name);
    return m;
}

static int
s_role_event (bus_call_t *call, const char *type, const Identity__OrgRole *r, const char *note)
{
    Identity__RoleChanged ev = IDENTITY__ROLE_CHANGED__INIT;
    ev.user_id = r->user_id;
    ev.org_id = r->org_id;
    ev.role = r->role;
    ev.verified = r->verified;
    ev.note = (char *) (note ? note : "");
    return bus_call_event (call, type, r->org_id, &ev.base);
}

/*  Opens a session for `user` and fills the reply. In the call's transaction. */
static status_t
s_open_session (bus_call_t *call, const id_user_t *user, int code_verified, void **reply)
{
    arena_t *arena = bus_call_arena (call);
    unsigned char raw[32], hash[32];
    randombytes_buf (raw, sizeof raw);
    char token[sodium_base64_ENCODED_LEN (32, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    sodium_bin2base64 (token, sizeof token, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    crypto_hash_sha256 (hash, (const unsigned char *) token, strlen (token));
    sodium_memzero (raw, sizeof raw);
    char id[ULID_LEN + 1];
    ulid_make (id);
    const Bus__Caller *caller = bus_call_caller (call);
    if (idstore_session_create (bus_call_db (call), id, user->id, hash, bus_call_now (call),
                                caller ? caller->user_agent : "", caller ? caller->ip : ""))
        return bus_call_db_error (call);
    /*  Roles waiting for this phone become the user's now, but only after a
        code proved they hold the phone today (numbers get reassigned). */
    Identity__OrgRole **bound;
    size_t n_bound = 0;
    if (code_verified
        && idstore_roles_bind_phone (bus_call_db (call), user->id, user->phone, arena, &bound, &n_bound))
        return bus_call_db_error (call);
    for (size_t i = 0; i < n_bound; i++)
        if (s_role_event (call, "identity.role.granted", bound[i], "bound to the phone"))
            return bus_call_db_error (call);
    Identity__AuthReply *out = arena_msg (arena, &identity__auth_reply__descriptor);
    out->token = arena_strdup (arena, token);
    out->user = s_user_msg (arena, user);
    out->expires_at = bus_call_now (call) + SESSION_IDLE_MS;
    sodium_memzero (token, sizeof token);
    *reply = out;
    return ST_OK;
}

/* --- sign-in --- */

static status_t
s_otp_send (bus_call_t *call, const void *request, void **reply)
{
    const Identity__OtpSendRequest *req = request;
    identity_t *ctx = bus_call_context (call);
    char phone[20];
    if (s_phone (call, req->phone, phone) != ST_OK)
        return ST_BAD_REQUEST;
    db_t *db = bus_call_db (call);
    unsigned char key[32], hash[32];
    if (idstore_otp_key (db, key))
        return bus_call_db_error (call);
    char code[8];
    snprintf (code, sizeof code, "%06u", (unsigned) randombytes_uniform (1000000));
    s_code_hash (key, phone, code, hash);
    int64_t now = bus_call_now (call);
    if (idstore_otp_put (db, phone, hash, now + CODE_TTL_MS, CODE_ATTEMPTS, now))
        return bus_call_db_error (call);
    char text[160];
    snprintf (text, sizeof text, "Parta: код для входа %s. Никому не сообщайте его.", code);
    sodium_memzero (code, sizeof code);
    if (sms_send (ctx->sms, phone, text, now))
        return bus_call_fail (call, ST_UNAVAILABLE, NULL, "could not send the code, try again");
    sodium_memzero (text, sizeof text);
    Identity__OtpSendReply *out = arena_msg (bus_call_arena (call), &identity__otp_send_reply__descriptor);
    out->expires_in = CODE_TTL_MS / 1000;
    *reply = out;
    return ST_OK;
}

/*  sign_up and login run their own transaction (BUS_NOTXN): a wrong code
    must still use up an attempt, so the transaction commits on that
    failure too. */
static status_t
s_in_txn (bus_call_t *call, status_t (*body) (bus_call_t *, const void *, void **, void *),
          const void *request, void **reply, void *extra)
{
    db_t *db = bus_call_db (call);
    if (db_begin (db))
        return bus_call_db_error (call);
    status_t st = body (call, request, reply, extra);
    int keep = st == ST_OK || st == ST_UNAUTHORIZED;
    if (st == ST_OK && !reply)
        keep = 1;
    if (keep ? db_commit (db) : db_rollback (db)) {
        if (db_txn_depth (db))
            db_rollback (db);
        *reply = NULL;
        return bus_call_db_error (call);
    }
    return st;
}

/*  First transaction: the code (its attempt counts even when wrong) and
    the phone being free. */
static status_t
s_sign_up_check (bus_call_t *call, const void *request, void **reply, void *extra)
{
    (void) reply;
    const Identity__RegisterRequest *req = request;
    id_user_t *user = extra;
    status_t st = s_code_check (call, user->phone, req->code);
    if (st != ST_OK)
        return st;
    id_user_t existing;
    int found = idstore_user_by_phone (bus_call_db (call), user->phone, &existing);
    if (found < 0)
        return bus_call_db_error (call);
    if (found) {
        bus_call_set_code (call, "already_registered");
        return bus_call_fail (call, ST_CONFLICT, "phone",
                              "this phone is already registered: sign in instead");
    }
    return ST_OK;
}

/*  Second transaction: the user and the first session. */
static status_t
s_sign_up_create (bus_call_t *call, const void *request, void **reply, void *extra)
{
    (void) request;
    id_user_t *user = extra;
    ulid_make (user->id);
    if (idstore_user_create (bus_call_db (call), user, bus_call_now (call))) {
        /*  The phone was taken between the two transactions. */
        bus_call_set_code (call, "already_registered");
        return bus_call_fail (call, ST_CONFLICT, "phone",
                              "this phone is already registered: sign in instead");
    }
    Identity__UserRegistered ev = IDENTITY__USER_REGISTERED__INIT;
    ev.user_id = user->id;
    ev.full_name = user->full_name;
    if (bus_call_event (call, "identity.user.registered", "", &ev.base))
        return bus_call_db_error (call);
    return s_open_session (call, user, 1, reply);
}

static status_t
s_sign_up (bus_call_t *call, const void *request, void **reply)
{
    const Identity__RegisterRequest *req = request;
    id_user_t user;
    memset (&user, 0, sizeof user);
    if (s_phone (call, req->phone, user.phone) != ST_OK)
        return ST_BAD_REQUEST;
    if (s_full_name (call, req->full_name, user.full_name, sizeof user.full_name) != ST_OK)
        return ST_BAD_REQUEST;
    if (!req->code || !*req->code)
        return bus_call_fail (call, ST_BAD_REQUEST, "code", "code is required");
    const char *password = req->password ? req->password : "";
    if (*password && s_password_valid (call, password) != ST_OK)
        return ST_BAD_REQUEST;
    status_t st = s_in_txn (call, s_sign_up_check, request, reply, &user);
    if (st != ST_OK)
        return st;
    /*  Hashing costs tens of milliseconds: only after the code was right,
        and outside the write lock. */
    if (*password && s_password_hash (call, password, user.password_hash) != ST_OK)
        return ST_BAD_REQUEST;
    st = s_in_txn (call, s_sign_up_create, request, reply, &user);
    sodium_memzero (&user.password_hash, sizeof user.password_hash);
    return st;
}

static status_t
s_login_txn (bus_call_t *call, const void *request, void **reply, void *extra)
{
    const Identity__LoginRequest *req = request;
    id_user_t *user = extra;
    int code = req->code && *req->code;
    if (code) {
        status_t st = s_code_check (call, user->phone, req->code);
        if (st != ST_OK)
            return st;
    }
    return s_open_session (call, user, code, reply);
}

static status_t
s_login (bus_call_t *call, const void *request, void **reply)
{
    const Identity__LoginRequest *req = request;
    char phone[20];
    if (s_phone (call, req->phone, phone) != ST_OK)
        return ST_BAD_REQUEST;
    int has_code = req->code && *req->code, has_password = req->password && *req->password;
    if (!has_code && !has_password)
        return bus_call_fail (call, ST_BAD_REQUEST, "code", "send the code or the password");
    if (has_code && has_password)
        return bus_call_fail (call, ST_BAD_REQUEST, "password", "send the code or the password, not both");
    id_user_t user;
    int found = idstore_user_by_phone (bus_call_db (call), phone, &user);
    if (found < 0)
        return bus_call_db_error (call);
    if (!found) {
        bus_call_set_code (call, "user_not_found");
        return bus_call_fail (call, ST_NOT_FOUND, "phone", "no user with this phone: sign up first");
    }
    if (has_password) {
        size_t len = strlen (req->password);
        int ok = user.password_hash[0] && len <= PASSWORD_MAX
                 && crypto_pwhash_str_verify (user.password_hash, req->password, len) == 0;
        if (!ok) {
            bus_call_set_code (call, "invalid_password");
            return bus_call_fail (call, ST_UNAUTHORIZED, "password",
                                  user.password_hash[0] ? "wrong password"
                                                        : "no password is set: sign in with a code");
        }
    }
    return s_in_txn (call, s_login_txn, request, reply, &user);
}

static int
s_revoke_event (bus_call_t *call, const char *user_id, const char *session_id, const char *reason)
{
    Identity__SessionRevoked ev = IDENTITY__SESSION_REVOKED__INIT;
    ev.user_id = (char *) user_id;
    ev.session_id = (char *) session_id;
    ev.reason = (char *) reason;
    return bus_call_event (call, "identity.session.revoked", "", &ev.base);
}

static status_t
s_logout (bus_call_t *call, const void *request, void **reply)
{
    (void) request;
    (void) reply;
    const Bus__Caller *caller = bus_call_caller (call);
    int rc = idstore_session_revoke (bus_call_db (call), caller->user_id, caller->session_id,
                                     "logout", bus_call_now (call));
    if (rc < 0)
        return bus_call_db_error (call);
    if (rc > 0 && s_revoke_event (call, caller->user_id, caller->session_id, "logout"))
        return bus_call_db_error (call);
    return ST_OK;
}

/*  The caller for a token: user, session, roles per org, operator. */
static status_t
s_authenticate (bus_call_t *call, const void *request, void **reply)
{
    const Identity__AuthenticateRequest *req = request;
    identity_t *ctx = bus_call_context (call);
    db_t *db = bus_call_db (call);
    arena_t *arena = bus_call_arena (call);
    if (!req->token || !*req->token || strlen (req->token) > 512)
        return bus_call_fail (call, ST_UNAUTHORIZED, NULL, "no token");
    unsigned char hash[32];
    crypto_hash_sha256 (hash, (const unsigned char *) req->token, strlen (req->token));
    id_session_t s;
    int found = idstore_session_by_token (db, hash, &s);
    if (found < 0)
        return bus_call_db_error (call);
    int64_t now = bus_call_now (call);
    if (!found || s.revoked || s.last_seen_at + SESSION_IDLE_MS < now)
        return bus_call_fail (call, ST_UNAUTHORIZED, NULL, "the token is not valid");
    id_user_t user;
    if (idstore_user_by_id (db, s.user_id, &user) != 1)
        return bus_call_fail (call, ST_UNAUTHORIZED, NULL, "the token is not valid");
    if (now - s.last_seen_at > TOUCH_EVERY_MS)
        idstore_session_touch (db, s.id, now, req->ip, req->user_agent);
    Identity__OrgRole **roles;
    size_t n = 0;
    if (idstore_roles_by_user (db, user.id, arena, &roles, &n))
        return bus_call_db_error (call);
    Bus__Caller *out = arena_msg (arena, &bus__caller__descriptor);
    out->user_id = arena_strdup (arena, user.id);
    out->session_id = arena_strdup (arena, s.id);
    out->operator_ = s_is_operator (ctx, user.phone);
    out->orgs = arena_alloc (arena, (n ? n : 1) * sizeof (Bus__Membership *));
    /*  Rows come ordered by org: one membership per org. */
    for (size_t i = 0; i < n; i++) {
        Bus__Membership *m = out->n_orgs ? out->orgs[out->n_orgs - 1] : NULL;
        if (!m || strcmp (m->org_id, roles[i]->org_id) != 0) {
            m = arena_msg (arena, &bus__membership__descriptor);
            m->org_id = roles[i]->org_id;
            m->roles = arena_alloc (arena, 8 * sizeof (Bus__Role));
            out->orgs[out->n_orgs++] = m;
        }
        if (m->n_roles < 8)
            m->roles[m->n_roles++] = roles[i]->role;
        if (roles[i]->role == BUS__ROLE__ROLE_TEACHER)
            m->verified = roles[i]->verified;
    }
    *reply = out;
    return ST_OK;
}

/* --- the account --- */

/*  The account and its roles per org. Names, units and linked students
    are org's to add: the gateway puts GET /v1/me together from this and
    org.me. Identity never calls another service, so nothing can wait in a
    circle. */
static status_t
s_me (bus_call_t *call, const void *request, void **reply)
{
    (void) request;
    identity_t *ctx = bus_call_context (call);
    db_t *db = bus_call_db (call);
    arena_t *arena = bus_call_arena (call);
    const Bus__Caller *caller = bus_call_caller (call);
    id_user_t user;
    if (idstore_user_by_id (db, caller->user_id, &user) != 1)
        return bus_call_fail (call, ST_UNAUTHORIZED, NULL, "no such user");
    Identity__OrgRole **roles;
    size_t n = 0;
    if (idstore_roles_by_user (db, user.id, arena, &roles, &n))
        return bus_call_db_error (call);
    Identity__MeReply *out = arena_msg (arena, &identity__me_reply__descriptor);
    out->user = s_user_msg (arena, &user);
    out->operator_ = s_is_operator (ctx, user.phone);
    out->memberships = arena_alloc (arena, (n ? n : 1) * sizeof (Identity__Membership *));
    for (size_t i = 0; i < n; i++) {
        Identity__Membership *m
            = out->n_memberships ? out->memberships[out->n_memberships - 1] : NULL;
        if (!m || strcmp (m->org_id, roles[i]->org_id) != 0) {
            m = arena_msg (arena, &identity__membership__descriptor);
            m->org_id = roles[i]->org_id;
            m->org_name = roles[i]->org_id;
            m->roles = arena_alloc (arena, 8 * sizeof (Bus__Role));
            out->memberships[out->n_memberships++] = m;
        }
        if (m->n_roles < 8)
            m->roles[m->n_roles++] = roles[i]->role;
        if (roles[i]->role == BUS__ROLE__ROLE_TEACHER)
            m->verified = roles[i]->verified;
    }
    *reply = out;
    return ST_OK;
}

static int s_revoke_event (bus_call_t *call, const char *user_id, const char *session_id,
                           const char *reason);

/*  Ends every live session of a user but `keep` (NULL: all). */
static status_t
s_end_sessions (bus_call_t *call, const char *user_id, const char *keep, const char *reason,
                uint32_t *ended)
{
    arena_t *arena = bus_call_arena (call);
    char **ids;
    size_t n = 0;
    if (idstore_sessions_end (bus_call_db (call), user_id, keep, reason, bus_call_now (call), arena,
                              &ids, &n))
        return bus_call_db_error (call);
    for (size_t i = 0; i < n; i++)
        if (s_revoke_event (call, user_id, ids[i], reason))
            return bus_call_db_error (call);
    if (ended)
        *ended = (uint32_t) n;
    return ST_OK;
}

/*  What PATCH /v1/me settled before its transaction: the new name and the
    new password's hash, both checked, and the hash the proof was made
    against. */
typedef struct {
    const char *name;
    const char *hash;
    char old_hash[crypto_pwhash_STRBYTES];
} me_change_t;

/*  The change itself. A wrong code must still count as an attempt, so it
    fails as unauthorized, which s_in_txn commits. */
static status_t
s_me_update_txn (bus_call_t *call, const void *request, void **reply, void *extra)
{
    const Identity__MeUpdateRequest *req = request;
    const Bus__Caller *caller = bus_call_caller (call);
    me_change_t *change = extra;
    db_t *db = bus_call_db (call);
    id_user_t user;
    if (idstore_user_by_id (db, caller->user_id, &user) != 1)
        return bus_call_fail (call, ST_NOT_FOUND, NULL, "no such user");
    if (change->hash) {
        if (strcmp (user.password_hash, change->old_hash) != 0)
            return bus_call_fail (call, ST_CONFLICT, "password",
                                  "the password changed meanwhile: try again");
        if (!user.password_hash[0]) {
            status_t st = s_code_check (call, user.phone, req->code);
            if (st != ST_OK)
                return st;
        }
    }
    if ((change->name || change->hash)
        && idstore_user_update (db, caller->user_id, change->name, change->hash, bus_call_now (call)))
        return bus_call_db_error (call);
    if (change->hash
        && s_end_sessions (call, caller->user_id, caller->session_id, "password_changed", NULL))
        return bus_call_db_error (call);
    if (change->name) {
        Identity__UserUpdated ev = IDENTITY__USER_UPDATED__INIT;
        ev.user_id = caller->user_id;
        ev.full_name = (char *) change->name;
        if (bus_call_event (call, "identity.user.updated", "", &ev.base))
            return bus_call_db_error (call);
    }
    if (idstore_user_by_id (db, caller->user_id, &user) != 1)
        return bus_call_fail (call, ST_NOT_FOUND, NULL, "no such user");
    Identity__MeUpdateReply *out = arena_msg (bus_call_arena (call), &identity__me_update_reply__descriptor);
    out->user = s_user_msg (bus_call_arena (call), &user);
    *reply = out;
    return ST_OK;
}

/*  Runs without the worker's transaction (BUS_NOTXN): the password checks
    and hashing take tens of milliseconds and hold no lock. */
static status_t
s_me_update (bus_call_t *call, const void *request, void **reply)
{
    const Identity__MeUpdateRequest *req = request;
    const Bus__Caller *caller = bus_call_caller (call);
    id_user_t user;
    if (idstore_user_by_id (bus_call_db (call), caller->user_id, &user) != 1)
        return bus_call_fail (call, ST_UNAUTHORIZED, NULL, "no such user");
    char name[840];
    char hash[crypto_pwhash_STRBYTES];
    me_change_t change = {0};
    if (req->_full_name_case == IDENTITY__ME_UPDATE_REQUEST___FULL_NAME_FULL_NAME) {
        if (s_full_name (call, req->full_name, name, sizeof name) != ST_OK)
            return ST_BAD_REQUEST;
        change.name = name;
    }
    if (req->_password_case == IDENTITY__ME_UPDATE_REQUEST___PASSWORD_PASSWORD) {
        const char *password = req->password ? req->password : "";
        /*  A password that would be refused spends no code. */
        if (s_password_valid (call, password) != ST_OK)
            return ST_BAD_REQUEST;
        /*  Proof beyond the session: the current password, or a fresh code
            when there is none. */
        if (user.password_hash[0]) {
            const char *cur = req->current_password ? req->current_password : "";
            if (!*cur)
                return bus_call_fail (call, ST_BAD_REQUEST, "current_password",
                                      "current_password is required to set a new one");
            if (strlen (cur) > PASSWORD_MAX
                || crypto_pwhash_str_verify (user.password_hash, cur, strlen (cur)) != 0) {
                bus_call_set_code (call, "invalid_password");
                return bus_call_fail (call, ST_FORBIDDEN, "current_password", "wrong current password");
            }
        }
        else if (!req->code || !*req->code)
            return bus_call_fail (call, ST_BAD_REQUEST, "code",
                                  "a code sent to your phone is required to set a first password");
        if (s_password_hash (call, password, hash) != ST_OK)
            return ST_BAD_REQUEST;
        memcpy (change.old_hash, user.password_hash, sizeof change.old_hash);
        change.hash = hash;
    }
    status_t st = s_in_txn (call, s_me_update_txn, request, reply, &change);
    sodium_memzero (hash, sizeof hash);
    if (st == ST_UNAUTHORIZED)
        /*  The session is fine; the code was not. */
        return bus_call_fail (call, ST_FORBIDDEN, "code", "the code is wrong or expired");
    return st;
}

static status_t
s_sessions (bus_call_t *call, const void *request, void **reply)
{
    (void) request;
    const Bus__Caller *caller = bus_call_caller (call);
    Identity__SessionList *out = arena_msg (bus_call_arena (call), &identity__session_list__descriptor);
    if (idstore_sessions_list (bus_call_db (call), caller->user_id,
                               bus_call_now (call) - SESSION_IDLE_MS, bus_call_arena (call),
                               &out->items, &out->n_items))
        return bus_call_db_error (call);
    for (size_t i = 0; i < out->n_items; i++)
        out->items[i]->current = strcmp (out->items[i]->id, caller->session_id) == 0;
    *reply = out;
    return ST_OK;
}

static status_t
s_session_revoke (bus_call_t *call, const void *request, void **reply)
{
    (void) reply;
    const Identity__SessionRevokeRequest *req = request;
    const Bus__Caller *caller = bus_call_caller (call);
    if (!req->session_id || !*req->session_id)
        return bus_call_fail (call, ST_BAD_REQUEST, "session_id", "session_id is required");
    int rc = idstore_session_revoke (bus_call_db (call), caller->user_id, req->session_id,
                                     "revoked", bus_call_now (call));
    if (rc < 0)
        return bus_call_db_error (call);
    if (rc == 0)
        return bus_call_fail (call, ST_NOT_FOUND, "session_id", "no such session");
    if (s_revoke_event (call, caller->user_id, req->session_id, "revoked"))
        return bus_call_db_error (call);
    return ST_OK;
}

/*  Policy 4.5: an account accessed without permission. Every session ends
    at once (this one too) and the admins of the user's orgs are told
    (identity.security.reported names them per org; gateways push it to
    their sockets). */
static status_t
s_security_report (bus_call_t *call, const void *request, void **reply)
{
    (void) reply;
    const Identity__SecurityReportRequest *req = request;
    const Bus__Caller *caller = bus_call_caller (call);
    db_t *db = bus_call_db (call);
    arena_t *arena = bus_call_arena (call);
    char comment[COMMENT_MAX * 4 + 1] = "";
    if (req->comment && *req->comment) {
        const char *problem = text_check_multiline (req->comment, 0, COMMENT_MAX, comment, sizeof comment);
        if (problem)
            return bus_call_fail (call, ST_BAD_REQUEST, "comment", "comment %s (at most 2000 characters)",
                                  problem);
    }
    id_user_t user;
    if (idstore_user_by_id (db, caller->user_id, &user) != 1)
        return bus_call_fail (call, ST_UNAUTHORIZED, NULL, "no such user");
    Identity__SecurityReported ev = IDENTITY__SECURITY_REPORTED__INIT;
    /*  Whoever got in may know the password: it goes, and so does any code
        waiting; the owner signs in again with a new code. */
    if (s_end_sessions (call, caller->user_id, NULL, "security_report", &ev.sessions_ended) != ST_OK
        || idstore_user_clear_password (db, caller->user_id, bus_call_now (call))
        || idstore_otp_delete (db, user.phone))
        return bus_call_db_error (call);
    ev.user_id = caller->user_id;
    ev.comment = comment;
    if (idstore_user_orgs (db, caller->user_id, arena, &ev.org_ids, &ev.n_org_ids))
        return bus_call_db_error (call);
    ev.full_name = arena_strdup (arena, user.full_name);
    ev.admins = arena_alloc (arena, (ev.n_org_ids ? ev.n_org_ids : 1) * sizeof *ev.admins);
    for (size_t i = 0; i < ev.n_org_ids; i++) {
        Identity__OrgRole **roles = NULL;
        size_t n = 0;
        if (idstore_roles_by_org (db, ev.org_ids[i], BUS__ROLE__ROLE_ADMIN, arena, &roles, &n))
            return bus_call_db_error (call);
        Identity__OrgAdmins *oa = arena_msg (arena, &identity__org_admins__descriptor);
        oa->org_id = ev.org_ids[i];
        oa->user_ids = arena_alloc (arena, (n ? n : 1) * sizeof *oa->user_ids);
        for (size_t k = 0; k < n; k++)
            if (roles[k]->user_id && *roles[k]->user_id && strcmp (roles[k]->user_id, caller->user_id) != 0)
                oa->user_ids[oa->n_user_ids++] = roles[k]->user_id;
        ev.admins[ev.n_admins++] = oa;
    }
    if (bus_call_event (call, "identity.security.reported", "", &ev.base))
        return bus_call_db_error (call);
    log_warn (bus_call_trace (call), "unauthorized access reported user=%s sessions_ended=%u",
              caller->user_id, ev.sessions_ended);
    return ST_OK;
}

/* --- org roles (for org and invite) --- */

static status_t
s_role_args (bus_call_t *call, const char *org_id, int role)
{
    if (!org_id || !ulid_valid (org_id))
        return bus_call_fail (call, ST_BAD_REQUEST, "org_id", "org_id must be an id");
    if (role < BUS__ROLE__ROLE_ADMIN || role > BUS__ROLE__ROLE_PARENT)
        return bus_call_fail (call, ST_BAD_REQUEST, "role",
                              "role must be admin, administration, teacher, student or parent");
    return ST_OK;
}

static status_t
s_role_grant (bus_call_t *call, const void *request, void **reply)
{
    const Identity__RoleGrantRequest *req = request;
    db_t *db = bus_call_db (call);
    arena_t *arena = bus_call_arena (call);
    if (s_role_args (call, req->org_id, req->role) != ST_OK)
        return ST_BAD_REQUEST;
    const char *user_id = NULL;
    char phone[20] = "";
    id_user_t user;
    if (req->user_id && *req->user_id) {
        int found = idstore_user_by_id (db, req->user_id, &user);
        if (found < 0)
            return bus_call_db_error (call);
        if (!found)
            return bus_call_fail (call, ST_NOT_FOUND, "user_id", "no such user");
        user_id = user.id;
    }
    else if (s_phone (call, req->phone, phone) != ST_OK)
        return ST_BAD_REQUEST;
    /*  A role granted to a phone waits for a code-verified sign-in with
        it, even when an account with that phone exists: whoever holds the
        number today gets it. */
    Identity__OrgRole *row = NULL;
    int exists = idstore_role_get (db, req->org_id, user_id, phone, req->role, arena, &row);
    if (exists < 0)
        return bus_call_db_error (call);
    if (!exists) {
        if (idstore_role_insert (db, req->org_id, user_id, phone, req->role, bus_call_now (call))
            || idstore_role_get (db, req->org_id, user_id, phone, req->role, arena, &row) != 1)
            return bus_call_db_error (call);
        if (s_role_event (call, "identity.role.granted", row, NULL))
            return bus_call_db_error (call);
    }
    *reply = row;
    return ST_OK;
}

static status_t
s_role_revoke (bus_call_t *call, const void *request, void **reply)
{
    (void) reply;
    const Identity__RoleRevokeRequest *req = request;
    db_t *db = bus_call_db (call);
    if (s_role_args (call, req->org_id, req->role) != ST_OK)
        return ST_BAD_REQUEST;
    if ((!req->user_id || !*req->user_id) && req->phone && *req->phone) {
        /*  A role still waiting for its phone: withdraw it. */
        char phone[20];
        if (s_phone (call, req->phone, phone) != ST_OK)
            return ST_BAD_REQUEST;
        int gone = idstore_role_delete_phone (db, req->org_id, phone, req->role);
        if (gone < 0)
            return bus_call_db_error (call);
        if (!gone)
            return bus_call_fail (call, ST_NOT_FOUND, "phone", "no role waits for this phone");
        return ST_OK;
    }
    if (!req->user_id || !*req->user_id)
        return bus_call_fail (call, ST_BAD_REQUEST, "user_id", "user_id is required");
    Identity__OrgRole *row = NULL;
    int exists = idstore_role_get (db, req->org_id, req->user_id, NULL, req->role,
                                   bus_call_arena (call), &row);
    if (exists < 0)
        return bus_call_db_error (call);
    if (!exists)
        return bus_call_fail (call, ST_NOT_FOUND, "role", "the user does not hold this role here");
    if (req->role == BUS__ROLE__ROLE_ADMIN && idstore_admin_count (db, req->org_id) <= 1) {
        bus_call_set_code (call, "last_admin");
        return bus_call_fail (call, ST_CONFLICT, "role",
                              "this is the organisation's last admin: appoint another one first");
    }
    if (idstore_role_delete (db, req->org_id, req->user_id, req->role) < 0
        || s_role_event (call, "identity.role.revoked", row, NULL))
        return bus_call_db_error (call);
    return ST_OK;
}

static status_t
s_role_verify (bus_call_t *call, const void *request, void **reply)
{
    const Identity__RoleVerifyRequest *req = request;
    db_t *db = bus_call_db (call);
    arena_t *arena = bus_call_arena (call);
    if (s_role_args (call, req->org_id, BUS__ROLE__ROLE_TEACHER) != ST_OK)
        return ST_BAD_REQUEST;
    char note[2001 * 4] = "";
    if (req->note && *req->note && text_check_line (req->note, 0, 500, note, sizeof note))
        return bus_call_fail (call, ST_BAD_REQUEST, "note", "note must be one line of at most 500 characters");
    Identity__OrgRole *row = NULL;
    int exists = idstore_role_get (db, req->org_id, req->user_id, NULL, BUS__ROLE__ROLE_TEACHER,
                                   arena, &row);
    if (exists < 0)
        return bus_call_db_error (call);
    if (!exists) {
        bus_call_set_code (call, "not_a_teacher");
        return bus_call_fail (call, ST_CONFLICT, "user_id", "the user is not a teacher of this organisation");
    }
    if (row->verified != req->verified) {
        if (idstore_role_set_verified (db, req->org_id, req->user_id, req->verified, bus_call_now (call)) < 0)
            return bus_call_db_error (call);
        row->verified = req->verified;
        if (s_role_event (call, "identity.teacher.verified", row, note))
            return bus_call_db_error (call);
    }
    *reply = row;
    return ST_OK;
}

static status_t
s_roles_by_org (bus_call_t *call, const void *request, void **reply)
{
    const Identity__RolesByOrgRequest *req = request;
    Identity__RoleList *out = arena_msg (bus_call_arena (call), &identity__role_list__descriptor);
    if (idstore_roles_by_org (bus_call_db (call), req->org_id, req->role, bus_call_arena (call),
                              &out->items, &out->n_items))
        return bus_call_db_error (call);
    *reply = out;
    return ST_OK;
}

static status_t
s_roles_by_user (bus_call_t *call, const void *request, void **reply)
{
    const Identity__RolesByUserRequest *req = request;
    Identity__RoleList *out = arena_msg (bus_call_arena (call), &identity__role_list__descriptor);
    if (idstore_roles_by_user (bus_call_db (call), req->user_id, bus_call_arena (call),
                               &out->items, &out->n_items))
        return bus_call_db_error (call);
    *reply = out;
    return ST_OK;
}

static status_t
s_users_get (bus_call_t *call, const void *request, void **reply)
{
    const Identity__UsersGetRequest *req = request;
    if (req->n_ids > 1000)
        return bus_call_fail (call, ST_BAD_REQUEST, "ids", "at most 1000 ids");
    Identity__UserList *out = arena_msg (bus_call_arena (call), &identity__user_list__descriptor);
    if (idstore_users_get (bus_call_db (call), req->ids, req->n_ids, bus_call_arena (call),
                           &out->items, &out->n_items))
        return bus_call_db_error (call);
    *reply = out;
    return ST_OK;
}

static status_t
s_user_by_phone (bus_call_t *call, const void *request, void **reply)
{
    const Identity__UserByPhoneRequest *req = request;
    char phone[20];
    if (s_phone (call, req->phone, phone) != ST_OK)
        return ST_BAD_REQUEST;
    id_user_t user;
    int found = idstore_user_by_phone (bus_call_db (call), phone, &user);
    if (found < 0)
        return bus_call_db_error (call);
    if (!found)
        return bus_call_fail (call, ST_NOT_FOUND, "phone", "no user with this phone");
    *reply = s_user_msg (bus_call_arena (call), &user);
    return ST_OK;
}

/* --- the service --- */

static const config_opt_t s_options[] = {
    {"operators", "", "comma-separated phones of platform operators"},
    {"sms", "outbox", "how codes are sent: outbox (DATA/sms.outbox) or exec:<program>"},
    {NULL, NULL, NULL},
};

static int
s_init (const config_t *cfg, void **context)
{
    identity_t *ctx = calloc (1, sizeof *ctx);
    if (!ctx)
        return -1;
    char list[2048];
    snprintf (list, sizeof list, "%s", config_str (cfg, "operators") ? config_str (cfg, "operators") : "");
    char *save = NULL;
    for (char *p = strtok_r (list, ",", &save); p; p = strtok_r (NULL, ",", &save)) {
        while (*p == ' ')
            p++;
        if (!*p)
            continue;
        if (ctx->n_operators >= MAX_OPERATORS
            || text_phone_normalize (p, ctx->operators[ctx->n_operators], 20)) {
            log_error (NULL, "bad operator phone value=%s", p);
            free (ctx);
            return -1;
        }
        ctx->n_operators++;
    }
    ctx->sms = sms_sender_new (config_str (cfg, "sms"), config_str (cfg, "data"));
    if (!ctx->sms) {
        free (ctx);
        return -1;
    }
    *context = ctx;
    return 0;
}

static void
s_fini (void *context)
{
    identity_t *ctx = context;
    if (ctx) {
        sms_sender_destroy (&ctx->sms);
        free (ctx);
    }
}

static bus_method_t s_methods[] = {
    {"identity.otp_send", s_otp_send, BUS_WRITE},
    {"identity.sign_up", s_sign_up, BUS_WRITE | BUS_NOTXN},
    {"identity.login", s_login, BUS_WRITE | BUS_NOTXN},
    {"identity.logout", s_logout, BUS_AUTH | BUS_WRITE},
    {"identity.authenticate", s_authenticate, 0},
    {"identity.me", s_me, BUS_AUTH},
    {"identity.me_update", s_me_update, BUS_AUTH | BUS_WRITE | BUS_NOTXN},
    {"identity.sessions", s_sessions, BUS_AUTH},
    {"identity.session_revoke", s_session_revoke, BUS_AUTH | BUS_WRITE},
    {"identity.security_report", s_security_report, BUS_AUTH | BUS_WRITE},
    {"identity.role_grant", s_role_grant, BUS_WRITE},
    {"identity.role_revoke", s_role_revoke, BUS_WRITE},
    {"identity.role_verify", s_role_verify, BUS_WRITE},
    {"identity.roles_by_org", s_roles_by_org, 0},
    {"identity.roles_by_user", s_roles_by_user, 0},
    {"identity.users_get", s_users_get, 0},
    {"identity.user_by_phone", s_user_by_phone, 0},
    {NULL, NULL, 0},
};

bus_service_t identity_service = {
    .name = "identity",
    .descriptor = &identity__identity__descriptor,
    .methods = s_methods,
    .migrations = idstore_migrations,
    .options = s_options,
    .init = s_init,
    .fini = s_fini,
};

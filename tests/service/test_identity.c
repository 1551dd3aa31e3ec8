/*  Identity service tests: the broker and parta-identity as processes on
    unix sockets, and a test that talks protobuf to identity over the bus as
    org, invite and the gateway do. Each test checks what a caller sees (the
    status, code and field of the reply) and reads the state back afterwards;
    events are read from the broker's event output with a SUB socket. */
#include "clock.h"
#include "events.pb-c.h"
#include "harness.h"
#include "identity.pb-c.h"
#include "log.h"
#include "ulid.h"

#include <czmq.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/wait.h>
#include <setjmp.h>
#include <cmocka.h>

#define CALL_MS 15000       /* argon2 under the sanitizers takes a while */
#define START_MS 15000
#define EVENT_MS 10000

typedef struct {
    harness_t h;
    bus_client_t *client;
    arena_t *arena;         /* replies and events, for the whole test */
    zsock_t *sub;           /* the broker's event output */
    char clock_file[300];
    char clock_env[340];
} fixture_t;

/* --- the moved clock --- */

/*  0 when the offset is written. */
static int
s_clock_set (fixture_t *fx, int64_t offset_ms)
{
    /*  Written whole then renamed: a service reading it mid-write would
        otherwise see no offset at all. */
    char tmp[320];
    snprintf (tmp, sizeof tmp, "%s.tmp", fx->clock_file);
    FILE *f = fopen (tmp, "w");
    if (!f)
        return -1;
    fprintf (f, "%lld\n", (long long) offset_ms);
    if (fclose (f))
        return -1;
    return rename (tmp, fx->clock_file);
}

/* --- fixture --- */

/*  Waits until identity has registered with the broker; 0 when it did
    within START_MS. A process that dies meanwhile ends the wait at once,
    with its log. */
static int
s_wait_started (harness_t *h)
{
    for (int64_t until = clock_mono_ms () + START_MS; clock_mono_ms () < until;) {
        if (harness_wait_workers (h, "identity", 1, 250) == 0)
            return 0;
        for (int i = 0; i < h->n; i++) {
            int status = 0;
            if (h->pids[i] > 0 && waitpid (h->pids[i], &status, WNOHANG) == h->pids[i]) {
                h->pids[i] = -1;
                harness_print_log (h, i, status);
                return -1;
            }
        }
    }
    return -1;
}

static int
s_teardown (void **state)
{
    fixture_t *fx = *state;
    s_clock_set (fx, 0);
    unsetenv ("PARTA_TEST_CLOCK_FILE");
    clock_test_reload ();
    bus_client_destroy (&fx->client);
    zsock_destroy (&fx->sub);
    arena_destroy (&fx->arena);
    /*  Services first, then the broker (spawned first). */
    int rc = 0;
    for (int i = fx->h.n - 1; i >= 0; i--)
        if (harness_stop (&fx->h, i))
            rc = -1;
    harness_fini (&fx->h);
    free (fx);
    return rc;
}

/*  The broker and identity, and this test's client and SUB socket. cmocka
    runs no teardown after a failed setup, so a failure cleans up here. */
static int
s_setup (void **state)
{
    fixture_t *fx = calloc (1, sizeof *fx);
    if (!fx)
        return -1;
    if (harness_init (&fx->h)) {
        free (fx);
        return -1;
    }
    *state = fx;
    /*  Services and this process read the same offset: the worker compares
        the caller's deadline with its own clock. */
    snprintf (fx->clock_file, sizeof fx->clock_file, "%s/clock", fx->h.dir);
    snprintf (fx->clock_env, sizeof fx->clock_env, "PARTA_TEST_CLOCK_FILE=%s", fx->clock_file);
    fx->h.extra_env[0] = fx->clock_env;
    setenv ("PARTA_TEST_CLOCK_FILE", fx->clock_file, 1);
    clock_test_reload ();
    /*  Subscribed before identity starts, so nothing it publishes is missed
        once the path is up (see s_events_ready). */
    fx->sub = zsock_new (ZMQ_SUB);
    int ok = s_clock_set (fx, 0) == 0 && fx->sub;
    if (ok) {
        zsock_set_subscribe (fx->sub, "identity.");
        zsock_set_subscribe (fx->sub, "sys.head");
        ok = zsock_connect (fx->sub, "%s", fx->h.events_out) == 0
             && harness_spawn (&fx->h, "parta-broker", NULL) > 0
             && harness_spawn (&fx->h, "parta-identity", NULL) > 0
             && s_wait_started (&fx->h) == 0;
    }
    if (ok) {
        fx->client = harness_client (&fx->h);
        fx->arena = arena_new ();
        ok = fx->client && fx->arena;
    }
    if (!ok) {
        print_error ("the broker and identity did not start (binaries from %s)\n",
                     getenv ("PARTA_BIN") ? getenv ("PARTA_BIN") : "build/bin");
        s_teardown (state);
        return -1;
    }
    return 0;
}

/* --- calls --- */

static status_t
s_call (fixture_t *fx, const char *method, const ProtobufCMessage *request,
        const ProtobufCMessageDescriptor *reply_desc, void *reply_out, Bus__Reply **result,
        const Bus__Caller *caller)
{
    bus_call_opts_t opts = {.timeout_ms = CALL_MS, .caller = caller};
    return bus_client_call (fx->client, "identity", method, request, &opts, reply_desc, fx->arena,
                            (ProtobufCMessage **) reply_out, result);
}

/*  A failed call as its caller sees it: the status, the specific code and
    the offending field ("" for none). */
#define assert_failure(st, result, want_st, want_code, want_field)                                 \
    do {                                                                                           \
        assert_int_equal ((st), (want_st));                                                        \
        assert_non_null (result);                                                                  \
        assert_string_equal ((result)->code ? (result)->code : "", (want_code));                   \
        assert_string_equal ((result)->field ? (result)->field : "", (want_field));                \
    } while (0)

/*  The code last sent to `phone`, from DATA/sms.outbox (one JSON object a
    line: to, text, at). 0 when found; the text must hold exactly one run
    of digits and it must be 6 long. */
static int
s_outbox_code (fixture_t *fx, const char *phone, char code[7])
{
    char path[400];
    snprintf (path, sizeof path, "%s/sms.outbox", fx->h.dir);
    FILE *f = fopen (path, "r");
    if (!f)
        return -1;
    char line[4096];
    char text[1024] = "";
    int found = 0;
    while (fgets (line, sizeof line, f)) {
        json_t *obj = json_loads (line, 0, NULL);
        assert_non_null (obj);
        const char *to = json_string_value (json_object_get (obj, "to"));
        const char *body = json_string_value (json_object_get (obj, "text"));
        assert_non_null (to);
        assert_non_null (body);
        if (strcmp (to, phone) == 0) {
            snprintf (text, sizeof text, "%s", body);
            found = 1;
        }
        json_decref (obj);
    }
    fclose (f);
    if (!found)
        return -1;
    int runs = 0;
    size_t run_len = 0;
    for (const char *p = text; *p;) {
        if (*p >= '0' && *p <= '9') {
            const char *start = p;
            while (*p >= '0' && *p <= '9')
                p++;
            run_len = (size_t) (p - start);
            if (run_len == 6)
                memcpy (code, start, 6);
            runs++;
        }
        else
            p++;
    }
    assert_int_equal (runs, 1);
    assert_int_equal (run_len, 6);
    code[6] = 0;
    return 0;
}

/*  Lines in the outbox (0 when there is none). */
static int
s_outbox_lines (fixture_t *fx)
{
    char path[400];
    snprintf (path, sizeof path, "%s/sms.outbox", fx->h.dir);
    FILE *f = fopen (path, "r");
    if (!f)
        return 0;
    int n = 0, c;
    while ((c = fgetc (f)) != EOF)
        n += c == '\n';
    fclose (f);
    return n;
}

/*  Asks for a code and reads it from the outbox. */
static void
s_code_send (fixture_t *fx, const char *phone, char code[7])
{
    int before = s_outbox_lines (fx);
    Identity__OtpSendRequest req = IDENTITY__OTP_SEND_REQUEST__INIT;
    req.phone = (char *) phone;
    Identity__OtpSendReply *reply = NULL;
    assert_int_equal (s_call (fx, "identity.otp_send", &req.base,
                              &identity__otp_send_reply__descriptor, &reply, NULL, NULL),
                      ST_OK);
    assert_int_equal (reply->expires_in, 300);
    assert_int_equal (s_outbox_lines (fx), before + 1);
    assert_int_equal (s_outbox_code (fx, phone, code), 0);
}

/*  Another valid-looking code than `code`. */
static void
s_wrong_code (const char *code, char out[7])
{
    snprintf (out, 7, "%06d", (atoi (code) + 1) % 1000000);
}

static status_t
s_sign_up_with (fixture_t *fx, const char *phone, const char *code, const char *full_name,
                const char *password, Identity__AuthReply **reply, Bus__Reply **result)
{
    Identity__RegisterRequest req = IDENTITY__REGISTER_REQUEST__INIT;
    req.phone = (char *) phone;
    req.code = (char *) code;
    req.full_name = (char *) full_name;
    req.password = (char *) (password ? password : "");
    return s_call (fx, "identity.sign_up", &req.base, &identity__auth_reply__descriptor, reply,
                   result, NULL);
}

/*  A new user signed up with a code; returns the reply (token, user). */
static Identity__AuthReply *
s_sign_up (fixture_t *fx, const char *phone, const char *full_name, const char *password)
{
    char code[7];
    s_code_send (fx, phone, code);
    Identity__AuthReply *reply = NULL;
    Bus__Reply *result = NULL;
    status_t st = s_sign_up_with (fx, phone, code, full_name, password, &reply, &result);
    if (st != ST_OK)
        print_error ("sign_up %s: %s %s\n", phone, status_name (st),
                     result && result->message ? result->message : "");
    assert_int_equal (st, ST_OK);
    assert_non_null (reply->user);
    assert_true (ulid_valid (reply->user->id));
    assert_string_equal (reply->user->phone, phone);
    assert_true (strlen (reply->token) >= 32);
    return reply;
}

static status_t
s_login_code (fixture_t *fx, const char *phone, const char *code, Identity__AuthReply **reply,
              Bus__Reply **result)
{
    Identity__LoginRequest req = IDENTITY__LOGIN_REQUEST__INIT;
    req.phone = (char *) phone;
    req.code = (char *) code;
    return s_call (fx, "identity.login", &req.base, &identity__auth_reply__descriptor, reply,
                   result, NULL);
}

static status_t
s_login_password (fixture_t *fx, const char *phone, const char *password,
                  Identity__AuthReply **reply, Bus__Reply **result)
{
    Identity__LoginRequest req = IDENTITY__LOGIN_REQUEST__INIT;
    req.phone = (char *) phone;
    req.password = (char *) password;
    return s_call (fx, "identity.login", &req.base, &identity__auth_reply__descriptor, reply,
                   result, NULL);
}

/*  A fresh code-verified session for an existing user. */
static Identity__AuthReply *
s_login_with_new_code (fixture_t *fx, const char *phone)
{
    char code[7];
    s_code_send (fx, phone, code);
    Identity__AuthReply *reply = NULL;
    assert_int_equal (s_login_code (fx, phone, code, &reply, NULL), ST_OK);
    return reply;
}

static status_t
s_authenticate (fixture_t *fx, const char *token, Bus__Caller **caller, Bus__Reply **result)
{
    Identity__AuthenticateRequest req = IDENTITY__AUTHENTICATE_REQUEST__INIT;
    req.token = (char *) token;
    return s_call (fx, "identity.authenticate", &req.base, &bus__caller__descriptor, caller,
                   result, NULL);
}

static Bus__Caller *
s_caller (fixture_t *fx, const char *token)
{
    Bus__Caller *caller = NULL;
    assert_int_equal (s_authenticate (fx, token, &caller, NULL), ST_OK);
    return caller;
}

static status_t
s_user_by_phone (fixture_t *fx, const char *phone, Bus__Reply **result)
{
    Identity__UserByPhoneRequest req = IDENTITY__USER_BY_PHONE_REQUEST__INIT;
    req.phone = (char *) phone;
    Identity__User *user = NULL;
    return s_call (fx, "identity.user_by_phone", &req.base, &identity__user__descriptor, &user,
                   result, NULL);
}

/* --- roles --- */

static status_t
s_grant (fixture_t *fx, const char *org_id, const char *user_id, const char *phone,
         Bus__Role role, Identity__OrgRole **row, Bus__Reply **result)
{
    Identity__RoleGrantRequest req = IDENTITY__ROLE_GRANT_REQUEST__INIT;
    req.org_id = (char *) org_id;
    req.user_id = (char *) (user_id ? user_id : "");
    req.phone = (char *) (phone ? phone : "");
    req.role = role;
    Identity__OrgRole *ignored = NULL;
    return s_call (fx, "identity.role_grant", &req.base, &identity__org_role__descriptor,
                   row ? row : &ignored, result, NULL);
}

static status_t
s_revoke (fixture_t *fx, const char *org_id, const char *user_id, const char *phone,
          Bus__Role role, Bus__Reply **result)
{
    Identity__RoleRevokeRequest req = IDENTITY__ROLE_REVOKE_REQUEST__INIT;
    req.org_id = (char *) org_id;
    req.user_id = (char *) (user_id ? user_id : "");
    req.phone = (char *) (phone ? phone : "");
    req.role = role;
    return s_call (fx, "identity.role_revoke", &req.base, NULL, NULL, result, NULL);
}

static status_t
s_verify (fixture_t *fx, const char *org_id, const char *user_id, int verified,
          Identity__OrgRole **row, Bus__Reply **result)
{
    Identity__RoleVerifyRequest req = IDENTITY__ROLE_VERIFY_REQUEST__INIT;
    req.org_id = (char *) org_id;
    req.user_id = (char *) user_id;
    req.verified = verified;
    Identity__OrgRole *ignored = NULL;
    return s_call (fx, "identity.role_verify", &req.base, &identity__org_role__descriptor,
                   row ? row : &ignored, result, NULL);
}

static Identity__RoleList *
s_roles_by_org (fixture_t *fx, const char *org_id, Bus__Role role)
{
    Identity__RolesByOrgRequest req = IDENTITY__ROLES_BY_ORG_REQUEST__INIT;
    req.org_id = (char *) org_id;
    req.role = role;
    Identity__RoleList *list = NULL;
    assert_int_equal (s_call (fx, "identity.roles_by_org", &req.base,
                              &identity__role_list__descriptor, &list, NULL, NULL),
                      ST_OK);
    return list;
}

static Identity__RoleList *
s_roles_by_user (fixture_t *fx, const char *user_id)
{
    Identity__RolesByUserRequest req = IDENTITY__ROLES_BY_USER_REQUEST__INIT;
    req.user_id = (char *) user_id;
    Identity__RoleList *list = NULL;
    assert_int_equal (s_call (fx, "identity.roles_by_user", &req.base,
                              &identity__role_list__descriptor, &list, NULL, NULL),
                      ST_OK);
    return list;
}

/*  The row of `list` for (org, user or phone, role), or NULL. */
static const Identity__OrgRole *
s_find_role (const Identity__RoleList *list, const char *org_id, const char *user_id,
             const char *phone, Bus__Role role)
{
    for (size_t i = 0; i < list->n_items; i++) {
        const Identity__OrgRole *r = list->items[i];
        if (strcmp (r->org_id, org_id) == 0 && r->role == role
            && strcmp (r->user_id, user_id ? user_id : "") == 0
            && strcmp (r->phone, phone ? phone : "") == 0)
            return r;
    }
    return NULL;
}

static int
s_count_phone_rows (const Identity__RoleList *list)
{
    int n = 0;
    for (size_t i = 0; i < list->n_items; i++)
        n += *list->items[i]->phone != 0;
    return n;
}

static const Bus__Membership *
s_membership (const Bus__Caller *caller, const char *org_id)
{
    for (size_t i = 0; i < caller->n_orgs; i++)
        if (strcmp (caller->orgs[i]->org_id, org_id) == 0)
            return caller->orgs[i];
    return NULL;
}

static int
s_has_role (const Bus__Membership *m, Bus__Role role)
{
    for (size_t i = 0; m && i < m->n_roles; i++)
        if (m->roles[i] == role)
            return 1;
    return 0;
}

/* --- events --- */

/*  The next event of `type` from the event output, or NULL when none came
    before `until` (monotonic ms). Other events are skipped. */
static Ev__Event *
s_next_event (fixture_t *fx, const char *type, int64_t until)
{
    for (int64_t now = clock_mono_ms (); now < until; now = clock_mono_ms ()) {
        zmq_pollitem_t item = {zsock_resolve (fx->sub), 0, ZMQ_POLLIN, 0};
        if (zmq_poll (&item, 1, (long) (until - now)) <= 0)
            continue;
        zmsg_t *msg = zmsg_recv (fx->sub);
        if (!msg)
            continue;
        zframe_t *topic = zmsg_first (msg);
        zframe_t *body = zmsg_next (msg);
        Ev__Event *event = NULL;
        if (topic && body && zframe_streq (topic, type))
            event = ev__event__unpack (arena_allocator (fx->arena), zframe_size (body),
                                       zframe_data (body));
        zmsg_destroy (&msg);
        if (event)
            return event;
    }
    return NULL;
}

/*  The path publisher -> broker -> this SUB socket works once identity's
    beacon (sys.head, once a second after its publisher starts, itself
    ~300 ms after the process) gets here; events after that are seen. */
static void
s_events_ready (fixture_t *fx)
{
    int64_t until = clock_mono_ms () + EVENT_MS;
    Ev__Event *head;
    while ((head = s_next_event (fx, "sys.head", until)) && strcmp (head->source, "identity") != 0)
        ;
    assert_non_null (head);
}

/*  Waits for the identity.role.granted of a waiting role bound to this
    user at a code-verified sign-in. */
static void
s_expect_role_bound (fixture_t *fx, const char *user_id, const char *org_id, Bus__Role role)
{
    int64_t until = clock_mono_ms () + EVENT_MS;
    Ev__Event *event;
    while ((event = s_next_event (fx, "identity.role.granted", until))) {
        Identity__RoleChanged *payload = identity__role_changed__unpack (
            arena_allocator (fx->arena), event->payload.len, event->payload.data);
        assert_non_null (payload);
        if (strcmp (payload->user_id, user_id) == 0 && strcmp (payload->org_id, org_id) == 0
            && payload->role == role) {
            assert_string_equal (event->source, "identity");
            assert_string_equal (event->org_id, org_id);
            assert_string_equal (event->actor_id, "");
            assert_string_equal (payload->note, "bound to the phone");
            return;
        }
    }
    fail_msg ("no identity.role.granted for user %s in org %s", user_id, org_id);
}

/* --- roles: grant, list, revoke, the last admin --- */

static void
test_role_grant_list_revoke (void **state)
{
    fixture_t *fx = *state;
    Identity__AuthReply *ann = s_sign_up (fx, "+79990000001", "Anna Admin", NULL);
    Identity__AuthReply *boris = s_sign_up (fx, "+79990000002", "Boris Second", NULL);
    const char *a = ann->user->id, *b = boris->user->id;
    char org[ULID_LEN + 1], other_org[ULID_LEN + 1];
    ulid_make (org);
    ulid_make (other_org);

    /*  Granted: the reply is the row. */
    Identity__OrgRole *row = NULL;
    assert_int_equal (s_grant (fx, org, a, NULL, BUS__ROLE__ROLE_ADMIN, &row, NULL), ST_OK);
    assert_string_equal (row->org_id, org);
    assert_string_equal (row->user_id, a);
    assert_string_equal (row->phone, "");
    assert_int_equal (row->role, BUS__ROLE__ROLE_ADMIN);
    assert_false (row->verified);
    int64_t granted_at = row->granted_at;
    assert_true (granted_at > 0);

    /*  Twice is a no-op: the same row, still one. */
    assert_int_equal (s_grant (fx, org, a, NULL, BUS__ROLE__ROLE_ADMIN, &row, NULL), ST_OK);
    assert_string_equal (row->user_id, a);
    assert_int_equal (row->granted_at, granted_at);
    Identity__RoleList *list = s_roles_by_org (fx, org, 0);
    assert_int_equal (list->n_items, 1);
    assert_non_null (s_find_role (list, org, a, NULL, BUS__ROLE__ROLE_ADMIN));

    /*  More roles, and one in another org. */
    assert_int_equal (s_grant (fx, org, a, NULL, BUS__ROLE__ROLE_TEACHER, NULL, NULL), ST_OK);
    assert_int_equal (s_grant (fx, org, b, NULL, BUS__ROLE__ROLE_PARENT, NULL, NULL), ST_OK);
    assert_int_equal (s_grant (fx, other_org, a, NULL, BUS__ROLE__ROLE_STUDENT, NULL, NULL), ST_OK);
    list = s_roles_by_org (fx, org, 0);
    assert_int_equal (list->n_items, 3);
    assert_non_null (s_find_role (list, org, a, NULL, BUS__ROLE__ROLE_ADMIN));
    assert_non_null (s_find_role (list, org, a, NULL, BUS__ROLE__ROLE_TEACHER));
    assert_non_null (s_find_role (list, org, b, NULL, BUS__ROLE__ROLE_PARENT));
    list = s_roles_by_org (fx, org, BUS__ROLE__ROLE_TEACHER);
    assert_int_equal (list->n_items, 1);
    assert_non_null (s_find_role (list, org, a, NULL, BUS__ROLE__ROLE_TEACHER));
    list = s_roles_by_user (fx, a);
    assert_int_equal (list->n_items, 3);
    assert_non_null (s_find_role (list, other_org, a, NULL, BUS__ROLE__ROLE_STUDENT));
    list = s_roles_by_user (fx, b);
    assert_int_equal (list->n_items, 1);

    /*  The session sees them too, one membership per org. */
    Bus__Caller *caller = s_caller (fx, ann->token);
    assert_int_equal (caller->n_orgs, 2);
    assert_true (s_has_role (s_membership (caller, org), BUS__ROLE__ROLE_ADMIN));
    assert_true (s_has_role (s_membership (caller, org), BUS__ROLE__ROLE_TEACHER));
    assert_true (s_has_role (s_membership (caller, other_org), BUS__ROLE__ROLE_STUDENT));

    /*  Revoked: gone from both lists; a second time is not_found. */
    Bus__Reply *result = NULL;
    assert_int_equal (s_revoke (fx, org, a, NULL, BUS__ROLE__ROLE_TEACHER, NULL), ST_OK);
    list = s_roles_by_user (fx, a);
    assert_int_equal (list->n_items, 2);
    assert_null (s_find_role (list, org, a, NULL, BUS__ROLE__ROLE_TEACHER));
    assert_null (s_find_role (s_roles_by_org (fx, org, 0), org, a, NULL, BUS__ROLE__ROLE_TEACHER));
    assert_failure (s_revoke (fx, org, a, NULL, BUS__ROLE__ROLE_TEACHER, &result), result,
                    ST_NOT_FOUND, "", "role");

    /*  Bad arguments: unknown user, org id that is not an id, no role. */
    assert_failure (s_grant (fx, org, "01M8H8NOSUCHUSER0000000000", NULL, BUS__ROLE__ROLE_TEACHER,
                             NULL, &result),
                    result, ST_NOT_FOUND, "", "user_id");
    assert_failure (s_grant (fx, "not-an-org", a, NULL, BUS__ROLE__ROLE_TEACHER, NULL, &result),
                    result, ST_BAD_REQUEST, "", "org_id");
    assert_failure (s_grant (fx, org, a, NULL, BUS__ROLE__ROLE_UNSPECIFIED, NULL, &result), result,
                    ST_BAD_REQUEST, "", "role");
    assert_failure (s_grant (fx, org, a, NULL, (Bus__Role) 9, NULL, &result), result,
                    ST_BAD_REQUEST, "", "role");
    assert_int_equal (s_roles_by_org (fx, org, 0)->n_items, 2);
}

static void
test_last_admin_stays (void **state)
{
    fixture_t *fx = *state;
    const char *a = s_sign_up (fx, "+79990000011", "Anna Admin", NULL)->user->id;
    const char *b = s_sign_up (fx, "+79990000012", "Boris Admin", NULL)->user->id;
    char org[ULID_LEN + 1];
    ulid_make (org);
    assert_int_equal (s_grant (fx, org, a, NULL, BUS__ROLE__ROLE_ADMIN, NULL, NULL), ST_OK);

    /*  The only admin cannot go ... */
    Bus__Reply *result = NULL;
    assert_failure (s_revoke (fx, org, a, NULL, BUS__ROLE__ROLE_ADMIN, &result), result,
                    ST_CONFLICT, "last_admin", "role");
    Identity__RoleList *admins = s_roles_by_org (fx, org, BUS__ROLE__ROLE_ADMIN);
    assert_int_equal (admins->n_items, 1);
    assert_string_equal (admins->items[0]->user_id, a);

    /*  ... nor does an admin role waiting for a phone count as a second. */
    assert_int_equal (s_grant (fx, org, NULL, "+79990000013", BUS__ROLE__ROLE_ADMIN, NULL, NULL),
                      ST_OK);
    assert_failure (s_revoke (fx, org, a, NULL, BUS__ROLE__ROLE_ADMIN, &result), result,
                    ST_CONFLICT, "last_admin", "role");
    assert_non_null (s_find_role (s_roles_by_org (fx, org, BUS__ROLE__ROLE_ADMIN), org, a, NULL,
                                  BUS__ROLE__ROLE_ADMIN));

    /*  With two, one can go; then the other is the last. */
    assert_int_equal (s_grant (fx, org, b, NULL, BUS__ROLE__ROLE_ADMIN, NULL, NULL), ST_OK);
    assert_int_equal (s_revoke (fx, org, a, NULL, BUS__ROLE__ROLE_ADMIN, NULL), ST_OK);
    admins = s_roles_by_org (fx, org, BUS__ROLE__ROLE_ADMIN);
    assert_null (s_find_role (admins, org, a, NULL, BUS__ROLE__ROLE_ADMIN));
    assert_non_null (s_find_role (admins, org, b, NULL, BUS__ROLE__ROLE_ADMIN));
    assert_int_equal (s_roles_by_user (fx, a)->n_items, 0);
    assert_failure (s_revoke (fx, org, b, NULL, BUS__ROLE__ROLE_ADMIN, &result), result,
                    ST_CONFLICT, "last_admin", "role");
    assert_non_null (s_find_role (s_roles_by_org (fx, org, BUS__ROLE__ROLE_ADMIN), org, b, NULL,
                                  BUS__ROLE__ROLE_ADMIN));
}

/* --- roles bound to a phone --- */

static void
test_phone_role_bound_at_sign_up (void **state)
{
    fixture_t *fx = *state;
    s_events_ready (fx);
    const char *phone = "+79990000021";
    char org[ULID_LEN + 1];
    ulid_make (org);

    /*  Granted to a phone nobody has signed up with; written as typed. */
    Identity__OrgRole *row = NULL;
    assert_int_equal (s_grant (fx, org, NULL, "8 (999) 000-00-21", BUS__ROLE__ROLE_TEACHER, &row,
                               NULL),
                      ST_OK);
    assert_string_equal (row->user_id, "");
    assert_string_equal (row->phone, phone);
    Identity__RoleList *list = s_roles_by_org (fx, org, 0);
    assert_int_equal (list->n_items, 1);
    assert_non_null (s_find_role (list, org, NULL, phone, BUS__ROLE__ROLE_TEACHER));

    /*  Signing up with a code claims it. */
    Identity__AuthReply *auth = s_sign_up (fx, phone, "Tanya Teacher", NULL);
    const char *user = auth->user->id;
    list = s_roles_by_user (fx, user);
    assert_int_equal (list->n_items, 1);
    assert_non_null (s_find_role (list, org, user, NULL, BUS__ROLE__ROLE_TEACHER));
    list = s_roles_by_org (fx, org, 0);
    assert_int_equal (list->n_items, 1);
    assert_int_equal (s_count_phone_rows (list), 0);
    assert_non_null (s_find_role (list, org, user, NULL, BUS__ROLE__ROLE_TEACHER));
    assert_true (s_has_role (s_membership (s_caller (fx, auth->token), org),
                             BUS__ROLE__ROLE_TEACHER));
    s_expect_role_bound (fx, user, org, BUS__ROLE__ROLE_TEACHER);
}

static void
test_phone_role_needs_code_sign_in (void **state)
{
    fixture_t *fx = *state;
    s_events_ready (fx);
    const char *phone = "+79990000031";
    const char *password = "correct horse battery";
    const char *user = s_sign_up (fx, phone, "Pavel Password", password)->user->id;
    char org[ULID_LEN + 1];
    ulid_make (org);

    /*  The account exists, yet the role waits for the phone. */
    Identity__OrgRole *row = NULL;
    assert_int_equal (s_grant (fx, org, NULL, phone, BUS__ROLE__ROLE_ADMINISTRATION, &row, NULL),
                      ST_OK);
    assert_string_equal (row->user_id, "");
    assert_string_equal (row->phone, phone);
    assert_int_equal (s_roles_by_user (fx, user)->n_items, 0);

    /*  A password does not prove the phone: nothing claimed. */
    Identity__AuthReply *auth = NULL;
    assert_int_equal (s_login_password (fx, phone, password, &auth, NULL), ST_OK);
    assert_string_equal (auth->user->id, user);
    assert_int_equal (s_roles_by_user (fx, user)->n_items, 0);
    Identity__RoleList *list = s_roles_by_org (fx, org, 0);
    assert_int_equal (list->n_items, 1);
    assert_non_null (s_find_role (list, org, NULL, phone, BUS__ROLE__ROLE_ADMINISTRATION));
    assert_null (s_membership (s_caller (fx, auth->token), org));

    /*  A code does. */
    auth = s_login_with_new_code (fx, phone);
    assert_string_equal (auth->user->id, user);
    list = s_roles_by_user (fx, user);
    assert_int_equal (list->n_items, 1);
    assert_non_null (s_find_role (list, org, user, NULL, BUS__ROLE__ROLE_ADMINISTRATION));
    list = s_roles_by_org (fx, org, 0);
    assert_int_equal (list->n_items, 1);
    assert_int_equal (s_count_phone_rows (list), 0);
    assert_true (s_has_role (s_membership (s_caller (fx, auth->token), org),
                             BUS__ROLE__ROLE_ADMINISTRATION));
    s_expect_role_bound (fx, user, org, BUS__ROLE__ROLE_ADMINISTRATION);
}

static void
test_phone_role_withdrawn (void **state)
{
    fixture_t *fx = *state;
    const char *phone = "+79990000041";
    char org[ULID_LEN + 1];
    ulid_make (org);
    assert_int_equal (s_grant (fx, org, NULL, phone, BUS__ROLE__ROLE_PARENT, NULL, NULL), ST_OK);
    assert_int_equal (s_grant (fx, org, NULL, phone, BUS__ROLE__ROLE_STUDENT, NULL, NULL), ST_OK);
    assert_int_equal (s_roles_by_org (fx, org, 0)->n_items, 2);

    /*  Withdrawn by phone, in another spelling of it; the other role stays. */
    Bus__Reply *result = NULL;
    assert_int_equal (s_revoke (fx, org, NULL, "+7 999 000-00-41", BUS__ROLE__ROLE_PARENT, NULL),
                      ST_OK);
    Identity__RoleList *list = s_roles_by_org (fx, org, 0);
    assert_int_equal (list->n_items, 1);
    assert_non_null (s_find_role (list, org, NULL, phone, BUS__ROLE__ROLE_STUDENT));
    assert_failure (s_revoke (fx, org, NULL, phone, BUS__ROLE__ROLE_PARENT, &result), result,
                    ST_NOT_FOUND, "", "phone");
    assert_failure (s_revoke (fx, org, NULL, "not a phone", BUS__ROLE__ROLE_PARENT, &result),
                    result, ST_BAD_REQUEST, "", "phone");

    /*  Whoever signs up with the phone gets only what still waits. */
    const char *user = s_sign_up (fx, phone, "Polina Parent", NULL)->user->id;
    list = s_roles_by_user (fx, user);
    assert_int_equal (list->n_items, 1);
    assert_non_null (s_find_role (list, org, user, NULL, BUS__ROLE__ROLE_STUDENT));
    /*  And a claimed role is no longer waiting: revoking by phone finds nothing. */
    assert_failure (s_revoke (fx, org, NULL, phone, BUS__ROLE__ROLE_STUDENT, &result), result,
                    ST_NOT_FOUND, "", "phone");
    assert_int_equal (s_roles_by_user (fx, user)->n_items, 1);
}

/* --- teacher verification --- */

static void
test_teacher_verification (void **state)
{
    fixture_t *fx = *state;
    Identity__AuthReply *teacher = s_sign_up (fx, "+79990000051", "Tanya Teacher", NULL);
    const char *t = teacher->user->id;
    const char *p = s_sign_up (fx, "+79990000052", "Polina Parent", NULL)->user->id;
    const char *nobody = s_sign_up (fx, "+79990000053", "Nina Nobody", NULL)->user->id;
    char org[ULID_LEN + 1];
    ulid_make (org);
    assert_int_equal (s_grant (fx, org, t, NULL, BUS__ROLE__ROLE_TEACHER, NULL, NULL), ST_OK);
    assert_int_equal (s_grant (fx, org, p, NULL, BUS__ROLE__ROLE_PARENT, NULL, NULL), ST_OK);
    assert_false (s_find_role (s_roles_by_user (fx, t), org, t, NULL, BUS__ROLE__ROLE_TEACHER)
                      ->verified);

    Identity__OrgRole *row = NULL;
    assert_int_equal (s_verify (fx, org, t, 1, &row, NULL), ST_OK);
    assert_true (row->verified);
    assert_string_equal (row->user_id, t);
    assert_int_equal (row->role, BUS__ROLE__ROLE_TEACHER);
    assert_true (s_find_role (s_roles_by_user (fx, t), org, t, NULL, BUS__ROLE__ROLE_TEACHER)
                     ->verified);
    assert_true (s_find_role (s_roles_by_org (fx, org, 0), org, t, NULL, BUS__ROLE__ROLE_TEACHER)
                     ->verified);
    const Bus__Membership *m = s_membership (s_caller (fx, teacher->token), org);
    assert_non_null (m);
    assert_true (m->verified);

    /*  A parent, or someone with no role there, is not a teacher. */
    Bus__Reply *result = NULL;
    assert_failure (s_verify (fx, org, p, 1, NULL, &result), result, ST_CONFLICT, "not_a_teacher",
                    "user_id");
    assert_false (s_find_role (s_roles_by_user (fx, p), org, p, NULL, BUS__ROLE__ROLE_PARENT)
                      ->verified);
    assert_failure (s_verify (fx, org, nobody, 1, NULL, &result), result, ST_CONFLICT,
                    "not_a_teacher", "user_id");
    assert_int_equal (s_roles_by_user (fx, nobody)->n_items, 0);

    /*  And back. */
    assert_int_equal (s_verify (fx, org, t, 0, &row, NULL), ST_OK);
    assert_false (row->verified);
    assert_false (s_find_role (s_roles_by_user (fx, t), org, t, NULL, BUS__ROLE__ROLE_TEACHER)
                      ->verified);
}

/* --- one-time codes --- */

static void
test_code_attempts (void **state)
{
    fixture_t *fx = *state;
    const char *phone = "+79990000061";
    char code[7], wrong[7];
    s_code_send (fx, phone, code);
    s_wrong_code (code, wrong);
    Identity__AuthReply *auth = NULL;
    Bus__Reply *result = NULL;
    for (int i = 0; i < 5; i++)
        assert_failure (s_sign_up_with (fx, phone, wrong, "Vasya Guesser", NULL, &auth, &result),
                        result, ST_UNAUTHORIZED, "invalid_code", "code");
    /*  Five wrong tries used the code up: the right one is refused now. */
    assert_failure (s_sign_up_with (fx, phone, code, "Vasya Guesser", NULL, &auth, &result), result,
                    ST_UNAUTHORIZED, "invalid_code", "code");
    assert_failure (s_user_by_phone (fx, phone, &result), result, ST_NOT_FOUND, "", "phone");

    /*  Four wrong tries leave the fifth to the right code. */
    s_code_send (fx, phone, code);
    s_wrong_code (code, wrong);
    for (int i = 0; i < 4; i++)
        assert_failure (s_sign_up_with (fx, phone, wrong, "Vasya Guesser", NULL, &auth, &result),
                        result, ST_UNAUTHORIZED, "invalid_code", "code");
    assert_int_equal (s_sign_up_with (fx, phone, code, "Vasya Guesser", NULL, &auth, NULL), ST_OK);
    assert_string_equal (auth->user->phone, phone);
    /*  A code is good once. */
    assert_failure (s_login_code (fx, phone, code, &auth, &result), result, ST_UNAUTHORIZED,
                    "invalid_code", "code");

    /*  Wrong tries at login count the same way. */
    s_code_send (fx, phone, code);
    s_wrong_code (code, wrong);
    for (int i = 0; i < 5; i++)
        assert_failure (s_login_code (fx, phone, wrong, &auth, &result), result, ST_UNAUTHORIZED,
                        "invalid_code", "code");
    assert_failure (s_login_code (fx, phone, code, &auth, &result), result, ST_UNAUTHORIZED,
                    "invalid_code", "code");
}

static void
test_code_expires (void **state)
{
    fixture_t *fx = *state;
    const char *late = "+79990000071", *in_time = "+79990000072";
    char late_code[7], in_time_code[7];
    s_code_send (fx, late, late_code);
    s_code_send (fx, in_time, in_time_code);
    Identity__AuthReply *auth = NULL;
    Bus__Reply *result = NULL;

    /*  Four minutes on, a code still works. */
    assert_int_equal (s_clock_set (fx, 4 * 60 * 1000), 0);
    assert_int_equal (s_sign_up_with (fx, in_time, in_time_code, "Ivan Intime", NULL, &auth, NULL),
                      ST_OK);

    /*  Past five minutes it is refused, and stays refused after. */
    assert_int_equal (s_clock_set (fx, 5 * 60 * 1000 + 5000), 0);
    assert_failure (s_sign_up_with (fx, late, late_code, "Lena Late", NULL, &auth, &result), result,
                    ST_UNAUTHORIZED, "code_expired", "code");
    assert_int_equal (s_clock_set (fx, 0), 0);
    assert_failure (s_sign_up_with (fx, late, late_code, "Lena Late", NULL, &auth, &result), result,
                    ST_UNAUTHORIZED, "invalid_code", "code");
    assert_failure (s_user_by_phone (fx, late, &result), result, ST_NOT_FOUND, "", "phone");

    /*  A new code works. */
    char code[7];
    s_code_send (fx, late, code);
    assert_int_equal (s_sign_up_with (fx, late, code, "Lena Late", NULL, &auth, NULL), ST_OK);
}

static void
test_new_code_replaces_old (void **state)
{
    fixture_t *fx = *state;
    const char *phone = "+79990000081";
    char first[7], second[7];
    s_code_send (fx, phone, first);
    /*  One in a million, the new code is the old one: ask again. */
    for (int i = 0; i < 3; i++) {
        s_code_send (fx, phone, second);
        if (strcmp (first, second) != 0)
            break;
    }
    assert_string_not_equal (first, second);
    Identity__AuthReply *auth = NULL;
    Bus__Reply *result = NULL;
    assert_failure (s_sign_up_with (fx, phone, first, "Olga Oldcode", NULL, &auth, &result), result,
                    ST_UNAUTHORIZED, "invalid_code", "code");
    assert_failure (s_user_by_phone (fx, phone, &result), result, ST_NOT_FOUND, "", "phone");
    assert_int_equal (s_sign_up_with (fx, phone, second, "Olga Oldcode", NULL, &auth, NULL), ST_OK);
    assert_string_equal (auth->user->phone, phone);
}

/* --- sessions --- */

static void
test_sessions_authenticate_logout (void **state)
{
    fixture_t *fx = *state;
    const char *phone = "+79990000091";
    Identity__AuthReply *first = s_sign_up (fx, phone, "Sergey Sessions", NULL);
    const char *user = first->user->id;
    char org[ULID_LEN + 1], other_org[ULID_LEN + 1];
    ulid_make (org);
    ulid_make (other_org);
    assert_int_equal (s_grant (fx, org, user, NULL, BUS__ROLE__ROLE_ADMIN, NULL, NULL), ST_OK);
    assert_int_equal (s_grant (fx, org, user, NULL, BUS__ROLE__ROLE_TEACHER, NULL, NULL), ST_OK);
    assert_int_equal (s_grant (fx, other_org, user, NULL, BUS__ROLE__ROLE_PARENT, NULL, NULL),
                      ST_OK);
    Identity__AuthReply *second = s_login_with_new_code (fx, phone);
    assert_string_not_equal (first->token, second->token);

    Bus__Caller *one = s_caller (fx, first->token);
    assert_string_equal (one->user_id, user);
    assert_true (ulid_valid (one->session_id));
    assert_false (one->operator_);
    assert_int_equal (one->n_orgs, 2);
    const Bus__Membership *m = s_membership (one, org);
    assert_non_null (m);
    assert_int_equal (m->n_roles, 2);
    assert_true (s_has_role (m, BUS__ROLE__ROLE_ADMIN));
    assert_true (s_has_role (m, BUS__ROLE__ROLE_TEACHER));
    m = s_membership (one, other_org);
    assert_non_null (m);
    assert_int_equal (m->n_roles, 1);
    assert_true (s_has_role (m, BUS__ROLE__ROLE_PARENT));
    Bus__Caller *two = s_caller (fx, second->token);
    assert_string_equal (two->user_id, user);
    assert_string_not_equal (two->session_id, one->session_id);

    /*  Logout ends that session only. */
    assert_int_equal (s_call (fx, "identity.logout", NULL, NULL, NULL, NULL, one), ST_OK);
    Bus__Caller *caller = NULL;
    Bus__Reply *result = NULL;
    assert_failure (s_authenticate (fx, first->token, &caller, &result), result, ST_UNAUTHORIZED,
                    "", "");
    assert_string_equal (s_caller (fx, second->token)->session_id, two->session_id);

    /*  Tokens nobody issued, and none at all. */
    assert_failure (s_authenticate (fx, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &caller,
                                    &result),
                    result, ST_UNAUTHORIZED, "", "");
    assert_failure (s_authenticate (fx, "", &caller, &result), result, ST_UNAUTHORIZED, "", "");
    /*  A signed-in method without a caller. */
    assert_failure (s_call (fx, "identity.logout", NULL, NULL, NULL, &result, NULL), result,
                    ST_UNAUTHORIZED, "", "");
}

static int
s_cmp_str (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

static void
test_security_report (void **state)
{
    fixture_t *fx = *state;
    s_events_ready (fx);
    const char *phone = "+79990000101";
    const char *password = "correct horse battery";
    Identity__AuthReply *signed_up = s_sign_up (fx, phone, "Roman Reporter", password);
    const char *user = signed_up->user->id;
    Identity__AuthReply *by_password = NULL;
    assert_int_equal (s_login_password (fx, phone, password, &by_password, NULL), ST_OK);
    Identity__AuthReply *by_code = s_login_with_new_code (fx, phone);
    /*  Someone else, whose session must survive. */
    Identity__AuthReply *bystander = s_sign_up (fx, "+79990000102", "Boris Bystander", NULL);
    char orgs[2][ULID_LEN + 1];
    ulid_make (orgs[0]);
    ulid_make (orgs[1]);
    assert_int_equal (s_grant (fx, orgs[0], user, NULL, BUS__ROLE__ROLE_TEACHER, NULL, NULL),
                      ST_OK);
    assert_int_equal (s_grant (fx, orgs[1], user, NULL, BUS__ROLE__ROLE_PARENT, NULL, NULL), ST_OK);
    assert_int_equal (s_grant (fx, orgs[1], user, NULL, BUS__ROLE__ROLE_STUDENT, NULL, NULL),
                      ST_OK);

    Identity__SecurityReportRequest req = IDENTITY__SECURITY_REPORT_REQUEST__INIT;
    req.comment = "Someone signed in from a phone I do not have.";
    assert_int_equal (s_call (fx, "identity.security_report", &req.base, NULL, NULL, NULL,
                              s_caller (fx, by_password->token)),
                      ST_OK);

    /*  Every session ended, the reporting one too. */
    const char *tokens[] = {signed_up->token, by_password->token, by_code->token};
    Bus__Caller *caller = NULL;
    Bus__Reply *result = NULL;
    for (int i = 0; i < 3; i++)
        assert_failure (s_authenticate (fx, tokens[i], &caller, &result), result, ST_UNAUTHORIZED,
                        "", "");
    assert_string_equal (s_caller (fx, bystander->token)->user_id, bystander->user->id);

    /*  The password is gone. */
    Identity__AuthReply *auth = NULL;
    assert_failure (s_login_password (fx, phone, password, &auth, &result), result,
                    ST_UNAUTHORIZED, "invalid_password", "password");
    assert_non_null (strstr (result->message, "no password"));
    /*  The roles are not: a new code-verified session has them. */
    auth = s_login_with_new_code (fx, phone);
    assert_int_equal (s_caller (fx, auth->token)->n_orgs, 2);

    /*  The orgs' admins are to be told. */
    int64_t until = clock_mono_ms () + EVENT_MS;
    Identity__SecurityReported *payload = NULL;
    Ev__Event *event;
    while (!payload && (event = s_next_event (fx, "identity.security.reported", until))) {
        Identity__SecurityReported *p = identity__security_reported__unpack (
            arena_allocator (fx->arena), event->payload.len, event->payload.data);
        assert_non_null (p);
        if (strcmp (p->user_id, user) == 0)
            payload = p;
    }
    if (!payload)
        fail_msg ("no identity.security.reported for user %s", user);
    assert_int_equal (payload->sessions_ended, 3);
    assert_string_equal (payload->comment, req.comment);
    assert_int_equal (payload->n_org_ids, 2);
    qsort (payload->org_ids, payload->n_org_ids, sizeof (char *), s_cmp_str);
    char *want[2] = {orgs[0], orgs[1]};
    qsort (want, 2, sizeof (char *), s_cmp_str);
    assert_string_equal (payload->org_ids[0], want[0]);
    assert_string_equal (payload->org_ids[1], want[1]);
}

/* --- bad input --- */

static const char *const s_bad_phones[] = {
    "12345",
    "+7999123456",              /* +7 and nine digits */
    "+7 999 123 45 67 89",      /* +7 and twelve */
    "+0123456789",
    "1234567890123456",
    "phone",
    "+79991234567; DROP TABLE users",
    "+7999123456\xef\xbc\x97",  /* a fullwidth digit */
    NULL,
};

static void
test_bad_phones (void **state)
{
    fixture_t *fx = *state;
    char org[ULID_LEN + 1];
    ulid_make (org);
    Bus__Reply *result = NULL;
    Identity__AuthReply *auth = NULL;
    for (int i = 0; s_bad_phones[i]; i++) {
        const char *phone = s_bad_phones[i];
        Identity__OtpSendRequest otp = IDENTITY__OTP_SEND_REQUEST__INIT;
        otp.phone = (char *) phone;
        assert_failure (s_call (fx, "identity.otp_send", &otp.base, NULL, NULL, &result, NULL),
                        result, ST_BAD_REQUEST, "", "phone");
        assert_failure (s_sign_up_with (fx, phone, "123456", "Ivan Ivanov", NULL, &auth, &result),
                        result, ST_BAD_REQUEST, "", "phone");
        assert_failure (s_login_code (fx, phone, "123456", &auth, &result), result,
                        ST_BAD_REQUEST, "", "phone");
        assert_failure (s_login_password (fx, phone, "correct horse", &auth, &result), result,
                        ST_BAD_REQUEST, "", "phone");
        assert_failure (s_user_by_phone (fx, phone, &result), result, ST_BAD_REQUEST, "", "phone");
        assert_failure (s_grant (fx, org, NULL, phone, BUS__ROLE__ROLE_PARENT, NULL, &result),
                        result, ST_BAD_REQUEST, "", "phone");
    }
    /*  No phone at all. */
    Identity__OtpSendRequest otp = IDENTITY__OTP_SEND_REQUEST__INIT;
    assert_failure (s_call (fx, "identity.otp_send", &otp.base, NULL, NULL, &result, NULL), result,
                    ST_BAD_REQUEST, "", "phone");
    assert_failure (s_grant (fx, org, NULL, NULL, BUS__ROLE__ROLE_PARENT, NULL, &result), result,
                    ST_BAD_REQUEST, "", "phone");
    /*  Nothing sent, nothing granted. */
    assert_int_equal (s_outbox_lines (fx), 0);
    assert_int_equal (s_roles_by_org (fx, org, 0)->n_items, 0);
}

static void
test_bad_sign_up_stores_nothing (void **state)
{
    fixture_t *fx = *state;
    const char *phone = "+79990000111";
    char code[7];
    s_code_send (fx, phone, code);

    char *huge = malloc (10 * 1024 + 1);
    assert_non_null (huge);
    memset (huge, 'a', 10 * 1024);
    huge[10 * 1024] = 0;
    const char *bad_names[] = {
        huge,
        "Ivan\x01Ivanov",
        "Ivan\nIvanov",
        "Ivan\x7fIvanov",
        "Ivan\xc2\x85Ivanov",   /* U+0085, a C1 control */
        "Ivan\xffIvanov",       /* not UTF-8 */
        "I",
        "   ",
        "",
        NULL,
    };
    Identity__AuthReply *auth = NULL;
    Bus__Reply *result = NULL;
    for (int i = 0; bad_names[i]; i++) {
        assert_failure (s_sign_up_with (fx, phone, code, bad_names[i], NULL, &auth, &result),
                        result, ST_BAD_REQUEST, "", "full_name");
        assert_failure (s_login_code (fx, phone, code, &auth, &result), result, ST_NOT_FOUND,
                        "user_not_found", "phone");
    }
    free (huge);
    /*  An empty code, and no code or password at login. */
    assert_failure (s_sign_up_with (fx, phone, "", "Ivan Ivanov", NULL, &auth, &result), result,
                    ST_BAD_REQUEST, "", "code");
    assert_failure (s_login_code (fx, phone, "", &auth, &result), result, ST_BAD_REQUEST, "",
                    "code");
    /*  A code that is not six digits, and a password too short. */
    assert_failure (s_sign_up_with (fx, phone, "12345", "Ivan Ivanov", NULL, &auth, &result),
                    result, ST_BAD_REQUEST, "", "code");
    assert_failure (s_sign_up_with (fx, phone, "12345a", "Ivan Ivanov", NULL, &auth, &result),
                    result, ST_BAD_REQUEST, "", "code");
    assert_failure (s_sign_up_with (fx, phone, code, "Ivan Ivanov", "short", &auth, &result),
                    result, ST_BAD_REQUEST, "", "password");

    /*  Nothing stored: the phone still has no account. */
    assert_failure (s_login_code (fx, phone, code, &auth, &result), result, ST_NOT_FOUND,
                    "user_not_found", "phone");
    assert_failure (s_login_password (fx, phone, "correct horse", &auth, &result), result,
                    ST_NOT_FOUND, "user_not_found", "phone");
    assert_failure (s_user_by_phone (fx, phone, &result), result, ST_NOT_FOUND, "", "phone");
    /*  And the refused requests spent none of the code's five tries. */
    assert_int_equal (s_sign_up_with (fx, phone, code, "  Ivan Ivanov  ", NULL, &auth, NULL),
                      ST_OK);
    assert_string_equal (auth->user->full_name, "Ivan Ivanov");
}

int
main (void)
{
    zsys_init ();
    zsys_set_logstream (NULL);
    log_init ("test", "warn");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (test_role_grant_list_revoke, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_last_admin_stays, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_phone_role_bound_at_sign_up, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_phone_role_needs_code_sign_in, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_phone_role_withdrawn, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_teacher_verification, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_code_attempts, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_code_expires, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_new_code_replaces_old, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_sessions_authenticate_logout, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_security_report, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_bad_phones, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_bad_sign_up_stores_nothing, s_setup, s_teardown),
    };
    return cmocka_run_group_tests_name ("identity", tests, NULL, NULL);
}

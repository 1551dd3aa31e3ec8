/*  Org service tests: the broker, parta-identity and parta-org as processes
    on unix sockets, and a test that talks protobuf to org over the bus as
    the gateway and the other services do. Each test checks what a caller
    sees: the status and field of a failure, or the reply. The whole flows
    are in tests/e2e; here are the cases a client cannot reach through the
    gateway. */
#include "clock.h"
#include "harness.h"
#include "log.h"
#include "events.pb-c.h"
#include "org.pb-c.h"
#include "ulid.h"

#include <czmq.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#define CALL_MS 15000
#define START_MS 15000

/*  A ULID no organisation has. */
#define NO_SUCH_ID "01J0000000000000000000ZZZZ"

typedef struct {
    harness_t h;
    bus_client_t *client;
    arena_t *arena;         /* replies, for the whole test */
} fixture_t;

static int
s_teardown (void **state)
{
    fixture_t *fx = *state;
    bus_client_destroy (&fx->client);
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

/*  The broker, identity (org's approvals grant the admin role there) and
    org. cmocka runs no teardown after a failed setup, so a failure cleans
    up here. */
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
    int ok = harness_spawn (&fx->h, "parta-broker", NULL) > 0
             && harness_spawn (&fx->h, "parta-identity", NULL) > 0
             && harness_spawn (&fx->h, "parta-org", NULL) > 0
             && harness_wait_workers (&fx->h, "identity", 1, START_MS) == 0
             && harness_wait_workers (&fx->h, "org", 1, START_MS) == 0;
    if (ok) {
        fx->client = harness_client (&fx->h);
        fx->arena = arena_new ();
        ok = fx->client && fx->arena;
    }
    if (!ok) {
        print_error ("the broker, identity and org did not start (binaries from %s)\n",
                     getenv ("PARTA_BIN") ? getenv ("PARTA_BIN") : "build/bin");
        s_teardown (state);
        return -1;
    }
    return 0;
}

static status_t
s_call (fixture_t *fx, const char *method, const ProtobufCMessage *request,
        const ProtobufCMessageDescriptor *reply_desc, void *reply_out, Bus__Reply **result,
        const Bus__Caller *caller)
{
    bus_call_opts_t opts = {.timeout_ms = CALL_MS, .caller = caller};
    return bus_client_call (fx->client, "org", method, request, &opts, reply_desc, fx->arena,
                            (ProtobufCMessage **) reply_out, result);
}

/*  A signed-in user with a fresh id. */
static Bus__Caller *
s_user (fixture_t *fx)
{
    Bus__Caller *caller = arena_msg (fx->arena, &bus__caller__descriptor);
    char id[ULID_LEN + 1];
    ulid_make (id);
    caller->user_id = arena_strdup (fx->arena, id);
    return caller;
}

/*  An organisation, applied for and approved by an operator: its id. */
static const char *
s_org (fixture_t *fx, const char *name)
{
    Org__ApplicationAdmin admin = ORG__APPLICATION_ADMIN__INIT;
    admin.full_name = "Ирина Смирнова";
    admin.phone = "+79990001122";
    admin.email = "admin@college.example";
    Org__ApplicationCreateRequest app = ORG__APPLICATION_CREATE_REQUEST__INIT;
    app.org_name = (char *) name;
    app.admin = &admin;
    app.order_number = "12-к";
    app.order_date = "2026-08-25";
    Org__ApplicationCreated *created = NULL;
    assert_int_equal (s_call (fx, "org.application_create", &app.base,
                              &org__application_created__descriptor, &created, NULL, NULL),
                      ST_OK);
    Bus__Caller *op = s_user (fx);
    op->operator_ = 1;
    Org__ApplicationIdRequest approve = ORG__APPLICATION_ID_REQUEST__INIT;
    approve.id = created->id;
    Org__ApplicationApproved *approved = NULL;
    assert_int_equal (s_call (fx, "org.application_approve", &approve.base,
                              &org__application_approved__descriptor, &approved, NULL, op),
                      ST_OK);
    return approved->org_id;
}

/* --- org.me: what GET /v1/me adds to identity's memberships --- */

/*  The caller decides whose units are described (the request names only
    organisations); ids that are not ids and organisations that do not
    exist get no item. */
static void
test_me_answers_for_the_caller (void **state)
{
    fixture_t *fx = *state;
    const char *org_id = s_org (fx, "Касимовский аграрный техникум");
    Bus__Caller *teacher = s_user (fx), *stranger = s_user (fx);
    Org__UnitJoinRequest join = ORG__UNIT_JOIN_REQUEST__INIT;
    join.org_id = (char *) org_id;
    join.user_id = teacher->user_id;
    join.role = BUS__ROLE__ROLE_TEACHER;
    assert_int_equal (s_call (fx, "org.unit_join", &join.base, NULL, NULL, NULL, NULL), ST_OK);

    char *ids[] = {"not-an-id", (char *) org_id, "", NO_SUCH_ID};
    Org__MeRequest req = ORG__ME_REQUEST__INIT;
    req.org_ids = ids;
    req.n_org_ids = 4;
    Org__MeReply *reply = NULL;
    assert_int_equal (s_call (fx, "org.me", &req.base, &org__me_reply__descriptor, &reply, NULL,
                              teacher),
                      ST_OK);
    assert_int_equal (reply->n_items, 1);
    Org__MeOrg *item = reply->items[0];
    assert_string_equal (item->org_id, org_id);
    assert_string_equal (item->name, "Касимовский аграрный техникум");
    assert_int_equal (item->n_units, 1);
    assert_int_equal (item->units[0]->kind, BUS__UNIT_KIND__UNIT_KIND_STAFF);
    assert_int_equal (item->n_students, 0);

    assert_int_equal (s_call (fx, "org.me", &req.base, &org__me_reply__descriptor, &reply, NULL,
                              stranger),
                      ST_OK);
    assert_int_equal (reply->n_items, 1);
    assert_string_equal (reply->items[0]->name, "Касимовский аграрный техникум");
    assert_int_equal (reply->items[0]->n_units, 0);
    assert_int_equal (reply->items[0]->n_students, 0);
}

static void
test_me_refuses_bad_calls (void **state)
{
    fixture_t *fx = *state;
    Org__MeRequest req = ORG__ME_REQUEST__INIT;
    Bus__Reply *result = NULL;
    /*  Nobody signed in. */
    assert_int_equal (s_call (fx, "org.me", &req.base, NULL, NULL, &result, NULL),
                      ST_UNAUTHORIZED);
    /*  At most 1000 organisations. */
    char *ids[1001];
    for (int i = 0; i < 1001; i++)
        ids[i] = NO_SUCH_ID;
    req.org_ids = ids;
    req.n_org_ids = 1001;
    assert_int_equal (s_call (fx, "org.me", &req.base, NULL, NULL, &result, s_user (fx)),
                      ST_BAD_REQUEST);
    assert_string_equal (result->field, "org_ids");
    req.n_org_ids = 1000;
    Org__MeReply *reply = NULL;
    assert_int_equal (s_call (fx, "org.me", &req.base, &org__me_reply__descriptor, &reply, NULL,
                              s_user (fx)),
                      ST_OK);
    assert_int_equal (reply->n_items, 0);
}

/* --- events: what other systems subscribing to org see --- */

/*  The types of org's events from seq `from` on, as sys.replay (what a
    subscriber fills gaps with) answers, joined by spaces. */
static char *
s_event_types (fixture_t *fx, uint64_t from, uint64_t *next)
{
    Bus__ReplayRequest req = BUS__REPLAY_REQUEST__INIT;
    req.from_seq = from;
    Bus__ReplayReply *reply = NULL;
    assert_int_equal (s_call (fx, "sys.replay", &req.base, &bus__replay_reply__descriptor, &reply,
                              NULL, NULL),
                      ST_OK);
    char *out = arena_alloc (fx->arena, 4096);
    out[0] = 0;
    *next = from;
    for (size_t i = 0; i < reply->n_events; i++) {
        Ev__Event *e = ev__event__unpack (NULL, reply->events[i].len, reply->events[i].data);
        assert_non_null (e);
        assert_int_equal (e->seq, *next);
        snprintf (out + strlen (out), 4096 - strlen (out), "%s%s", out[0] ? " " : "", e->type);
        *next = e->seq + 1;
        ev__event__free_unpacked (e, NULL);
    }
    return out;
}

/*  Applications, approval, rejection and the card's edit each write their
    events (docs/events.md), in order and without gaps. */
static void
test_application_and_card_events (void **state)
{
    fixture_t *fx = *state;
    uint64_t next;
    s_event_types (fx, 1, &next);
    const char *org_id = s_org (fx, "Сасовский колледж");
    assert_string_equal (s_event_types (fx, next, &next),
                         "org.application.created org.application.approved org.created "
                         "org.unit.created");

    Org__ApplicationAdmin admin = ORG__APPLICATION_ADMIN__INIT;
    admin.full_name = "Пётр Иванов";
    admin.phone = "+79990003344";
    admin.email = "p@college.example";
    Org__ApplicationCreateRequest app = ORG__APPLICATION_CREATE_REQUEST__INIT;
    app.org_name = "Колледж без приказа";
    app.admin = &admin;
    app.order_number = "1";
    app.order_date = "2026-08-25";
    Org__ApplicationCreated *created = NULL;
    assert_int_equal (s_call (fx, "org.application_create", &app.base,
                              &org__application_created__descriptor, &created, NULL, NULL),
                      ST_OK);
    Bus__Caller *op = s_user (fx);
    op->operator_ = 1;
    Org__ApplicationRejectRequest reject = ORG__APPLICATION_REJECT_REQUEST__INIT;
    reject.id = created->id;
    reject.reason = "нет приказа о назначении";
    assert_int_equal (s_call (fx, "org.application_reject", &reject.base, NULL, NULL, NULL, op),
                      ST_OK);
    assert_string_equal (s_event_types (fx, next, &next),
                         "org.application.created org.application.rejected");

    Bus__Caller *boss = s_user (fx);
    Bus__Membership m = BUS__MEMBERSHIP__INIT;
    Bus__Role roles[] = {BUS__ROLE__ROLE_ADMIN};
    m.org_id = (char *) org_id;
    m.roles = roles;
    m.n_roles = 1;
    Bus__Membership *ms[] = {&m};
    boss->orgs = ms;
    boss->n_orgs = 1;
    Org__OrgUpdateRequest edit = ORG__ORG_UPDATE_REQUEST__INIT;
    edit.org_id = (char *) org_id;
    edit._region_case = ORG__ORG_UPDATE_REQUEST___REGION_REGION;
    edit.region = "Рязанская область";
    assert_int_equal (s_call (fx, "org.update", &edit.base, NULL, NULL, NULL, boss), ST_OK);
    assert_string_equal (s_event_types (fx, next, &next), "org.updated");
}

int
main (void)
{
    zsys_init ();
    zsys_set_logstream (NULL);
    log_init ("test", "warn");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (test_me_answers_for_the_caller, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_me_refuses_bad_calls, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_application_and_card_events, s_setup, s_teardown),
    };
    return cmocka_run_group_tests_name ("org", tests, NULL, NULL);
}

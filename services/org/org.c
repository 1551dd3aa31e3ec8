/*  org: institutions' applications and cards, the unit tree, unit members,
    curators, guardians and movements (API.md "Institutions and structure",
    policy 3А-3Г). Roles live in identity: org asks it and tells it. The
    method table is at the end; all SQL is in org_store.c. */
#include "org.pb-c.h"
#include "bus_worker.h"
#include "clock.h"
#include "identity.pb-c.h"
#include "log.h"
#include "org_store.h"
#include "text.h"
#include "ulid.h"

#include <string.h>
#include <time.h>

#define ROLE_BIT(r) (1 << (r))
#define ME_MAX_ORGS ORG__ME_LIMITS__ME_MAX_ORG_IDS   /* organisations one org.me takes */
#define USERS_GET_MAX 1000      /* ids one identity.users_get takes */

/* --- helpers --- */

/*  A one-line text field: trimmed copy into the arena, or a bad_request. */
static status_t
s_line (bus_call_t *call, const char *field, const char *value, size_t min, size_t max,
        char **out)
{
    size_t cap = max * 4 + 1;
    char *buf = arena_alloc (bus_call_arena (call), cap);
    const char *problem = text_check_line (value ? value : "", min, max, buf, cap);
    if (problem)
        return bus_call_fail (call, ST_BAD_REQUEST, field, "%s %s (at most %zu characters)",
                              field, problem, max);
    *out = buf;
    return ST_OK;
}

static int
s_event (bus_call_t *call, const char *type, const char *org_id, const ProtobufCMessage *payload)
{
    return bus_call_event (call, type, org_id, payload);
}

/*  The roles `user_id` holds in `org_id` as a bit mask (ROLE_BIT). */
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

static int
s_caller_admin (bus_call_t *call, const char *org_id)
{
    return bus_caller_has_role (bus_call_caller (call), org_id, BUS__ROLE__ROLE_ADMIN);
}

/*  Users by id from identity; a phone is kept only when `with_phone`. */
static status_t
s_people (bus_call_t *call, char **ids, size_t n, int with_phone, Org__Person ***out)
{
    arena_t *arena = bus_call_arena (call);
    *out = arena_alloc (arena, (n ? n : 1) * sizeof (Org__Person *));
    Identity__UsersGetRequest req = IDENTITY__USERS_GET_REQUEST__INIT;
    req.ids = ids;
    req.n_ids = n;
    Identity__UserList *list = NULL;
    if (n) {
        status_t st = bus_call_forward (call, "identity", "identity.users_get", &req.base,
                                  &identity__user_list__descriptor, (void **) &list);
        if (st != ST_OK)
            return st;
    }
    for (size_t i = 0; i < n; i++) {
        Org__Person *p = arena_msg (arena, &org__person__descriptor);
        p->id = ids[i];
        p->full_name = "";
        for (size_t j = 0; list && j < list->n_items; j++)
            if (strcmp (list->items[j]->id, ids[i]) == 0) {
                p->full_name = list->items[j]->full_name;
                if (with_phone) {
                    p->_phone_case = ORG__PERSON___PHONE_PHONE;
                    p->phone = list->items[j]->phone;
                }
            }
        (*out)[i] = p;
    }
    return ST_OK;
}

static Org__UnitEvent
s_unit_event (const Org__Unit *u)
{
    Org__UnitEvent ev = ORG__UNIT_EVENT__INIT;
    ev.unit_id = u->id;
    ev.kind = u->kind;
    ev.name = u->name;
    ev.parent_id = u->_parent_id_case ? u->parent_id : "";
    ev.code = u->_code_case ? u->code : "";
    ev.year = u->_year_case ? u->year : 0;
    ev.archived = u->archived;
    ev.curator_id = u->_curator_id_case ? u->curator_id : "";
    return ev;
}

static int
s_member_event (bus_call_t *call, const char *type, const char *org_id, const char *unit_id,
                int unit_kind, const char *user_id, int role, const char *reason)
{
    Org__MemberEvent ev = ORG__MEMBER_EVENT__INIT;
    ev.unit_id = (char *) unit_id;
    ev.unit_kind = (Bus__UnitKind) unit_kind;
    ev.user_id = (char *) user_id;
    ev.role = (Bus__Role) role;
    ev.reason = (char *) reason;
    return s_event (call, type, org_id, &ev.base);
}

static int
s_curator_event (bus_call_t *call, const char *type, const char *org_id, const char *unit_id,
                 const char *user_id)
{
    Org__CuratorEvent ev = ORG__CURATOR_EVENT__INIT;
    ev.unit_id = (char *) unit_id;
    ev.user_id = (char *) user_id;
    return s_event (call, type, org_id, &ev.base);
}

/*  Runs `body` in a transaction of its own (methods marked BUS_NOTXN call
    identity first and must not hold the write lock meanwhile). */
static status_t
s_txn (bus_call_t *call, status_t (*body) (bus_call_t *, void *), void *arg)
{
    db_t *db = bus_call_db (call);
    if (db_begin (db))
        return bus_call_db_error (call);
    status_t st = body (call, arg);
    if (st == ST_OK ? db_commit (db) : db_rollback (db)) {
        if (db_txn_depth (db))
            db_rollback (db);
        return st == ST_OK ? bus_call_db_error (call) : st;
    }
    return st;
}

/* --- applications --- */

static status_t
s_application_create (bus_call_t *call, const void *request, void **reply)
{
    Org__ApplicationCreateRequest req = *(const Org__ApplicationCreateRequest *) request;
    Org__ApplicationAdmin admin;
    char phone[20];
    if (s_line (call, "org_name", req.org_name, 2, 200, &req.org_name)
        || s_line (call, "short_name", req.short_name, 0, 50, &req.short_name)
        || s_line (call, "region", req.region, 0, 200, &req.region)
        || s_line (call, "inn", req.inn, 0, 12, &req.inn))
        return ST_BAD_REQUEST;
    for (const char *p = req.inn; *p; p++)
        if (*p < '0' || *p > '9')
            return bus_call_fail (call, ST_BAD_REQUEST, "inn", "inn is 10 or 12 digits");
    if (*req.inn && strlen (req.inn) != 10 && strlen (req.inn) != 12)
        return bus_call_fail (call, ST_BAD_REQUEST, "inn", "inn is 10 or 12 digits");
    if (!req.admin)
        return bus_call_fail (call, ST_BAD_REQUEST, "admin",
                              "admin {full_name, phone, email} is required");
    admin = *req.admin;
    if (s_line (call, "admin.full_name", admin.full_name, 2, 200, &admin.full_name))
        return ST_BAD_REQUEST;
    if (text_phone_normalize (admin.phone, phone, sizeof phone))
        return bus_call_fail (call, ST_BAD_REQUEST, "admin.phone",
                              "admin.phone must be a mobile number such as +79991234567");
    if (!text_email_valid (admin.email))
        return bus_call_fail (call, ST_BAD_REQUEST, "admin.email", "admin.email is not an e-mail address");
    req.admin = &admin;
    if (s_line (call, "order_number", req.order_number, 1, 64, &req.order_number))
        return ST_BAD_REQUEST;
    if (!text_date_valid (req.order_date))
        return bus_call_fail (call, ST_BAD_REQUEST, "order_date", "order_date is a date YYYY-MM-DD");
    if (!*req.short_name)
        req.short_name = req.org_name;
    char id[ULID_LEN + 1];
    ulid_make (id);
    if (orgstore_application_insert (bus_call_db (call), id, &req, phone, bus_call_now (call)))
        return bus_call_db_error (call);
    Org__ApplicationEvent ev = ORG__APPLICATION_EVENT__INIT;
    ev.id = id;
    ev.status = ORG__APPLICATION_STATUS__APPLICATION_STATUS_PENDING;
    ev.org_name = req.org_name;
    if (s_event (call, "org.application.created", "", &ev.base))
        return bus_call_db_error (call);
    Org__ApplicationCreated *out = arena_msg (bus_call_arena (call), &org__application_created__descriptor);
    out->id = arena_strdup (bus_call_arena (call), id);
    out->status = ORG__APPLICATION_STATUS__APPLICATION_STATUS_PENDING;
    *reply = out;
    return ST_OK;
}

static status_t
s_applications_list (bus_call_t *call, const void *request, void **reply)
{
    const Org__ApplicationsListRequest *req = request;
    Org__ApplicationList *out = arena_msg (bus_call_arena (call), &org__application_list__descriptor);
    if (orgstore_applications_list (bus_call_db (call), req->status, req->cursor,
                                    bus_page_limit (req->limit), bus_call_arena (call), out))
        return bus_call_db_error (call);
    *reply = out;
    return ST_OK;
}

typedef struct {
    Org__Application *app;
    char org_id[ULID_LEN + 1];
    char staff_id[ULID_LEN + 1];
} approve_t;

static status_t
s_approve_create (bus_call_t *call, void *arg)
{
    approve_t *a = arg;
    Org__Org org = ORG__ORG__INIT;
    org.id = a->org_id;
    org.name = a->app->org_name;
    org.short_name = a->app->short_name;
    org.region = a->app->region;
    int64_t now = bus_call_now (call);
    db_t *db = bus_call_db (call);
    /*  The org and its staff group ("АПК"), which every teacher joins. */
    if (orgstore_org_insert (db, &org, a->staff_id, now)
        || orgstore_unit_insert (db, a->staff_id, a->org_id, BUS__UNIT_KIND__UNIT_KIND_STAFF,
                                 a->app->short_name, NULL, NULL, 0, 0, now)
        || orgstore_application_set_org (db, a->app->id, a->org_id))
        return bus_call_db_error (call);
    return ST_OK;
}

static status_t
s_approve_finish (bus_call_t *call, void *arg)
{
    approve_t *a = arg;
    db_t *db = bus_call_db (call);
    int changed = orgstore_application_decide (db, a->app->id,
                                               ORG__APPLICATION_STATUS__APPLICATION_STATUS_APPROVED,
                                               NULL, bus_call_user (call), bus_call_now (call));
    if (changed < 0)
        return bus_call_db_error (call);
    if (changed == 0)
        return ST_OK;   /* someone else finished it meanwhile */
    Org__ApplicationEvent aev = ORG__APPLICATION_EVENT__INIT;
    aev.id = a->app->id;
    aev.status = ORG__APPLICATION_STATUS__APPLICATION_STATUS_APPROVED;
    aev.org_name = a->app->org_name;
    aev.org_id = a->org_id;
    Org__OrgEvent oev = ORG__ORG_EVENT__INIT;
    oev.org_id = a->org_id;
    oev.name = a->app->org_name;
    oev.short_name = a->app->short_name;
    oev.staff_unit_id = a->staff_id;
    Org__Unit *staff = NULL;
    if (orgstore_unit_get (db, a->org_id, a->staff_id, bus_call_arena (call), &staff) != 1)
        return bus_call_db_error (call);
    Org__UnitEvent uev = s_unit_event (staff);
    if (s_event (call, "org.application.approved", a->org_id, &aev.base)
        || s_event (call, "org.created", a->org_id, &oev.base)
        || s_event (call, "org.unit.created", a->org_id, &uev.base))
        return bus_call_db_error (call);
    return ST_OK;
}

/*  Approval makes the org and binds the admin role to the phone from the
    application. Identity is called between two local transactions, so a
    failure there leaves a retry that finishes the job (and approving an
    approved application only answers its org). */
static status_t
s_application_approve (bus_call_t *call, const void *request, void **reply)
{
    const Org__ApplicationIdRequest *req = request;
    if (bus_call_check_id (call, "id", req->id))
        return ST_BAD_REQUEST;
    approve_t a;
    memset (&a, 0, sizeof a);
    int found = orgstore_application_get (bus_call_db (call), req->id, bus_call_arena (call), &a.app);
    if (found < 0)
        return bus_call_db_error (call);
    if (!found)
        return bus_call_fail (call, ST_NOT_FOUND, "id", "no such application");
    Org__ApplicationApproved *out = arena_msg (bus_call_arena (call), &org__application_approved__descriptor);
    if (a.app->status == ORG__APPLICATION_STATUS__APPLICATION_STATUS_REJECTED) {
        bus_call_set_code (call, "application_rejected");
        return bus_call_fail (call, ST_CONFLICT, "id", "the application was rejected");
    }
    if (a.app->status == ORG__APPLICATION_STATUS__APPLICATION_STATUS_APPROVED) {
        /*  A second approval does nothing and says so (its organisation is
            the application's org_id). */
        bus_call_set_code (call, "application_approved");
        return bus_call_fail (call, ST_CONFLICT, "id",
                              "the application was approved already: its organisation is %s",
                              a.app->org_id);
    }
    if (a.app->_org_id_case)
        snprintf (a.org_id, sizeof a.org_id, "%s", a.app->org_id);
    else {
        ulid_make (a.org_id);
        ulid_make (a.staff_id);
        status_t st = s_txn (call, s_approve_create, &a);
        if (st != ST_OK)
            return st;
    }
    char staff[ULID_LEN + 1];
    if (orgstore_org_staff_unit (bus_call_db (call), a.org_id, staff, sizeof staff) != 1)
        return bus_call_db_error (call);
    memcpy (a.staff_id, staff, sizeof staff);
    Identity__RoleGrantRequest grant = IDENTITY__ROLE_GRANT_REQUEST__INIT;
    grant.org_id = a.org_id;
    grant.phone = a.app->admin->phone;
    grant.role = BUS__ROLE__ROLE_ADMIN;
    Identity__OrgRole *role = NULL;
    status_t st = bus_call_forward (call, "identity", "identity.role_grant", &grant.base,
                              &identity__org_role__descriptor, (void **) &role);
    if (st != ST_OK)
        return st;
    st = s_txn (call, s_approve_finish, &a);
    if (st != ST_OK)
        return st;
    out->org_id = arena_strdup (bus_call_arena (call), a.org_id);
    *reply = out;
    return ST_OK;
}

static status_t
s_application_reject (bus_call_t *call, const void *request, void **reply)
{
    const Org__ApplicationRejectRequest *req = request;
    db_t *db = bus_call_db (call);
    if (bus_call_check_id (call, "id", req->id))
        return ST_BAD_REQUEST;
    char *reason;
    if (s_line (call, "reason", req->reason, 1, 1000, &reason))
        return ST_BAD_REQUEST;
    Org__Application *app = NULL;
    int found = orgstore_application_get (db, req->id, bus_call_arena (call), &app);
    if (found < 0)
        return bus_call_db_error (call);
    if (!found)
        return bus_call_fail (call, ST_NOT_FOUND, "id", "no such application");
    if (app->status == ORG__APPLICATION_STATUS__APPLICATION_STATUS_APPROVED) {
        bus_call_set_code (call, "application_approved");
        return bus_call_fail (call, ST_CONFLICT, "id", "the application was approved already");
    }
    if (app->status == ORG__APPLICATION_STATUS__APPLICATION_STATUS_PENDING) {
        if (orgstore_application_decide (db, req->id,
                                         ORG__APPLICATION_STATUS__APPLICATION_STATUS_REJECTED,
                                         reason, bus_call_user (call), bus_call_now (call)) < 0)
            return bus_call_db_error (call);
        Org__ApplicationEvent ev = ORG__APPLICATION_EVENT__INIT;
        ev.id = app->id;
        ev.status = ORG__APPLICATION_STATUS__APPLICATION_STATUS_REJECTED;
        ev.org_name = app->org_name;
        ev.reason = reason;
        if (s_event (call, "org.application.rejected", "", &ev.base))
            return bus_call_db_error (call);
        if (orgstore_application_get (db, req->id, bus_call_arena (call), &app) != 1)
            return bus_call_db_error (call);
    }
    *reply = app;
    return ST_OK;
}

/* --- the card --- */

static status_t
s_search (bus_call_t *call, const void *request, void **reply)
{
    const Org__OrgSearchRequest *req = request;
    char *q;
    if (s_line (call, "q", req->q, 0, 200, &q))
        return ST_BAD_REQUEST;
    char fold[1024];
    text_fold (q, fold, sizeof fold);
    Org__OrgList *out = arena_msg (bus_call_arena (call), &org__org_list__descriptor);
    if (orgstore_org_search (bus_call_db (call), fold, req->cursor, bus_page_limit (req->limit),
                             bus_call_arena (call), out))
        return bus_call_db_error (call);
    *reply = out;
    return ST_OK;
}

static status_t
s_get (bus_call_t *call, const void *request, void **reply)
{
    const Org__OrgIdRequest *req = request;
    Org__Org *org = NULL;
    int found = orgstore_org_get (bus_call_db (call), req->org_id, bus_call_arena (call), &org);
    if (found < 0)
        return bus_call_db_error (call);
    if (!found)
        return bus_call_fail (call, ST_NOT_FOUND, "org_id", "no such organisation");
    *reply = org;
    return ST_OK;
}

static status_t
s_update (bus_call_t *call, const void *request, void **reply)
{
    const Org__OrgUpdateRequest *req = request;
    db_t *db = bus_call_db (call);
    arena_t *arena = bus_call_arena (call);
    Org__Org *org = NULL;
    int found = orgstore_org_get (db, req->org_id, arena, &org);
    if (found < 0)
        return bus_call_db_error (call);
    if (!found)
        return bus_call_fail (call, ST_NOT_FOUND, "org_id", "no such organisation");
    if (req->_name_case && s_line (call, "name", req->name, 2, 200, &org->name))
        return ST_BAD_REQUEST;
    if (req->_short_name_case && s_line (call, "short_name", req->short_name, 1, 50, &org->short_name))
        return ST_BAD_REQUEST;
    if (req->_region_case && s_line (call, "region", req->region, 0, 200, &org->region))
        return ST_BAD_REQUEST;
    if (req->_address_case && s_line (call, "address", req->address, 0, 500, &org->address))
        return ST_BAD_REQUEST;
    if (req->_phone_case) {
        char *phone;
        if (s_line (call, "phone", req->phone, 0, 40, &phone))
            return ST_BAD_REQUEST;
        char normal[20];
        if (*phone && text_phone_normalize (phone, normal, sizeof normal))
            return bus_call_fail (call, ST_BAD_REQUEST, "phone", "phone is not a phone number");
        org->phone = *phone ? arena_strdup (arena, normal) : "";
    }
    if (req->_email_case) {
        char *email;
        if (s_line (call, "email", req->email, 0, 254, &email))
            return ST_BAD_REQUEST;
        if (*email && !text_email_valid (email))
            return bus_call_fail (call, ST_BAD_REQUEST, "email", "email is not an e-mail address");
        org->email = email;
    }
    if (req->_website_case) {
        char *site;
        if (s_line (call, "website", req->website, 0, 300, &site))
            return ST_BAD_REQUEST;
        if (*site && strncmp (site, "https://", 8) != 0 && strncmp (site, "http://", 7) != 0)
            return bus_call_fail (call, ST_BAD_REQUEST, "website", "website starts with https://");
        org->website = site;
    }
    if (req->_description_case) {
        char *text = arena_alloc (arena, 4000 * 4 + 1);
        const char *problem = text_check_multiline (req->description ? req->description : "", 0,
                                                    4000, text, 4000 * 4 + 1);
        if (problem)
            return bus_call_fail (call, ST_BAD_REQUEST, "description",
                                  "description %s (at most 4000 characters)", problem);
        org->description = text;
    }
    if (orgstore_org_update (db, org, bus_call_now (call)))
        return bus_call_db_error (call);
    Org__OrgEvent ev = ORG__ORG_EVENT__INIT;
    ev.org_id = org->id;
    ev.name = org->name;
    ev.short_name = org->short_name;
    if (s_event (call, "org.updated", org->id, &ev.base))
        return bus_call_db_error (call);
    *reply = org;
    return ST_OK;
}

/* --- units --- */

static status_t
s_unit_load_field (bus_call_t *call, const char *field, const char *org_id, const char *unit_id,
                   Org__Unit **unit)
{
    if (bus_call_check_id (call, field, unit_id))
        return ST_BAD_REQUEST;
    int found = orgstore_unit_get (bus_call_db (call), org_id, unit_id, bus_call_arena (call), unit);
    if (found < 0)
        return bus_call_db_error (call);
    if (!found)
        return bus_call_fail (call, ST_NOT_FOUND, field, "no such unit");
    return ST_OK;
}

static status_t
s_unit_load (bus_call_t *call, const char *org_id, const char *unit_id, Org__Unit **unit)
{
    return s_unit_load_field (call, "unit_id", org_id, unit_id, unit);
}

static status_t
s_unit_fields (bus_call_t *call, int kind, const char *code, int has_code, int year, int has_year,
               char **code_out)
{
    if (has_code) {
        if (kind != BUS__UNIT_KIND__UNIT_KIND_GROUP)
            return bus_call_fail (call, ST_BAD_REQUEST, "code", "only groups have a code");
        if (s_line (call, "code", code, 1, 32, code_out))
            return ST_BAD_REQUEST;
    }
    if (has_year) {
        if (kind != BUS__UNIT_KIND__UNIT_KIND_GROUP)
            return bus_call_fail (call, ST_BAD_REQUEST, "year", "only groups have a year of study");
        if (year < 1 || year > 12)
            return bus_call_fail (call, ST_BAD_REQUEST, "year", "year of study is 1..12");
    }
    return ST_OK;
}

static status_t
s_unit_create (bus_call_t *call, const void *request, void **reply)
{
    const Org__UnitCreateRequest *req = request;
    db_t *db = bus_call_db (call);
    arena_t *arena = bus_call_arena (call);
    if (req->kind == BUS__UNIT_KIND__UNIT_KIND_UNSPECIFIED)
        return bus_call_fail (call, ST_BAD_REQUEST, "kind",
                              "kind is department, group, staff or other");
    char *name, *code = NULL;
    if (s_line (call, "name", req->name, 1, 200, &name))
        return ST_BAD_REQUEST;
    if (s_unit_fields (call, req->kind, req->code, req->_code_case, req->year, req->_year_case, &code))
        return ST_BAD_REQUEST;
    if (req->kind == BUS__UNIT_KIND__UNIT_KIND_STAFF) {
        bus_call_set_code (call, "staff_group_exists");
        return bus_call_fail (call, ST_CONFLICT, "kind",
                              "the organisation's staff group is made with it; there is one");
    }
    const char *parent = NULL;
    if (req->_parent_id_case && req->parent_id && *req->parent_id) {
        Org__Unit *p = NULL;
        status_t st = s_unit_load_field (call, "parent_id", req->org_id, req->parent_id, &p);
        if (st != ST_OK)
            return st;
        if (p->archived)
            return bus_call_fail (call, ST_CONFLICT, "parent_id", "the parent unit is archived");
        parent = p->id;
    }
    char id[ULID_LEN + 1];
    ulid_make (id);
    if (orgstore_unit_insert (db, id, req->org_id, req->kind, name, parent, code, req->_year_case,
                              req->year, bus_call_now (call)))
        return bus_call_db_error (call);
    Org__Unit *unit = NULL;
    if (orgstore_unit_get (db, req->org_id, id, arena, &unit) != 1)
        return bus_call_db_error (call);
    Org__UnitEvent ev = s_unit_event (unit);
    if (s_event (call, "org.unit.created", req->org_id, &ev.base))
        return bus_call_db_error (call);
    *reply = unit;
    return ST_OK;
}

static int
s_is_staff (bus_call_t *call, const char *org_id)
{
    return bus_caller_is_staff (bus_call_caller (call), org_id);
}

static status_t
s_units_list (bus_call_t *call, const void *request, void **reply)
{
    const Org__UnitsListRequest *req = request;
    /*  Staff see the whole tree; students and parents the units they (or
        their children) belong to. */
    const char *only = s_is_staff (call, req->org_id) ? NULL : bus_call_user (call);
    Org__UnitList *out = arena_msg (bus_call_arena (call), &org__unit_list__descriptor);
    if (orgstore_units_list (bus_call_db (call), req->org_id, req->kind, req->parent_id,
                             req->include_archived, only, req->cursor, bus_page_limit (req->limit),
                             bus_call_arena (call), out))
        return bus_call_db_error (call);
    *reply = out;
    return ST_OK;
}

static status_t
s_unit_update (bus_call_t *call, const void *request, void **reply)
{
    const Org__UnitUpdateRequest *req = request;
    db_t *db = bus_call_db (call);
    Org__Unit *unit = NULL;
    status_t st = s_unit_load (call, req->org_id, req->unit_id, &unit);
    if (st != ST_OK)
        return st;
    int was_archived = unit->archived;
    if (req->_name_case && s_line (call, "name", req->name, 1, 200, &unit->name))
        return ST_BAD_REQUEST;
    char *code = unit->code;
    if (s_unit_fields (call, unit->kind, req->code, req->_code_case && req->code && *req->code,
                       req->year, req->_year_case, &code))
        return ST_BAD_REQUEST;
    if (req->_code_case) {
        unit->_code_case = req->code && *req->code ? ORG__UNIT___CODE_CODE : 0;
        unit->code = code;
    }
    if (req->_year_case) {
        unit->_year_case = ORG__UNIT___YEAR_YEAR;
        unit->year = req->year;
    }
    if (req->_parent_id_case) {
        if (!req->parent_id || !*req->parent_id)
            unit->_parent_id_case = 0;
        else {
            Org__Unit *p = NULL;
            if ((st = s_unit_load_field (call, "parent_id", req->org_id, req->parent_id, &p)))
                return st;
            int same = unit->_parent_id_case && unit->parent_id && strcmp (unit->parent_id, p->id) == 0;
            if (p->archived && !same)
                return bus_call_fail (call, ST_CONFLICT, "parent_id", "the parent unit is archived");
            int cycle = orgstore_unit_is_ancestor (db, unit->id, p->id);
            if (cycle < 0)
                return bus_call_db_error (call);
            if (cycle)
                return bus_call_fail (call, ST_BAD_REQUEST, "parent_id",
                                      "a unit cannot be inside itself or one of its own units");
            unit->_parent_id_case = ORG__UNIT___PARENT_ID_PARENT_ID;
            unit->parent_id = p->id;
        }
    }
    if (req->_archived_case) {
        if (req->archived && unit->kind == BUS__UNIT_KIND__UNIT_KIND_STAFF)
            return bus_call_fail (call, ST_CONFLICT, "archived",
                                  "the staff group cannot be archived: every teacher is in it");
        unit->archived = req->archived;
    }
    if (orgstore_unit_update (db, req->org_id, unit, bus_call_now (call)))
        return bus_call_db_error (call);
    Org__UnitEvent ev = s_unit_event (unit);
    const char *type = unit->archived && !was_archived ? "org.unit.archived" : "org.unit.updated";
    if (s_event (call, type, req->org_id, &ev.base))
        return bus_call_db_error (call);
    *reply = unit;
    return ST_OK;
}

static status_t
s_unit_get (bus_call_t *call, const void *request, void **reply)
{
    const Org__UnitIdRequest *req = request;
    Org__Unit *unit = NULL;
    {
        status_t ls = s_unit_load (call, req->org_id, req->unit_id, &unit);
        if (ls != ST_OK)
            return ls;
    }
    *reply = unit;
    return ST_OK;
}

static status_t
s_unit_members (bus_call_t *call, const void *request, void **reply)
{
    const Org__UnitMembersRequest *req = request;
    db_t *db = bus_call_db (call);
    Org__Unit *unit = NULL;
    {
        status_t ls = s_unit_load (call, req->org_id, req->unit_id, &unit);
        if (ls != ST_OK)
            return ls;
    }
    if (!s_is_staff (call, req->org_id)) {
        int in = orgstore_member_in (db, unit->id, bus_call_user (call));
        if (in < 0)
            return bus_call_db_error (call);
        if (!in)
            return bus_call_fail (call, ST_FORBIDDEN, NULL,
                                  "only staff and the unit's own members see its members");
    }
    uint32_t limit = bus_page_limit (req->limit);
    char **ids;
    int *roles;
    size_t n = 0;
    if (orgstore_unit_members (db, unit->id, req->cursor, limit + 1, bus_call_arena (call), &ids,
                               &roles, &n))
        return bus_call_db_error (call);
    Org__UnitMemberList *out = arena_msg (bus_call_arena (call), &org__unit_member_list__descriptor);
    if (n > limit) {
        n = limit;
        out->_next_case = ORG__UNIT_MEMBER_LIST___NEXT_NEXT;
        out->next = ids[limit - 1];
    }
    Org__Person **people;
    status_t st = s_people (call, ids, n, s_caller_admin (call, req->org_id), &people);
    if (st != ST_OK)
        return st;
    out->items = arena_alloc (bus_call_arena (call), (n ? n : 1) * sizeof (Org__UnitMember *));
    for (size_t i = 0; i < n; i++) {
        Org__UnitMember *m = arena_msg (bus_call_arena (call), &org__unit_member__descriptor);
        m->user = people[i];
        m->role = (Bus__Role) roles[i];
        out->items[out->n_items++] = m;
    }
    *reply = out;
    return ST_OK;
}

typedef struct {
    const char *org_id;
    Org__Unit *unit;
    const char *user_id;
} curator_t;

static status_t
s_curator_txn (bus_call_t *call, void *arg)
{
    curator_t *c = arg;
    db_t *db = bus_call_db (call);
    const char *old = c->unit->_curator_id_case ? c->unit->curator_id : NULL;
    if (old && c->user_id && strcmp (old, c->user_id) == 0)
        return ST_OK;
    if (orgstore_unit_set_curator (db, c->unit->id, c->user_id, bus_call_now (call)))
        return bus_call_db_error (call);
    if (old && s_curator_event (call, "org.curator.unset", c->org_id, c->unit->id, old))
        return bus_call_db_error (call);
    if (c->user_id && s_curator_event (call, "org.curator.set", c->org_id, c->unit->id, c->user_id))
        return bus_call_db_error (call);
    c->unit->_curator_id_case = c->user_id ? ORG__UNIT___CURATOR_ID_CURATOR_ID : 0;
    c->unit->curator_id = (char *) c->user_id;
    return ST_OK;
}

static status_t
s_curator_set (bus_call_t *call, const void *request, void **reply)
{
    const Org__CuratorSetRequest *req = request;
    Org__Unit *unit = NULL;
    {
        status_t ls = s_unit_load (call, req->org_id, req->unit_id, &unit);
        if (ls != ST_OK)
            return ls;
    }
    if (unit->kind != BUS__UNIT_KIND__UNIT_KIND_GROUP)
        return bus_call_fail (call, ST_BAD_REQUEST, "unit_id", "only a group has a curator");
    if (unit->archived)
        return bus_call_fail (call, ST_CONFLICT, "unit_id", "the group is archived");
    if (bus_call_check_id (call, "user_id", req->user_id))
        return ST_BAD_REQUEST;
    int mask = 0;
    status_t st = s_roles_of (call, req->org_id, req->user_id, &mask, NULL);
    if (st != ST_OK)
        return st;
    if (!(mask & ROLE_BIT (BUS__ROLE__ROLE_TEACHER))) {
        bus_call_set_code (call, "not_a_teacher");
        return bus_call_fail (call, ST_BAD_REQUEST, "user_id",
                              "a curator must be a teacher of this organisation");
    }
    curator_t c = {req->org_id, unit, req->user_id};
    st = s_txn (call, s_curator_txn, &c);
    if (st != ST_OK)
        return st;
    *reply = unit;
    return ST_OK;
}

static status_t
s_curator_unset (bus_call_t *call, const void *request, void **reply)
{
    (void) reply;
    const Org__UnitIdRequest *req = request;
    Org__Unit *unit = NULL;
    {
        status_t ls = s_unit_load (call, req->org_id, req->unit_id, &unit);
        if (ls != ST_OK)
            return ls;
    }
    if (!unit->_curator_id_case)
        return bus_call_fail (call, ST_NOT_FOUND, "unit_id", "the group has no curator");
    curator_t c = {req->org_id, unit, NULL};
    return s_txn (call, s_curator_txn, &c);
}

/* --- members --- */

typedef struct {
    zhashx_t *units;            /* user_id -> zlistx of Bus__UnitRef* */
    arena_t *arena;
} units_index_t;

static void
s_index_membership (void *arg, const char *user_id, const char *unit_id, const char *name, int kind)
{
    units_index_t *ix = arg;
    zlistx_t *list = zhashx_lookup (ix->units, user_id);
    if (!list) {
        list = zlistx_new ();
        zhashx_insert (ix->units, user_id, list);
    }
    Bus__UnitRef *r = arena_msg (ix->arena, &bus__unit_ref__descriptor);
    r->id = arena_strdup (ix->arena, unit_id);
    r->name = arena_strdup (ix->arena, name);
    r->kind = (Bus__UnitKind) kind;
    zlistx_add_end (list, r);
}

static void
s_list_destroy (void **item)
{
    zlistx_t *list = *item;
    zlistx_destroy (&list);
    *item = NULL;
}

static void
s_member_units (units_index_t *ix, const char *user_id, Org__Member *m)
{
    zlistx_t *list = zhashx_lookup (ix->units, user_id);
    size_t n = list ? zlistx_size (list) : 0;
    m->units = arena_alloc (ix->arena, (n ? n : 1) * sizeof (Bus__UnitRef *));
    for (Bus__UnitRef *r = list ? zlistx_first (list) : NULL; r; r = zlistx_next (list))
        m->units[m->n_units++] = r;
}

static int
s_cmp_str (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

static status_t
s_members_list (bus_call_t *call, const void *request, void **reply)
{
    const Org__MembersListRequest *req = request;
    arena_t *arena = bus_call_arena (call);
    db_t *db = bus_call_db (call);
    char *q;
    if (s_line (call, "q", req->q, 0, 200, &q))
        return ST_BAD_REQUEST;
    if (req->unit_id && *req->unit_id) {
        Org__Unit *unit = NULL;
        {
            status_t ls = s_unit_load (call, req->org_id, req->unit_id, &unit);
            if (ls != ST_OK)
                return ls;
        }
    }
    Identity__RolesByOrgRequest rreq = IDENTITY__ROLES_BY_ORG_REQUEST__INIT;
    rreq.org_id = req->org_id;
    Identity__RoleList *roles = NULL;
    status_t st = bus_call_forward (call, "identity", "identity.roles_by_org", &rreq.base,
                              &identity__role_list__descriptor, (void **) &roles);
    if (st != ST_OK)
        return st;
    units_index_t ix = {zhashx_new (), arena};
    zhashx_set_destructor (ix.units, s_list_destroy);
    if (orgstore_memberships (db, req->org_id, s_index_membership, &ix)) {
        zhashx_destroy (&ix.units);
        return bus_call_db_error (call);
    }
    /*  Distinct users (roles come one per row), sorted, after the cursor. */
    char **ids = arena_alloc (arena, (roles->n_items + 1) * sizeof (char *));
    size_t n = 0;
    for (size_t i = 0; i < roles->n_items; i++) {
        const char *u = roles->items[i]->user_id;
        if (!u || !*u)
            continue;   /* still waiting for its phone to sign up */
        int seen = 0;
        for (size_t j = 0; j < n && !seen; j++)
            seen = strcmp (ids[j], u) == 0;
        if (!seen)
            ids[n++] = (char *) u;
    }
    qsort (ids, n, sizeof ids[0], s_cmp_str);
    Org__Person **people;
    st = s_people (call, ids, n, s_caller_admin (call, req->org_id), &people);
    if (st != ST_OK) {
        zhashx_destroy (&ix.units);
        return st;
    }
    char fold_q[1024];
    text_fold (q, fold_q, sizeof fold_q);
    uint32_t limit = bus_page_limit (req->limit);
    Org__MemberList *out = arena_msg (arena, &org__member_list__descriptor);
    out->items = arena_alloc (arena, (limit + 1) * sizeof (Org__Member *));
    for (size_t i = 0; i < n; i++) {
        if (req->cursor && *req->cursor && strcmp (ids[i], req->cursor) <= 0)
            continue;
        Org__Member *m = arena_msg (arena, &org__member__descriptor);
        m->user = people[i];
        m->roles = arena_alloc (arena, 8 * sizeof (Bus__Role));
        int has_role = req->role == 0;
        for (size_t r = 0; r < roles->n_items; r++)
            if (strcmp (roles->items[r]->user_id, ids[i]) == 0 && m->n_roles < 8) {
                m->roles[m->n_roles++] = roles->items[r]->role;
                if (roles->items[r]->role == req->role)
                    has_role = 1;
                if (roles->items[r]->role == BUS__ROLE__ROLE_TEACHER)
                    m->verified = roles->items[r]->verified;
            }
        if (!has_role)
            continue;
        s_member_units (&ix, ids[i], m);
        if (req->unit_id && *req->unit_id) {
            int in = 0;
            for (size_t k = 0; k < m->n_units; k++)
                in |= strcmp (m->units[k]->id, req->unit_id) == 0;
            if (!in)
                continue;
        }
        if (*fold_q) {
            char fold_name[1024];
            text_fold (m->user->full_name, fold_name, sizeof fold_name);
            if (!strstr (fold_name, fold_q))
                continue;
        }
        if (out->n_items == limit) {
            out->_next_case = ORG__MEMBER_LIST___NEXT_NEXT;
            out->next = out->items[limit - 1]->user->id;
            break;
        }
        out->items[out->n_items++] = m;
    }
    zhashx_destroy (&ix.units);
    *reply = out;
    return ST_OK;
}

/*  One member as the members listing shows them. */
static status_t
s_member (bus_call_t *call, const char *org_id, const char *user_id, Org__Member **out)
{
    arena_t *arena = bus_call_arena (call);
    Identity__RolesByUserRequest rreq = IDENTITY__ROLES_BY_USER_REQUEST__INIT;
    rreq.user_id = (char *) user_id;
    Identity__RoleList *roles = NULL;
    status_t st = bus_call_forward (call, "identity", "identity.roles_by_user", &rreq.base,
                              &identity__role_list__descriptor, (void **) &roles);
    if (st != ST_OK)
        return st;
    Org__Person **people;
    char *ids[1] = {(char *) user_id};
    st = s_people (call, ids, 1, s_caller_admin (call, org_id), &people);
    if (st != ST_OK)
        return st;
    Org__Member *m = arena_msg (arena, &org__member__descriptor);
    m->user = people[0];
    m->roles = arena_alloc (arena, 8 * sizeof (Bus__Role));
    for (size_t r = 0; r < roles->n_items; r++)
        if (strcmp (roles->items[r]->org_id, org_id) == 0 && m->n_roles < 8) {
            m->roles[m->n_roles++] = roles->items[r]->role;
            if (roles->items[r]->role == BUS__ROLE__ROLE_TEACHER)
                m->verified = roles->items[r]->verified;
        }
    if (orgstore_user_units (bus_call_db (call), org_id, user_id, arena, &m->units, &m->n_units))
        return bus_call_db_error (call);
    *out = m;
    return ST_OK;
}

/*  Puts a teacher into the org's staff group (policy 3А: "группа «АПК»"). */
static status_t
s_join_staff (bus_call_t *call, const char *org_id, const char *user_id, const char *reason)
{
    char staff[ULID_LEN + 1];
    db_t *db = bus_call_db (call);
    if (orgstore_org_staff_unit (db, org_id, staff, sizeof staff) != 1)
        return bus_call_db_error (call);
    int added = orgstore_member_add (db, org_id, staff, BUS__UNIT_KIND__UNIT_KIND_STAFF, user_id,
                                     BUS__ROLE__ROLE_TEACHER, bus_call_now (call));
    if (added < 0)
        return bus_call_db_error (call);
    if (added && s_member_event (call, "org.unit.member_added", org_id, staff,
                                 BUS__UNIT_KIND__UNIT_KIND_STAFF, user_id, BUS__ROLE__ROLE_TEACHER,
                                 reason))
        return bus_call_db_error (call);
    return ST_OK;
}

typedef struct {
    const char *org_id;
    const char *user_id;
    int role;
    const char *reason;
} role_fx_t;

static status_t
s_role_granted_txn (bus_call_t *call, void *arg)
{
    role_fx_t *fx = arg;
    if (fx->role == BUS__ROLE__ROLE_TEACHER)
        return s_join_staff (call, fx->org_id, fx->user_id, fx->reason);
    return ST_OK;
}

/*  What losing a role takes away here: a teacher leaves the staff group
    and gives up curatorships; a student leaves their group; a parent's
    links to children go. */
static status_t
s_role_lost_txn (bus_call_t *call, void *arg)
{
    role_fx_t *fx = arg;
    db_t *db = bus_call_db (call);
    arena_t *arena = bus_call_arena (call);
    if (fx->role == BUS__ROLE__ROLE_TEACHER) {
        char staff[ULID_LEN + 1];
        if (orgstore_org_staff_unit (db, fx->org_id, staff, sizeof staff) != 1)
            return bus_call_db_error (call);
        int removed = orgstore_member_remove (db, staff, fx->user_id);
        if (removed < 0)
            return bus_call_db_error (call);
        if (removed && s_member_event (call, "org.unit.member_removed", fx->org_id, staff,
                                       BUS__UNIT_KIND__UNIT_KIND_STAFF, fx->user_id,
                                       BUS__ROLE__ROLE_TEACHER, fx->reason))
            return bus_call_db_error (call);
        char **units;
        size_t n = 0;
        if (orgstore_curated_units (db, fx->org_id, fx->user_id, arena, &units, &n))
            return bus_call_db_error (call);
        for (size_t i = 0; i < n; i++)
            if (orgstore_unit_set_curator (db, units[i], NULL, bus_call_now (call))
                || s_curator_event (call, "org.curator.unset", fx->org_id, units[i], fx->user_id))
                return bus_call_db_error (call);
    }
    if (fx->role == BUS__ROLE__ROLE_STUDENT) {
        char group[ULID_LEN + 1];
        int in = orgstore_student_group (db, fx->org_id, fx->user_id, group, sizeof group);
        if (in < 0)
            return bus_call_db_error (call);
        if (in && (orgstore_member_remove (db, group, fx->user_id) < 0
                   || s_member_event (call, "org.unit.member_removed", fx->org_id, group,
                                      BUS__UNIT_KIND__UNIT_KIND_GROUP, fx->user_id,
                                      BUS__ROLE__ROLE_STUDENT, fx->reason)))
            return bus_call_db_error (call);
        if (orgstore_leave_clear (db, fx->org_id, fx->user_id))
            return bus_call_db_error (call);
        char **parents;
        size_t n = 0;
        if (orgstore_guardian_parents (db, fx->org_id, fx->user_id, arena, &parents, &n))
            return bus_call_db_error (call);
        for (size_t i = 0; i < n; i++) {
            Org__GuardianEvent ev = ORG__GUARDIAN_EVENT__INIT;
            ev.parent_id = parents[i];
            ev.student_id = (char *) fx->user_id;
            ev.unit_id = in ? group : "";
            if (orgstore_guardian_remove (db, fx->org_id, parents[i], fx->user_id) < 0
                || s_event (call, "org.guardian.unlinked", fx->org_id, &ev.base))
                return bus_call_db_error (call);
        }
    }
    if (fx->role == BUS__ROLE__ROLE_PARENT) {
        char **kids;
        size_t n = 0;
        if (orgstore_guardian_students (db, fx->org_id, fx->user_id, arena, &kids, &n))
            return bus_call_db_error (call);
        for (size_t i = 0; i < n; i++) {
            char group[ULID_LEN + 1] = "";
            orgstore_student_group (db, fx->org_id, kids[i], group, sizeof group);
            Org__GuardianEvent ev = ORG__GUARDIAN_EVENT__INIT;
            ev.parent_id = (char *) fx->user_id;
            ev.student_id = kids[i];
            ev.unit_id = group;
            if (orgstore_guardian_remove (db, fx->org_id, fx->user_id, kids[i]) < 0
                || s_event (call, "org.guardian.unlinked", fx->org_id, &ev.base))
                return bus_call_db_error (call);
        }
    }
    return ST_OK;
}

static status_t
s_role_check (bus_call_t *call, int role)
{
    if (role < BUS__ROLE__ROLE_ADMIN || role > BUS__ROLE__ROLE_PARENT)
        return bus_call_fail (call, ST_BAD_REQUEST, "role",
                              "role is admin, administration, teacher, student or parent");
    return ST_OK;
}

static status_t
s_grant (bus_call_t *call, const char *org_id, const char *user_id, int role, const char *reason)
{
    Identity__RoleGrantRequest grant = IDENTITY__ROLE_GRANT_REQUEST__INIT;
    grant.org_id = (char *) org_id;
    grant.user_id = (char *) user_id;
    grant.role = (Bus__Role) role;
    Identity__OrgRole *row = NULL;
    status_t st = bus_call_forward (call, "identity", "identity.role_grant", &grant.base,
                              &identity__org_role__descriptor, (void **) &row);
    if (st != ST_OK)
        return st;
    role_fx_t fx = {org_id, user_id, role, reason};
    return s_txn (call, s_role_granted_txn, &fx);
}

static status_t
s_revoke (bus_call_t *call, const char *org_id, const char *user_id, int role, const char *reason)
{
    Identity__RoleRevokeRequest rr = IDENTITY__ROLE_REVOKE_REQUEST__INIT;
    rr.org_id = (char *) org_id;
    rr.user_id = (char *) user_id;
    rr.role = (Bus__Role) role;
    void *none = NULL;
    status_t st = bus_call_forward (call, "identity", "identity.role_revoke", &rr.base, NULL, &none);
    if (st != ST_OK)
        return st;
    role_fx_t fx = {org_id, user_id, role, reason};
    return s_txn (call, s_role_lost_txn, &fx);
}

static status_t
s_role_grant (bus_call_t *call, const void *request, void **reply)
{
    const Org__RoleGrantRequest *req = request;
    if (bus_call_check_id (call, "user_id", req->user_id) || s_role_check (call, req->role))
        return ST_BAD_REQUEST;
    status_t st = s_grant (call, req->org_id, req->user_id, req->role, "role_granted");
    if (st != ST_OK)
        return st;
    return s_member (call, req->org_id, req->user_id, (Org__Member **) reply);
}

static status_t
s_role_revoke (bus_call_t *call, const void *request, void **reply)
{
    (void) reply;
    const Org__RoleRevokeRequest *req = request;
    if (bus_call_check_id (call, "user_id", req->user_id) || s_role_check (call, req->role))
        return ST_BAD_REQUEST;
    return s_revoke (call, req->org_id, req->user_id, req->role, "role_revoked");
}

static status_t
s_verify (bus_call_t *call, const void *request, void **reply)
{
    const Org__VerifyRequest *req = request;
    if (bus_call_check_id (call, "user_id", req->user_id))
        return ST_BAD_REQUEST;
    Identity__RoleVerifyRequest vr = IDENTITY__ROLE_VERIFY_REQUEST__INIT;
    vr.org_id = req->org_id;
    vr.user_id = req->user_id;
    vr.verified = req->verified;
    vr.note = req->note;
    Identity__OrgRole *row = NULL;
    status_t st = bus_call_forward (call, "identity", "identity.role_verify", &vr.base,
                              &identity__org_role__descriptor, (void **) &row);
    if (st != ST_OK)
        return st;
    return s_member (call, req->org_id, req->user_id, (Org__Member **) reply);
}

/* --- guardians --- */

/*  Admins link any parent and student of the org; a curator, the students
    of their own group. */
static status_t
s_guardian_check (bus_call_t *call, const Org__GuardianRequest *req, char *group, size_t len)
{
    if (bus_call_check_id (call, "parent_id", req->parent_id) || bus_call_check_id (call, "student_id", req->student_id))
        return ST_BAD_REQUEST;
    db_t *db = bus_call_db (call);
    group[0] = 0;
    if (orgstore_student_group (db, req->org_id, req->student_id, group, len) < 0)
        return bus_call_db_error (call);
    if (!s_caller_admin (call, req->org_id)) {
        Org__Unit *unit = NULL;
        int curator = group[0]
                      && orgstore_unit_get (db, req->org_id, group, bus_call_arena (call), &unit) == 1
                      && unit->_curator_id_case
                      && strcmp (unit->curator_id, bus_call_user (call)) == 0;
        if (!curator)
            return bus_call_fail (call, ST_FORBIDDEN, NULL,
                                  "only admins and the curator of the student's group may do this");
    }
    return ST_OK;
}

typedef struct {
    const Org__GuardianRequest *req;
    const char *group;
    int link;
    int changed;
} guardian_t;

static status_t
s_guardian_txn (bus_call_t *call, void *arg)
{
    guardian_t *g = arg;
    db_t *db = bus_call_db (call);
    const Org__GuardianRequest *req = g->req;
    int rc = g->link ? orgstore_guardian_add (db, req->org_id, req->parent_id, req->student_id,
                                              bus_call_now (call))
                     : orgstore_guardian_remove (db, req->org_id, req->parent_id, req->student_id);
    if (rc < 0)
        return bus_call_db_error (call);
    g->changed = rc;
    if (!rc)
        return ST_OK;
    Org__GuardianEvent ev = ORG__GUARDIAN_EVENT__INIT;
    ev.parent_id = req->parent_id;
    ev.student_id = req->student_id;
    ev.unit_id = (char *) g->group;
    if (s_event (call, g->link ? "org.guardian.linked" : "org.guardian.unlinked", req->org_id, &ev.base))
        return bus_call_db_error (call);
    return ST_OK;
}

static status_t
s_need_role (bus_call_t *call, const char *org_id, const char *user_id, int role,
             const char *field, const char *code, const char *what)
{
    int mask = 0;
    status_t st = s_roles_of (call, org_id, user_id, &mask, NULL);
    if (st != ST_OK)
        return st;
    if (!(mask & ROLE_BIT (role))) {
        bus_call_set_code (call, code);
        return bus_call_fail (call, ST_BAD_REQUEST, field, "%s must be %s of this organisation",
                              field, what);
    }
    return ST_OK;
}

static status_t
s_guardian_link (bus_call_t *call, const void *request, void **reply)
{
    const Org__GuardianRequest *req = request;
    char group[ULID_LEN + 1];
    status_t st = s_guardian_check (call, req, group, sizeof group);
    if (st != ST_OK)
        return st;
    if ((st = s_need_role (call, req->org_id, req->parent_id, BUS__ROLE__ROLE_PARENT, "parent_id",
                           "not_a_parent", "a parent"))
        || (st = s_need_role (call, req->org_id, req->student_id, BUS__ROLE__ROLE_STUDENT,
                              "student_id", "not_a_student", "a student")))
        return st;
    guardian_t g = {req, group, 1, 0};
    st = s_txn (call, s_guardian_txn, &g);
    if (st != ST_OK)
        return st;
    Org__Guardian *out = arena_msg (bus_call_arena (call), &org__guardian__descriptor);
    out->org_id = req->org_id;
    out->parent_id = req->parent_id;
    out->student_id = req->student_id;
    out->created_at = bus_call_now (call);
    *reply = out;
    return ST_OK;
}

static status_t
s_guardian_unlink (bus_call_t *call, const void *request, void **reply)
{
    (void) reply;
    const Org__GuardianRequest *req = request;
    char group[ULID_LEN + 1];
    status_t st = s_guardian_check (call, req, group, sizeof group);
    if (st != ST_OK)
        return st;
    guardian_t g = {req, group, 0, 0};
    st = s_txn (call, s_guardian_txn, &g);
    if (st != ST_OK)
        return st;
    if (!g.changed)
        return bus_call_fail (call, ST_NOT_FOUND, "student_id", "the parent is not linked to this student");
    return ST_OK;
}

/*  For invitations that name a student: the parent accepting it is linked.
    No caller check (the invitation's creator was checked); the roles are. */
static status_t
s_guardian_add (bus_call_t *call, const void *request, void **reply)
{
    const Org__GuardianAddRequest *add = request;
    Org__GuardianRequest link = ORG__GUARDIAN_REQUEST__INIT;
    link.org_id = add->org_id;
    link.parent_id = add->parent_id;
    link.student_id = add->student_id;
    const Org__GuardianRequest *req = &link;
    if (bus_call_check_id (call, "org_id", req->org_id) || bus_call_check_id (call, "parent_id", req->parent_id)
        || bus_call_check_id (call, "student_id", req->student_id))
        return ST_BAD_REQUEST;
    status_t st;
    if ((!add->check_only
         && (st = s_need_role (call, req->org_id, req->parent_id, BUS__ROLE__ROLE_PARENT,
                               "parent_id", "not_a_parent", "a parent")))
        || (st = s_need_role (call, req->org_id, req->student_id, BUS__ROLE__ROLE_STUDENT,
                              "student_id", "not_a_student", "a student")))
        return st;
    if (add->check_only)
        return ST_OK;
    char group[ULID_LEN + 1] = "";
    if (orgstore_student_group (bus_call_db (call), req->org_id, req->student_id, group,
                                sizeof group) < 0)
        return bus_call_db_error (call);
    guardian_t g = {req, group, 1, 0};
    st = s_txn (call, s_guardian_txn, &g);
    if (st != ST_OK)
        return st;
    Org__Guardian *out = arena_msg (bus_call_arena (call), &org__guardian__descriptor);
    out->org_id = req->org_id;
    out->parent_id = req->parent_id;
    out->student_id = req->student_id;
    out->created_at = bus_call_now (call);
    *reply = out;
    return ST_OK;
}

/* --- movements --- */

/*  Policy: "движение обучающихся и педагогических работников". A movement
    is recorded with its order and changes membership and roles: roles are
    changed in identity first, then the record and the unit membership in
    one local transaction (a failure in between is retried as a whole). */
typedef struct {
    const Org__MovementCreateRequest *req;
    Org__Movement *m;
    Org__Unit *target;          /* group (enroll, transfer, return) or staff (hire) */
    char current[ULID_LEN + 1]; /* the student's group now, "" if none */
    int role_lost;              /* BUS role removed in identity, to apply here */
} move_t;

static status_t
s_move_txn (bus_call_t *call, void *arg)
{
    move_t *mv = arg;
    db_t *db = bus_call_db (call);
    const char *org = mv->req->org_id, *user = mv->req->user_id;
    int64_t now = bus_call_now (call);
    char reason[48];
    snprintf (reason, sizeof reason, "movement:%s",
              mv->m->kind == ORG__MOVEMENT_KIND__MOVEMENT_KIND_ENROLL     ? "enroll"
              : mv->m->kind == ORG__MOVEMENT_KIND__MOVEMENT_KIND_TRANSFER ? "transfer"
              : mv->m->kind == ORG__MOVEMENT_KIND__MOVEMENT_KIND_EXPEL    ? "expel"
              : mv->m->kind == ORG__MOVEMENT_KIND__MOVEMENT_KIND_GRADUATE ? "graduate"
              : mv->m->kind == ORG__MOVEMENT_KIND__MOVEMENT_KIND_LEAVE    ? "leave"
              : mv->m->kind == ORG__MOVEMENT_KIND__MOVEMENT_KIND_RETURN   ? "return"
              : mv->m->kind == ORG__MOVEMENT_KIND__MOVEMENT_KIND_HIRE     ? "hire"
                                                                           : "dismiss");
    switch (mv->m->kind) {
    case ORG__MOVEMENT_KIND__MOVEMENT_KIND_TRANSFER:
    case ORG__MOVEMENT_KIND__MOVEMENT_KIND_LEAVE:
        if (orgstore_member_remove (db, mv->current, user) < 0
            || s_member_event (call, "org.unit.member_removed", org, mv->current,
                               BUS__UNIT_KIND__UNIT_KIND_GROUP, user, BUS__ROLE__ROLE_STUDENT, reason))
            return bus_call_db_error (call);
        if (mv->m->kind == ORG__MOVEMENT_KIND__MOVEMENT_KIND_LEAVE) {
            if (orgstore_leave_set (db, org, user, mv->current))
                return bus_call_db_error (call);
            break;
        }
        /* a transfer joins the new group */
        __attribute__ ((fallthrough));
    case ORG__MOVEMENT_KIND__MOVEMENT_KIND_ENROLL:
    case ORG__MOVEMENT_KIND__MOVEMENT_KIND_RETURN:
        if (orgstore_member_add (db, org, mv->target->id, BUS__UNIT_KIND__UNIT_KIND_GROUP, user,
                                 BUS__ROLE__ROLE_STUDENT, now) < 0
            || orgstore_leave_clear (db, org, user)
            || s_member_event (call, "org.unit.member_added", org, mv->target->id,
                               BUS__UNIT_KIND__UNIT_KIND_GROUP, user, BUS__ROLE__ROLE_STUDENT, reason))
            return bus_call_db_error (call);
        break;
    case ORG__MOVEMENT_KIND__MOVEMENT_KIND_HIRE: {
        status_t st = s_join_staff (call, org, user, reason);
        if (st != ST_OK)
            return st;
        break;
    }
    default:
        break;
    }
    if (mv->role_lost) {
        role_fx_t fx = {org, user, mv->role_lost, reason};
        status_t st = s_role_lost_txn (call, &fx);
        if (st != ST_OK)
            return st;
    }
    if (orgstore_movement_insert (db, org, mv->m))
        return bus_call_db_error (call);
    Org__MovementEvent ev = ORG__MOVEMENT_EVENT__INIT;
    ev.movement_id = mv->m->id;
    ev.kind = mv->m->kind;
    ev.user_id = mv->m->user_id;
    ev.unit_id = mv->m->_unit_id_case ? mv->m->unit_id : "";
    ev.from_unit_id = mv->m->_from_unit_id_case ? mv->m->from_unit_id : "";
    ev.order_number = mv->m->order_number;
    ev.effective_date = mv->m->effective_date;
    if (s_event (call, "org.movement.recorded", org, &ev.base))
        return bus_call_db_error (call);
    return ST_OK;
}

static status_t
s_movement_group (bus_call_t *call, const char *org_id, const char *unit_id, Org__Unit **out)
{
    if (!unit_id || !*unit_id)
        return bus_call_fail (call, ST_BAD_REQUEST, "unit_id", "unit_id (the group) is required");
    status_t ls = s_unit_load (call, org_id, unit_id, out);
    if (ls != ST_OK)
        return ls;
    if ((*out)->kind != BUS__UNIT_KIND__UNIT_KIND_GROUP)
        return bus_call_fail (call, ST_BAD_REQUEST, "unit_id", "unit_id must be a group");
    if ((*out)->archived)
        return bus_call_fail (call, ST_CONFLICT, "unit_id", "the group is archived");
    return ST_OK;
}

static status_t
s_movement_create (bus_call_t *call, const void *request, void **reply)
{
    const Org__MovementCreateRequest *req = request;
    arena_t *arena = bus_call_arena (call);
    db_t *db = bus_call_db (call);
    if (req->kind == ORG__MOVEMENT_KIND__MOVEMENT_KIND_UNSPECIFIED)
        return bus_call_fail (call, ST_BAD_REQUEST, "kind",
                              "kind is enroll, transfer, expel, graduate, leave, return, hire or dismiss");
    if (bus_call_check_id (call, "user_id", req->user_id))
        return ST_BAD_REQUEST;
    move_t mv;
    memset (&mv, 0, sizeof mv);
    mv.req = req;
    mv.m = arena_msg (arena, &org__movement__descriptor);
    Org__Movement *m = mv.m;
    if (s_line (call, "order_number", req->order_number, 0, 64, &m->order_number)
        || s_line (call, "note", req->note, 0, 1000, &m->note))
        return ST_BAD_REQUEST;
    if (req->effective_date && *req->effective_date) {
        if (!text_date_valid (req->effective_date))
            return bus_call_fail (call, ST_BAD_REQUEST, "effective_date",
                                  "effective_date is a date YYYY-MM-DD");
        m->effective_date = req->effective_date;
    }
    else {
        char today[32];
        clock_format_rfc3339 (bus_call_now (call), today, sizeof today);
        today[10] = 0;
        m->effective_date = arena_strdup (arena, today);
    }
    int mask = 0;
    status_t st = s_roles_of (call, req->org_id, req->user_id, &mask, NULL);
    if (st != ST_OK)
        return st;
    if (!mask) {
        bus_call_set_code (call, "not_a_member");
        return bus_call_fail (call, ST_NOT_FOUND, "user_id", "the user is not a member of this organisation");
    }
    int in_group = orgstore_student_group (db, req->org_id, req->user_id, mv.current, sizeof mv.current);
    if (in_group < 0)
        return bus_call_db_error (call);
    int is_student = mask & ROLE_BIT (BUS__ROLE__ROLE_STUDENT);
    const char *unit_id = req->_unit_id_case ? req->unit_id : NULL;
    int grant = 0, revoke = 0;
    switch (req->kind) {
    case ORG__MOVEMENT_KIND__MOVEMENT_KIND_ENROLL:
        if ((st = s_movement_group (call, req->org_id, unit_id, &mv.target)))
            return st;
        if (in_group) {
            bus_call_set_code (call, "already_in_group");
            return bus_call_fail (call, ST_CONFLICT, "user_id",
                                  "the student is already in a group: use transfer");
        }
        if (!is_student)
            grant = BUS__ROLE__ROLE_STUDENT;
        break;
    case ORG__MOVEMENT_KIND__MOVEMENT_KIND_TRANSFER:
        if ((st = s_movement_group (call, req->org_id, unit_id, &mv.target)))
            return st;
        if (!is_student || !in_group) {
            bus_call_set_code (call, "not_in_group");
            return bus_call_fail (call, ST_CONFLICT, "user_id",
                                  "the user is not a student in a group: use enroll");
        }
        if (strcmp (mv.current, mv.target->id) == 0)
            return bus_call_fail (call, ST_CONFLICT, "unit_id", "the student is already in that group");
        break;
    case ORG__MOVEMENT_KIND__MOVEMENT_KIND_EXPEL:
    case ORG__MOVEMENT_KIND__MOVEMENT_KIND_GRADUATE:
        if (!is_student) {
            bus_call_set_code (call, "not_a_student");
            return bus_call_fail (call, ST_CONFLICT, "user_id", "the user is not a student here");
        }
        revoke = BUS__ROLE__ROLE_STUDENT;
        break;
    case ORG__MOVEMENT_KIND__MOVEMENT_KIND_LEAVE:
        if (!is_student || !in_group) {
            bus_call_set_code (call, "not_in_group");
            return bus_call_fail (call, ST_CONFLICT, "user_id", "the user is not a student in a group");
        }
        break;
    case ORG__MOVEMENT_KIND__MOVEMENT_KIND_RETURN: {
        if (!is_student) {
            bus_call_set_code (call, "not_a_student");
            return bus_call_fail (call, ST_CONFLICT, "user_id", "the user is not a student here");
        }
        if (in_group) {
            bus_call_set_code (call, "already_in_group");
            return bus_call_fail (call, ST_CONFLICT, "user_id", "the student is in a group already");
        }
        char left[ULID_LEN + 1] = "";
        if (!unit_id || !*unit_id) {
            int had = orgstore_leave_get (db, req->org_id, req->user_id, left, sizeof left);
            if (had < 0)
                return bus_call_db_error (call);
            unit_id = had ? left : NULL;
        }
        if ((st = s_movement_group (call, req->org_id, unit_id, &mv.target)))
            return st;
        break;
    }
    case ORG__MOVEMENT_KIND__MOVEMENT_KIND_HIRE: {
        char staff[ULID_LEN + 1];
        if (orgstore_org_staff_unit (db, req->org_id, staff, sizeof staff) != 1)
            return bus_call_db_error (call);
        if (unit_id && *unit_id && strcmp (unit_id, staff) != 0)
            return bus_call_fail (call, ST_BAD_REQUEST, "unit_id",
                                  "a teacher is hired into the staff group");
        {
            status_t ls = s_unit_load (call, req->org_id, staff, &mv.target);
            if (ls != ST_OK)
                return ls;
        }
        if (!(mask & ROLE_BIT (BUS__ROLE__ROLE_TEACHER)))
            grant = BUS__ROLE__ROLE_TEACHER;
        break;
    }
    case ORG__MOVEMENT_KIND__MOVEMENT_KIND_DISMISS:
        if (!(mask & ROLE_BIT (BUS__ROLE__ROLE_TEACHER))) {
            bus_call_set_code (call, "not_a_teacher");
            return bus_call_fail (call, ST_CONFLICT, "user_id", "the user is not a teacher here");
        }
        revoke = BUS__ROLE__ROLE_TEACHER;
        break;
    default:
        return bus_call_fail (call, ST_BAD_REQUEST, "kind", "unknown movement");
    }
    if (grant) {
        Identity__RoleGrantRequest g = IDENTITY__ROLE_GRANT_REQUEST__INIT;
        g.org_id = req->org_id;
        g.user_id = req->user_id;
        g.role = (Bus__Role) grant;
        Identity__OrgRole *row = NULL;
        if ((st = bus_call_forward (call, "identity", "identity.role_grant", &g.base, &identity__org_role__descriptor,
                              (void **) &row)))
            return st;
    }
    if (revoke) {
        Identity__RoleRevokeRequest r = IDENTITY__ROLE_REVOKE_REQUEST__INIT;
        r.org_id = req->org_id;
        r.user_id = req->user_id;
        r.role = (Bus__Role) revoke;
        void *none = NULL;
        if ((st = bus_call_forward (call, "identity", "identity.role_revoke", &r.base, NULL, &none)))
            return st;
        mv.role_lost = revoke;
    }
    char id[ULID_LEN + 1];
    ulid_make (id);
    m->id = arena_strdup (arena, id);
    m->kind = req->kind;
    m->user_id = req->user_id;
    m->actor_id = (char *) bus_call_user (call);
    m->created_at = bus_call_now (call);
    if (mv.target) {
        m->_unit_id_case = ORG__MOVEMENT___UNIT_ID_UNIT_ID;
        m->unit_id = mv.target->id;
    }
    if (in_group && req->kind != ORG__MOVEMENT_KIND__MOVEMENT_KIND_ENROLL
        && req->kind != ORG__MOVEMENT_KIND__MOVEMENT_KIND_HIRE) {
        m->_from_unit_id_case = ORG__MOVEMENT___FROM_UNIT_ID_FROM_UNIT_ID;
        m->from_unit_id = arena_strdup (arena, mv.current);
    }
    st = s_txn (call, s_move_txn, &mv);
    if (st != ST_OK)
        return st;
    *reply = m;
    return ST_OK;
}

static status_t
s_movements_list (bus_call_t *call, const void *request, void **reply)
{
    const Org__MovementsListRequest *req = request;
    const Bus__Caller *caller = bus_call_caller (call);
    if (!bus_caller_has_role (caller, req->org_id, BUS__ROLE__ROLE_ADMIN)
        && !bus_caller_has_role (caller, req->org_id, BUS__ROLE__ROLE_ADMINISTRATION))
        return bus_call_fail (call, ST_FORBIDDEN, NULL,
                              "only the organisation's admins and administration see movements");
    Org__MovementList *out = arena_msg (bus_call_arena (call), &org__movement_list__descriptor);
    if (orgstore_movements_list (bus_call_db (call), req->org_id, req->user_id, req->cursor,
                                 bus_page_limit (req->limit), bus_call_arena (call), out))
        return bus_call_db_error (call);
    *reply = out;
    return ST_OK;
}

/* --- for other services --- */

static status_t
s_summary (bus_call_t *call, const void *request, void **reply)
{
    const Org__SummaryRequest *req = request;
    db_t *db = bus_call_db (call);
    arena_t *arena = bus_call_arena (call);
    Org__SummaryReply *out = arena_msg (arena, &org__summary_reply__descriptor);
    out->items = arena_alloc (arena, (req->n_org_ids ? req->n_org_ids : 1) * sizeof (Org__OrgSummary *));
    for (size_t i = 0; i < req->n_org_ids && i < 1000; i++) {
        Org__Org *org = NULL;
        int found = orgstore_org_get (db, req->org_ids[i], arena, &org);
        if (found < 0)
            return bus_call_db_error (call);
        if (!found)
            continue;
        Org__OrgSummary *s = arena_msg (arena, &org__org_summary__descriptor);
        s->org_id = org->id;
        s->name = org->name;
        if (orgstore_user_units (db, org->id, req->user_id, arena, &s->units, &s->n_units)
            || orgstore_guardian_students (db, org->id, req->user_id, arena, &s->student_ids,
                                           &s->n_student_ids))
            return bus_call_db_error (call);
        out->items[out->n_items++] = s;
    }
    *reply = out;
    return ST_OK;
}

/*  Adds a user to a unit in the role the unit takes: a student to a
    group (at most one group per org), a teacher to the staff group. For
    invitations: asked first with check_only (whether it can be done at
    all), then, once the role is granted in identity, for real. */
static status_t
s_unit_join_txn (bus_call_t *call, void *arg)
{
    const Org__UnitJoinRequest *req = arg;
    db_t *db = bus_call_db (call);
    Org__Unit *unit = NULL;
    {
        status_t ls = s_unit_load (call, req->org_id, req->unit_id, &unit);
        if (ls != ST_OK)
            return ls;
    }
    if (unit->archived)
        return bus_call_fail (call, ST_CONFLICT, "unit_id", "the unit is archived");
    if (req->role == BUS__ROLE__ROLE_TEACHER) {
        if (unit->kind != BUS__UNIT_KIND__UNIT_KIND_STAFF)
            return bus_call_fail (call, ST_BAD_REQUEST, "unit_id", "teachers join the staff group");
        return req->check_only ? ST_OK : s_join_staff (call, req->org_id, req->user_id, "invitation");
    }
    if (req->role != BUS__ROLE__ROLE_STUDENT || unit->kind != BUS__UNIT_KIND__UNIT_KIND_GROUP)
        return bus_call_fail (call, ST_BAD_REQUEST, "unit_id", "students join a group");
    char current[ULID_LEN + 1];
    int in = orgstore_student_group (db, req->org_id, req->user_id, current, sizeof current);
    if (in < 0)
        return bus_call_db_error (call);
    if (in && strcmp (current, unit->id) == 0)
        return ST_OK;
    if (in) {
        bus_call_set_code (call, "already_in_group");
        return bus_call_fail (call, ST_CONFLICT, "unit_id", "the student is already in another group");
    }
    if (req->check_only)
        return ST_OK;
    if (orgstore_member_add (db, req->org_id, unit->id, BUS__UNIT_KIND__UNIT_KIND_GROUP, req->user_id,
                             BUS__ROLE__ROLE_STUDENT, bus_call_now (call)) < 0
        || orgstore_leave_clear (db, req->org_id, req->user_id)
        || s_member_event (call, "org.unit.member_added", req->org_id, unit->id,
                           BUS__UNIT_KIND__UNIT_KIND_GROUP, req->user_id, BUS__ROLE__ROLE_STUDENT,
                           "invitation"))
        return bus_call_db_error (call);
    return ST_OK;
}

static status_t
s_unit_join (bus_call_t *call, const void *request, void **reply)
{
    (void) reply;
    Org__UnitJoinRequest req = *(const Org__UnitJoinRequest *) request;
    if (bus_call_check_id (call, "org_id", req.org_id) || bus_call_check_id (call, "user_id", req.user_id))
        return ST_BAD_REQUEST;
    char staff[ULID_LEN + 1];
    if ((!req.unit_id || !*req.unit_id) && req.role == BUS__ROLE__ROLE_TEACHER) {
        int found = orgstore_org_staff_unit (bus_call_db (call), req.org_id, staff, sizeof staff);
        if (found < 0)
            return bus_call_db_error (call);
        if (!found)
            return bus_call_fail (call, ST_NOT_FOUND, "org_id", "no such organisation");
        req.unit_id = staff;
    }
    if (bus_call_check_id (call, "unit_id", req.unit_id))
        return ST_BAD_REQUEST;
    return s_txn (call, s_unit_join_txn, &req);
}

/*  GET /v1/me, the part org knows (the gateway asks identity.me for the
    account and its roles, then this with the ids of those organisations,
    and merges the two): each organisation's name, the caller's units there
    and the students the caller is a guardian of there, named. Always the
    caller's own, so nobody reads another user's links through it. Ids
    that are not ids and organisations that do not exist get no item: the
    gateway then keeps what identity said. Only the students' names need
    identity, and only when there are students: one look-up for all the
    organisations at once. */
static status_t
s_me (bus_call_t *call, const void *request, void **reply)
{
    const Org__MeRequest *req = request;
    db_t *db = bus_call_db (call);
    arena_t *arena = bus_call_arena (call);
    const char *user_id = bus_call_user (call);
    if (req->n_org_ids > ME_MAX_ORGS)
        return bus_call_fail (call, ST_BAD_REQUEST, "org_ids", "at most %d organisations",
                              ME_MAX_ORGS);
    Org__MeReply *out = arena_msg (arena, &org__me_reply__descriptor);
    out->items = arena_alloc (arena, (req->n_org_ids ? req->n_org_ids : 1) * sizeof (Org__MeOrg *));
    size_t n_students = 0;
    for (size_t i = 0; i < req->n_org_ids; i++) {
        if (!ulid_valid (req->org_ids[i]))
            continue;
        Org__Org *org = NULL;
        int found = orgstore_org_get (db, req->org_ids[i], arena, &org);
        if (found < 0)
            return bus_call_db_error (call);
        if (!found)
            continue;
        Org__MeOrg *item = arena_msg (arena, &org__me_org__descriptor);
        item->org_id = org->id;
        item->name = org->name;
        char **ids;
        size_t n_ids = 0;
        if (orgstore_user_units (db, org->id, user_id, arena, &item->units, &item->n_units)
            || orgstore_guardian_students (db, org->id, user_id, arena, &ids, &n_ids))
            return bus_call_db_error (call);
        item->students = arena_alloc (arena, (n_ids ? n_ids : 1) * sizeof (Identity__Student *));
        for (size_t k = 0; k < n_ids; k++) {
            Identity__Student *s = arena_msg (arena, &identity__student__descriptor);
            s->id = ids[k];
            s->full_name = "";
            item->students[item->n_students++] = s;
        }
        n_students += n_ids;
        out->items[out->n_items++] = item;
    }
    if (n_students) {
        Identity__Student **all = arena_alloc (arena, n_students * sizeof *all);
        char **ids = arena_alloc (arena, n_students * sizeof *ids);
        size_t n = 0;
        for (size_t i = 0; i < out->n_items; i++)
            for (size_t k = 0; k < out->items[i]->n_students; k++) {
                Identity__Student *s = out->items[i]->students[k];
                all[n] = s;
                ids[n++] = s->id;
            }
        for (size_t at = 0; at < n; at += USERS_GET_MAX) {
            size_t batch = n - at < USERS_GET_MAX ? n - at : USERS_GET_MAX;
            Org__Person **people;
            status_t st = s_people (call, ids + at, batch, 0, &people);
            if (st != ST_OK)
                return st;
            for (size_t k = 0; k < batch; k++)
                all[at + k]->full_name = people[k]->full_name;
        }
    }
    *reply = out;
    return ST_OK;
}

/* --- the service --- */

static bus_method_t s_methods[] = {
    {"org.application_create", s_application_create, BUS_WRITE | BUS_ANON_IDEM},
    {"org.applications_list", s_applications_list, BUS_OPERATOR},
    {"org.application_approve", s_application_approve, BUS_OPERATOR | BUS_WRITE | BUS_NOTXN},
    {"org.application_reject", s_application_reject, BUS_OPERATOR | BUS_WRITE},
    {"org.search", s_search, BUS_AUTH},
    {"org.get", s_get, BUS_ORG_MEMBER},
    {"org.update", s_update, BUS_ORG_ADMIN | BUS_WRITE},
    {"org.unit_create", s_unit_create, BUS_ORG_ADMIN | BUS_WRITE},
    {"org.units_list", s_units_list, BUS_ORG_MEMBER},
    {"org.unit_update", s_unit_update, BUS_ORG_ADMIN | BUS_WRITE},
    {"org.unit_get", s_unit_get, 0},
    {"org.unit_members", s_unit_members, BUS_ORG_MEMBER},
    {"org.curator_set", s_curator_set, BUS_ORG_ADMIN | BUS_WRITE | BUS_NOTXN},
    {"org.curator_unset", s_curator_unset, BUS_ORG_ADMIN | BUS_WRITE | BUS_NOTXN},
    {"org.members_list", s_members_list, BUS_ORG_STAFF},
    {"org.role_grant", s_role_grant, BUS_ORG_ADMIN | BUS_WRITE | BUS_NOTXN},
    {"org.role_revoke", s_role_revoke, BUS_ORG_ADMIN | BUS_WRITE | BUS_NOTXN},
    {"org.verify", s_verify, BUS_ORG_ADMIN | BUS_WRITE | BUS_NOTXN},
    {"org.guardian_link", s_guardian_link, BUS_ORG_MEMBER | BUS_WRITE | BUS_NOTXN},
    {"org.guardian_unlink", s_guardian_unlink, BUS_ORG_MEMBER | BUS_WRITE | BUS_NOTXN},
    {"org.movement_create", s_movement_create, BUS_ORG_ADMIN | BUS_WRITE | BUS_NOTXN},
    {"org.movements_list", s_movements_list, BUS_ORG_MEMBER},
    {"org.summary", s_summary, 0},
    {"org.unit_join", s_unit_join, BUS_WRITE | BUS_NOTXN},
    {"org.guardian_add", s_guardian_add, BUS_WRITE | BUS_NOTXN},
    {"org.me", s_me, BUS_AUTH},
    {NULL, NULL, 0},
};

bus_service_t org_service = {
    .name = "org",
    .descriptor = &org__org_service__descriptor,
    .methods = s_methods,
    .migrations = orgstore_migrations,
};

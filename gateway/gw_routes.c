/*  gw_routes: the route table and its matcher (see gw_routes.h). */
#include "gw_routes.h"
#include "catalog.h"
#include "gw_auth.h"
#include "gw_me.h"
#include "gw_ops.h"
#include "gw_join.h"
#include "gw_presence.h"
#include "gw_ws.h"
#include "invite.pb-c.h"
#include "log.h"

#include <string.h>

/*  The caller's own session ended: its cached caller must go now, not
    when the event comes round. */
static void
s_drop_own_session (gw_req_t *req, const ProtobufCMessage *request, const ProtobufCMessage *reply)
{
    (void) request;
    (void) reply;
    gw_auth_drop_session (gw_req_gw (req), gw_req_session (req));
}

static void
s_drop_named_session (gw_req_t *req, const ProtobufCMessage *request, const ProtobufCMessage *reply)
{
    (void) request;
    (void) reply;
    const char *id = gw_req_param (req, "session_id");
    if (id)
        gw_auth_drop_session (gw_req_gw (req), id);
}

static void
s_drop_user (gw_req_t *req, const ProtobufCMessage *request, const ProtobufCMessage *reply)
{
    (void) request;
    (void) reply;
    gw_auth_drop_user (gw_req_gw (req), gw_req_user (req));
}

/*  A user's roles just changed through this gateway: drop their cached
    caller now, so their very next request sees the new roles (the
    identity event does the same for other gateways a moment later). */
static void
s_drop_target_user (gw_req_t *req, const ProtobufCMessage *request, const ProtobufCMessage *reply)
{
    (void) reply;
    const char *user = gw_req_param (req, "user_id");
    if (!user && request) {
        const ProtobufCFieldDescriptor *f
            = protobuf_c_message_descriptor_get_field_by_name (request->descriptor, "user_id");
        if (f && f->type == PROTOBUF_C_TYPE_STRING && f->label != PROTOBUF_C_LABEL_REPEATED)
            user = *(const char *const *) ((const char *) request + f->offset);
    }
    if (user && *user)
        gw_auth_drop_user (gw_req_gw (req), user);
}

/*  A join request was approved: its requester's roles changed. */
static void
s_drop_requester (gw_req_t *req, const ProtobufCMessage *request, const ProtobufCMessage *reply)
{
    (void) request;
    const Invite__JoinRequest *jr = (const Invite__JoinRequest *) reply;
    if (jr && jr->user && jr->user->id)
        gw_auth_drop_user (gw_req_gw (req), jr->user->id);
}

gw_route_t gw_routes[] = {
    /* operations (DESIGN §7) */
    {"GET", "/healthz", NULL, NULL, GW_PUBLIC | GW_READ, 200, NULL, gw_ops_healthz},
    {"GET", "/readyz", NULL, NULL, GW_PUBLIC | GW_READ, 200, NULL, gw_ops_readyz},
    {"GET", "/metrics", NULL, NULL, GW_PUBLIC | GW_READ, 200, NULL, gw_ops_metrics},

    /* auth and account (API.md) */
    {"POST", "/v1/auth/otp", "identity", "identity.otp_send", GW_PUBLIC, 202,
     "otp_phone:phone,otp_ip:ip"},
    {"POST", "/v1/auth/register", "identity", "identity.sign_up", GW_PUBLIC, 201,
     "login_phone:phone,login_ip:ip"},
    {"POST", "/v1/auth/login", "identity", "identity.login", GW_PUBLIC, 200,
     "login_phone:phone,login_ip:ip"},
    {"POST", "/v1/auth/logout", "identity", "identity.logout", 0, 204, NULL, NULL,
     s_drop_own_session},
    /*  Composed by the gateway: identity.me, then org.me (gw_me.c). */
    {"GET", "/v1/me", "identity", "identity.me", GW_READ, 200, NULL, gw_me_http},
    {"PATCH", "/v1/me", "identity", "identity.me_update", 0, 200, "me_user:user"},
    {"GET", "/v1/me/sessions", "identity", "identity.sessions", GW_READ, 200},
    {"DELETE", "/v1/me/sessions/{session_id}", "identity", "identity.session_revoke", 0, 204,
     NULL, NULL, s_drop_named_session},
    {"POST", "/v1/me/security/report", "identity", "identity.security_report", 0, 202, NULL,
     NULL, s_drop_user},

    /* institutions and structure (API.md) */
    {"POST", "/v1/org-applications", "org", "org.application_create", GW_PUBLIC, 201, "app_ip:ip"},
    {"GET", "/v1/org-applications", "org", "org.applications_list", GW_READ, 200},
    {"POST", "/v1/org-applications/{id}/approve", "org", "org.application_approve", 0, 200},
    {"POST", "/v1/org-applications/{id}/reject", "org", "org.application_reject", 0, 200},
    {"GET", "/v1/orgs", "org", "org.search", GW_READ, 200},
    {"GET", "/v1/orgs/{org_id}", "org", "org.get", GW_READ, 200},
    {"PATCH", "/v1/orgs/{org_id}", "org", "org.update", 0, 200},
    {"POST", "/v1/orgs/{org_id}/units", "org", "org.unit_create", 0, 201},
    {"GET", "/v1/orgs/{org_id}/units", "org", "org.units_list", GW_READ, 200},
    {"PATCH", "/v1/orgs/{org_id}/units/{unit_id}", "org", "org.unit_update", 0, 200},
    {"GET", "/v1/orgs/{org_id}/units/{unit_id}/members", "org", "org.unit_members", GW_READ, 200},
    {"PUT", "/v1/orgs/{org_id}/units/{unit_id}/curator", "org", "org.curator_set", 0, 200},
    {"DELETE", "/v1/orgs/{org_id}/units/{unit_id}/curator", "org", "org.curator_unset", 0, 204},
    {"GET", "/v1/orgs/{org_id}/members", "org", "org.members_list", GW_READ, 200},
    {"POST", "/v1/orgs/{org_id}/members/{user_id}/roles", "org", "org.role_grant", 0, 200, NULL,
     NULL, s_drop_target_user},
    {"DELETE", "/v1/orgs/{org_id}/members/{user_id}/roles/{role}", "org", "org.role_revoke", 0,
     204, NULL, NULL, s_drop_target_user},
    {"POST", "/v1/orgs/{org_id}/members/{user_id}/verify", "org", "org.verify", 0, 200, NULL, NULL,
     s_drop_target_user},
    {"POST", "/v1/orgs/{org_id}/guardians", "org", "org.guardian_link", 0, 201},
    {"DELETE", "/v1/orgs/{org_id}/guardians/{parent_id}/{student_id}", "org",
     "org.guardian_unlink", 0, 204},
    {"POST", "/v1/orgs/{org_id}/movements", "org", "org.movement_create", 0, 201, NULL, NULL,
     s_drop_target_user},
    {"GET", "/v1/orgs/{org_id}/movements", "org", "org.movements_list", GW_READ, 200},

    /* invitations and join requests (API.md) */
    {"POST", "/v1/orgs/{org_id}/invitations", "invite", "invite.create", 0, 201},
    {"GET", "/v1/orgs/{org_id}/invitations", "invite", "invite.list", GW_READ, 200},
    {"POST", "/v1/orgs/{org_id}/invitations/revoke-unused", "invite", "invite.revoke_unused", 0, 200},
    {"DELETE", "/v1/orgs/{org_id}/invitations/{id}", "invite", "invite.revoke", 0, 204},
    {"GET", "/v1/invitations/{token}", "invite", "invite.preview", GW_PUBLIC | GW_READ, 200},
    {"GET", "/join/{token}", "invite", "invite.preview", GW_PUBLIC | GW_READ, 200, NULL, gw_join_http},
    {"POST", "/v1/invitations/{token}/accept", "invite", "invite.accept", 0, 200, "invite_user:user",
     NULL, s_drop_user},
    {"POST", "/v1/orgs/{org_id}/join-requests", "invite", "invite.join_create", 0, 201},
    {"GET", "/v1/orgs/{org_id}/join-requests", "invite", "invite.join_list", GW_READ, 200},
    {"POST", "/v1/orgs/{org_id}/join-requests/{id}/approve", "invite", "invite.join_approve", 0, 200,
     NULL, NULL, s_drop_requester},
    {"POST", "/v1/orgs/{org_id}/join-requests/{id}/reject", "invite", "invite.join_reject", 0, 200},
    {"GET", "/v1/me/join-requests", "invite", "invite.my_join_requests", GW_READ, 200},

    /* realtime (API.md "Realtime"): the upgrade itself never reaches this
       table (gw_ws.c); a plain GET /v1/ws does, and is told to upgrade */
    {"GET", "/v1/ws", NULL, NULL, GW_PUBLIC | GW_READ, 101, NULL, gw_ws_http_plain},
    {"GET", "/v1/chats/{chat_id}/presence", NULL, NULL, GW_READ, 200, NULL, gw_presence_http},

    /* chats (API.md) */
    {"GET", "/v1/chats", "chat", "chat.my_chats", GW_READ, 200},
    {"POST", "/v1/orgs/{org_id}/chats", "chat", "chat.create", 0, 201},
    {"POST", "/v1/orgs/{org_id}/direct", "chat", "chat.direct", 0, 200},
    {"GET", "/v1/chats/{chat_id}", "chat", "chat.get", GW_READ, 200},
    {"PATCH", "/v1/chats/{chat_id}", "chat", "chat.update", 0, 200},
    {"GET", "/v1/chats/{chat_id}/members", "chat", "chat.members", GW_READ, 200},
    {"POST", "/v1/chats/{chat_id}/members", "chat", "chat.members_add", 0, 200},
    {"PATCH", "/v1/chats/{chat_id}/members/{user_id}", "chat", "chat.member_update", 0, 200},
    {"DELETE", "/v1/chats/{chat_id}/members/{user_id}", "chat", "chat.member_remove", 0, 204},
    {"GET", "/v1/chats/{chat_id}/messages", "chat", "chat.history", GW_READ, 200},
    {"POST", "/v1/chats/{chat_id}/messages", "chat", "chat.post", 0, 201, "post_user:user"},
    {"PATCH", "/v1/chats/{chat_id}/messages/{id}", "chat", "chat.edit", 0, 200},
    {"DELETE", "/v1/chats/{chat_id}/messages/{id}", "chat", "chat.delete", 0, 204},
    {"POST", "/v1/chats/{chat_id}/read", "chat", "chat.read", 0, 204},
    {"GET", "/v1/search/messages", "chat", "chat.search", GW_READ, 200},
    {NULL},
};

gw_method_t
gw_method_parse (const char *name)
{
    static const char *names[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
    for (int i = 0; i < 6; i++)
        if (strcmp (name, names[i]) == 0)
            return (gw_method_t) i;
    return GW_METHOD_OTHER;
}

const char *
gw_method_name (gw_method_t method)
{
    static const char *names[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"};
    return names[method];
}

/*  Every class a route names must be configured: an endpoint must not go
    unlimited because of a typo in the configuration. */
static int
s_check_limits (const gw_route_t *r, const gw_rl_classes_t *classes)
{
    if (!r->limits)
        return 0;
    char list[256];
    snprintf (list, sizeof list, "%s", r->limits);
    char *save = NULL;
    for (char *item = strtok_r (list, ",", &save); item; item = strtok_r (NULL, ",", &save)) {
        char *colon = strchr (item, ':');
        if (colon)
            *colon = 0;
        if (!colon || !gw_ratelimit_class (classes, item)) {
            log_error (NULL, "route needs a rate limit that is not configured route=\"%s %s\" class=%s",
                       r->method_name, r->pattern, item);
            return -1;
        }
    }
    return 0;
}

int
gw_routes_init (const gw_rl_classes_t *classes)
{
    int rc = 0;
    if (!gw_ratelimit_class (classes, "ip")) {
        log_error (NULL, "the rate limits must define the class ip (every request)");
        rc = -1;
    }
    for (gw_route_t *r = gw_routes; r->method_name; r++) {
        r->method = gw_method_parse (r->method_name);
        if (s_check_limits (r, classes))
            rc = -1;
        if (r->local && !r->bus_method)
            continue;
        r->desc = catalog_method (r->bus_method);
        if (!r->desc) {
            log_error (NULL, "route names an unknown bus method route=\"%s %s\" method=%s",
                       r->method_name, r->pattern, r->bus_method);
            rc = -1;
            continue;
        }
        /*  Every {param} must be a field of the request. */
        for (const char *p = strchr (r->pattern, '{'); p; p = strchr (p + 1, '{')) {
            const char *close = strchr (p, '}');
            char name[48];
            size_t n = close ? (size_t) (close - p - 1) : 0;
            if (!close || n == 0 || n >= sizeof name) {
                log_error (NULL, "bad route pattern pattern=%s", r->pattern);
                rc = -1;
                break;
            }
            memcpy (name, p + 1, n);
            name[n] = 0;
            if (!protobuf_c_message_descriptor_get_field_by_name (r->desc->input, name)) {
                log_error (NULL, "route parameter is not a request field pattern=%s param=%s",
                           r->pattern, name);
                rc = -1;
            }
        }
    }
    return rc;
}

/*  Matches `path` against `pattern` segment by segment. */
static int
s_match (const char *pattern, const char *path, gw_param_t *params, int *n_params)
{
    const char *p = pattern, *q = path;
    int n = 0;
    while (*p && *q) {
        if (*p != '/' || *q != '/')
            return 0;
        p++;
        q++;
        const char *pe = strchr (p, '/');
        const char *qe = strchr (q, '/');
        size_t plen = pe ? (size_t) (pe - p) : strlen (p);
        size_t qlen = qe ? (size_t) (qe - q) : strlen (q);
        if (plen > 2 && p[0] == '{' && p[plen - 1] == '}') {
            if (qlen == 0 || qlen >= sizeof params[0].value || n >= GW_MAX_PARAMS)
                return 0;
            size_t nlen = plen - 2;
            if (nlen >= sizeof params[0].name)
                return 0;
            memcpy (params[n].name, p + 1, nlen);
            params[n].name[nlen] = 0;
            memcpy (params[n].value, q, qlen);
            params[n].value[qlen] = 0;
            n++;
        }
        else if (plen != qlen || memcmp (p, q, plen) != 0)
            return 0;
        p += plen;
        q += qlen;
    }
    if (*p || *q)
        return 0;
    *n_params = n;
    return 1;
}

int
gw_route_match (gw_method_t method, const char *path, const gw_route_t **route,
                gw_param_t *params, int *n_params, char *allow, size_t allow_len)
{
    int path_known = 0;
    if (allow_len)
        allow[0] = 0;
    for (const gw_route_t *r = gw_routes; r->method_name; r++) {
        gw_param_t scratch[GW_MAX_PARAMS];
        int n = 0;
        if (!s_match (r->pattern, path, scratch, &n))
            continue;
        if (r->method == method) {
            *route = r;
            memcpy (params, scratch, sizeof scratch[0] * (size_t) n);
            *n_params = n;
            return 0;
        }
        path_known = 1;
        if (allow_len && !strstr (allow, r->method_name)) {
            size_t used = strlen (allow);
            snprintf (allow + used, allow_len - used, "%s%s", used ? ", " : "", r->method_name);
        }
    }
    return path_known ? 405 : 404;
}

/*  gw_routes: the gateway's route table, one row per endpoint (STYLE: the
    gateway is a table). A row names the HTTP method and path pattern, the
    service and bus method that serve it, who may call it and which rate
    limits apply; path parameters ({org_id}) and query parameters fill
    fields of the method's request message by name. Rows with a `local`
    handler are answered by the gateway itself (health, metrics); one that
    also names a bus method has its request decoded into that method's
    message like any other row, for the handler to send on (GET /v1/me,
    which the gateway composes from two services, gw_me.c). */
#ifndef PARTA_GW_ROUTES_H
#define PARTA_GW_ROUTES_H

#include "gw.h"

#include <protobuf-c/protobuf-c.h>

enum {
    GW_PUBLIC = 1 << 0,         /* no token needed */
    GW_READ = 1 << 1,           /* read-only: the bus client may retry it */
    GW_QUERY = 1 << 2,          /* takes query parameters though it has a body */
};

typedef void (gw_local_fn) (gw_req_t *req);
/*  Runs after a successful call, before the reply is sent (e.g. to drop
    the cached caller of a session that just ended). */
typedef void (gw_after_fn) (gw_req_t *req, const ProtobufCMessage *request,
                           const ProtobufCMessage *reply);

struct gw_route_t {
    const char *method_name;    /* "GET", "POST", ... */
    const char *pattern;        /* "/v1/orgs/{org_id}/units/{unit_id}" */
    const char *service;        /* "org" */
    const char *bus_method;     /* "org.unit_get" */
    int flags;
    int success;                /* HTTP status on success: 200, 201, 202, 204 */
    /*  Rate limits beyond the per-IP one every route has: comma-separated
        "class:subject" where subject is "ip", "user" or a request field
        ("otp_phone:phone,otp_ip:ip"). */
    const char *limits;
    gw_local_fn *local;
    gw_after_fn *after;
    /* resolved by gw_routes_init */
    gw_method_t method;
    const ProtobufCMethodDescriptor *desc;
};

#define GW_MAX_PARAMS 8

typedef struct {
    char name[48];
    char value[256];
} gw_param_t;

extern gw_route_t gw_routes[];

/*  Resolves every row's bus method; -1 (logged) if a row names a method no
    service declares, a path parameter that is not a request field, or a
    rate-limit class `classes` does not define. */
int gw_routes_init (const gw_rl_classes_t *classes);

/*  Finds the route for a request. Returns 0 and fills route/params on a
    match, 404 when no pattern matches the path, 405 when one matches but
    for other methods (then `allow` lists them). */
int gw_route_match (gw_method_t method, const char *path, const gw_route_t **route,
                    gw_param_t *params, int *n_params, char *allow, size_t allow_len);

gw_method_t gw_method_parse (const char *name);

#endif

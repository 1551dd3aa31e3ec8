/*  gw_me: see gw_me.h. Both calls carry the request's caller and share one
    deadline, the gateway's call timeout from the start; a failure of
    either is answered as a route answers its service's failure. What the
    request needs between the calls lives in its arena: a request freed
    while a call is out cancels that call (gw_req_call), and nothing else
    is left. */
#include "gw_me.h"
#include "clock.h"
#include "identity.pb-c.h"
#include "org.pb-c.h"

#include <string.h>

#define ME_MAX_ORGS ORG__ME_LIMITS__ME_MAX_ORG_IDS   /* organisations one org.me takes */

typedef struct {
    int64_t deadline_us;        /* monotonic */
    Identity__MeReply *me;      /* identity's answer, in the request's arena */
} me_call_t;

/*  Copies what org knows into identity's memberships. An organisation org
    did not answer for keeps identity's defaults: its id as its name, no
    units, no students. */
static void
s_merge (Identity__MeReply *me, const Org__MeReply *org)
{
    for (size_t i = 0; i < me->n_memberships; i++) {
        Identity__Membership *m = me->memberships[i];
        for (size_t j = 0; j < org->n_items; j++) {
            const Org__MeOrg *o = org->items[j];
            if (strcmp (o->org_id, m->org_id) != 0)
                continue;
            m->org_name = o->name;
            m->units = o->units;
            m->n_units = o->n_units;
            m->students = o->students;
            m->n_students = o->n_students;
            break;
        }
    }
}

static void
s_org_done (gw_req_t *req, const Bus__Reply *reply, void *arg)
{
    me_call_t *mc = arg;
    if (reply->status != ST_OK) {
        gw_reply_bus_error (req, reply);
        return;
    }
    Org__MeReply *org = org__me_reply__unpack (arena_allocator (gw_req_arena (req)),
                                               reply->body.len, reply->body.data);
    if (!org) {
        gw_reply_message (req, 200, NULL);
        return;
    }
    s_merge (mc->me, org);
    gw_reply_message (req, 200, &mc->me->base);
}

static void
s_identity_done (gw_req_t *req, const Bus__Reply *reply, void *arg)
{
    me_call_t *mc = arg;
    arena_t *arena = gw_req_arena (req);
    if (reply->status != ST_OK) {
        gw_reply_bus_error (req, reply);
        return;
    }
    mc->me = identity__me_reply__unpack (arena_allocator (arena), reply->body.len,
                                         reply->body.data);
    if (!mc->me || !mc->me->n_memberships) {
        /*  Nobody's organisations to describe: org is not asked. */
        gw_reply_message (req, 200, mc->me ? &mc->me->base : NULL);
        return;
    }
    Org__MeRequest ask = ORG__ME_REQUEST__INIT;
    ask.org_ids = arena_alloc (arena, mc->me->n_memberships * sizeof (char *));
    for (size_t i = 0; i < mc->me->n_memberships && ask.n_org_ids < ME_MAX_ORGS; i++)
        ask.org_ids[ask.n_org_ids++] = mc->me->memberships[i]->org_id;
    int64_t left_ms = (mc->deadline_us - clock_mono_us ()) / 1000;
    gw_req_call (req, "org", "org.me", &ask.base, left_ms > 0 ? (int) left_ms : 1, s_org_done, mc);
}

void
gw_me_http (gw_req_t *req)
{
    gw_t *gw = gw_req_gw (req);
    me_call_t *mc = arena_alloc (gw_req_arena (req), sizeof *mc);
    mc->deadline_us = clock_mono_us () + (int64_t) gw->call_timeout_ms * 1000;
    gw_req_call (req, "identity", "identity.me", gw_req_msg (req), gw->call_timeout_ms,
                 s_identity_done, mc);
}

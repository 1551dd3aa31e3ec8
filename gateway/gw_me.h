/*  gw_me: GET /v1/me, composed by the gateway from two services so that no
    service's single executor waits on another's for it: identity.me (the
    account, its roles per organisation, the operator flag), then org.me
    with those organisations' ids (their names, the caller's units, a
    parent's students), merged into identity's reply. */
#ifndef PARTA_GW_ME_H
#define PARTA_GW_ME_H

#include "gw.h"

/*  GET /v1/me (a local route that names identity.me, so its request is
    decoded and checked like any other route's). */
void gw_me_http (gw_req_t *req);

#endif

/*  gw_join: GET /join/{token}, where an invitation link leads
    ({PARTA_PUBLIC_URL}/join/{token}). A browser gets a small page saying
    what the invitation is (the organisation, the role, the group or chat,
    whether it still works, until when) and how to accept it; any other
    client gets the preview as JSON, as GET /v1/invitations/{token} answers.
    Nothing is accepted here: accepting needs the person signed in
    (POST /v1/invitations/{token}/accept). */
#ifndef PARTA_GW_JOIN_H
#define PARTA_GW_JOIN_H

#include "gw.h"

/*  GET /join/{token} (a local route that names invite.preview). */
void gw_join_http (gw_req_t *req);

#endif

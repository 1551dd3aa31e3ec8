/*  status: the outcome codes shared by every service and the gateway
    (bus.Status), their API names and HTTP statuses (API.md, Conventions). */
#ifndef PARTA_STATUS_H
#define PARTA_STATUS_H

#include "bus.pb-c.h"

typedef Bus__Status status_t;

#define ST_OK BUS__STATUS__OK
#define ST_BAD_REQUEST BUS__STATUS__BAD_REQUEST
#define ST_UNAUTHORIZED BUS__STATUS__UNAUTHORIZED
#define ST_FORBIDDEN BUS__STATUS__FORBIDDEN
#define ST_NOT_FOUND BUS__STATUS__NOT_FOUND
#define ST_CONFLICT BUS__STATUS__CONFLICT
#define ST_GONE BUS__STATUS__GONE
#define ST_PAYLOAD_TOO_LARGE BUS__STATUS__PAYLOAD_TOO_LARGE
#define ST_UNSUPPORTED_MEDIA_TYPE BUS__STATUS__UNSUPPORTED_MEDIA_TYPE
#define ST_UNPROCESSABLE BUS__STATUS__UNPROCESSABLE
#define ST_RATE_LIMITED BUS__STATUS__RATE_LIMITED
#define ST_UNAVAILABLE BUS__STATUS__UNAVAILABLE
#define ST_INTERNAL BUS__STATUS__INTERNAL

/*  "bad_request", "not_found", ... ("internal" for unknown values). */
const char *status_name (status_t status);
/*  400, 404, ... (500 for internal and unknown values). */
int status_http (status_t status);

#endif

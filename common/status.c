/*  status: names and HTTP statuses of bus.Status (see status.h). */
#include "status.h"

static const struct {
    status_t status;
    const char *name;
    int http;
} s_table[] = {
    {ST_OK, "ok", 200},
    {ST_BAD_REQUEST, "bad_request", 400},
    {ST_UNAUTHORIZED, "unauthorized", 401},
    {ST_FORBIDDEN, "forbidden", 403},
    {ST_NOT_FOUND, "not_found", 404},
    {ST_CONFLICT, "conflict", 409},
    {ST_GONE, "gone", 410},
    {ST_PAYLOAD_TOO_LARGE, "payload_too_large", 413},
    {ST_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", 415},
    {ST_UNPROCESSABLE, "unprocessable", 422},
    {ST_RATE_LIMITED, "rate_limited", 429},
    {ST_UNAVAILABLE, "unavailable", 503},
    {ST_INTERNAL, "internal", 500},
};

const char *
status_name (status_t status)
{
    for (unsigned i = 0; i < sizeof s_table / sizeof s_table[0]; i++)
        if (s_table[i].status == status)
            return s_table[i].name;
    return "internal";
}

int
status_http (status_t status)
{
    for (unsigned i = 0; i < sizeof s_table / sizeof s_table[0]; i++)
        if (s_table[i].status == status)
            return s_table[i].http;
    return 500;
}

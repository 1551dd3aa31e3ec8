/*  meet: the service's method table. Methods are added by the issue that
    gives the service its work; the common worker already serves sys.*. */
#include "meet.pb-c.h"
#include "bus_worker.h"

static const char *const s_migrations[] = {
    NULL,
};

static bus_method_t s_methods[] = {
    {NULL, NULL, 0},
};

bus_service_t meet_service = {
    .name = "meet",
    .descriptor = &meet__meet__descriptor,
    .methods = s_methods,
    .migrations = s_migrations,
};

/*  identity: the service's method table. Methods are added by the issue that
    gives the service its work; the common worker already serves sys.*. */
#include "identity.pb-c.h"
#include "bus_worker.h"

static const char *const s_migrations[] = {
    NULL,
};

static bus_method_t s_methods[] = {
    {NULL, NULL, 0},
};

bus_service_t identity_service = {
    .name = "identity",
    .descriptor = &identity__identity__descriptor,
    .methods = s_methods,
    .migrations = s_migrations,
};

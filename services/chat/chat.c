/*  chat: the service's method table. Methods are added by the issue that
    gives the service its work; the common worker already serves sys.*. */
#include "chat.pb-c.h"
#include "bus_worker.h"

static const char *const s_migrations[] = {
    NULL,
};

static bus_method_t s_methods[] = {
    {NULL, NULL, 0},
};

bus_service_t chat_service = {
    .name = "chat",
    .descriptor = &chat__chat_service__descriptor,
    .methods = s_methods,
    .migrations = s_migrations,
};

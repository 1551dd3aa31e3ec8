/*  parta-identity: the identity service process (see identity.c for its methods). */
#include "bus_worker.h"

extern bus_service_t identity_service;

int
main (int argc, char **argv)
{
    return bus_service_main (&identity_service, argc, argv);
}

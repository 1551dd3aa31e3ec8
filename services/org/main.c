/*  parta-org: the org service process (see org.c for its methods). */
#include "bus_worker.h"

extern bus_service_t org_service;

int
main (int argc, char **argv)
{
    return bus_service_main (&org_service, argc, argv);
}

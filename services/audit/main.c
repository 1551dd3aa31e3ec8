/*  parta-audit: the audit service process (see audit.c for its methods). */
#include "bus_worker.h"

extern bus_service_t audit_service;

int
main (int argc, char **argv)
{
    return bus_service_main (&audit_service, argc, argv);
}

/*  parta-meet: the meet service process (see meet.c for its methods). */
#include "bus_worker.h"

extern bus_service_t meet_service;

int
main (int argc, char **argv)
{
    return bus_service_main (&meet_service, argc, argv);
}

/*  parta-invite: the invite service process (see invite.c for its methods). */
#include "bus_worker.h"

extern bus_service_t invite_service;

int
main (int argc, char **argv)
{
    return bus_service_main (&invite_service, argc, argv);
}

/*  parta-echo-worker: the echo service as a process, for bus tests and
    benchmarks (killed, restarted, run several at once). */
#include "echo_service.h"

int
main (int argc, char **argv)
{
    return bus_service_main (&echo_service, argc, argv);
}

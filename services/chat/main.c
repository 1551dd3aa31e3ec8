/*  parta-chat: the chat service process (see chat.c for its methods). */
#include "bus_worker.h"

extern bus_service_t chat_service;

int
main (int argc, char **argv)
{
    return bus_service_main (&chat_service, argc, argv);
}

/*  broker: request routing by service name and the event proxy (DESIGN §2,
    docs/bus.md). Workers register a service; each request goes to the
    least recently used live worker with free credit; heartbeats both ways
    find dead workers, whose requests in hand are answered `unavailable`.
    It keeps no business state, so it can be restarted at any time. */
#ifndef PARTA_BROKER_H
#define PARTA_BROKER_H

#include "config.h"

#include <czmq.h>

/*  Starts the broker actor (request ROUTER, event XSUB/XPUB, CURVE when
    configured). Returns NULL if it cannot bind. */
zactor_t *broker_start (const config_t *cfg);

#endif

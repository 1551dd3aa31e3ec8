/*  bus_socket: the options every socket that connects to the broker gets:
    high-water marks, the largest message, CURVE when configured, and
    ZeroMQ's own (ZMTP) heartbeats, so a connection whose far end vanished
    without closing it (a crashed host, a NAT timeout) is noticed and
    re-established rather than silently holding messages. */
#ifndef PARTA_BUS_SOCKET_H
#define PARTA_BUS_SOCKET_H

#include "config.h"

#include <czmq.h>

/*  A new socket of `type` (ZMQ_DEALER, ZMQ_PUB, ZMQ_SUB) set up from cfg
    (curve, curve_cert, heartbeat_ms, liveness) and connected to
    `endpoint`. NULL (logged) on failure. */
zsock_t *bus_socket_connect (int type, const config_t *cfg, const char *endpoint);

/*  The same from explicit values (curve_dir may be NULL). */
zsock_t *bus_socket_connect_with (int type, const char *endpoint, const char *curve_dir,
                                  const char *curve_cert, int heartbeat_ms, int liveness);

#endif

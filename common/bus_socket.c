/*  bus_socket: see bus_socket.h. */
#include "bus_socket.h"
#include "bus_proto.h"
#include "curve.h"
#include "log.h"

zsock_t *
bus_socket_connect_with (int type, const char *endpoint, const char *curve_dir,
                         const char *curve_cert, int heartbeat_ms, int liveness)
{
    zsock_t *sock = zsock_new (type);
    if (!sock)
        return NULL;
    zsock_set_linger (sock, type == ZMQ_PUB ? 1000 : 0);
    zsock_set_sndhwm (sock, 100000);
    zsock_set_rcvhwm (sock, 100000);
    zsock_set_maxmsgsize (sock, BUS_MAX_MESSAGE);
    if (heartbeat_ms > 0) {
        zsock_set_heartbeat_ivl (sock, heartbeat_ms);
        zsock_set_heartbeat_timeout (sock, heartbeat_ms * (liveness > 0 ? liveness : 3));
        zsock_set_heartbeat_ttl (sock, heartbeat_ms * (liveness > 0 ? liveness : 3));
    }
    if (curve_dir && *curve_dir && curve_client_setup (sock, curve_dir, curve_cert)) {
        zsock_destroy (&sock);
        return NULL;
    }
    if (zsock_connect (sock, "%s", endpoint)) {
        log_error (NULL, "cannot connect endpoint=%s", endpoint);
        zsock_destroy (&sock);
        return NULL;
    }
    return sock;
}

zsock_t *
bus_socket_connect (int type, const config_t *cfg, const char *endpoint)
{
    return bus_socket_connect_with (type, endpoint, config_str (cfg, "curve"),
                                    config_str (cfg, "curve_cert"),
                                    (int) config_int (cfg, "heartbeat_ms", 1000, 10, 60000, NULL),
                                    (int) config_int (cfg, "liveness", 3, 1, 100, NULL));
}

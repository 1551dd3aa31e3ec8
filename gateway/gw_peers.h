/*  gw_peers: what one gateway tells the others. Several gateways may serve
    one platform (behind a load balancer), each with its own sockets. Typing
    notices and presence changes are not events of any service (nothing
    stores them), so they do not travel on the bus: a gateway publishes them
    on one Redis channel, every gateway listens on it (a second Redis
    connection) and hands what its peers sent to gw_ws, which delivers it to
    its own sockets. A gateway skips what it sent itself (it delivered that
    at once), but listens for its own ping, published every 10 s: a
    subscription that no longer hears it is made again. Without Redis they
    stay on the gateway where they happened, like everything else that is
    advisory. */
#ifndef PARTA_GW_PEERS_H
#define PARTA_GW_PEERS_H

#include "gw.h"

#define GW_PEERS_CHANNEL "parta:gateways"

/*  Starts listening (with reconnection); stop ends it. */
int gw_peers_start (gw_t *gw);
void gw_peers_stop (gw_t *gw);

/*  Publishes `msg` (taken) to the other gateways, with this gateway's
    instance added as "from". Fire and forget: nothing happens when Redis
    is down. */
void gw_peers_publish (gw_t *gw, json_t *msg);

#endif

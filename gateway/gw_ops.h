/*  gw_ops: the operations endpoints (DESIGN §7): /healthz (the process is
    up), /readyz (broker, Redis and at least one worker of every service
    reachable), /metrics (Prometheus text). */
#ifndef PARTA_GW_OPS_H
#define PARTA_GW_OPS_H

#include "gw.h"

void gw_ops_healthz (gw_req_t *req);
void gw_ops_readyz (gw_req_t *req);
void gw_ops_metrics (gw_req_t *req);

/*  Polls the broker every few seconds for the workers gauge. */
void gw_ops_start (gw_t *gw);
void gw_ops_stop (gw_t *gw);

#endif

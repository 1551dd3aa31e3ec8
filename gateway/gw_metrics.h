/*  gw_metrics: the gateway's counters, rendered as Prometheus text on
    GET /metrics: HTTP requests, errors and latency per route, bus calls per
    method, WebSocket connections, rate-limit refusals per class, workers
    per service (as last seen by the broker), Redis state. */
#ifndef PARTA_GW_METRICS_H
#define PARTA_GW_METRICS_H

#include "gw.h"
#include "status.h"

#include <stdint.h>

gw_metrics_t *gw_metrics_new (void);
void gw_metrics_destroy (gw_metrics_t **self_p);

/*  `route` is the route's label ("GET /v1/me") or "unmatched". */
void gw_metrics_http (gw_metrics_t *self, const char *route, int status, int64_t us);
void gw_metrics_bus (gw_metrics_t *self, const char *method, status_t status, int64_t us);
void gw_metrics_limited (gw_metrics_t *self, const char *cls);
void gw_metrics_ws (gw_metrics_t *self, int delta);
void gw_metrics_workers (gw_metrics_t *self, const char *service, int workers);
void gw_metrics_redis (gw_metrics_t *self, int up);

/*  The exposition text; the caller frees it. */
char *gw_metrics_render (gw_metrics_t *self, size_t *len);

#endif

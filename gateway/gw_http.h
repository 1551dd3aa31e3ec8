/*  gw_http: the HTTP protocol handler of the gateway (see gw_http.c). */
#ifndef PARTA_GW_HTTP_H
#define PARTA_GW_HTTP_H

#include "gw.h"

int gw_http_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len);

/*  The fd-watch protocol (gw_loop.c). */
int gw_loop_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len);
int gw_loop_start (gw_t *gw);
void gw_loop_stop (gw_t *gw);

#endif

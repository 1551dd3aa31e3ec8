/*  curve: CURVE encryption and authentication of the bus (DESIGN §5). The
    keys directory holds the broker's key pair (broker.cert, broker.cert_secret),
    the key pair Parta's processes use (client.cert, client.cert_secret) and
    allowed/, the public certificates of every key that may connect as a
    client or worker. The broker's sockets are CURVE servers checked by a
    zauth actor against allowed/; every other socket is a CURVE client. */
#ifndef PARTA_CURVE_H
#define PARTA_CURVE_H

#include <czmq.h>

/*  Creates the directory and whatever keys are missing; 0 or -1 (logged). */
int curve_keygen (const char *dir);

/*  Makes `sock` a CURVE client of the broker, with `cert_path` (a secret
    certificate file; NULL means dir/client.cert_secret). 0 or -1 (logged). */
int curve_client_setup (zsock_t *sock, const char *dir, const char *cert_path);

/*  Makes `sock` a CURVE server with the broker's key. 0 or -1 (logged). */
int curve_server_setup (zsock_t *sock, const char *dir);

/*  Starts the authenticator that admits only keys in dir/allowed. */
zactor_t *curve_auth_start (const char *dir);

#endif

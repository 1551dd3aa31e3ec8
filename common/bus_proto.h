/*  bus_proto: the frames of the Parta bus (docs/bus.md), shared by the
    broker, the client and the worker. It is Majordomo (ZeroMQ RFC 18) with
    request ids, a time-to-live per request, worker credit and broker
    instance ids in heartbeats. */
#ifndef PARTA_BUS_PROTO_H
#define PARTA_BUS_PROTO_H

#define BUS_CLIENT_HEADER "PBC01"
#define BUS_WORKER_HEADER "PBW01"

/*  Client <-> broker commands (frame 2, one byte). */
#define BUS_CLIENT_REQUEST 0x01     /* "" PBC01 REQUEST service id ttl payload */
#define BUS_CLIENT_REPLY 0x02       /* "" PBC01 REPLY service id payload */
#define BUS_CLIENT_HEARTBEAT 0x04   /* "" PBC01 HEARTBEAT [broker-instance] */

/*  Worker <-> broker commands. */
#define BUS_WORKER_READY 0x01       /* "" PBW01 READY service credit */
#define BUS_WORKER_REQUEST 0x02     /* "" PBW01 REQUEST client id payload */
#define BUS_WORKER_REPLY 0x03       /* "" PBW01 REPLY client id payload */
#define BUS_WORKER_HEARTBEAT 0x04   /* "" PBW01 HEARTBEAT */
#define BUS_WORKER_DISCONNECT 0x05  /* "" PBW01 DISCONNECT */

/*  Limits every peer checks. */
#define BUS_SERVICE_MAX 64          /* service name bytes: [a-z0-9_-] */
#define BUS_ID_MAX 32               /* request id bytes */
#define BUS_TTL_MAX_MS 600000       /* longest time-to-live a request may ask */
#define BUS_CREDIT_MAX 1000
#define BUS_MAX_MESSAGE (8 * 1024 * 1024)   /* ZMQ_MAXMSGSIZE on bus sockets */

/*  The broker's own service name (mmi.services, mmi.stats). */
#define BUS_MMI_SERVICE "mmi"

#endif

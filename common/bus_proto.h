/*  bus_proto: the messages of the Parta bus, PBP/2 (docs/bus.md), shared by
    the broker, the client and the worker. Every message is one binary
    header frame and, for requests and replies, one payload frame. The
    header is a protocol signature ("PBC02" or "PBW02"), a one-byte command
    and the command's fields, in an order fixed per command: byte strings
    with a one-byte length in front, numbers as four bytes big-endian.
    bus_header_build writes one and bus_header_parse checks one; neither
    allocates. It derives from Majordomo (ZeroMQ RFC 18), adding request
    ids, a time-to-live per request, worker credit and broker instance ids
    in heartbeats. */
#ifndef PARTA_BUS_PROTO_H
#define PARTA_BUS_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define BUS_CLIENT_HEADER "PBC02"
#define BUS_WORKER_HEADER "PBW02"
#define BUS_SIGNATURE_LEN 5

/*  Client <-> broker commands. */
#define BUS_CLIENT_REQUEST 0x01     /* PBC02 REQUEST ttl id service + payload */
#define BUS_CLIENT_REPLY 0x02       /* PBC02 REPLY id service + payload */
#define BUS_CLIENT_HEARTBEAT 0x04   /* PBC02 HEARTBEAT nonce; answered PBC02 HEARTBEAT instance nonce */

/*  Worker <-> broker commands. */
#define BUS_WORKER_READY 0x01       /* PBW02 READY credit service */
#define BUS_WORKER_REQUEST 0x02     /* PBW02 REQUEST client id + payload */
#define BUS_WORKER_REPLY 0x03       /* PBW02 REPLY client id + payload */
#define BUS_WORKER_HEARTBEAT 0x04   /* PBW02 HEARTBEAT */
#define BUS_WORKER_DISCONNECT 0x05  /* PBW02 DISCONNECT */

/*  Limits every peer checks. */
#define BUS_SERVICE_MAX 64          /* service name bytes: [a-z0-9_-] */
#define BUS_ID_MAX 32               /* request id bytes */
#define BUS_NONCE_MAX 32            /* heartbeat nonce bytes */
#define BUS_INSTANCE_MAX 32         /* broker instance id bytes */
#define BUS_TTL_MAX_MS 600000       /* longest time-to-live a request may ask */
#define BUS_CREDIT_MAX 1000
#define BUS_HEADER_MAX 512          /* no valid header is longer */
#define BUS_MAX_MESSAGE (8 * 1024 * 1024)   /* ZMQ_MAXMSGSIZE on bus sockets */

/*  The broker's own service name (mmi.services, mmi.stats). */
#define BUS_MMI_SERVICE "mmi"

/*  Which way a message goes: client and worker HEARTBEATs and the client
    REPLY differ by direction. */
typedef enum { BUS_TO_BROKER = 0, BUS_FROM_BROKER = 1 } bus_direction_t;

typedef enum { BUS_CLIENT = 'C', BUS_WORKER = 'W' } bus_side_t;

/*  A header's fields. Parsing points into the frame; building reads them.
    Fields a command does not have are left zero. */
typedef struct {
    bus_side_t side;
    uint8_t command;
    uint32_t number;            /* time-to-live (client REQUEST), credit (READY) */
    const uint8_t *id;          /* request id */
    size_t id_len;
    const uint8_t *service;
    size_t service_len;
    const uint8_t *address;     /* the client's routing id (worker REQUEST, REPLY) */
    size_t address_len;
    const uint8_t *instance;    /* broker instance (HEARTBEAT from the broker to a client) */
    size_t instance_len;
    const uint8_t *nonce;       /* client HEARTBEAT */
    size_t nonce_len;
    int frames;                 /* parse: frames the message must have, header included */
} bus_header_t;

/*  Checks the layout of a header frame: signature, a command known for that
    side and direction, every length inside the frame and no byte after the
    last field. Values (the service's alphabet, the ranges of ids and
    numbers) are the receiver's to check. NULL when well-formed, with *h
    filled; otherwise the reason, for a log line. */
const char *bus_header_parse (const void *data, size_t size, bus_direction_t direction,
                              bus_header_t *h);

/*  Writes h's side, command and the command's fields into buf (at least
    BUS_HEADER_MAX bytes). Returns the size, or 0 when the command is
    unknown or a field is longer than 255 bytes. */
size_t bus_header_build (uint8_t *buf, const bus_header_t *h, bus_direction_t direction);

/*  1 if the bytes are a valid service name: 1..64 of [a-z0-9_-]. */
int bus_service_valid (const void *name, size_t len);

#endif

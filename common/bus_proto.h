/*  bus_proto: the messages of the Parta bus, PBP/3 (docs/bus.md), shared by
    the broker, the client and the worker. Every message is one binary
    header frame and, for requests, replies and batches, one payload frame.
    The header is a protocol signature ("PBC03" or "PBW03"), a one-byte
    command and the command's fields, in an order fixed per command: byte
    strings with a one-byte length in front, numbers as four bytes
    big-endian. bus_header_build writes one and bus_header_parse checks
    one; neither allocates. A BATCH carries several requests or replies
    for one peer in a single frame, each as it would travel alone (header
    and payload, with their lengths in front); bus_batch_t builds one and
    bus_batch_check / bus_batch_next read one. It derives from Majordomo
    (ZeroMQ RFC 18), adding request ids, a time-to-live per request, worker
    credit, broker instance ids in heartbeats and batches. */
#ifndef PARTA_BUS_PROTO_H
#define PARTA_BUS_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define BUS_CLIENT_HEADER "PBC03"
#define BUS_WORKER_HEADER "PBW03"
#define BUS_SIGNATURE_LEN 5

/*  Client <-> broker commands. */
#define BUS_CLIENT_REQUEST 0x01     /* PBC03 REQUEST ttl id service + payload */
#define BUS_CLIENT_REPLY 0x02       /* PBC03 REPLY id service + payload */
#define BUS_CLIENT_HEARTBEAT 0x04   /* PBC03 HEARTBEAT nonce; answered PBC03 HEARTBEAT instance nonce */
#define BUS_CLIENT_BATCH 0x06       /* PBC03 BATCH count + entries: REQUESTs, or REPLYs */

/*  Worker <-> broker commands. */
#define BUS_WORKER_READY 0x01       /* PBW03 READY credit service */
#define BUS_WORKER_REQUEST 0x02     /* PBW03 REQUEST client id + payload */
#define BUS_WORKER_REPLY 0x03       /* PBW03 REPLY client id + payload */
#define BUS_WORKER_HEARTBEAT 0x04   /* PBW03 HEARTBEAT */
#define BUS_WORKER_DISCONNECT 0x05  /* PBW03 DISCONNECT */
#define BUS_WORKER_BATCH 0x06       /* PBW03 BATCH count + entries: REQUESTs, or REPLYs */

/*  Limits every peer checks. */
#define BUS_SERVICE_MAX 64          /* service name bytes: [a-z0-9_-] */
#define BUS_ID_MAX 32               /* request id bytes */
#define BUS_NONCE_MAX 32            /* heartbeat nonce bytes */
#define BUS_INSTANCE_MAX 32         /* broker instance id bytes */
#define BUS_TTL_MAX_MS 600000       /* longest time-to-live a request may ask */
#define BUS_CREDIT_MAX 1000
#define BUS_HEADER_MAX 512          /* no valid header is longer */
#define BUS_MAX_MESSAGE (8 * 1024 * 1024)   /* ZMQ_MAXMSGSIZE on bus sockets */
#define BUS_BATCH_MAX 1024          /* entries a BATCH may hold */
/*  What a Parta peer puts in one batch: payloads up to BUS_BATCH_PAYLOAD
    (larger ones travel alone), at most BUS_BATCH_SEND entries and about
    BUS_BATCH_BYTES bytes. */
#define BUS_BATCH_PAYLOAD (64 * 1024)
#define BUS_BATCH_SEND 256
#define BUS_BATCH_BYTES (256 * 1024)

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

/*  A batch being built: entries (a 2-byte header length, the header, a
    4-byte payload length, the payload) back to back. */
typedef struct {
    uint8_t *data;
    size_t len, cap;
    uint32_t count;
} bus_batch_t;

/*  Appends a REQUEST or REPLY (its header and payload) to the batch. -1
    when memory is short (the batch is unchanged). */
int bus_batch_add (bus_batch_t *b, const void *header, size_t header_len, const void *payload,
                   size_t payload_len);

/*  1 when another entry of payload_len bytes should not join the batch
    (BUS_BATCH_SEND entries, BUS_BATCH_BYTES bytes): send it first. */
int bus_batch_full (const bus_batch_t *b, size_t payload_len);

/*  Empties the batch, keeping its memory (giving back what a burst made
    large); bus_batch_fini frees it. */
void bus_batch_reset (bus_batch_t *b);
void bus_batch_fini (bus_batch_t *b);

/*  Writes a BATCH header of `side` for `count` entries into buf (at least
    BUS_BATCH_HEADER_LEN bytes); returns its size. */
#define BUS_BATCH_HEADER_LEN (BUS_SIGNATURE_LEN + 1 + 4)
size_t bus_batch_header (uint8_t *buf, bus_side_t side, uint32_t count);

/*  Sends the batch's entries on `socket` (a ZeroMQ socket handle) and
    empties it: after a routing id frame when `address` is not NULL (the
    broker's ROUTER); one entry as its own header and payload frames,
    several as one BATCH message of `side`. 0, or -1 when ZeroMQ refused
    the message (a DEALER at its high-water mark); the batch is emptied
    either way. */
int bus_batch_send (bus_batch_t *b, void *socket, bus_side_t side, const void *address,
                    size_t address_len);

/*  Checks a BATCH's entries frame: `count` (the header's number, 1..1024)
    entries, each length inside the frame, no byte after the last. NULL
    when well-formed, otherwise the reason. Entry headers are not looked
    at: each is parsed as if it had come alone. */
const char *bus_batch_check (const void *entries, size_t size, uint32_t count);

/*  Parses a batch entry's header into *h and checks it is `command` of
    `side` (the only kind a BATCH of that side and direction may carry).
    NULL when it is, otherwise the reason. */
const char *bus_batch_entry (const uint8_t *header, size_t header_len, bus_direction_t direction,
                             bus_side_t side, uint8_t command, bus_header_t *h);

/*  Walks a checked entries frame: *at starts at 0. 1 with the next entry's
    header and payload, 0 at the end. */
int bus_batch_next (const void *entries, size_t size, size_t *at, const uint8_t **header,
                    size_t *header_len, const uint8_t **payload, size_t *payload_len);

#endif

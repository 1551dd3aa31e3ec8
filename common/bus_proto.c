/*  bus_proto: the header layouts of PBP/3 as a table (see bus_proto.h and
    docs/bus.md §3). One row per command and direction: the frames the
    message has and its fields in order. Parsing and building walk the same
    row, so they cannot disagree. */
#include "bus_proto.h"

#include <stdlib.h>
#include <string.h>
#include <zmq.h>

typedef enum { F_END = 0, F_NUMBER, F_ID, F_SERVICE, F_ADDRESS, F_INSTANCE, F_NONCE } field_t;

#define BOTH 2                  /* a row that holds for either direction */

typedef struct {
    bus_side_t side;
    uint8_t command;
    int direction;              /* bus_direction_t or BOTH */
    int frames;                 /* header included */
    field_t fields[4];
} layout_t;

static const layout_t s_layouts[] = {
    {BUS_CLIENT, BUS_CLIENT_REQUEST, BUS_TO_BROKER, 2, {F_NUMBER, F_ID, F_SERVICE}},
    {BUS_CLIENT, BUS_CLIENT_REPLY, BUS_FROM_BROKER, 2, {F_ID, F_SERVICE}},
    {BUS_CLIENT, BUS_CLIENT_HEARTBEAT, BUS_TO_BROKER, 1, {F_NONCE}},
    {BUS_CLIENT, BUS_CLIENT_HEARTBEAT, BUS_FROM_BROKER, 1, {F_INSTANCE, F_NONCE}},
    {BUS_WORKER, BUS_WORKER_READY, BUS_TO_BROKER, 1, {F_NUMBER, F_SERVICE}},
    {BUS_WORKER, BUS_WORKER_REQUEST, BUS_FROM_BROKER, 2, {F_ADDRESS, F_ID}},
    {BUS_WORKER, BUS_WORKER_REPLY, BUS_TO_BROKER, 2, {F_ADDRESS, F_ID}},
    {BUS_WORKER, BUS_WORKER_HEARTBEAT, BOTH, 1, {F_END}},
    {BUS_WORKER, BUS_WORKER_DISCONNECT, BOTH, 1, {F_END}},
    {BUS_CLIENT, BUS_CLIENT_BATCH, BOTH, 2, {F_NUMBER}},
    {BUS_WORKER, BUS_WORKER_BATCH, BOTH, 2, {F_NUMBER}},
};

static const layout_t *
s_layout (bus_side_t side, uint8_t command, bus_direction_t direction)
{
    for (size_t i = 0; i < sizeof s_layouts / sizeof s_layouts[0]; i++) {
        const layout_t *l = &s_layouts[i];
        if (l->side == side && l->command == command
            && (l->direction == BOTH || l->direction == (int) direction))
            return l;
    }
    return NULL;
}

/*  Where a byte-string field lives in the header struct. */
static void
s_string (bus_header_t *h, field_t field, const uint8_t ***data, size_t **len)
{
    switch (field) {
    case F_ID:
        *data = &h->id, *len = &h->id_len;
        break;
    case F_SERVICE:
        *data = &h->service, *len = &h->service_len;
        break;
    case F_ADDRESS:
        *data = &h->address, *len = &h->address_len;
        break;
    case F_INSTANCE:
        *data = &h->instance, *len = &h->instance_len;
        break;
    default:
        *data = &h->nonce, *len = &h->nonce_len;
        break;
    }
}

const char *
bus_header_parse (const void *data, size_t size, bus_direction_t direction, bus_header_t *h)
{
    const uint8_t *p = data;
    memset (h, 0, sizeof *h);
    if (size < BUS_SIGNATURE_LEN + 1)
        return "header shorter than a signature and a command";
    if (memcmp (p, BUS_CLIENT_HEADER, BUS_SIGNATURE_LEN) == 0)
        h->side = BUS_CLIENT;
    else if (memcmp (p, BUS_WORKER_HEADER, BUS_SIGNATURE_LEN) == 0)
        h->side = BUS_WORKER;
    else
        return "unknown protocol signature";
    h->command = p[BUS_SIGNATURE_LEN];
    const layout_t *l = s_layout (h->side, h->command, direction);
    if (!l)
        return "unknown command";
    h->frames = l->frames;
    size_t at = BUS_SIGNATURE_LEN + 1;
    for (int i = 0; i < 4 && l->fields[i] != F_END; i++) {
        if (l->fields[i] == F_NUMBER) {
            if (size - at < 4)
                return "header ends inside a number";
            h->number = (uint32_t) p[at] << 24 | (uint32_t) p[at + 1] << 16
                        | (uint32_t) p[at + 2] << 8 | p[at + 3];
            at += 4;
            continue;
        }
        if (size - at < 1)
            return "header ends before a length";
        size_t len = p[at++];
        if (size - at < len)
            return "a length points past the end of the header";
        const uint8_t **field_data;
        size_t *field_len;
        s_string (h, l->fields[i], &field_data, &field_len);
        *field_data = p + at;
        *field_len = len;
        at += len;
    }
    if (at != size)
        return "bytes after the header's last field";
    return NULL;
}

size_t
bus_header_build (uint8_t *buf, const bus_header_t *h, bus_direction_t direction)
{
    const layout_t *l = s_layout (h->side, h->command, direction);
    if (!l)
        return 0;
    memcpy (buf, h->side == BUS_CLIENT ? BUS_CLIENT_HEADER : BUS_WORKER_HEADER,
            BUS_SIGNATURE_LEN);
    buf[BUS_SIGNATURE_LEN] = h->command;
    size_t at = BUS_SIGNATURE_LEN + 1;
    bus_header_t copy = *h;     /* s_string hands out pointers into a header */
    for (int i = 0; i < 4 && l->fields[i] != F_END; i++) {
        if (l->fields[i] == F_NUMBER) {
            buf[at++] = (uint8_t) (h->number >> 24);
            buf[at++] = (uint8_t) (h->number >> 16);
            buf[at++] = (uint8_t) (h->number >> 8);
            buf[at++] = (uint8_t) h->number;
            continue;
        }
        const uint8_t **field_data;
        size_t *field_len;
        s_string (&copy, l->fields[i], &field_data, &field_len);
        if (*field_len > 255 || at + 1 + *field_len > BUS_HEADER_MAX)
            return 0;
        buf[at++] = (uint8_t) *field_len;
        if (*field_len)
            memcpy (buf + at, *field_data, *field_len);
        at += *field_len;
    }
    return at;
}

int
bus_service_valid (const void *name, size_t len)
{
    const uint8_t *p = name;
    if (len == 0 || len > BUS_SERVICE_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* --- batches --- */

#define ENTRY_OVERHEAD 6        /* the two lengths */
#define BATCH_KEEP (1024 * 1024)    /* a reset batch keeps at most this much memory */

static void
s_put16 (uint8_t *p, size_t v)
{
    p[0] = (uint8_t) (v >> 8);
    p[1] = (uint8_t) v;
}

static void
s_put32 (uint8_t *p, size_t v)
{
    p[0] = (uint8_t) (v >> 24);
    p[1] = (uint8_t) (v >> 16);
    p[2] = (uint8_t) (v >> 8);
    p[3] = (uint8_t) v;
}

static size_t
s_get16 (const uint8_t *p)
{
    return (size_t) p[0] << 8 | p[1];
}

static size_t
s_get32 (const uint8_t *p)
{
    return (size_t) p[0] << 24 | (size_t) p[1] << 16 | (size_t) p[2] << 8 | p[3];
}

int
bus_batch_add (bus_batch_t *b, const void *header, size_t header_len, const void *payload,
               size_t payload_len)
{
    if (header_len > BUS_HEADER_MAX || payload_len > BUS_MAX_MESSAGE || b->count >= BUS_BATCH_MAX)
        return -1;
    size_t need = ENTRY_OVERHEAD + header_len + payload_len;
    if (b->cap - b->len < need) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < need)
            cap *= 2;
        uint8_t *data = realloc (b->data, cap);
        if (!data)
            return -1;
        b->data = data;
        b->cap = cap;
    }
    uint8_t *p = b->data + b->len;
    s_put16 (p, header_len);
    memcpy (p + 2, header, header_len);
    s_put32 (p + 2 + header_len, payload_len);
    if (payload_len)
        memcpy (p + ENTRY_OVERHEAD + header_len, payload, payload_len);
    b->len += need;
    b->count++;
    return 0;
}

int
bus_batch_full (const bus_batch_t *b, size_t payload_len)
{
    return b->count >= BUS_BATCH_SEND
           || (b->count > 0 && b->len + payload_len > BUS_BATCH_BYTES);
}

void
bus_batch_reset (bus_batch_t *b)
{
    b->len = 0;
    b->count = 0;
    if (b->cap > BATCH_KEEP) {
        free (b->data);
        b->data = NULL;
        b->cap = 0;
    }
}

void
bus_batch_fini (bus_batch_t *b)
{
    free (b->data);
    memset (b, 0, sizeof *b);
}

size_t
bus_batch_header (uint8_t *buf, bus_side_t side, uint32_t count)
{
    memcpy (buf, side == BUS_CLIENT ? BUS_CLIENT_HEADER : BUS_WORKER_HEADER, BUS_SIGNATURE_LEN);
    buf[BUS_SIGNATURE_LEN] = side == BUS_CLIENT ? BUS_CLIENT_BATCH : BUS_WORKER_BATCH;
    s_put32 (buf + BUS_SIGNATURE_LEN + 1, count);
    return BUS_BATCH_HEADER_LEN;
}

int
bus_batch_send (bus_batch_t *b, void *socket, bus_side_t side, const void *address,
                size_t address_len)
{
    if (b->count == 0)
        return 0;
    int rc = 0;
    if (address && zmq_send (socket, address, address_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        rc = -1;
    else if (b->count == 1) {
        /*  Alone, as it would have gone without batching. */
        size_t header_len = s_get16 (b->data);
        const uint8_t *payload = b->data + 2 + header_len + 4;
        if (zmq_send (socket, b->data + 2, header_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
            rc = -1;
        else
            zmq_send (socket, payload, s_get32 (b->data + 2 + header_len), ZMQ_DONTWAIT);
    }
    else {
        uint8_t header[BUS_BATCH_HEADER_LEN];
        bus_batch_header (header, side, b->count);
        if (zmq_send (socket, header, sizeof header, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
            rc = -1;
        else
            zmq_send (socket, b->data, b->len, ZMQ_DONTWAIT);
    }
    bus_batch_reset (b);
    return rc;
}

const char *
bus_batch_check (const void *entries, size_t size, uint32_t count)
{
    const uint8_t *p = entries;
    if (count < 1 || count > BUS_BATCH_MAX)
        return "a batch of no entries or more than 1024";
    size_t at = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (size - at < 2)
            return "a batch ends before an entry's header length";
        size_t header_len = s_get16 (p + at);
        at += 2;
        if (header_len > BUS_HEADER_MAX || size - at < header_len + 4)
            return "a batch entry's header runs past the end";
        at += header_len;
        size_t payload_len = s_get32 (p + at);
        at += 4;
        if (size - at < payload_len)
            return "a batch entry's payload runs past the end";
        at += payload_len;
    }
    if (at != size)
        return "bytes after a batch's last entry";
    return NULL;
}

const char *
bus_batch_entry (const uint8_t *header, size_t header_len, bus_direction_t direction,
                 bus_side_t side, uint8_t command, bus_header_t *h)
{
    const char *why = bus_header_parse (header, header_len, direction, h);
    if (!why && (h->side != side || h->command != command))
        why = "a batch entry of another kind than its batch may carry";
    return why;
}

int
bus_batch_next (const void *entries, size_t size, size_t *at, const uint8_t **header,
                size_t *header_len, const uint8_t **payload, size_t *payload_len)
{
    const uint8_t *p = entries;
    if (*at >= size)
        return 0;
    *header_len = s_get16 (p + *at);
    *header = p + *at + 2;
    *payload_len = s_get32 (*header + *header_len);
    *payload = *header + *header_len + 4;
    *at += ENTRY_OVERHEAD + *header_len + *payload_len;
    return 1;
}

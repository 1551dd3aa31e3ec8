/*  bus_proto: the header layouts of PBP/2 as a table (see bus_proto.h and
    docs/bus.md §3). One row per command and direction: the frames the
    message has and its fields in order. Parsing and building walk the same
    row, so they cannot disagree. */
#include "bus_proto.h"

#include <string.h>

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

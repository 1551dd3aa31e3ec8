/*  arena: bump allocator over a list of blocks (see arena.h). */
#include "arena.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_SIZE (64 * 1024)

typedef struct block_t {
    struct block_t *next;
    size_t size;
    size_t used;
    _Alignas (16) unsigned char data[];     /* malloc's 16-byte alignment holds */
} block_t;

struct arena_t {
    block_t *head;              /* current block, newest first */
    ProtobufCAllocator allocator;
    size_t total;
};

static void *
s_pb_alloc (void *data, size_t size)
{
    return arena_alloc ((arena_t *) data, size);
}

static void
s_pb_free (void *data, void *ptr)
{
    (void) data;
    (void) ptr;
}

static block_t *
s_block_new (size_t min)
{
    size_t size = min + sizeof (block_t) > BLOCK_SIZE ? min + sizeof (block_t) : BLOCK_SIZE;
    block_t *b = malloc (size);
    if (!b) {
        /*  Out of memory in the middle of building a reply has no clean way
            out that would not itself allocate; like CZMQ, fail loudly. */
        fprintf (stderr, "arena: out of memory\n");
        abort ();
    }
    b->next = NULL;
    b->size = size - sizeof (block_t);
    b->used = 0;
    return b;
}

arena_t *
arena_new (void)
{
    arena_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->head = s_block_new (0);
    self->allocator.alloc = s_pb_alloc;
    self->allocator.free = s_pb_free;
    self->allocator.allocator_data = self;
    return self;
}

void
arena_destroy (arena_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    arena_t *self = *self_p;
    block_t *b = self->head;
    while (b) {
        block_t *next = b->next;
        free (b);
        b = next;
    }
    free (self);
    *self_p = NULL;
}

void *
arena_alloc (arena_t *self, size_t size)
{
    size = size ? (size + 15) & ~(size_t) 15 : 16;
    block_t *b = self->head;
    if (b->used + size > b->size) {
        b = s_block_new (size);
        b->next = self->head;
        self->head = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    self->total += size;
    memset (p, 0, size);
    return p;
}

char *
arena_strndup (arena_t *self, const char *text, size_t len)
{
    char *p = arena_alloc (self, len + 1);
    memcpy (p, text, len);
    p[len] = 0;
    return p;
}

char *
arena_strdup (arena_t *self, const char *text)
{
    return text ? arena_strndup (self, text, strlen (text)) : NULL;
}

char *
arena_printf (arena_t *self, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    int n = vsnprintf (NULL, 0, fmt, args);
    va_end (args);
    if (n < 0)
        return arena_strdup (self, "");
    char *p = arena_alloc (self, (size_t) n + 1);
    va_start (args, fmt);
    vsnprintf (p, (size_t) n + 1, fmt, args);
    va_end (args);
    return p;
}

void *
arena_msg (arena_t *self, const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *m = arena_alloc (self, desc->sizeof_message);
    protobuf_c_message_init (desc, m);
    return m;
}

void
arena_reset (arena_t *self)
{
    /*  Keep the oldest block (the list's tail), free the rest. */
    block_t *b = self->head;
    while (b->next) {
        block_t *next = b->next;
        free (b);
        b = next;
    }
    b->used = 0;
    self->head = b;
    self->total = 0;
}

size_t
arena_used (arena_t *self)
{
    return self->total;
}

ProtobufCAllocator *
arena_allocator (arena_t *self)
{
    return &self->allocator;
}

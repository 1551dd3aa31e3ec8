/*  arena: a bump allocator for the life of one request. Handlers build reply
    messages from it and never free anything; the worker resets the arena
    after the reply is packed. It also serves as a ProtobufCAllocator, so
    requests are unpacked into it. */
#ifndef PARTA_ARENA_H
#define PARTA_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

typedef struct arena_t arena_t;

arena_t *arena_new (void);
void arena_destroy (arena_t **self_p);

/*  Zeroed, 16-byte aligned memory; aborts on out of memory like malloc
    failure would in any allocation-heavy path (see arena.c). */
void *arena_alloc (arena_t *self, size_t size);
char *arena_strdup (arena_t *self, const char *text);
char *arena_strndup (arena_t *self, const char *text, size_t len);
char *arena_printf (arena_t *self, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));
/*  A new message of `desc`'s type, initialised. */
void *arena_msg (arena_t *self, const ProtobufCMessageDescriptor *desc);
/*  Frees everything allocated since creation (keeps the first block). */
void arena_reset (arena_t *self);
size_t arena_used (arena_t *self);

/*  An allocator whose alloc draws from the arena and whose free does nothing. */
ProtobufCAllocator *arena_allocator (arena_t *self);

#endif

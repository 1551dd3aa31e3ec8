/*  u64map: a hash map from non-zero 64-bit keys to pointers (open
    addressing, linear probing, backward-shift deletion so no tombstones).
    Used for in-flight calls keyed by call id. */
#ifndef PARTA_U64MAP_H
#define PARTA_U64MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct u64map_t u64map_t;

u64map_t *u64map_new (void);
void u64map_destroy (u64map_t **self_p);
/*  0 on success, -1 on out of memory. Replaces an existing value. */
int u64map_put (u64map_t *self, uint64_t key, void *value);
void *u64map_get (u64map_t *self, uint64_t key);
/*  Removes and returns the value (NULL if absent). */
void *u64map_remove (u64map_t *self, uint64_t key);
size_t u64map_size (u64map_t *self);
/*  Iteration: *cursor starts at 0; returns 0 when done. Do not modify the
    map while iterating. */
int u64map_next (u64map_t *self, size_t *cursor, uint64_t *key, void **value);

#endif

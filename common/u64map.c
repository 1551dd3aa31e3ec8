/*  u64map: see u64map.h. */
#include "u64map.h"

#include <stdlib.h>

typedef struct {
    uint64_t key;               /* 0: empty slot */
    void *value;
} slot_t;

struct u64map_t {
    slot_t *slots;
    size_t cap;                 /* power of two */
    size_t size;
};

static size_t
s_hash (uint64_t key, size_t cap)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t) key & (cap - 1);
}

u64map_t *
u64map_new (void)
{
    u64map_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->cap = 64;
    self->slots = calloc (self->cap, sizeof (slot_t));
    if (!self->slots) {
        free (self);
        return NULL;
    }
    return self;
}

void
u64map_destroy (u64map_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free ((*self_p)->slots);
    free (*self_p);
    *self_p = NULL;
}

static int
s_grow (u64map_t *self)
{
    size_t cap = self->cap * 2;
    slot_t *slots = calloc (cap, sizeof (slot_t));
    if (!slots)
        return -1;
    for (size_t i = 0; i < self->cap; i++) {
        if (!self->slots[i].key)
            continue;
        size_t j = s_hash (self->slots[i].key, cap);
        while (slots[j].key)
            j = (j + 1) & (cap - 1);
        slots[j] = self->slots[i];
    }
    free (self->slots);
    self->slots = slots;
    self->cap = cap;
    return 0;
}

int
u64map_put (u64map_t *self, uint64_t key, void *value)
{
    if ((self->size + 1) * 4 > self->cap * 3 && s_grow (self))
        return -1;
    size_t i = s_hash (key, self->cap);
    while (self->slots[i].key && self->slots[i].key != key)
        i = (i + 1) & (self->cap - 1);
    if (!self->slots[i].key)
        self->size++;
    self->slots[i].key = key;
    self->slots[i].value = value;
    return 0;
}

void *
u64map_get (u64map_t *self, uint64_t key)
{
    if (!key)
        return NULL;
    size_t i = s_hash (key, self->cap);
    while (self->slots[i].key) {
        if (self->slots[i].key == key)
            return self->slots[i].value;
        i = (i + 1) & (self->cap - 1);
    }
    return NULL;
}

void *
u64map_remove (u64map_t *self, uint64_t key)
{
    if (!key)
        return NULL;
    size_t mask = self->cap - 1;
    size_t i = s_hash (key, self->cap);
    while (self->slots[i].key && self->slots[i].key != key)
        i = (i + 1) & mask;
    if (!self->slots[i].key)
        return NULL;
    void *value = self->slots[i].value;
    /*  Backward-shift: move later entries of the probe run into the hole
        when their home slot does not lie cyclically between hole and them. */
    size_t hole = i;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!self->slots[j].key)
            break;
        size_t home = s_hash (self->slots[j].key, self->cap);
        int between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (between)
            continue;
        self->slots[hole] = self->slots[j];
        hole = j;
    }
    self->slots[hole].key = 0;
    self->slots[hole].value = NULL;
    self->size--;
    return value;
}

size_t
u64map_size (u64map_t *self)
{
    return self->size;
}

int
u64map_next (u64map_t *self, size_t *cursor, uint64_t *key, void **value)
{
    while (*cursor < self->cap) {
        slot_t *s = &self->slots[(*cursor)++];
        if (s->key) {
            *key = s->key;
            *value = s->value;
            return 1;
        }
    }
    return 0;
}

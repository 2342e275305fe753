/* A fixed-size byte FIFO: host data waiting for a guest (or the reverse)
 * that must never grow beyond what was agreed with the other side. Not
 * thread-safe; its owner locks. */
#ifndef KVMC_BYTERING_H
#define KVMC_BYTERING_H

#include <stddef.h>
#include <stdint.h>

struct bytering {
    uint8_t *buf;
    size_t cap, head, len; /* data is [head, head+len) modulo cap */
};

int bytering_init(struct bytering *r, size_t cap); /* 0 or KVMC_ENOMEM */
void bytering_free(struct bytering *r);
static inline size_t bytering_space(const struct bytering *r) { return r->cap - r->len; }
/* Appends at most the free space; returns how much was taken. */
size_t bytering_push(struct bytering *r, const void *data, size_t n);
/* The first contiguous run of data: *p and its length (0 when empty). */
size_t bytering_peek(const struct bytering *r, const uint8_t **p);
/* The first contiguous run of free space, for reading straight into. */
size_t bytering_free_run(const struct bytering *r, uint8_t **p);
void bytering_commit(struct bytering *r, size_t n); /* after filling a free run */
void bytering_drop(struct bytering *r, size_t n);   /* consumes n bytes */
/* Copies out up to n bytes, consuming them. */
size_t bytering_pop(struct bytering *r, void *out, size_t n);
/* All the data, unconsumed, as at most two runs (a snapshot's copy). */
void bytering_runs(const struct bytering *r, const uint8_t *p[2], size_t n[2]);
static inline void bytering_clear(struct bytering *r) { r->head = r->len = 0; }

#endif

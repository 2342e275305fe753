/* Guest RAM: one host mapping split into at most two guest regions around
 * the 32-bit MMIO hole. Every access goes through a bounds check. */
#ifndef KVMC_GUEST_MEMORY_H
#define KVMC_GUEST_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvmc/kvmc.h"

#define GM_MAX_REGIONS 2

struct gm_region {
    uint64_t gpa;
    uint64_t size;
    uint8_t *host;
};

struct guest_memory {
    struct gm_region regions[GM_MAX_REGIONS];
    unsigned nregions;
    uint64_t ram_size;
    void *mapping;
    size_t mapping_size;
    int memfd; /* -1 unless KVMC_MEM_MEMFD */
};

/* Lays out ram_size bytes of RAM and maps it. flags: KVMC_MEM_*. */
int gm_init(struct guest_memory *gm, uint64_t ram_size, unsigned flags);
void gm_destroy(struct guest_memory *gm);

/* Host pointer for [gpa, gpa+len) if the whole range is RAM in one region,
 * else NULL. Overflow-safe for any gpa/len a guest or file can supply. */
void *gm_ptr(const struct guest_memory *gm, uint64_t gpa, uint64_t len);
bool gm_is_ram(const struct guest_memory *gm, uint64_t gpa, uint64_t len);
/* Returns 0 or -1 (range not RAM). */
int gm_read(const struct guest_memory *gm, uint64_t gpa, void *buf, size_t len);
int gm_write(const struct guest_memory *gm, uint64_t gpa, const void *buf, size_t len);
/* End of the RAM region that starts at 0 (low memory, below the hole). */
uint64_t gm_low_end(const struct guest_memory *gm);

#endif

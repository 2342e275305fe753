/* An address bus (port I/O or MMIO): non-overlapping ranges, each owned by a
 * device, looked up by binary search on the vCPU exit path. Ranges are added
 * only before the vCPUs start, so lookups need no lock. */
#ifndef KVMC_BUS_H
#define KVMC_BUS_H

#include <stdint.h>

#include "kvmc/kvmc.h"

struct bus_range {
    uint64_t base;
    uint64_t size;
    kvmc_device_ops ops;
    void *opaque;
    const char *name; /* static string, for messages */
};

struct bus {
    struct bus_range *ranges; /* sorted by base, non-overlapping */
    unsigned count;
    unsigned capacity;
    const char *kind; /* "PIO" or "MMIO", for messages */
};

void bus_init(struct bus *bus, const char *kind);
void bus_destroy(struct bus *bus);
/* KVMC_EINVAL for an empty or wrapping range, KVMC_EBUSY for an overlap. */
int bus_add(struct bus *bus, uint64_t base, uint64_t size,
            const kvmc_device_ops *ops, void *opaque, const char *name);
const struct bus_range *bus_find(const struct bus *bus, uint64_t addr);

/* Dispatch an access. Returns 0 if a device handled it, -1 if nothing is
 * mapped there (reads then yield all ones). Accesses that straddle the end
 * of a range are treated as unmapped. */
int bus_read(const struct bus *bus, uint64_t addr, unsigned size, uint64_t *value);
int bus_write(const struct bus *bus, uint64_t addr, unsigned size, uint64_t value);

#endif

/* An address bus (port I/O or MMIO): non-overlapping ranges, each owned by a
 * device, looked up by binary search on the vCPU exit path.
 *
 * The ranges may change while the guest runs (a guest moving a PCI BAR, a
 * device added or removed): every change builds a new immutable map and
 * swaps it in. Readers (the vCPU threads, one slot each) never lock: a
 * reader announces the map it is using in its slot (a hazard pointer), and
 * a writer frees a replaced map only once no slot names it. A reader thus
 * costs two stores and a fence per exit; a writer never waits for readers
 * (it may itself be a vCPU inside a dispatch, moving a BAR), and the maps
 * it cannot free yet are at most one per reader.
 *
 * A range removed or moved may still receive an access that a vCPU began
 * before the change: the device must stay valid until the VM's vCPUs have
 * stopped (devices are freed at VM destruction). */
#ifndef KVMC_BUS_H
#define KVMC_BUS_H

#include <pthread.h>
#include <stdint.h>

struct bus_ops {
    uint64_t (*read)(void *opaque, uint64_t offset, unsigned size);
    void (*write)(void *opaque, uint64_t offset, unsigned size, uint64_t value);
};

struct bus_range {
    uint64_t base;
    uint64_t size;
    struct bus_ops ops;
    void *opaque;
    const char *name; /* static string, for messages */
};

/* An immutable snapshot of the ranges, sorted by base. */
struct bus_map {
    struct bus_map *next_retired;
    unsigned count;
    struct bus_range ranges[];
};

struct bus_reader; /* one cache line per reader, in bus.c */

struct bus {
    struct bus_map *map;         /* current; swapped atomically */
    pthread_mutex_t lock;        /* serialises writers */
    struct bus_reader *readers;
    unsigned nreaders;
    struct bus_map *retired;     /* replaced maps a reader may still use */
    const char *kind;            /* "PIO" or "MMIO", for messages */
};

/* A reader index for single-threaded use (tests, fuzzers): no slot, so no
 * writer may run concurrently. */
#define BUS_NO_READER (~0u)

/* nreaders: how many threads dispatch concurrently (the vCPUs), each with
 * its own index. KVMC_ENOMEM on failure (the bus is then empty but valid
 * to destroy). */
int bus_init(struct bus *bus, const char *kind, unsigned nreaders);
/* No reader may be active. */
void bus_destroy(struct bus *bus);

/* Writers (any thread, including a vCPU inside a dispatch).
 * bus_add: KVMC_EINVAL for an empty or wrapping range, KVMC_EBUSY for an
 * overlap, KVMC_ENOMEM. */
int bus_add(struct bus *bus, uint64_t base, uint64_t size, const struct bus_ops *ops,
            void *opaque, const char *name);
/* Removes the range that starts at base: KVMC_EINVAL if there is none. */
int bus_remove(struct bus *bus, uint64_t base);
/* Moves the range at base to new_base in one step (a BAR the guest
 * reprogrammed): KVMC_EINVAL if there is no range at base or the new one
 * wraps, KVMC_EBUSY if it would overlap another range. */
int bus_move(struct bus *bus, uint64_t base, uint64_t new_base);
/* Copies the range holding addr into *out: 0, or -1 if none. */
int bus_lookup(struct bus *bus, uint64_t addr, struct bus_range *out);
unsigned bus_count(struct bus *bus);

/* Readers. Between enter and leave the map stays valid. */
const struct bus_map *bus_enter(struct bus *bus, unsigned reader);
void bus_leave(struct bus *bus, unsigned reader);
/* Dispatch an access. Returns 0 if a device handled it, -1 if nothing is
 * mapped there (reads then yield all ones). Accesses that straddle the end
 * of a range are treated as unmapped. */
int bus_map_read(const struct bus_map *map, uint64_t addr, unsigned size, uint64_t *value);
int bus_map_write(const struct bus_map *map, uint64_t addr, unsigned size, uint64_t value);
/* enter, one access, leave. */
int bus_read(struct bus *bus, unsigned reader, uint64_t addr, unsigned size,
             uint64_t *value);
int bus_write(struct bus *bus, unsigned reader, uint64_t addr, unsigned size,
              uint64_t value);

#endif

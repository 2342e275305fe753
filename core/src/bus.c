#include "bus.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#define CACHE_LINE 64
/* A reader that keeps losing the race against writers takes the writers'
 * lock once to get a stable map: a guest moving BARs in a loop on one vCPU
 * cannot starve another. */
#define ENTER_RETRIES 16

struct bus_reader {
    const struct bus_map *hazard;
    char pad[CACHE_LINE - sizeof(void *)];
};

static struct bus_map *map_alloc(unsigned count)
{
    struct bus_map *m = malloc(sizeof(*m) + (size_t)count * sizeof(m->ranges[0]));
    if (m) {
        m->next_retired = NULL;
        m->count = count;
    }
    return m;
}

int bus_init(struct bus *bus, const char *kind, unsigned nreaders)
{
    memset(bus, 0, sizeof(*bus));
    bus->kind = kind;
    pthread_mutex_init(&bus->lock, NULL);
    bus->map = map_alloc(0);
    if (nreaders) {
        bus->readers = aligned_alloc(CACHE_LINE, (size_t)nreaders * sizeof(*bus->readers));
        if (bus->readers) {
            memset(bus->readers, 0, (size_t)nreaders * sizeof(*bus->readers));
            bus->nreaders = nreaders;
        }
    }
    if (!bus->map || (nreaders && !bus->readers))
        return kvmc_fail(KVMC_ENOMEM, "allocating the %s bus", kind);
    return KVMC_OK;
}

void bus_destroy(struct bus *bus)
{
    if (!bus->kind)
        return; /* never initialised */
    free(bus->map);
    for (struct bus_map *m = bus->retired, *next; m; m = next) {
        next = m->next_retired;
        free(m);
    }
    free(bus->readers);
    pthread_mutex_destroy(&bus->lock);
    memset(bus, 0, sizeof(*bus));
}

/* ------------------------------------------------------------- readers */

const struct bus_map *bus_enter(struct bus *bus, unsigned reader)
{
    const struct bus_map *m = __atomic_load_n(&bus->map, __ATOMIC_ACQUIRE);
    if (reader >= bus->nreaders)
        return m; /* BUS_NO_READER: single-threaded use */
    struct bus_reader *r = &bus->readers[reader];
    for (unsigned tries = 0; tries < ENTER_RETRIES; tries++) {
        __atomic_store_n(&r->hazard, m, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        const struct bus_map *again = __atomic_load_n(&bus->map, __ATOMIC_ACQUIRE);
        if (again == m)
            return m;
        m = again;
    }
    pthread_mutex_lock(&bus->lock); /* no writer can swap the map meanwhile */
    m = bus->map;
    __atomic_store_n(&r->hazard, m, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&bus->lock);
    return m;
}

void bus_leave(struct bus *bus, unsigned reader)
{
    if (reader < bus->nreaders)
        __atomic_store_n(&bus->readers[reader].hazard, NULL, __ATOMIC_RELEASE);
}

/* Index of the first range whose base is > addr. */
static unsigned upper_bound(const struct bus_map *m, uint64_t addr)
{
    unsigned lo = 0, hi = m->count;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (m->ranges[mid].base <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static const struct bus_range *find(const struct bus_map *m, uint64_t addr)
{
    unsigned pos = upper_bound(m, addr);
    if (pos == 0)
        return NULL;
    const struct bus_range *r = &m->ranges[pos - 1];
    return addr - r->base < r->size ? r : NULL;
}

static const struct bus_range *find_access(const struct bus_map *m, uint64_t addr,
                                           unsigned size)
{
    const struct bus_range *r = find(m, addr);
    if (!r || size > r->size - (addr - r->base))
        return NULL;
    return r;
}

int bus_map_read(const struct bus_map *map, uint64_t addr, unsigned size, uint64_t *value)
{
    const struct bus_range *r = find_access(map, addr, size);
    *value = ~0ull;
    if (!r)
        return -1;
    if (r->ops.read)
        *value = r->ops.read(r->opaque, addr - r->base, size);
    return 0;
}

int bus_map_write(const struct bus_map *map, uint64_t addr, unsigned size, uint64_t value)
{
    const struct bus_range *r = find_access(map, addr, size);
    if (!r)
        return -1;
    if (r->ops.write)
        r->ops.write(r->opaque, addr - r->base, size, value);
    return 0;
}

int bus_read(struct bus *bus, unsigned reader, uint64_t addr, unsigned size,
             uint64_t *value)
{
    int rc = bus_map_read(bus_enter(bus, reader), addr, size, value);
    bus_leave(bus, reader);
    return rc;
}

int bus_write(struct bus *bus, unsigned reader, uint64_t addr, unsigned size,
              uint64_t value)
{
    int rc = bus_map_write(bus_enter(bus, reader), addr, size, value);
    bus_leave(bus, reader);
    return rc;
}

/* ------------------------------------------------------------- writers */

static bool pinned(const struct bus *bus, const struct bus_map *m)
{
    for (unsigned i = 0; i < bus->nreaders; i++)
        if (__atomic_load_n(&bus->readers[i].hazard, __ATOMIC_ACQUIRE) == m)
            return true;
    return false;
}

/* Called with the lock held: makes next current, frees what no reader uses. */
static void publish(struct bus *bus, struct bus_map *next)
{
    struct bus_map *old = bus->map;
    __atomic_store_n(&bus->map, next, __ATOMIC_SEQ_CST);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    old->next_retired = bus->retired;
    bus->retired = old;
    struct bus_map **link = &bus->retired;
    while (*link) {
        struct bus_map *m = *link;
        if (pinned(bus, m)) {
            link = &m->next_retired;
        } else {
            *link = m->next_retired;
            free(m);
        }
    }
}

/* The range of m that [base, base+size) overlaps, other than `skip`. */
static const struct bus_range *overlap(const struct bus_map *m, uint64_t base,
                                       uint64_t size, const struct bus_range *skip)
{
    for (unsigned i = 0; i < m->count; i++) {
        const struct bus_range *r = &m->ranges[i];
        if (r != skip && base < r->base + r->size && r->base < base + size)
            return r;
    }
    return NULL;
}

static int check_place(const struct bus *bus, uint64_t base, uint64_t size,
                       const char *name, const struct bus_range *skip)
{
    if (size == 0 || base + size < base)
        return kvmc_fail(KVMC_EINVAL, "%s range 0x%llx+0x%llx for %s is empty or wraps",
                         bus->kind, (unsigned long long)base,
                         (unsigned long long)size, name);
    const struct bus_range *clash = overlap(bus->map, base, size, skip);
    if (clash)
        return kvmc_fail(KVMC_EBUSY,
                         "%s range 0x%llx+0x%llx for %s overlaps %s at 0x%llx+0x%llx",
                         bus->kind, (unsigned long long)base,
                         (unsigned long long)size, name, clash->name,
                         (unsigned long long)clash->base,
                         (unsigned long long)clash->size);
    return KVMC_OK;
}

/* A copy of the current map without range `drop` (NULL: keep all) and with
 * `add` (NULL: none) inserted in order. */
static struct bus_map *rebuild(const struct bus_map *cur, const struct bus_range *drop,
                               const struct bus_range *add)
{
    struct bus_map *m = map_alloc(cur->count - (drop ? 1 : 0) + (add ? 1 : 0));
    if (!m)
        return NULL;
    unsigned n = 0;
    bool added = add == NULL;
    for (unsigned i = 0; i < cur->count; i++) {
        const struct bus_range *r = &cur->ranges[i];
        if (!added && add->base < r->base) {
            m->ranges[n++] = *add;
            added = true;
        }
        if (r != drop)
            m->ranges[n++] = *r;
    }
    if (!added)
        m->ranges[n++] = *add;
    return m;
}

static int swap_in(struct bus *bus, const struct bus_range *drop, const struct bus_range *add)
{
    struct bus_map *next = rebuild(bus->map, drop, add);
    if (!next)
        return kvmc_fail(KVMC_ENOMEM, "growing the %s bus", bus->kind);
    publish(bus, next);
    return KVMC_OK;
}

int bus_add(struct bus *bus, uint64_t base, uint64_t size, const struct bus_ops *ops,
            void *opaque, const char *name)
{
    pthread_mutex_lock(&bus->lock);
    int err = check_place(bus, base, size, name, NULL);
    if (!err) {
        struct bus_range r = {.base = base, .size = size, .opaque = opaque, .name = name,
                              .ops = ops ? *ops : (struct bus_ops){0}};
        err = swap_in(bus, NULL, &r);
    }
    pthread_mutex_unlock(&bus->lock);
    return err;
}

static const struct bus_range *at_base(const struct bus *bus, uint64_t base)
{
    const struct bus_range *r = find(bus->map, base);
    return r && r->base == base ? r : NULL;
}

int bus_remove(struct bus *bus, uint64_t base)
{
    pthread_mutex_lock(&bus->lock);
    const struct bus_range *r = at_base(bus, base);
    int err = r ? swap_in(bus, r, NULL)
                : kvmc_fail(KVMC_EINVAL, "no %s range starts at 0x%llx", bus->kind,
                            (unsigned long long)base);
    pthread_mutex_unlock(&bus->lock);
    return err;
}

int bus_move(struct bus *bus, uint64_t base, uint64_t new_base)
{
    pthread_mutex_lock(&bus->lock);
    const struct bus_range *r = at_base(bus, base);
    int err = r ? check_place(bus, new_base, r->size, r->name, r)
                : kvmc_fail(KVMC_EINVAL, "no %s range starts at 0x%llx", bus->kind,
                            (unsigned long long)base);
    if (!err && new_base != base) {
        struct bus_range moved = *r;
        moved.base = new_base;
        err = swap_in(bus, r, &moved);
    }
    pthread_mutex_unlock(&bus->lock);
    return err;
}

int bus_lookup(struct bus *bus, uint64_t addr, struct bus_range *out)
{
    pthread_mutex_lock(&bus->lock);
    const struct bus_range *r = find(bus->map, addr);
    if (r)
        *out = *r;
    pthread_mutex_unlock(&bus->lock);
    return r ? 0 : -1;
}

unsigned bus_count(struct bus *bus)
{
    pthread_mutex_lock(&bus->lock);
    unsigned n = bus->map->count;
    pthread_mutex_unlock(&bus->lock);
    return n;
}

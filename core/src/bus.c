#include "bus.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

void bus_init(struct bus *bus, const char *kind)
{
    memset(bus, 0, sizeof(*bus));
    bus->kind = kind;
}

void bus_destroy(struct bus *bus)
{
    free(bus->ranges);
    bus->ranges = NULL;
    bus->count = bus->capacity = 0;
}

/* Index of the first range whose base is > addr. */
static unsigned upper_bound(const struct bus *bus, uint64_t addr)
{
    unsigned lo = 0, hi = bus->count;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (bus->ranges[mid].base <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int bus_add(struct bus *bus, uint64_t base, uint64_t size,
            const kvmc_device_ops *ops, void *opaque, const char *name)
{
    if (size == 0 || base + size < base)
        return kvmc_fail(KVMC_EINVAL, "%s range 0x%llx+0x%llx for %s is empty or wraps",
                         bus->kind, (unsigned long long)base,
                         (unsigned long long)size, name);
    unsigned pos = upper_bound(bus, base);
    const struct bus_range *prev = pos ? &bus->ranges[pos - 1] : NULL;
    const struct bus_range *next = pos < bus->count ? &bus->ranges[pos] : NULL;
    const struct bus_range *clash = NULL;
    if (prev && base - prev->base < prev->size)
        clash = prev;
    else if (next && next->base - base < size)
        clash = next;
    if (clash)
        return kvmc_fail(KVMC_EBUSY,
                         "%s range 0x%llx+0x%llx for %s overlaps %s at 0x%llx+0x%llx",
                         bus->kind, (unsigned long long)base,
                         (unsigned long long)size, name, clash->name,
                         (unsigned long long)clash->base,
                         (unsigned long long)clash->size);
    if (bus->count == bus->capacity) {
        unsigned cap = bus->capacity ? bus->capacity * 2 : 8;
        struct bus_range *r = realloc(bus->ranges, cap * sizeof(*r));
        if (!r)
            return kvmc_fail(KVMC_ENOMEM, "growing the %s bus", bus->kind);
        bus->ranges = r;
        bus->capacity = cap;
    }
    memmove(&bus->ranges[pos + 1], &bus->ranges[pos],
            (bus->count - pos) * sizeof(bus->ranges[0]));
    bus->ranges[pos] = (struct bus_range){
        .base = base, .size = size, .opaque = opaque, .name = name,
        .ops = ops ? *ops : (kvmc_device_ops){0},
    };
    bus->count++;
    return KVMC_OK;
}

const struct bus_range *bus_find(const struct bus *bus, uint64_t addr)
{
    unsigned pos = upper_bound(bus, addr);
    if (pos == 0)
        return NULL;
    const struct bus_range *r = &bus->ranges[pos - 1];
    return addr - r->base < r->size ? r : NULL;
}

static const struct bus_range *find_access(const struct bus *bus, uint64_t addr,
                                           unsigned size)
{
    const struct bus_range *r = bus_find(bus, addr);
    if (!r || size > r->size - (addr - r->base))
        return NULL;
    return r;
}

int bus_read(const struct bus *bus, uint64_t addr, unsigned size, uint64_t *value)
{
    const struct bus_range *r = find_access(bus, addr, size);
    *value = ~0ull;
    if (!r)
        return -1;
    if (r->ops.read)
        *value = r->ops.read(r->opaque, addr - r->base, size);
    return 0;
}

int bus_write(const struct bus *bus, uint64_t addr, unsigned size, uint64_t value)
{
    const struct bus_range *r = find_access(bus, addr, size);
    if (!r)
        return -1;
    if (r->ops.write)
        r->ops.write(r->opaque, addr - r->base, size, value);
    return 0;
}

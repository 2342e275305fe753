#include "guest_memory.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "error.h"
#include "x86/layout.h"

static void plan_regions(struct guest_memory *gm, uint64_t ram_size)
{
    uint64_t low = ram_size < LAYOUT_HOLE_START ? ram_size : LAYOUT_HOLE_START;
    gm->regions[0] = (struct gm_region){.gpa = 0, .size = low};
    gm->nregions = 1;
    if (ram_size > low) {
        gm->regions[1] = (struct gm_region){.gpa = LAYOUT_HOLE_END,
                                            .size = ram_size - low};
        gm->nregions = 2;
    }
}

static int map_memfd(struct guest_memory *gm, size_t size, unsigned flags)
{
    unsigned mfd_flags = MFD_CLOEXEC;
    if (flags & KVMC_MEM_HUGEPAGES)
        mfd_flags |= MFD_HUGETLB;
    gm->memfd = memfd_create("kvmc-guest-ram", mfd_flags);
    if (gm->memfd < 0)
        return kvmc_fail_errno(KVMC_ENOMEM, errno, "memfd_create for guest RAM");
    if (ftruncate(gm->memfd, (off_t)size) < 0)
        return kvmc_fail_errno(KVMC_ENOMEM, errno,
                               "sizing guest RAM memfd to %zu bytes", size);
    gm->mapping = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED,
                       gm->memfd, 0);
    return KVMC_OK;
}

int gm_init(struct guest_memory *gm, uint64_t ram_size, unsigned flags)
{
    memset(gm, 0, sizeof(*gm));
    gm->memfd = -1;
    gm->mapping = MAP_FAILED;
    if (ram_size < KVMC_MIN_MEMORY || ram_size % (1u << 20))
        return kvmc_fail(KVMC_EINVAL,
                         "guest memory %llu bytes: must be a multiple of 1 MiB "
                         "and at least %llu MiB",
                         (unsigned long long)ram_size, KVMC_MIN_MEMORY >> 20);
    if (ram_size > SIZE_MAX)
        return kvmc_fail(KVMC_EINVAL, "guest memory too large for this host");
    gm->ram_size = ram_size;
    gm->mapping_size = (size_t)ram_size;
    plan_regions(gm, ram_size);

    if (flags & (KVMC_MEM_MEMFD | KVMC_MEM_HUGEPAGES)) {
        int err = map_memfd(gm, gm->mapping_size, flags);
        if (err) {
            gm_destroy(gm);
            return err;
        }
    } else {
        /* NORESERVE: the guest only costs what it touches. */
        gm->mapping = mmap(NULL, gm->mapping_size, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    }
    if (gm->mapping == MAP_FAILED) {
        int e = errno;
        gm_destroy(gm);
        if (flags & KVMC_MEM_HUGEPAGES)
            return kvmc_fail_errno(KVMC_ENOMEM, e,
                                   "mapping %llu MiB of guest RAM on hugepages (are "
                                   "enough reserved in /proc/sys/vm/nr_hugepages?)",
                                   (unsigned long long)(ram_size >> 20));
        return kvmc_fail_errno(KVMC_ENOMEM, e, "mapping %llu MiB of guest RAM",
                               (unsigned long long)(ram_size >> 20));
    }
    if (!(flags & KVMC_MEM_HUGEPAGES))
        madvise(gm->mapping, gm->mapping_size, MADV_HUGEPAGE); /* best effort */

    uint8_t *host = gm->mapping;
    for (unsigned i = 0; i < gm->nregions; i++) {
        gm->regions[i].host = host;
        host += gm->regions[i].size;
    }
    return KVMC_OK;
}

void gm_destroy(struct guest_memory *gm)
{
    if (gm->mapping && gm->mapping != MAP_FAILED)
        munmap(gm->mapping, gm->mapping_size);
    if (gm->memfd >= 0)
        close(gm->memfd);
    gm->mapping = MAP_FAILED;
    gm->memfd = -1;
    gm->nregions = 0;
}

void *gm_ptr(const struct guest_memory *gm, uint64_t gpa, uint64_t len)
{
    for (unsigned i = 0; i < gm->nregions; i++) {
        const struct gm_region *r = &gm->regions[i];
        if (gpa < r->gpa || gpa - r->gpa >= r->size)
            continue;
        uint64_t off = gpa - r->gpa;
        return len <= r->size - off ? r->host + off : NULL;
    }
    return NULL;
}

bool gm_is_ram(const struct guest_memory *gm, uint64_t gpa, uint64_t len)
{
    return gm_ptr(gm, gpa, len) != NULL;
}

int gm_read(const struct guest_memory *gm, uint64_t gpa, void *buf, size_t len)
{
    const void *p = gm_ptr(gm, gpa, len);
    if (!p)
        return -1;
    memcpy(buf, p, len);
    return 0;
}

int gm_write(const struct guest_memory *gm, uint64_t gpa, const void *buf, size_t len)
{
    void *p = gm_ptr(gm, gpa, len);
    if (!p)
        return -1;
    memcpy(p, buf, len);
    return 0;
}

uint64_t gm_low_end(const struct guest_memory *gm)
{
    return gm->regions[0].size;
}

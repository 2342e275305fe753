#include "boot.h"
#include "../x86/layout.h"

static unsigned add(struct e820_entry *out, unsigned n, uint64_t addr,
                    uint64_t size, uint32_t type)
{
    out[n] = (struct e820_entry){.addr = addr, .size = size, .type = type};
    return n + 1;
}

unsigned e820_build(const struct guest_memory *gm, const struct pci_host_desc *pci,
                    struct e820_entry out[E820_MAX_ENTRIES])
{
    unsigned n = 0;
    uint64_t low_end = gm_low_end(gm);
    n = add(out, n, 0, LAYOUT_EBDA, E820_RAM);
    n = add(out, n, LAYOUT_EBDA, LAYOUT_LOW_RAM_END - LAYOUT_EBDA, E820_RESERVED);
    n = add(out, n, LAYOUT_BIOS_START, LAYOUT_HIMEM - LAYOUT_BIOS_START,
            E820_RESERVED);
    if (low_end > LAYOUT_HIMEM)
        n = add(out, n, LAYOUT_HIMEM, low_end - LAYOUT_HIMEM, E820_RAM);
    /* Linux uses ECAM only where the firmware reserved it. */
    if (pci && pci->present)
        n = add(out, n, pci->ecam_base, pci->ecam_size, E820_RESERVED);
    for (unsigned i = 1; i < gm->nregions; i++)
        n = add(out, n, gm->regions[i].gpa, gm->regions[i].size, E820_RAM);
    return n;
}

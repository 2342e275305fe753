/* ELF64 x86-64 kernels (Linux vmlinux, test guests): PT_LOAD segments go to
 * their physical addresses, read from the image straight into guest memory;
 * a XEN_ELFNOTE_PHYS32_ENTRY note gives the PVH entry. Every offset and
 * size in the file is checked before use. */
#include <elf.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"
#include "../x86/layout.h"
#include "boot.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define ELF_MAX_PHDRS 64
#define ELF_MAX_NOTES 65536 /* bytes of one PT_NOTE segment (Linux's: < 1 KiB) */

int elf_probe(const uint8_t *img, size_t len)
{
    return len >= EI_NIDENT && memcmp(img, ELFMAG, SELFMAG) == 0;
}

static int range_in_file(uint64_t file_len, uint64_t off, uint64_t size)
{
    return off <= file_len && size <= file_len - off;
}

static uint64_t align4(uint64_t v) { return (v + 3) & ~3ull; }

/* Scans one PT_NOTE segment for the PVH entry note. */
static int scan_notes(const uint8_t *img, uint64_t end, uint64_t *pvh_entry);

static int find_pvh_note(const struct image *image, const Elf64_Phdr *ph, uint64_t *pvh_entry)
{
    if (ph->p_filesz > ELF_MAX_NOTES)
        return kvmc_fail(KVMC_EFORMAT, "ELF note segment of %llu bytes (at most %u)",
                         (unsigned long long)ph->p_filesz, ELF_MAX_NOTES);
    uint8_t *notes = malloc(ph->p_filesz ? ph->p_filesz : 1);
    if (!notes)
        return kvmc_fail(KVMC_ENOMEM, "reading the ELF notes");
    int err = image_read(image, ph->p_offset, notes, ph->p_filesz)
                  ? kvmc_fail(KVMC_EFORMAT, "ELF note segment lies outside the file")
                  : scan_notes(notes, ph->p_filesz, pvh_entry);
    free(notes);
    return err;
}

static int scan_notes(const uint8_t *img, uint64_t end, uint64_t *pvh_entry)
{
    uint64_t off = 0;
    while (end - off >= sizeof(Elf64_Nhdr)) {
        Elf64_Nhdr nh;
        memcpy(&nh, img + off, sizeof(nh));
        uint64_t name_off = off + sizeof(nh);
        uint64_t desc_off = name_off + align4(nh.n_namesz);
        uint64_t next = desc_off + align4(nh.n_descsz);
        if (next > end || next <= off)
            return kvmc_fail(KVMC_EFORMAT, "ELF note at offset 0x%llx is truncated",
                             (unsigned long long)off);
        if (nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY && nh.n_namesz == 4 &&
            memcmp(img + name_off, "Xen", 4) == 0) {
            if (nh.n_descsz == 4) {
                uint32_t e32;
                memcpy(&e32, img + desc_off, 4);
                *pvh_entry = e32;
            } else if (nh.n_descsz == 8) {
                memcpy(pvh_entry, img + desc_off, 8);
            } else {
                return kvmc_fail(KVMC_EFORMAT, "PVH entry note has size %u",
                                 nh.n_descsz);
            }
        }
        off = next;
    }
    return KVMC_OK;
}

static int check_header(const Elf64_Ehdr *eh, uint64_t len)
{
    if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB)
        return kvmc_fail(KVMC_EFORMAT, "ELF kernel is not 64-bit little-endian");
    if (eh->e_machine != EM_X86_64)
        return kvmc_fail(KVMC_EFORMAT, "ELF kernel is not for x86-64 (machine %u)",
                         eh->e_machine);
    if (eh->e_type != ET_EXEC)
        return kvmc_fail(KVMC_EFORMAT, "ELF kernel is not an executable (type %u)",
                         eh->e_type);
    if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 ||
        eh->e_phnum > ELF_MAX_PHDRS ||
        !range_in_file(len, eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr)))
        return kvmc_fail(KVMC_EFORMAT, "ELF program headers are missing or out of the file");
    return KVMC_OK;
}

static int load_segment(struct guest_memory *gm, const struct image *img,
                        const Elf64_Phdr *ph, unsigned idx)
{
    if (ph->p_paddr < LAYOUT_HIMEM)
        return kvmc_fail(KVMC_EFORMAT,
                         "ELF segment %u at 0x%llx is below 1 MiB, where the "
                         "boot structures live", idx, (unsigned long long)ph->p_paddr);
    uint8_t *dst = gm ? gm_ptr(gm, ph->p_paddr, ph->p_memsz) : NULL;
    if (gm && !dst)
        return kvmc_fail(KVMC_EINVAL,
                         "ELF segment %u (0x%llx, %llu bytes) does not fit in guest memory",
                         idx, (unsigned long long)ph->p_paddr,
                         (unsigned long long)ph->p_memsz);
    if (dst) {
        if (image_read(img, ph->p_offset, dst, ph->p_filesz))
            return kvmc_fail(KVMC_EIO, "ELF segment %u: the file is shorter than it says "
                             "(or could not be read)", idx);
        memset(dst + ph->p_filesz, 0, ph->p_memsz - ph->p_filesz);
    }
    return KVMC_OK;
}

int elf_load(struct guest_memory *gm, const struct image *img, struct elf_info *info)
{
    Elf64_Ehdr eh;
    uint64_t len = img->len;
    if (image_read(img, 0, &eh, sizeof(eh)) || !elf_probe((const uint8_t *)&eh, sizeof(eh)))
        return kvmc_fail(KVMC_EFORMAT, "not an ELF file");
    int err = check_header(&eh, len);
    if (err)
        return err;
    Elf64_Phdr phdrs[ELF_MAX_PHDRS];
    if (image_read(img, eh.e_phoff, phdrs, eh.e_phnum * sizeof(Elf64_Phdr)))
        return kvmc_fail(KVMC_EFORMAT, "ELF program headers could not be read");

    memset(info, 0, sizeof(*info));
    info->entry = eh.e_entry;
    info->low = UINT64_MAX;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        const Elf64_Phdr ph = phdrs[i];
        if ((ph.p_type == PT_LOAD || ph.p_type == PT_NOTE) &&
            !range_in_file(len, ph.p_offset, ph.p_filesz))
            return kvmc_fail(KVMC_EFORMAT, "ELF segment %u lies outside the file", i);
        if (ph.p_type == PT_NOTE) {
            err = find_pvh_note(img, &ph, &info->pvh_entry);
        } else if (ph.p_type == PT_LOAD) {
            if (ph.p_filesz > ph.p_memsz || ph.p_paddr + ph.p_memsz < ph.p_paddr)
                return kvmc_fail(KVMC_EFORMAT, "ELF segment %u has bad sizes", i);
            err = load_segment(gm, img, &ph, i);
            if (ph.p_paddr < info->low)
                info->low = ph.p_paddr;
            if (ph.p_paddr + ph.p_memsz > info->high)
                info->high = ph.p_paddr + ph.p_memsz;
        }
        if (err)
            return err;
    }
    if (info->high == 0)
        return kvmc_fail(KVMC_EFORMAT, "ELF kernel has no loadable segment");
    return KVMC_OK;
}

/* libFuzzer: any byte string as a kernel image (bzImage, ELF, PVH note),
 * loaded into a 64 MiB guest with an initrd and a command line, with every
 * boot protocol. The input's last 4 bytes also choose the initrd's size
 * (up to 256 KiB, or larger than guest RAM) and the command line's length
 * (up to 300 bytes, or 70,000). The loader must reject or load it, never
 * read or write out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "boot/boot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define GUEST_RAM (64ull << 20)
#define INITRD_MAX (GUEST_RAM + (16ull << 20))
#define CMDLINE_MAX 70000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct guest_memory gm;
    static const uint8_t *initrd; /* zero pages: only lengths matter */
    static char cmdline[CMDLINE_MAX + 1];
    if (!initrd) {
        void *p = mmap(NULL, INITRD_MAX, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
        if (p == MAP_FAILED || gm_init(&gm, GUEST_RAM, 0))
            return 0;
        initrd = p;
        memset(cmdline, 'k', CMDLINE_MAX);
    }
    uint32_t knobs = 0;
    if (size >= 4)
        memcpy(&knobs, data + size - 4, 4);
    size_t initrd_len = (knobs & 3) == 0 ? GUEST_RAM + (knobs >> 2) % (16u << 20)
                                         : (knobs >> 2) % (256u << 10);
    size_t cmdline_len = (knobs >> 24) % 8 == 0 ? CMDLINE_MAX : (knobs >> 8) % 300;
    cmdline[cmdline_len] = '\0';
    const struct mmio_device_desc virtio[1] = {{0xc0000000, 0x1000, 16}};
    for (int proto = KVMC_BOOT_AUTO; proto <= KVMC_BOOT_PVH; proto++) {
        struct boot_request req = {
            .kernel = image_mem(data, size), .initrd = image_mem(initrd, initrd_len),
            .cmdline = cmdline,
            .protocol = (kvmc_boot_protocol)proto, .cpus = 1 + knobs % 4,
            .virtio = virtio, .nvirtio = 1, .pic = knobs & 0x80,
        };
        struct boot_entry entry;
        boot_load(&gm, &req, &entry);
    }
    cmdline[cmdline_len] = 'k';
    return 0;
}

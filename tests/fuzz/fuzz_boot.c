/* libFuzzer: any byte string as a kernel image (bzImage, ELF, PVH note),
 * loaded into a 64 MiB guest with an initrd and a command line. The loader
 * must reject or load it, never read or write out of bounds. */
#include <stddef.h>
#include <stdint.h>

#include "boot/boot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct guest_memory gm;
    static int ready;
    if (!ready) {
        if (gm_init(&gm, 64ull << 20, 0))
            return 0;
        ready = 1;
    }
    static const uint8_t initrd[4096];
    const struct mmio_device_desc virtio[1] = {{0xc0000000, 0x1000, 16}};
    for (int proto = KVMC_BOOT_AUTO; proto <= KVMC_BOOT_PVH; proto++) {
        struct boot_request req = {
            .kernel = data, .kernel_len = size, .initrd = initrd,
            .initrd_len = sizeof(initrd), .cmdline = "console=ttyS0",
            .protocol = (kvmc_boot_protocol)proto, .cpus = 2,
            .virtio = virtio, .nvirtio = 1,
        };
        struct boot_entry entry;
        boot_load(&gm, &req, &entry);
    }
    return 0;
}

/* Linux bzImage: the setup header at offset 0x1f1 (Documentation/arch/x86/
 * boot.rst). kvmc uses only the 64-bit entry, so the kernel must say it has
 * one (boot protocol >= 2.12 with XLF_KERNEL_64). */
#include <string.h>

#include "../error.h"
#include "../x86/layout.h"
#include "boot.h"
#include "bzimage.h"

int bzimage_probe(const uint8_t *img, size_t len)
{
    uint32_t magic;
    if (len < BZ_HEADER_MIN_LEN)
        return 0;
    memcpy(&magic, img + BZ_OFF_HEADER, 4);
    return magic == BZ_HDRS_MAGIC && img[BZ_OFF_BOOT_FLAG] == 0x55 &&
           img[BZ_OFF_BOOT_FLAG + 1] == 0xaa;
}

int bzimage_parse(const uint8_t *img, size_t len, uint64_t image_len, struct bzimage *bz)
{
    if (!bzimage_probe(img, len))
        return kvmc_fail(KVMC_EFORMAT, "not a bzImage (no HdrS setup header)");
    memset(bz, 0, sizeof(*bz));
    /* The header runs from 0x1f1 to 0x202 + the jump offset at 0x201; read
     * no further than the file or our struct. */
    size_t hdr_end = 0x202 + (size_t)img[0x201];
    size_t max_end = BZ_OFF_SETUP_HDR + sizeof(bz->hdr);
    if (hdr_end > max_end)
        hdr_end = max_end;
    if (hdr_end > len)
        hdr_end = len;
    bz->hdr_len = hdr_end - BZ_OFF_SETUP_HDR;
    memcpy(&bz->hdr, img + BZ_OFF_SETUP_HDR, bz->hdr_len);

    if (bz->hdr.version < 0x020c || !(bz->hdr.xloadflags & BZ_XLF_KERNEL_64))
        return kvmc_fail(KVMC_ENOTSUP,
                         "bzImage (boot protocol %u.%02u) has no 64-bit entry point; "
                         "kvmc needs boot protocol >= 2.12 with XLF_KERNEL_64",
                         bz->hdr.version >> 8, bz->hdr.version & 0xff);
    unsigned setup_sects = bz->hdr.setup_sects ? bz->hdr.setup_sects : 4;
    bz->payload_offset = (uint64_t)(setup_sects + 1) * 512;
    if (bz->payload_offset >= image_len)
        return kvmc_fail(KVMC_EFORMAT,
                         "bzImage is truncated: %llu bytes, setup alone needs %llu",
                         (unsigned long long)image_len,
                         (unsigned long long)bz->payload_offset);
    bz->payload_len = image_len - bz->payload_offset;
    return KVMC_OK;
}

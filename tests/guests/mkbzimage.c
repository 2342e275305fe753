/* Wraps a flat kernel binary (loaded at 1 MiB, 64-bit entry at +0x200) in a
 * bzImage: a boot sector and one setup sector holding the Linux boot
 * protocol setup header, then the payload. Used to boot the test guest
 * through the same bzImage path as a Linux kernel.
 *
 * usage: mkbzimage FLAT_BINARY INIT_SIZE OUTPUT */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SETUP_SECTS 1
#define HEADER_LEN (512 * (SETUP_SECTS + 1))

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s FLAT_BINARY INIT_SIZE OUTPUT\n", argv[0]);
        return 2;
    }
    FILE *in = fopen(argv[1], "rb");
    if (!in) {
        perror(argv[1]);
        return 1;
    }
    fseek(in, 0, SEEK_END);
    long len = ftell(in);
    fseek(in, 0, SEEK_SET);
    uint8_t *payload = malloc((size_t)len);
    if (!payload || fread(payload, 1, (size_t)len, in) != (size_t)len) {
        fprintf(stderr, "%s: read failed\n", argv[1]);
        return 1;
    }
    fclose(in);
    uint32_t init_size = (uint32_t)strtoul(argv[2], NULL, 0);

    uint8_t hdr[HEADER_LEN] = {0};
    hdr[0x1f1] = SETUP_SECTS;
    put32(hdr + 0x1f4, (uint32_t)((len + 15) / 16));  /* syssize */
    put16(hdr + 0x1fe, 0xaa55);                       /* boot_flag */
    hdr[0x200] = 0xeb;                                /* jump over header */
    hdr[0x201] = 0x6a;                                /* header ends at 0x26c */
    put32(hdr + 0x202, 0x53726448);                   /* "HdrS" */
    put16(hdr + 0x206, 0x020f);                       /* protocol 2.15 */
    hdr[0x211] = 0x01;                                /* LOADED_HIGH */
    put32(hdr + 0x214, 0x100000);                     /* code32_start */
    put32(hdr + 0x22c, 0x7fffffff);                   /* initrd_addr_max */
    put32(hdr + 0x230, 0x200000);                     /* kernel_alignment */
    put16(hdr + 0x236, 0x1);                          /* XLF_KERNEL_64 */
    put32(hdr + 0x238, 4095);                         /* cmdline_size */
    put64(hdr + 0x258, 0x100000);                     /* pref_address */
    put32(hdr + 0x260, init_size);                    /* init_size */

    FILE *out = fopen(argv[3], "wb");
    if (!out || fwrite(hdr, 1, sizeof(hdr), out) != sizeof(hdr) ||
        fwrite(payload, 1, (size_t)len, out) != (size_t)len || fclose(out)) {
        perror(argv[3]);
        return 1;
    }
    free(payload);
    return 0;
}

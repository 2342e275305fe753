#ifndef KVMC_BZIMAGE_H
#define KVMC_BZIMAGE_H

#include <stddef.h>
#include <stdint.h>

#define BZ_OFF_SETUP_HDR 0x1f1
#define BZ_OFF_BOOT_FLAG 0x1fe
#define BZ_OFF_HEADER 0x202
#define BZ_HEADER_MIN_LEN 0x250
#define BZ_HDRS_MAGIC 0x53726448u /* "HdrS" */
#define BZ_XLF_KERNEL_64 0x1
#define BZ_LOADED_HIGH 0x1
#define BZ_CAN_USE_HEAP 0x80
#define BZ_ENTRY64_OFFSET 0x200

/* struct setup_header from the Linux boot protocol, at offset 0x1f1. */
struct __attribute__((packed)) bz_setup_header {
    uint8_t setup_sects;
    uint16_t root_flags;
    uint32_t syssize;
    uint16_t ram_size, vid_mode, root_dev, boot_flag, jump;
    uint32_t header;
    uint16_t version;
    uint32_t realmode_swtch;
    uint16_t start_sys_seg, kernel_version;
    uint8_t type_of_loader, loadflags;
    uint16_t setup_move_size;
    uint32_t code32_start, ramdisk_image, ramdisk_size, bootsect_kludge;
    uint16_t heap_end_ptr;
    uint8_t ext_loader_ver, ext_loader_type;
    uint32_t cmd_line_ptr, initrd_addr_max, kernel_alignment;
    uint8_t relocatable_kernel, min_alignment;
    uint16_t xloadflags;
    uint32_t cmdline_size, hardware_subarch;
    uint64_t hardware_subarch_data;
    uint32_t payload_offset, payload_length;
    uint64_t setup_data, pref_address;
    uint32_t init_size, handover_offset, kernel_info_offset;
};

struct bzimage {
    struct bz_setup_header hdr; /* fields past hdr_len are zero */
    size_t hdr_len;
    uint64_t payload_offset; /* protected-mode kernel in the file */
    uint64_t payload_len;
};

/* head: the image's first head_len bytes; image_len: its whole length. */
int bzimage_parse(const uint8_t *head, size_t head_len, uint64_t image_len, struct bzimage *bz);

#endif

/* libFuzzer: a hostile driver against the virtio-mmio register window and
 * the queue processing of each device (blk, rng, console, vsock, net), through
 * the real transport code with no VM behind it. virtio-net runs on a null
 * backend (fuzz_devices.c): frames the guest sends are only read, and host
 * frames come from the input (no real network is ever reached).
 *
 * Input: byte 0 picks the device; bytes 1-2 give the length L of a guest
 * memory image copied to guest-physical 0 (rings, descriptors, requests);
 * the rest is a list of 8-byte operations:
 *   [op] [offset lo] [offset hi] [size] [value: 4 bytes LE]
 *   op % 4 == 0: register write; 1: register read; 2: process queue value%4;
 *   3: a host frame of value % 2048 bytes for virtio-net's receive queue
 * Sizes 1, 2, 4 and 8 all occur; offsets cover the whole 4 KiB window. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_devices.h"
#include "guest_memory.h"
#include "iothread.h"
#include "virtio/mmio.h"
#include "net/backend.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MEM (4ull << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct guest_memory gm;
    static int ready;
    if (!ready) {
        if (gm_init(&gm, MEM, 0))
            return 0;
        ready = 1;
    }
    if (size < 3)
        return 0;
    unsigned which = data[0];
    size_t image = (size_t)(data[1] | data[2] << 8);
    data += 3;
    size -= 3;
    if (image > size)
        image = size;
    memset(gm_ptr(&gm, 0, MEM), 0, 1 << 20);
    memcpy(gm_ptr(&gm, 0, 1), data, image);
    data += image;
    size -= image;

    const struct virtio_device_ops *ops;
    void *impl;
    struct virtio_mmio *m;
    if (fuzz_open_virtio(which, &ops, &impl) || virtio_mmio_create_detached(&gm, ops, impl, &m))
        return 0;
    /* Attached to an I/O thread that never starts: the device's host side
     * exists, and its queues run only when an operation says so. */
    struct iothread io;
    if (iothread_init(&io) || (ops->attach && ops->attach(&m->dev, &io))) {
        iothread_destroy(&io);
        virtio_mmio_destroy(m);
        return 0;
    }
    for (; size >= 8; data += 8, size -= 8) {
        uint64_t offset = (uint64_t)(data[1] | data[2] << 8) % VIRTIO_MMIO_SIZE;
        static const unsigned sizes[] = {4, 4, 4, 1, 2, 8};
        unsigned len = sizes[data[3] % 6];
        uint32_t value;
        memcpy(&value, data + 4, 4);
        switch (data[0] % 4) {
        case 0: virtio_mmio_access(m, offset, len, true, value); break;
        case 1: virtio_mmio_access(m, offset, len, false, 0); break;
        case 2:
            if (value % 4 < m->dev.ops->num_queues)
                m->dev.ops->process_queue(&m->dev, value % 4);
            break;
        default:
            if (which % FUZZ_VIRTIO_KINDS == FUZZ_VIRTIO_NET) {
                static uint8_t frame[2048];
                memset(frame, (int)(value >> 16), sizeof(frame));
                virtio_net_receive(impl, frame, value % sizeof(frame));
            }
            break;
        }
    }
    iothread_destroy(&io);
    virtio_mmio_destroy(m);
    return 0;
}

/* A VM's counters (kvmc_vm_get_stats): devices add to them from any
 * thread with relaxed atomics, one add per request, never per byte. The
 * vCPU exit counters live in each vCPU (one writer each) and are summed
 * when read. The order is kvmc_stats' (kvmc.h), from exit_io_in on. */
#ifndef KVMC_STATS_H
#define KVMC_STATS_H

#include <stdatomic.h>
#include <stdint.h>

enum vm_stat {
    STAT_EXIT_IO_IN, STAT_EXIT_IO_OUT, STAT_EXIT_MMIO_READ, STAT_EXIT_MMIO_WRITE,
    STAT_EXIT_OTHER,
    STAT_BLOCK_READ_COUNT, STAT_BLOCK_READ_BYTES, STAT_BLOCK_WRITE_COUNT,
    STAT_BLOCK_WRITE_BYTES, STAT_BLOCK_FLUSH_COUNT, STAT_BLOCK_ERRORS,
    STAT_NET_RX_PACKETS, STAT_NET_RX_BYTES, STAT_NET_RX_DROPPED, STAT_NET_TX_PACKETS,
    STAT_NET_TX_BYTES,
    STAT_VSOCK_CONNS_OPENED, STAT_VSOCK_CONNS_CLOSED, STAT_VSOCK_RX_BYTES,
    STAT_VSOCK_TX_BYTES,
    STAT_RNG_BYTES,
    STAT_VIRTIO_ERRORS,
    STAT_COUNT
};

#define STAT_VCPU_EXITS (STAT_EXIT_OTHER + 1) /* the first ones: per vCPU */

struct vm_stats {
    _Atomic uint64_t v[STAT_COUNT];
};

/* stats may be NULL (a device against fake services). */
static inline void stats_add(struct vm_stats *stats, enum vm_stat which, uint64_t n)
{
    if (stats)
        atomic_fetch_add_explicit(&stats->v[which], n, memory_order_relaxed);
}

/* One writer (the vCPU's thread): no locked add. */
static inline void stats_bump_own(_Atomic uint64_t *counter)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

#endif

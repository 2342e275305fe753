/* Unit tests' snapshot round trip: a virtio-mmio device's section saved
 * into w, and r opened on it, ready for virtio_mmio_restore. The caller
 * frees w (r points into it). */
#ifndef KVMC_TEST_SNAPSHOT_FIXTURE_H
#define KVMC_TEST_SNAPSHOT_FIXTURE_H

#include <criterion/criterion.h>

#include "snapshot/format.h"
#include "snapshot/snapshot.h"
#include "virtio/mmio.h"

static inline void sf_save(struct virtio_mmio *m, struct snapshot_writer *w,
                           struct snapshot_reader *r)
{
    uint32_t tag;
    snapshot_writer_init(w);
    snapshot_begin(w, SNAP_VIRTIO);
    cr_assert_eq(virtio_mmio_save(m, w), KVMC_OK);
    cr_assert_eq(snapshot_finish(w, "test"), KVMC_OK);
    cr_assert_eq(snapshot_open(r, w->buf, w->len), KVMC_OK);
    cr_assert_eq(snapshot_next(r, &tag), 1);
}

#endif

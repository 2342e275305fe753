/* libFuzzer: a hostile snapshot state file against the container reader:
 * the whole input is the file; every section is read in chunks whose sizes
 * come from the section's own bytes. A read past the input (ASan) or a
 * section read beyond its length is a bug. Seeds: a valid file written by
 * snapshot_writer (make_seeds.py builds it the same way). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so reading one byte too far is caught. */
    uint8_t *file = malloc(size ? size : 1);
    if (!file)
        abort();
    memcpy(file, data, size);
    struct snapshot_reader r;
    if (snapshot_open(&r, file, size) == 0) {
        uint32_t tag;
        while (snapshot_next(&r, &tag) == 1) {
            uint8_t chunk[256], want = 1;
            while (snapshot_get(&r, chunk, want) == 0)
                want = (uint8_t)(chunk[0] | 1);
            if (r.sec_at > r.sec_len)
                abort();
        }
    }
    free(file);
    return 0;
}

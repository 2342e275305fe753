/* The snapshot state file's container: a round trip, and every way a file
 * can be wrong (truncated at every length, each byte flipped, a newer
 * format, sections past the end, reads past a section) is one error, never
 * a read out of bounds. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "kvmc/kvmc.h"
#include "snapshot/format.h"

static void sample(struct snapshot_writer *w)
{
    snapshot_writer_init(w);
    snapshot_begin(w, 0x55415254); /* a UART's */
    snapshot_put_u32(w, 0xdeadbeef);
    snapshot_put_u64(w, 0x0123456789abcdefull);
    snapshot_begin(w, 0x4d454d21);
    snapshot_put(w, "hello", 5);
    snapshot_begin(w, 7); /* an empty section */
    cr_assert_eq(snapshot_finish(w, "1.1.0"), KVMC_OK, "%s", kvmc_last_error());
}

Test(snapshot_format, sections_round_trip)
{
    struct snapshot_writer w;
    sample(&w);
    struct snapshot_reader r;
    cr_assert_eq(snapshot_open(&r, w.buf, w.len), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_str_eq(r.written_by, "1.1.0");
    uint32_t tag, u32;
    uint64_t u64;
    char text[5];
    cr_assert_eq(snapshot_next(&r, &tag), 1);
    cr_assert_eq(tag, 0x55415254);
    cr_assert_eq(snapshot_get_u32(&r, &u32), KVMC_OK);
    cr_assert_eq(u32, 0xdeadbeef);
    cr_assert_eq(snapshot_get_u64(&r, &u64), KVMC_OK);
    cr_assert_eq(u64, 0x0123456789abcdefull);
    cr_assert(snapshot_section_done(&r));
    cr_assert_eq(snapshot_get_u32(&r, &u32), KVMC_EFORMAT, "past the section");
    cr_assert(strstr(kvmc_last_error(), "past its end"), "%s", kvmc_last_error());
    cr_assert_eq(snapshot_next(&r, &tag), 1);
    cr_assert_eq(snapshot_get(&r, text, 5), KVMC_OK);
    cr_assert_eq(memcmp(text, "hello", 5), 0);
    cr_assert_eq(snapshot_next(&r, &tag), 1);
    cr_assert_eq(tag, 7);
    cr_assert(snapshot_section_done(&r), "empty");
    cr_assert_eq(snapshot_next(&r, &tag), 0, "the end");
    snapshot_writer_free(&w);
    /* The CRC is zlib's. */
    cr_assert_eq(snapshot_crc32((const uint8_t *)"123456789", 9), 0xcbf43926);
}

Test(snapshot_format, an_empty_state_is_a_header)
{
    struct snapshot_writer w;
    snapshot_writer_init(&w);
    cr_assert_eq(snapshot_finish(&w, "1.1.0"), KVMC_OK);
    cr_assert_eq(w.len, SNAPSHOT_HEADER_SIZE);
    struct snapshot_reader r;
    uint32_t tag;
    cr_assert_eq(snapshot_open(&r, w.buf, w.len), KVMC_OK);
    cr_assert_eq(snapshot_next(&r, &tag), 0);
    snapshot_writer_free(&w);
}

/* Reads every section to its end, as a careless device would. */
static int read_all(const uint8_t *file, size_t len)
{
    struct snapshot_reader r;
    int err = snapshot_open(&r, file, len);
    uint32_t tag;
    int more;
    while (!err && (more = snapshot_next(&r, &tag)) == 1) {
        uint8_t b[64];
        while (snapshot_get(&r, b, 3) == KVMC_OK)
            ;
    }
    return err ? err : (more < 0 ? more : KVMC_OK);
}

Test(snapshot_format, truncated_or_corrupted_files_are_one_error)
{
    struct snapshot_writer w;
    sample(&w);
    /* Every truncation, in a buffer of exactly that size (ASan sees any
     * read past it). */
    for (size_t n = 0; n < w.len; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, w.buf, n);
        cr_assert_eq(read_all(cut, n), KVMC_EFORMAT, "truncated to %zu bytes", n);
        free(cut);
    }
    /* Every byte flipped: refused (the header's version and flags as
     * ENOTSUP, the reserved word and the version string are not checked). */
    for (size_t i = 0; i < w.len; i++) {
        if ((i >= 16 && i < 32) || (i >= 44 && i < 48))
            continue;
        uint8_t *bad = malloc(w.len);
        memcpy(bad, w.buf, w.len);
        bad[i] ^= 0x40;
        int err = read_all(bad, w.len);
        cr_assert(err == KVMC_EFORMAT || err == KVMC_ENOTSUP, "byte %zu flipped: %d", i, err);
        free(bad);
    }
    /* A newer format names both. */
    uint8_t *newer = malloc(w.len);
    memcpy(newer, w.buf, w.len);
    newer[8] = SNAPSHOT_FORMAT_VERSION + 1;
    cr_assert_eq(read_all(newer, w.len), KVMC_ENOTSUP);
    cr_assert(strstr(kvmc_last_error(), "written by kvmc 1.1.0"), "%s", kvmc_last_error());
    free(newer);
    snapshot_writer_free(&w);
}

Test(snapshot_format, a_section_longer_than_the_file_is_refused)
{
    struct snapshot_writer w;
    snapshot_writer_init(&w);
    snapshot_begin(&w, 1);
    snapshot_put_u32(&w, 1);
    cr_assert_eq(snapshot_finish(&w, "x"), KVMC_OK);
    /* Lengthen the section, then fix the checksum as an attacker would. */
    w.buf[SNAPSHOT_HEADER_SIZE + 4] = 0xff;
    uint32_t crc = snapshot_crc32(w.buf + SNAPSHOT_HEADER_SIZE, w.len - SNAPSHOT_HEADER_SIZE);
    memcpy(w.buf + 40, &crc, 4);
    struct snapshot_reader r;
    uint32_t tag;
    cr_assert_eq(snapshot_open(&r, w.buf, w.len), KVMC_OK);
    cr_assert_eq(snapshot_next(&r, &tag), KVMC_EFORMAT);
    cr_assert(strstr(kvmc_last_error(), "runs past the end"), "%s", kvmc_last_error());
    snapshot_writer_free(&w);
}

Test(snapshot_format, data_outside_a_section_is_a_writer_error)
{
    struct snapshot_writer w;
    snapshot_writer_init(&w);
    snapshot_put_u32(&w, 1);
    cr_assert_eq(snapshot_finish(&w, "x"), KVMC_EINVAL);
    snapshot_writer_free(&w);
}

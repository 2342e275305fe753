/* Which pages a diff snapshot holds (diff_private_extents): of a file
 * mapped copy-on-write, exactly those written since it was mapped, in
 * order and merged into runs; pages only read are not among them, and
 * dropping the private copies (a reset) leaves none. Then the extents go
 * into a file and back over RAM (diff_overlay). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kvmc/kvmc.h"
#include "snapshot/diff.h"

#define PAGES 64u
#define SIZE (PAGES * SNAPSHOT_PAGE)

static int temp_file(void)
{
    char path[] = "/tmp/kvmc-diff-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    cr_assert_eq(ftruncate(fd, SIZE), 0);
    return fd;
}

static uint8_t *map_private(int fd)
{
    uint8_t *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    cr_assert_neq(p, MAP_FAILED);
    return p;
}

Test(snapshot_diff, only_the_pages_written_since_the_mapping_are_extents)
{
    int fd = temp_file();
    cr_assert_eq(pwrite(fd, "base", 4, 5 * SNAPSHOT_PAGE), 4);
    uint8_t *ram = map_private(fd);
    volatile uint8_t sink = 0;
    for (unsigned i = 0; i < PAGES; i += 3)
        sink += ram[i * SNAPSHOT_PAGE]; /* read: still the file's pages */
    (void)sink;
    struct snapshot_extent *ext;
    size_t n;
    cr_assert_eq(diff_private_extents(ram, SIZE, &ext, &n), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(n, 0, "pages only read are no diff (%zu extents)", n);
    free(ext);

    const unsigned written[] = {0, 1, 2, 7, 40, 63};
    for (unsigned i = 0; i < 6; i++)
        ram[written[i] * SNAPSHOT_PAGE + 100] = (uint8_t)(i + 1);
    cr_assert_eq(diff_private_extents(ram, SIZE, &ext, &n), KVMC_OK);
    cr_assert_eq(n, 4, "%zu extents", n);
    const struct snapshot_extent want[] = {{0, 3}, {7, 1}, {40, 1}, {63, 1}};
    for (unsigned i = 0; i < 4; i++)
        cr_assert(ext[i].page == want[i].page && ext[i].pages == want[i].pages,
                  "extent %u: %llu+%llu", i, (unsigned long long)ext[i].page,
                  (unsigned long long)ext[i].pages);

    /* Into a diff file and over a fresh mapping of the base. */
    struct snapshot_writer w;
    snapshot_writer_init(&w);
    struct snapshot_base b = {.crc = 1, .len = 2};
    strcpy(b.path, "/base");
    diff_put_base(&w, &b, ext, n);
    cr_assert_eq(snapshot_finish(&w, "test"), KVMC_OK);
    struct snapshot_reader r;
    cr_assert_eq(snapshot_open(&r, w.buf, w.len), KVMC_OK);
    uint32_t tag;
    cr_assert_eq(snapshot_next(&r, &tag), 1);
    struct snapshot_base got;
    const uint8_t *raw;
    uint64_t count;
    cr_assert_eq(diff_parse_base(&r, SIZE, &got, &raw, &count), KVMC_OK, "%s",
                 kvmc_last_error());
    cr_assert_eq(count, 4);
    int dfd = temp_file();
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(pwrite(dfd, ram + ext[i].page * SNAPSHOT_PAGE,
                            ext[i].pages * SNAPSHOT_PAGE, (off_t)(ext[i].page * SNAPSHOT_PAGE)),
                     (ssize_t)(ext[i].pages * SNAPSHOT_PAGE));
    uint8_t *again = map_private(fd);
    cr_assert_eq(diff_overlay(again, dfd, raw, count), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(memcmp(again, ram, SIZE), 0, "base + diff is not what RAM was");
    cr_assert_eq(memcmp(again + 5 * SNAPSHOT_PAGE, "base", 4), 0);
    munmap(again, SIZE);
    snapshot_writer_free(&w);
    free(ext);

    /* A reset drops the private copies: no diff left. */
    cr_assert_eq(madvise(ram, SIZE, MADV_DONTNEED), 0);
    cr_assert_eq(diff_private_extents(ram, SIZE, &ext, &n), KVMC_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(ram[100], 0, "the file's page is back");
    free(ext);
    munmap(ram, SIZE);
    close(dfd);
    close(fd);
}

Test(snapshot_diff, a_short_diff_file_is_an_error_naming_it)
{
    int fd = temp_file();
    cr_assert_eq(ftruncate(fd, SNAPSHOT_PAGE), 0);
    uint8_t *ram = map_private(fd);
    uint8_t raw[16] = {0};
    raw[0] = 3;  /* page 3: past the file's end */
    raw[8] = 1;
    cr_assert_eq(diff_overlay(ram, fd, raw, 1), KVMC_EIO);
    cr_assert(strstr(kvmc_last_error(), "diff's memory file"), "%s", kvmc_last_error());
    munmap(ram, SIZE);
    close(fd);
}

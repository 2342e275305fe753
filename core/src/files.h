#ifndef KVMC_FILES_H
#define KVMC_FILES_H

#include <stddef.h>
#include <stdint.h>

/* Reads a whole regular file of at most max_len bytes into a new buffer.
 * `what` names the file in error messages ("kernel", "initrd"). */
int read_whole_file(const char *path, size_t max_len, const char *what,
                    uint8_t **data, size_t *len);

#endif

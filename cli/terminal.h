/* `kvmc run --console stdio` on a terminal: the terminal in raw mode, so
 * every key reaches the guest at once (Ctrl-C included) and the guest does
 * the echoing, and an escape sequence for kvmc itself, as in QEMU:
 *   Ctrl-A x       stop the VM (kvmc exits with status 130)
 *   Ctrl-A Ctrl-A  send one Ctrl-A to the guest
 *   Ctrl-A h       list these
 * A thread reads the terminal, handles the escapes and passes everything
 * else on through a pipe, whose other end is the guest's console input.
 * The terminal's settings are put back on every way out: a normal exit,
 * a fatal signal, and, with --jail, by the parent outside as well. */
#ifndef KVMC_CLI_TERMINAL_H
#define KVMC_CLI_TERMINAL_H

#include <stdbool.h>

#include "kvmc/kvmc.h"

/* Puts the terminal on fd into raw mode if it is one; false if it is not
 * (then nothing changed). */
bool terminal_raw(int fd);
/* Puts the terminal back as terminal_raw found it. Safe to call more than
 * once, from any process that shares the terminal, and in a signal
 * handler. */
void terminal_restore(void);

struct escape_reader;
/* A reader of in_fd; *guest_in gets the fd the guest reads from (a pipe).
 * on_quit(opaque) will run on the reader's thread for Ctrl-A x. NULL if
 * out of resources. */
struct escape_reader *escape_reader_new(int in_fd, int *guest_in, void (*on_quit)(void *),
                                        void *opaque);
/* Starts its thread; after the jail is locked down, so that the thread
 * shares the jailed root and namespaces. confine: seccomp's control list. */
bool escape_reader_start(struct escape_reader *r, bool confine);
void escape_reader_stop(struct escape_reader *r);

/* Escape handling of one byte, for the unit tests: writes what goes to the
 * guest into out (at most 2 bytes) and returns how many; *quit is set on
 * Ctrl-A x; state carries a pending Ctrl-A between calls. */
unsigned escape_filter(unsigned char byte, bool *pending_escape, unsigned char out[2],
                       bool *quit, bool *help);

#endif

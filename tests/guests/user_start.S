/* First CPL3 code: call into C, and spin should C return (it powers off). */
#include "guest.h"
    .text
    .globl user_start
user_start:
    call guest_main
1:  pause
    jmp 1b

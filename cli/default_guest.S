/* The embedded default guest that `kvmc run` boots without --kernel. */
    .section .rodata
    .balign 16
    .globl kvmc_default_guest, kvmc_default_guest_end
kvmc_default_guest:
    .incbin KVMC_DEFAULT_GUEST
kvmc_default_guest_end:
    .section .note.GNU-stack, "", @progbits

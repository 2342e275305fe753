/* CPL0 stub of the test guest. It is kept short and simple because the host's
 * KVM (PVM backend) runs CPL0 code in a slow, partial instruction emulator:
 * build page tables, load GDT/IDT/TSS, then iretq to CPL3 with IOPL=3, where
 * guest_main() (C) does the real work. Two ways in:
 *   pvh_entry     32-bit, paging off, %ebx = hvm_start_info (PVH note)
 *   linux64_entry 64-bit, paging on, %rsi = boot_params (ELF e_entry, and
 *                 offset 0x200 of the bzImage payload)
 * plus the real-mode trampoline that application processors start in; they
 * report in and halt without leaving CPL0. */
#include "guest.h"

#define PTE_P_RW_US 0x7
#define PDE_2M_P_RW_US 0x87
#define CR0_PG_WP_NE_PE 0x80010021
#define RFLAGS_USER 0x3002 /* IOPL=3 (bare metal), IF=0 */

/* Identity-map 4 GiB with 2 MiB user-accessible pages. Assembles the same in
 * 32- and 64-bit mode (32-bit registers, addresses below 4 GiB). */
.macro build_page_tables
    mov $pd, %edi
    mov $PDE_2M_P_RW_US, %eax
    mov $2048, %ecx
1:  mov %eax, (%edi)
    add $0x200000, %eax
    add $8, %edi
    loop 1b
    mov $pdpt, %edi
    mov $pd + PTE_P_RW_US, %eax
    mov $4, %ecx
2:  mov %eax, (%edi)
    add $4096, %eax
    add $8, %edi
    loop 2b
    movl $pdpt + PTE_P_RW_US, pml4
.endm

    .section .text.pvh, "ax"
    .code32
    .globl pvh_entry
pvh_entry:
    movl $BOOT_KIND_PVH, boot_kind
    movl %ebx, boot_info
    build_page_tables
    mov $0x20, %eax                 /* CR4.PAE */
    mov %eax, %cr4
    mov $pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx           /* EFER.LME */
    rdmsr
    or $0x100, %eax
    wrmsr
    mov $CR0_PG_WP_NE_PE, %eax
    mov %eax, %cr0
    lgdt gdt_ptr
    ljmp $SEL_KCODE, $long_common

    .section .text.linux64, "ax"
    .code64
    .globl linux64_entry
linux64_entry:
    movl $BOOT_KIND_LINUX, boot_kind(%rip)
    mov %rsi, boot_info(%rip)
    build_page_tables
    mov $pml4, %eax
    mov %rax, %cr3
    lgdt gdt_ptr(%rip)
    pushq $SEL_KCODE
    lea long_common(%rip), %rax
    pushq %rax
    lretq

    .text
long_common:
    mov $SEL_KDATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    lea kstack + KSTACK_SIZE(%rip), %rsp
    /* TSS descriptor: base = &tss, with the I/O bitmap in its limit. */
    lea tss(%rip), %rax
    lea gdt + SEL_TSS(%rip), %rdi
    movw $TSS_LIMIT, (%rdi)
    mov %ax, 2(%rdi)
    shr $16, %rax
    mov %al, 4(%rdi)
    movb $0x89, 5(%rdi)
    mov %ah, 7(%rdi)
    shr $16, %rax
    mov %eax, 8(%rdi)
    lea kstack + KSTACK_SIZE(%rip), %rax
    mov %rax, tss + 4(%rip)
    movw $TSS_IOMAP_OFFSET, tss + 102(%rip)
    movb $0xff, tss + TSS_LIMIT(%rip)
    mov $SEL_TSS, %ax
    ltr %ax
    lidt idt_ptr(%rip)
    lea ustack + USTACK_SIZE(%rip), %rax
    lea user_start(%rip), %rcx
    xor %edi, %edi
    jmp to_user

/* %rax = user stack top, %rcx = user entry, %edi = argument. */
to_user:
    pushq $SEL_UDATA | 3
    pushq %rax
    pushq $RFLAGS_USER
    pushq $SEL_UCODE | 3
    pushq %rcx
    iretq

    /* ---- exceptions (CPL3 or CPL0) ---- */
    .globl isr_unexpected
isr_halt:
    cli
1:  hlt
    jmp 1b
/* Exceptions 0-31: power off with status 0x80 | vector, so a test that
 * trips one says which. One 16-byte stub per vector. */
    .globl isr_exception_stubs
    .balign 16
isr_exception_stubs:
    vec = 0
    .rept 32
    .balign 16
    mov $(0x80 | vec), %al
    jmp isr_report
    vec = vec + 1
    .endr
isr_unexpected:                     /* any other vector */
    mov $0xff, %al
isr_report:
    /* Print "exception XX: frame A B C D" (the top four stack words: error
     * code or RIP first) on COM1, then power off with status %al. */
    movzbl %al, %ebx
    lea exc_msg(%rip), %rsi
    call put_str0
    mov %rbx, %rax
    mov $2, %ecx
    call put_hex0
    mov (%rsp), %rax
    call put_word0
    mov 8(%rsp), %rax
    call put_word0
    mov 16(%rsp), %rax
    call put_word0
    mov 24(%rsp), %rax
    call put_word0
    mov $0x3f8, %dx
    mov $10, %al
    out %al, %dx
    mov %bl, %al
    mov $0x501, %dx
    out %al, %dx
    jmp isr_halt
put_word0:                          /* " " then 16 hex digits of %rax */
    push %rax
    mov $0x3f8, %dx
    mov $32, %al
    out %al, %dx
    pop %rax
    mov $16, %ecx
put_hex0:                           /* %ecx hex digits of %rax */
    mov %rax, %rdi
    mov $0x3f8, %dx
1:  lea -1(%rcx), %eax
    shl $2, %eax
    push %rcx
    mov %eax, %ecx
    mov %rdi, %rax
    shr %cl, %rax
    pop %rcx
    and $15, %eax
    lea hex_digits(%rip), %r8
    mov (%r8,%rax), %al
    out %al, %dx
    loop 1b
    ret
put_str0:                           /* NUL-terminated string at %rsi */
    mov $0x3f8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:  ret

    /* ---- application processors: real mode -> long mode -> CPL3 ---- */
    .globl ap_trampoline_start, ap_trampoline_end
    .globl ap_trampoline_gdtr, ap_trampoline_cr3
#define TRAMP(sym) (AP_TRAMPOLINE + (sym) - ap_trampoline_start)
    .code16
ap_trampoline_start:
    cli
    xor %ax, %ax
    mov %ax, %ds
    lgdtl TRAMP(ap_trampoline_gdtr)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $SEL_CODE32, $TRAMP(ap_protected)
    .code32
ap_protected:
    mov $SEL_KDATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x20, %eax
    mov %eax, %cr4
    mov TRAMP(ap_trampoline_cr3), %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov $CR0_PG_WP_NE_PE, %eax
    mov %eax, %cr0
    ljmp $SEL_KCODE, $TRAMP(ap_long)
    .code64
ap_long:
    movabs $ap_long_entry, %rax
    jmp *%rax
    .balign 8
ap_trampoline_gdtr:
    .word 0, 0, 0, 0, 0             /* filled by the BSP: limit, base */
    .balign 4
ap_trampoline_cr3:
    .long 0
ap_trampoline_end:

    .text
ap_long_entry:                      /* report in, then halt for good */
    mov $SEL_KDATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0xfee00020, %eax           /* local APIC ID register */
    mov (%rax), %ebx
    shr $24, %ebx
    lea apic_seen(%rip), %rax
    movb $1, (%rax,%rbx)
    lock incl cpus_up(%rip)
    cmpl $0, ap_serve_irqs(%rip)
    je isr_halt
    cmp $GUEST_MAX_CPUS, %rbx       /* no stack for it */
    jae isr_halt
    /* kvmc.test=ioapic-eoi: take interrupts here, at CPL0, on a stack of
     * this AP's own, with this AP's local APIC enabled. */
    lidt idt_ptr(%rip)
    lea ap_stacks(%rip), %rsp
    inc %rbx
    shl $12, %rbx
    add %rbx, %rsp
    movabs $0xfee000f0, %rax        /* spurious vector register: APIC on */
    movl $0x1ff, (%rax)
    sti
1:  hlt
    jmp 1b

/* Counts an interrupt and ends it at the local APIC (the EOI that a
 * level-triggered I/O APIC pin waits for). */
    .globl isr_count_eoi
isr_count_eoi:
    push %rax
    lock incl eoi_count(%rip)
    movabs $0xfee000b0, %rax
    movl $0, (%rax)
    /* An exit to the VMM right after the EOI: on PVM hosts, which emulate
     * this CPL0 code, KVM delivers a pending KVM_EXIT_IOAPIC_EOI only on
     * its next entry, and the `hlt` after the iretq would sleep first. */
    out %al, $0x80
    pop %rax
    iretq

    /* ---- data the CPL0 stub needs ---- */
    .data
    .balign 16
    .globl gdt, boot_kind, boot_info
gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 0x08 kernel code, 64-bit */
    .quad 0x00cf92000000ffff        /* 0x10 kernel data */
    .quad 0x00cff2000000ffff        /* 0x18 user data */
    .quad 0x00affa000000ffff        /* 0x20 user code, 64-bit */
    .quad 0x00cf9a000000ffff        /* 0x28 code, 32-bit (AP trampoline) */
    .quad 0, 0                      /* 0x30 TSS (filled at boot) */
gdt_end:
    .globl gdt_ptr
gdt_ptr:
    .word gdt_end - gdt - 1
    .quad gdt
idt_ptr:
    .word 256 * 16 - 1
    .quad idt
exc_msg:
    .asciz "guest exception vector 0x"
hex_digits:
    .ascii "0123456789abcdef"
boot_kind:
    .long 0
    .globl cpus_up
cpus_up:
    .long 1
    .globl ap_serve_irqs, eoi_count
ap_serve_irqs:                      /* set by the BSP before it starts the APs */
    .long 0
eoi_count:
    .long 0
boot_info:
    .quad 0

    .section .note.Xen, "a"
    .balign 4
    .long 4                         /* name size */
    .long 4                         /* desc size */
    .long 18                        /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_entry

    .section .bss.pagetables, "aw", @nobits
    .balign 4096
    .globl pml4, pdpt, pd
pml4: .skip 4096
pdpt: .skip 4096
pd:   .skip 4 * 4096
    .balign 4096
ap_stacks: .skip GUEST_MAX_CPUS * 4096 /* AP n's stack ends at ap_stacks + (n+1)*4 KiB */

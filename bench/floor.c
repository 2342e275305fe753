/* The floor: the fewest KVM ioctls that boot the kvmc test guest (PVH ELF)
 * and serve its port I/O, with nothing else. Benchmarks compare kvmc with
 * this, measured in the same run.
 *
 *   floor GUEST.elf [CMDLINE]   (console on stdout; exit status from 0x501)
 *   floor --tsc-hz              prints the TSC rate, which the throughput
 *                               benchmarks use to turn the guest's TSC
 *                               readings into seconds */
#include <elf.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <x86intrin.h>
#include <unistd.h>

#define MEM (64ull << 20)
#define START_INFO 0x6000
#define CMDLINE 0x20000

static void die(const char *what)
{
    perror(what);
    exit(99);
}

/* PT_LOAD segments to their physical addresses; the PVH entry from the note. */
static uint32_t load_elf(const char *path, uint8_t *mem)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        die(path);
    uint8_t *img = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (img == MAP_FAILED)
        die("mmap kernel");
    const Elf64_Ehdr *eh = (const void *)img;
    uint32_t entry = 0;
    for (int i = 0; i < eh->e_phnum; i++) {
        const Elf64_Phdr *ph = (const void *)(img + eh->e_phoff + i * sizeof(*ph));
        if (ph->p_type == PT_LOAD && ph->p_paddr + ph->p_memsz <= MEM)
            memcpy(mem + ph->p_paddr, img + ph->p_offset, ph->p_filesz);
        if (ph->p_type == PT_NOTE) /* one note: name "Xen", type 18, 4-byte entry */
            memcpy(&entry, img + ph->p_offset + 12 + 4, 4);
    }
    munmap(img, (size_t)st.st_size);
    close(fd);
    return entry;
}

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* TSC ticks per second over 200 ms of wall time. */
static int print_tsc_hz(void)
{
    double t0 = seconds_now();
    uint64_t c0 = __rdtsc();
    usleep(200000);
    double t1 = seconds_now();
    uint64_t c1 = __rdtsc();
    printf("%.0f\n", (double)(c1 - c0) / (t1 - t0));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--tsc-hz") == 0)
        return print_tsc_hz();
    if (argc < 2) {
        fprintf(stderr, "usage: floor GUEST.elf [CMDLINE]\n");
        return 2;
    }
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    int vm = kvm < 0 ? -1 : ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        die("KVM_CREATE_VM");
    uint8_t *mem = mmap(NULL, MEM, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = MEM,
        .userspace_addr = (uint64_t)(uintptr_t)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        die("KVM_SET_USER_MEMORY_REGION");
    uint32_t entry = load_elf(argv[1], mem);
    uint32_t start_info[14] = {0x336ec578, 1, 0, 0, 0, 0, CMDLINE, 0};
    memcpy(mem + START_INFO, start_info, sizeof(start_info));
    snprintf((char *)mem + CMDLINE, 4096, "%s", argc > 2 ? argv[2] : "");

    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (vcpu < 0 || run == MAP_FAILED)
        die("KVM_CREATE_VCPU");
    /* Long mode needs CPUID to say so: KVM checks it when the guest sets EFER.LME. */
    struct { struct kvm_cpuid2 h; struct kvm_cpuid_entry2 e[256]; } cpuid = {.h.nent = 256};
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid) < 0 || ioctl(vcpu, KVM_SET_CPUID2, &cpuid) < 0)
        die("CPUID");
    struct kvm_sregs sregs;
    ioctl(vcpu, KVM_GET_SREGS, &sregs);
    sregs.tr = (struct kvm_segment){.selector = 0x20, .limit = 0x67, .type = 11, .present = 1};
    struct kvm_segment code = {.limit = 0xffffffff, .selector = 0x08, .type = 11, .present = 1,
                               .db = 1, .s = 1, .g = 1};
    struct kvm_segment data = code;
    data.selector = 0x10;
    data.type = 3;
    sregs.cs = code;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    sregs.cr0 = 0x11; /* PE | ET */
    sregs.cr4 = sregs.efer = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
        die("KVM_SET_SREGS");
    struct kvm_regs regs = {.rip = entry, .rbx = START_INFO, .rflags = 2};
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
        die("KVM_SET_REGS");

    char out[4096];
    size_t out_len = 0;
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0)
            die("KVM_RUN");
        if (run->exit_reason == KVM_EXIT_IO) {
            uint8_t *d = (uint8_t *)run + run->io.data_offset;
            if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0x3f8) {
                out[out_len++] = (char)d[0];
                if (d[0] == '\n' || out_len == sizeof(out)) {
                    fwrite(out, 1, out_len, stdout);
                    fflush(stdout);
                    out_len = 0;
                }
            } else if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0x501) {
                fwrite(out, 1, out_len, stdout);
                return d[0];
            } else if (run->io.direction == KVM_EXIT_IO_IN) {
                memset(d, 0xff, (size_t)run->io.size * run->io.count);
            }
        } else if (run->exit_reason == KVM_EXIT_MMIO) {
            if (!run->mmio.is_write)
                memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
        } else {
            fprintf(stderr, "floor: exit reason %u\n", run->exit_reason);
            return 98;
        }
    }
}

/* PCI through the test guest on the host's /dev/kvm, every access a real
 * exit at CPL3: a device written in C against the public API (config
 * space, BAR sizing and decoding, MSI-X into the guest's local APIC), and a
 * hostile guest scribbling on the root complex, with kvmc's seccomp lists
 * on. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_run.h"
#include "guest_run.h"

struct test_device {
    kvmc_vm *vm;
    unsigned slot;
    uint32_t stored;
    unsigned raised;
};

static uint64_t dev_read(void *opaque, unsigned bar, uint64_t offset, unsigned size)
{
    struct test_device *d = opaque;
    (void)size;
    if (bar == 0)
        return offset == 0 ? d->stored : 0xc0de0000u + offset;
    return bar == 1 ? 0x40 + offset : 0;
}

static void dev_write(void *opaque, unsigned bar, uint64_t offset, unsigned size,
                      uint64_t value)
{
    struct test_device *d = opaque;
    (void)size;
    if (bar == 0 && offset == 0)
        d->stored = (uint32_t)value;
    if (bar == 0 && offset == 4) { /* the guest asks for an interrupt */
        d->raised++;
        kvmc_vm_pci_msix_notify(d->vm, d->slot, (unsigned)value);
    }
}

static kvmc_pci_device test_device_info(void)
{
    kvmc_pci_device info = KVMC_PCI_DEVICE_INIT;
    info.vendor_id = 0x1234;
    info.device_id = 0xbeef;
    info.class_code = 0xff0000;
    info.bars[0] = (kvmc_pci_bar){0x1000, KVMC_PCI_BAR_MEM32};
    info.bars[1] = (kvmc_pci_bar){0x10, KVMC_PCI_BAR_IO};
    info.bars[2] = (kvmc_pci_bar){0x10000, KVMC_PCI_BAR_MEM64};
    info.msix_vectors = 2;
    info.read = dev_read;
    info.write = dev_write;
    return info;
}

Test(pci, a_device_from_the_api_is_enumerated_sized_mapped_and_interrupts)
{
    struct console_capture cap = {0};
    struct guest_spec spec = {.cmdline = "kvmc.test=pci"};
    kvmc_config *cfg = guest_config(&spec, &cap);
    kvmc_vm *vm = NULL;
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_OK, "%s", kvmc_last_error());
    kvmc_config_free(cfg);
    static struct test_device dev;
    dev.vm = vm;
    kvmc_pci_device info = test_device_info();
    cr_assert_eq(kvmc_vm_add_pci_device(vm, &info, &dev, &dev.slot), KVMC_OK, "%s",
                 kvmc_last_error());
    cr_assert_eq(dev.slot, 1);
    cr_assert_eq(kvmc_vm_pci_msix_notify(vm, dev.slot, 2), KVMC_EINVAL, "2 vectors: 0 and 1");
    cr_assert_eq(kvmc_vm_pci_msix_notify(vm, 9, 0), KVMC_EINVAL, "no device in slot 9");
    cr_assert_eq(kvmc_vm_pci_msix_notify(vm, dev.slot, 0), KVMC_OK,
                 "before the guest enables MSI-X: accepted, and lost");
    cr_assert_eq(kvmc_vm_set_seccomp(vm, 1), KVMC_OK);
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    cr_assert_eq(kvmc_vm_add_pci_device(vm, &info, &dev, NULL), KVMC_ESTATE);
    kvmc_exit_info exit;
    cr_assert_eq(kvmc_vm_wait(vm, 30000, &exit), KVMC_OK, "%s", cap.data);
    kvmc_vm_destroy(vm);
    cr_assert_eq(exit.reason, KVMC_EXIT_POWEROFF, "%s\n%s", exit.message, cap.data);
    static const char *const want[] = {
        "pci: test device in slot 1, class 0xff0000\n",
        "pci: ecam and ports agree: yes\n",
        "pci: empty slot reads all ones: yes\n",
        /* BAR 2 is 64-bit (2 and 3), MSI-X's table takes BAR 4 */
        "pci: bar sizes 4096 16 65536 0 4096 0\n",
        "pci: decoding off reads all ones: yes\n",
        "pci: bar 0 answers: yes\n",
        "pci: bar 1 answers: yes\n",
        "pci: bar 0 keeps a write: yes\n",
        "pci: msix vectors 2\n",
        "pci: msix vector 0 delivered: yes\n",
        "pci: masked vector held pending, delivered on unmask: yes\n",
        "pci: moved bar 0 answers: yes\n",
        "pci: decoding off again: yes\n",
        "self-check: ok\n",
    };
    for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_assert(strstr(cap.data, want[i]), "missing '%s' in:\n%s", want[i], cap.data);
    cr_assert_eq(dev.stored, 0x5a5a);
    cr_assert_eq(dev.raised, 2);
    free(cap.data);
}

Test(pci, bad_devices_are_refused)
{
    struct console_capture cap = {0};
    struct guest_spec spec = {0};
    kvmc_config *cfg = guest_config(&spec, &cap);
    kvmc_vm *vm = NULL;
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_OK, "%s", kvmc_last_error());
    kvmc_config_free(cfg);
    kvmc_pci_device info = test_device_info();
    cr_assert_eq(kvmc_vm_add_pci_device(NULL, &info, NULL, NULL), KVMC_EINVAL);
    cr_assert_eq(kvmc_vm_add_pci_device(vm, NULL, NULL, NULL), KVMC_EINVAL);
    info.bars[0].size = 3000;
    cr_assert_eq(kvmc_vm_add_pci_device(vm, &info, NULL, NULL), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "power of two"), "%s", kvmc_last_error());
    info = test_device_info();
    info.version = 0;
    cr_assert_eq(kvmc_vm_add_pci_device(vm, &info, NULL, NULL), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "KVMC_PCI_DEVICE_INIT"), "%s", kvmc_last_error());
    info = test_device_info();
    info.msix_vectors = 5000;
    cr_assert_eq(kvmc_vm_add_pci_device(vm, &info, NULL, NULL), KVMC_EINVAL);
    kvmc_vm_destroy(vm);
    free(cap.data);
}

/* A hostile guest on the root complex through real exits, with kvmc's
 * seccomp lists (the CLI's default): random config writes to every slot
 * through ECAM and the ports, BARs moved anywhere with decoding on, random
 * MSI-X tables enabled, random virtio-pci common config. kvmc keeps
 * running, and every device works afterwards. */
Test(pci, a_guest_scribbling_on_the_root_complex_is_contained, .timeout = 90)
{
    char disk[] = "/tmp/kvmc-pci-disk-XXXXXX";
    int fd = mkstemp(disk);
    cr_assert(fd >= 0 && ftruncate(fd, 1 << 20) == 0);
    close(fd);
    char dir[] = "/tmp/kvmc-pci-scribble-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char vsock[300], vcon[300];
    snprintf(vsock, sizeof(vsock), "cid=3,uds=%s/v.sock", dir);
    snprintf(vcon, sizeof(vcon), "socket:%s/c.sock", dir);
    char *argv[] = {KVMC_CLI, "run", "--mem", "64M", "--transport", "pci",
                    "--cmdline", "kvmc.test=pci-scribble", "--disk", disk, "--rng",
                    "--net", "user", "--vsock", vsock, "--virtio-console", vcon, NULL};
    static struct cli_result r;
    cli_run(&r, argv);
    cr_assert_eq(r.status, 0, "status %d\nstdout:\n%s\nstderr:\n%s", r.status, r.out, r.err);
    cr_assert(strstr(r.out, "pci-scribble: "), "%s", r.out);
    cr_assert(strstr(r.out, " accesses, still running\n"), "%s", r.out);
    cr_assert(strstr(r.out, "pci: host bridge intact: yes\n"), "%s", r.out);
    cr_assert(strstr(r.out, "sector 5 write+read ok"), "%s", r.out);
    cr_assert(strstr(r.out, "virtio-rng: 64 bytes"), "%s", r.out);
    cr_assert(strstr(r.out, "virtio: 5 devices\n"), "%s", r.out);
    cr_assert(strstr(r.out, "self-check: ok\n"), "%s", r.out);
    unlink(disk);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

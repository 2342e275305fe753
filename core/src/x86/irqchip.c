/* Interrupt controllers. By default KVM's split irqchip: local APICs in the
 * kernel, the I/O APIC in kvmc (devices/ioapic.c), no 8259 PIC. A VM that
 * asks for a PIT gets the kernel's full irqchip instead, which the
 * in-kernel PIT needs.
 *
 * Why split is the default: with the full irqchip, closing the VM waits for
 * one SRCU grace period per PIC and I/O APIC register window, about 9 ms
 * of every VM's exit on the hosts we measured (a VM that otherwise tears
 * down in 0.4 ms). */
#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "../devices/ioapic.h"
#include "../error.h"
#include "layout.h"
#include "../vm.h"

#define KVM_TSS_ADDR 0xfffbd000ul

static int signal_msi(void *ctx, const struct ioapic_msi *msi)
{
    struct kvmc_vm *vm = ctx;
    struct kvm_msi m = {.address_lo = (uint32_t)msi->address,
                        .address_hi = (uint32_t)(msi->address >> 32),
                        .data = msi->data};
    return ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &m) < 0 ? -1 : 0;
}

static int set_level_routes(void *ctx, const unsigned *pins, const struct ioapic_msi *msis,
                            unsigned n)
{
    struct kvmc_vm *vm = ctx;
    union {
        struct kvm_irq_routing table;
        uint8_t bytes[sizeof(struct kvm_irq_routing) +
                      IOAPIC_PINS * sizeof(struct kvm_irq_routing_entry)];
    } r;
    memset(&r, 0, sizeof(r));
    r.table.nr = n < IOAPIC_PINS ? n : IOAPIC_PINS;
    for (unsigned i = 0; i < r.table.nr; i++)
        r.table.entries[i] = (struct kvm_irq_routing_entry){
            .gsi = pins[i],
            .type = KVM_IRQ_ROUTING_MSI,
            .u.msi = {.address_lo = (uint32_t)msis[i].address,
                      .address_hi = (uint32_t)(msis[i].address >> 32),
                      .data = msis[i].data},
        };
    if (ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, &r) == 0)
        return 0;
    if (!vm->ioapic_routes_warned) { /* once: a guest may rewrite its pins in a loop */
        vm->ioapic_routes_warned = true;
        fprintf(stderr, "kvmc: I/O APIC: KVM_SET_GSI_ROUTING: %s; EOIs of level-triggered "
                        "pins will not reach kvmc\n", strerror(errno));
    }
    return -1;
}

static int create_split(struct kvmc_vm *vm)
{
    int err = vm_check_extension(vm->kvm_fd, KVM_CAP_SPLIT_IRQCHIP, "KVM_CAP_SPLIT_IRQCHIP");
    if (err)
        return err;
    struct kvm_enable_cap cap = {.cap = KVM_CAP_SPLIT_IRQCHIP, .args = {IOAPIC_PINS}};
    if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)");
    struct ioapic_host host = {.signal_msi = signal_msi, .set_level_routes = set_level_routes,
                               .ctx = vm};
    vm->ioapic = ioapic_new(&host);
    if (!vm->ioapic)
        return KVMC_ENOMEM;
    static const kvmc_device_ops ops = {.read = ioapic_mmio_read, .write = ioapic_mmio_write};
    return bus_add(&vm->mmio, LAYOUT_IOAPIC, IOAPIC_MMIO_SIZE, &ops, vm->ioapic, "I/O APIC");
}

static int create_full_with_pit(struct kvmc_vm *vm)
{
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_CREATE_IRQCHIP");
    int err = vm_check_extension(vm->kvm_fd, KVM_CAP_PIT2, "KVM_CAP_PIT2");
    if (err)
        return err;
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_CREATE_PIT2");
    return KVMC_OK;
}

/* After the memory slots: adding a slot once the irqchip exists costs
 * milliseconds on some hosts (measured: 5.5 ms against 0.1 ms on PVM). */
int irqchip_create(struct kvmc_vm *vm, bool pit)
{
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_SET_TSS_ADDR");
    return pit ? create_full_with_pit(vm) : create_split(vm);
}

void irqchip_destroy(struct kvmc_vm *vm)
{
    ioapic_free(vm->ioapic);
    vm->ioapic = NULL;
}

void vm_pulse_irq(struct kvmc_vm *vm, unsigned gsi)
{
    if (vm->ioapic) {
        ioapic_pulse(vm->ioapic, gsi);
        return;
    }
    kvmc_vm_set_irq_line(vm, gsi, 1);
    kvmc_vm_set_irq_line(vm, gsi, 0);
}

int kvmc_vm_set_irq_line(kvmc_vm *vm, unsigned gsi, int level)
{
    if (!vm)
        return kvmc_fail(KVMC_EINVAL, "VM is NULL");
    if (vm->ioapic) {
        if (gsi >= IOAPIC_PINS)
            return kvmc_fail(KVMC_EINVAL, "GSI %u: the I/O APIC has pins 0 to %u", gsi,
                             IOAPIC_PINS - 1);
        ioapic_set_irq(vm->ioapic, gsi, level);
        return KVMC_OK;
    }
    struct kvm_irq_level irq = {.irq = gsi, .level = level ? 1 : 0};
    if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_IRQ_LINE gsi %u", gsi);
    return KVMC_OK;
}

# The core's sources, relative to core/: the library and the fuzz build
# (tests/fuzz) both compile this list. Every device in src/devices/ is
# compiled: a new device is a new file there plus its line in
# src/devices/devices.def.
file(GLOB KVMC_DEVICE_SOURCES CONFIGURE_DEPENDS RELATIVE ${CMAKE_CURRENT_LIST_DIR}
     ${CMAKE_CURRENT_LIST_DIR}/src/devices/*.c)
list(SORT KVMC_DEVICE_SOURCES)
set(KVMC_CORE_SOURCES
  ${KVMC_DEVICE_SOURCES}
  src/error.c
  src/thread_role.c
  src/kick.c
  src/config.c
  src/files.c
  src/guest_memory.c
  src/bus.c
  src/console.c
  src/x86/cpuid.c
  src/vcpu.c
  src/vm.c
  src/x86/irqchip.c
  src/seccomp.c
  src/boot/e820.c
  src/boot/mptable.c
  src/boot/acpi.c
  src/boot/elf.c
  src/boot/bzimage.c
  src/boot/loader.c
  src/devmgr.c
  src/services.c
  src/x86/gsi_routes.c
  src/x86/vcpu_setup.c
  src/x86/vcpu_state.c
  src/snapshot/diff.c
  src/snapshot/format.c
  src/snapshot/snapshot.c
  src/net/slirp.c
  src/net/tap.c
  src/net/dns_forward.c
  src/net_spec.c
  src/bytering.c
  src/unix_socket.c
  src/virtio/chain.c
  src/virtio/virtqueue.c
  src/virtio/virtio.c
  src/virtio/mmio.c
  src/virtio/virtio_pci.c
  src/pci/device.c
  src/pci/host.c
  src/pci/msi.c
  src/pci/msix.c
  src/pci/user_device.c
  src/vfio/vfio.c
  src/vfio/vfio_pci.c
  src/iothread.c
  src/iopool.c
)

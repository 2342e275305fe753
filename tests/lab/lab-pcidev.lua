-- The nested lab's PCI device written in Lua (kvmc's binding, in L1): a
-- device the L2 Linux kernel enumerates, sizes and maps like any other.
--   BAR 0 (4 KiB memory): offset 0 keeps what is written to it, a write at
--     offset 4 raises that MSI-X vector, everything else reads 0xc0de0000
--     plus the offset
--   BAR 1 (16 I/O ports): reads 0x40 plus the port's offset
--   BAR 2 (64 KiB, 64-bit memory), two MSI-X vectors (the table in BAR 4)
-- usage: lua5.4 lab-pcidev.lua KERNEL INITRD CMDLINE
local kvmc = require "kvmc"

local kernel, initrd, cmdline = arg[1], arg[2], arg[3]
local vm = assert(kvmc.vm{kernel = kernel, initrd = initrd, memory = "256M",
                          cmdline = cmdline})
local stored, raised = 0, 0
local pci
pci = assert(vm:add_pci_device{
    vendor = 0x1234, device = 0xbeef, class = 0xff0000, msix = 2,
    bars = {{size = 0x1000, kind = "mem32"}, {size = 0x10, kind = "io"},
            {size = 0x10000, kind = "mem64"}},
    read = function(bar, offset)
        if bar == 0 then return offset == 0 and stored or 0xc0de0000 + offset end
        return bar == 1 and 0x40 + offset or 0
    end,
    write = function(bar, offset, _, value)
        if bar == 0 and offset == 0 then stored = value end
        if bar == 0 and offset == 4 then
            raised = raised + 1
            assert(pci:notify(value))
        end
    end,
})
local exit, err = vm:run(600)
io.write(vm:console())
print(("LAB-LUA-PCI slot=%d raised=%d stored=0x%x exit=%s"):format(pci.slot, raised, stored,
      exit and exit.reason or tostring(err)))
os.exit(exit and exit.clean and 0 or 1)

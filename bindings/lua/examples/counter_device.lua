-- A device prototype written in Lua: a counter register at an MMIO address
-- and a port. The kvmc test guest (kvmc.test=devices) writes each once and
-- reads it back; the counter answers with how often it was touched.
--
--   lua5.4 counter_device.lua PATH-TO-kvmc-test-guest.elf
local kvmc = require "kvmc"

local function counter(name)
    local dev = {name = name, reads = 0, writes = 0, last = 0}
    function dev.read(offset, size)
        dev.reads = dev.reads + 1
        return (dev.last + dev.reads) & ((1 << (8 * size)) - 1)
    end
    function dev.write(offset, size, value)
        dev.writes = dev.writes + 1
        dev.last = value
    end
    return dev
end

local kernel = assert(arg[1], "usage: lua5.4 counter_device.lua PATH-TO-kvmc-test-guest.elf")
local vm = assert(kvmc.vm{kernel = kernel, memory = "64M", cmdline = "kvmc.test=devices"})
local pio, mmio = counter("pio"), counter("mmio")
assert(vm:add_pio_device(0x600, 4, pio))
assert(vm:add_mmio_device(0xd0000000, 0x1000, mmio))
local exit = assert(vm:run(30))
io.write(vm:console())
for _, d in ipairs{pio, mmio} do
    print(("lua: %s counter: %d write(s), last 0x%x, %d read(s)"):format(d.name, d.writes, d.last, d.reads))
end
vm:close()
local ok = exit.clean and pio.writes == 1 and pio.last == 0x12345678 and mmio.writes == 1
print(ok and "counter_device.lua: ok" or "counter_device.lua: FAILED")
os.exit(ok and 0 or 1)

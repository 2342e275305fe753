-- Lua binding tests: real guests on /dev/kvm. Run with lua5.4; ends with a
-- "N passed, N failed" line and a non-zero status on any failure.
package.path = (os.getenv("KVMC_LUA_DIR") or ".") .. "/?.lua;" .. package.path
package.cpath = (os.getenv("KVMC_LUA_DIR") or ".") .. "/?.so;" .. package.cpath
local kvmc = require "kvmc"

local GUEST = assert(os.getenv("KVMC_TEST_GUEST_ELF"), "set KVMC_TEST_GUEST_ELF")
assert(io.open("/dev/kvm"), "/dev/kvm is missing: these tests boot real guests")

local tests, passed, failed = {}, 0, 0
local function test(name, fn) tests[#tests + 1] = {name = name, fn = fn} end

local function contains(text, part)
    assert(text:find(part, 1, true), ("expected %q in:\n%s"):format(part, text))
end

test("boots the test guest", function()
    local vm = assert(kvmc.vm{kernel = GUEST, memory = "64M", cpus = 2, cmdline = "from lua"})
    local exit = assert(vm:run(20))
    assert(exit.clean and exit.reason == "poweroff", exit.message)
    contains(vm:console(), "cmdline: from lua")
    contains(vm:console(), "smp: 2 of 2 cpus running")
    contains(vm:console(), "self-check: ok")
    vm:close()
end)

test("the PIT is opt-in", function()
    for _, case in ipairs{{false, "pit: absent"}, {true, "pit: counting"}} do
        local vm = assert(kvmc.vm{kernel = GUEST, memory = "64M", cmdline = "kvmc.test=pit",
                                  pit = case[1]})
        assert(assert(vm:run(20)).clean)
        contains(vm:console(), case[2])
        vm:close()
    end
end)

test("devices written in Lua are driven by the guest", function()
    local seen = {}
    local vm = assert(kvmc.vm{kernel = GUEST, memory = "64M", cmdline = "kvmc.test=devices"})
    assert(vm:add_pio_device(0x600, 4, {
        read = function(off, size) return 0x10ad0000 | size end,
        write = function(off, size, v) seen.pio = v end,
    }))
    assert(vm:add_mmio_device(0xd0000000, 0x1000, {
        read = function(off, size) return 0x0102030405060708 end,
        write = function(off, size, v) seen.mmio = v end,
    }))
    assert(assert(vm:run(20)).clean)
    assert(seen.pio == 0x12345678, seen.pio)
    assert(seen.mmio == 0x1122334455667788, seen.mmio)
    contains(vm:console(), "pio: wrote 0x12345678 read 0x10ad0004")
    contains(vm:console(), "mmio: wrote 0x1122334455667788 read 0x0102030405060708")
    vm:close()
end)

test("an error in a Lua device is reported, not swallowed", function()
    local vm = assert(kvmc.vm{kernel = GUEST, memory = "64M", cmdline = "kvmc.test=devices"})
    assert(vm:add_pio_device(0x600, 4, {read = function() error("device model bug") end}))
    local exit, err = vm:run(20)
    assert(exit == nil and err:find("device model bug", 1, true), tostring(err))
    vm:close()
end)

test("errors carry kvmc's message", function()
    local vm, err = kvmc.vm{kernel = "/nonexistent/vmlinuz"}
    assert(vm == nil and err:find("/nonexistent/vmlinuz: No such file", 1, true), err)
    vm, err = kvmc.vm{kernel = GUEST, cpus = 0}
    assert(vm == nil and err:find("cpus 0", 1, true), err)
    vm, err = kvmc.vm{kernel = GUEST, memory = "lots"}
    assert(vm == nil and err:find("not a size", 1, true), err)
end)

test("how guests end", function()
    for cmdline, reason in pairs{["kvmc.test=reset"] = "reset",
                                 ["kvmc.test=triplefault"] = "triple fault",
                                 ["kvmc.test=panic"] = "guest panic"} do
        local vm = assert(kvmc.vm{kernel = GUEST, memory = "32M", cmdline = cmdline})
        local exit = assert(vm:run(20))
        assert(exit.reason == reason, cmdline .. ": " .. exit.reason)
        vm:close()
    end
end)

test("pause, resume, stop and timeouts", function()
    local vm = assert(kvmc.vm{kernel = GUEST, memory = "64M", cmdline = "kvmc.test=echo"})
    assert(vm:start())
    local exit, err = vm:wait(0.3)
    assert(exit == nil and err == "timeout", tostring(err))
    assert(vm:state() == "running")
    assert(vm:pause())
    assert(vm:state() == "paused")
    local regs = assert(vm:get_regs(0))
    assert(regs.rip >= 0x100000 and regs.rip < 0x200000, regs.rip)
    assert(vm:set_regs(0, {r12 = 0x4242}))
    assert(assert(vm:get_regs(0)).r12 == 0x4242)
    assert(vm:set_regs(0, {r12 = regs.r12}))
    assert(vm:resume())
    local none, err2 = vm:get_regs(0)
    assert(none == nil and err2:find("paused", 1, true), tostring(err2))
    assert(vm:stop())
    assert(assert(vm:wait(10)).reason == "stopped")
    vm:close()
end)

test("guest memory and virtio", function()
    local disk = os.tmpname()
    local f = assert(io.open(disk, "wb"))
    f:write(string.rep("\7", 64 * 512))
    f:close()
    local vm = assert(kvmc.vm{kernel = GUEST, memory = "64M", cmdline = "kvmc.test=virtio",
                              disks = {{path = disk, serial = "lua-disk"}}, rng = true})
    assert(vm:write_memory(0x300000, "from lua"))
    assert(vm:read_memory(0x300000, 8) == "from lua")
    local none, err = vm:read_memory(64 << 20, 1)
    assert(none == nil and err:find("is not RAM", 1, true))
    assert(assert(vm:run(20)).clean)
    contains(vm:console(), "serial lua-disk")
    contains(vm:console(), "virtio: 2 devices")
    vm:close()
    os.remove(disk)
end)

test("virtio-console, user networking and vsock from Lua", function()
    local vm = assert(kvmc.vm{kernel = GUEST, memory = "64M", cmdline = "kvmc.test=vconsole",
                              virtio_console = true, nets = {"user"},
                              vsock = {cid = 3, uds = os.tmpname() .. ".vsock"}})
    assert(vm:start())
    -- Input waits in kvmc's buffer until the guest posts a receive buffer.
    assert(vm:virtio_console_write("ping\n") == 5)
    assert(assert(vm:wait(20)).clean)
    contains(vm:console(), "virtio-console: received 'ping'")
    assert(vm:virtio_console() == "hello from hvc0\necho: ping\n", vm:virtio_console())
    vm:close()
    local bad, err = kvmc.vm{kernel = GUEST, nets = {"user,hostfwd=sctp::1-:2"}}
    assert(bad == nil and err:find("hostfwd", 1, true), err)
    bad, err = kvmc.vm{kernel = GUEST, virtio_console = "/tmp/x"}
    assert(bad == nil and err:find("socket:PATH", 1, true), err)
end)

test("sizes and version", function()
    assert(kvmc.parse_size("256M") == 256 << 20)
    assert(kvmc.parse_size("1GiB") == 1 << 30)
    assert(kvmc.version():match("^0%."))
end)

for _, t in ipairs(tests) do
    local ok, err = pcall(t.fn)
    if ok then
        passed = passed + 1
        print("PASS " .. t.name)
    else
        failed = failed + 1
        print("FAIL " .. t.name .. ": " .. tostring(err))
    end
end
print(("%d passed, %d failed"):format(passed, failed))
os.exit(failed == 0 and 0 or 1)

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
                                 ["kvmc.test=triplefault"] = "triple_fault",
                                 ["kvmc.test=panic"] = "guest_panic"} do
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
    assert(kvmc.version():match("^1%.%d+%.%d+$"), kvmc.version())
    assert(kvmc.kick_signal() == 40, "SIGRTMIN (34 with glibc) + 6")
end)


-- ---------------------------------------------------------------- robustness

local IDLE = "kvmc.test=echo" -- waits for console input forever

local function wait_for_console(vm, text)
    for _ = 1, 2000 do
        if vm:console():find(text, 1, true) then return end
        os.execute("sleep 0.01")
    end
    error("never saw " .. text .. " in:\n" .. vm:console())
end

test("the counters count exits and devices", function()
    local vm = assert(kvmc.vm{kernel = GUEST, memory = "32M", cmdline = "kvmc.test=virtio",
                              rng = true})
    assert(assert(vm:stats()).exit_io_out == 0)
    assert(vm:run(20))
    local s = assert(vm:stats())
    assert(math.type(s.exit_io_out) == "integer" and s.exit_io_out > 500, s.exit_io_out)
    assert(s.rng_bytes >= 16 and s.virtio_errors == 0 and s.block_read_count == 0,
           ("rng %d, errors %d"):format(s.rng_bytes, s.virtio_errors))
    vm:close()
end)

test("Ctrl-Alt-Del reaches the guest, which resets", function()
    local vm = assert(kvmc.vm{kernel = GUEST, memory = "32M", cmdline = "kvmc.test=kbd"})
    assert(vm:start())
    wait_for_console(vm, "kbd: waiting for ctrl-alt-del")
    assert(vm:send_ctrl_alt_del())
    assert(assert(vm:wait(20)).reason == "reset")
    contains(vm:console(), "kbd: ctrl-alt-del pressed, resetting")
    vm:close()
end)

test("vCPU threads carry the name asked for", function()
    local vm = assert(kvmc.vm{kernel = GUEST, memory = "32M", cpus = 2, cmdline = "kvmc.test=kbd",
                              vcpu_thread_name = "fc_vcpu "})
    assert(vm:start())
    wait_for_console(vm, "kbd: waiting for ctrl-alt-del")
    local p = assert(io.popen("cat /proc/$PPID/task/*/comm")) -- $PPID: this Lua
    local names = p:read("a")
    p:close()
    vm:close()
    contains(names, "fc_vcpu 0\n")
    contains(names, "fc_vcpu 1\n")
    local ok, err = kvmc.vm{kernel = GUEST, vcpu_thread_name = "fourteen bytes"}
    assert(ok == nil and err:find("at most 13", 1, true), err)
    ok, err = kvmc.vm{kernel = GUEST, vcpu_thread_name = 7}
    assert(ok == nil and err:find("vcpu_thread_name must be a string", 1, true), err)
end)

local function vm_in(state)
    local vm = assert(kvmc.vm{kernel = GUEST, memory = "32M", cpus = 2,
                              cmdline = state ~= "exited" and IDLE or nil})
    if state == "running" or state == "paused" then
        assert(vm:start())
        wait_for_console(vm, "echo: ready")
        if state == "paused" then assert(vm:pause()) end
    elseif state == "exited" then
        assert(vm:run(20))
    elseif state == "closed" then
        assert(vm:close())
    end
    return vm
end

-- What each call gives in each state: true (works) or the start of the
-- message of the nil, message it returns.
local CALLS = {
    start = function(vm) return vm:start() end,
    wait = function(vm) return vm:wait(0) end,
    stop = function(vm) return vm:stop() end,
    pause = function(vm) return vm:pause() end,
    resume = function(vm) return vm:resume() end,
    state = function(vm) return vm:state() end,
    get_regs = function(vm) return vm:get_regs(1) end,
    read_memory = function(vm) return vm:read_memory(0x200000, 8) end,
    add_pio_device = function(vm) return vm:add_pio_device(0x700, 4, {read = function() return 0 end}) end,
    set_irq_line = function(vm) return vm:set_irq_line(5, false) end,
    add_pci_device = function(vm)
        return vm:add_pci_device{vendor = 0x1234, bars = {{size = 4096, kind = "mem32"}}}
    end,
    console_write = function(vm) return vm:console_write("x") end,
    virtio_console_write = function(vm) return vm:virtio_console_write("x") end,
    snapshot = function(vm)
        local dir = os.tmpname()
        os.remove(dir)
        local ok, err = vm:snapshot(dir)
        os.remove(dir .. "/state")
        os.remove(dir .. "/memory")
        os.remove(dir)
        return ok, err
    end,
    snapshot_diff = function(vm) -- no base taken
        local dir = os.tmpname()
        os.remove(dir)
        local ok, err = vm:snapshot(dir, {diff = true})
        os.remove(dir)
        return ok, err
    end,
    load_snapshot = function(vm) return vm:load_snapshot("/nonexistent-kvmc-snapshot") end,
    reset = function(vm) return vm:reset() end, -- none taken
    send_ctrl_alt_del = function(vm) return vm:send_ctrl_alt_del() end,
    stats = function(vm) return vm:stats() end,
}
local OK = true
local EXPECT = {
    --                created           running           paused            exited
    start =          {OK,               "VM was already", "VM was already", "VM was already"},
    wait =           {"VM was never",   "timeout",        "timeout",        OK},
    stop =           {OK,               OK,               OK,               OK},
    pause =          {"VM is not",      OK,               "VM is not",      "VM is not"},
    resume =         {"VM is not",      "VM is not",      OK,               "VM is not"},
    state =          {OK,               OK,               OK,               OK},
    get_regs =       {OK,               "registers",      OK,               OK},
    read_memory =    {OK,               OK,               OK,               OK},
    add_pio_device = {OK,               "devices must",   "devices must",   "devices must"},
    set_irq_line =   {OK,               OK,               OK,               OK},
    add_pci_device = {OK,               "devices must",   "devices must",   "devices must"},
    console_write =  {OK,               OK,               OK,               OK},
    virtio_console_write = {"this VM has no", "this VM has no", "this VM has no", "this VM has no"},
    snapshot =       {"kvmc_vm_snapshot", "kvmc_vm_snapshot", OK,           "kvmc_vm_snapshot"},
    snapshot_diff =  {"kvmc_vm_snapshot", "kvmc_vm_snapshot", "diff snapshot:", "kvmc_vm_snapshot"},
    load_snapshot =  {"restore:",       "kvmc_vm_restore", "kvmc_vm_restore", "kvmc_vm_restore"},
    reset =          {"reset:",         "reset:",         "reset:",         "kvmc_vm_reset"},
    send_ctrl_alt_del = {OK,            OK,               OK,               OK},
    stats =          {OK,               OK,               OK,               OK},
}

test("every call in every state, closed included: a result or nil, message", function()
    for i, state in ipairs{"created", "running", "paused", "exited", "closed"} do
        for name, call in pairs(CALLS) do
            local vm = vm_in(state)
            local want = state == "closed" and "the VM is closed" or EXPECT[name][i]
            local got, err = call(vm)
            if want == OK then
                assert(got ~= nil, ("%s while %s: nil, %s"):format(name, state, tostring(err)))
            else
                assert(got == nil and type(err) == "string" and err:find(want, 1, true) == 1,
                       ("%s while %s: %s, %s (want %q)"):format(name, state, tostring(got),
                                                                tostring(err), want))
            end
            vm:stop()
            if vm:state() ~= "created" and vm:state() ~= nil then assert(vm:wait(10)) end
            assert(vm:close())
            assert(vm:close())
        end
    end
end)

test("bad arguments are nil, message, never an error raised", function()
    local vm = assert(kvmc.vm{kernel = GUEST, memory = "32M"})
    local cases = {
        {function() return vm:add_pio_device(0x10000, 1, {}) end, "base 65536 is out of range"},
        {function() return vm:add_pio_device(0xfff0, 0x20, {}) end, "size 32 is out of range"},
        {function() return vm:add_pio_device("x", 1, {}) end, "base must be an integer"},
        {function() return vm:add_mmio_device(0xd0000000, 0x1000, {read = 5}) end, "read is a number"},
        {function() return vm:add_mmio_device(0xd0000000, 0x1000, nil) end, "the device is a table"},
        {function() return vm:read_memory(0, -1) end, "length -1 is out of range"},
        {function() return vm:read_memory("zero", 1) end, "gpa must be an integer"},
        {function() return vm:set_irq_line(24, true) end, "GSI 24"},
        {function() return vm:get_regs("a") end, "vcpu must be an integer"},
        {function() return vm:set_regs(0, {rax = 1.5}) end, "register rax must be an integer"},
        {function() return vm:set_regs(0, {rzz = 1}) end, "unknown register rzz"},
        {function() return vm:wait("soon") end, "timeout is a number"},
        {function() return vm:write_memory(0, 42) end, "data must be a string"},
        {function() return kvmc.vm{kernel = GUEST, cpus = "2"} end, "cpus must be an integer"},
        {function() return kvmc.vm{kernel = GUEST, cpus = 1 << 40} end, "cpus 1099511627776 is out"},
        {function() return kvmc.vm{kernel = 42} end, "kernel must be a string"},
        {function() return kvmc.vm{kernel = GUEST, disks = {{path = {}}}} end, "expected 'char const *' got 'table'"},
        {function() return kvmc.vm("x") end, "kvmc.vm takes a table"},
        {function() return kvmc.vm{kernel = GUEST, kernel_image = "x"} end, "not both"},
        {function() return vm:snapshot(42) end, "dir must be a string"},
        {function() return kvmc.restore("/nonexistent-kvmc-snapshot", {memory = "32M"}) end,
         "restore: /nonexistent-kvmc-snapshot: No such file"},
    }
    for _, c in ipairs(cases) do
        local ok, got, err = pcall(c[1])
        assert(ok, "raised: " .. tostring(got))
        assert(got == nil and type(err) == "string" and err:find(c[2], 1, true),
               ("want nil, %q; got %s, %s"):format(c[2], tostring(got), tostring(err)))
    end
    vm:close()
end)

-- The flood lines in text count up by one each; returns the last number.
local function assert_count_goes_on(text)
    local last
    for n in text:gmatch("flood line (%d+) %.+\n") do
        n = math.tointeger(tonumber(n))
        assert(last == nil or n == last + 1, ("line %d after %s"):format(n, tostring(last)))
        last = n
    end
    return last
end

-- The test guest counts; saved while paused, its VM closed, a VM restored
-- from the files counts on where it stopped.
test("a snapshot restored into a new VM continues the count", function()
    local dir = os.tmpname()
    os.remove(dir)
    local vm = assert(kvmc.vm{kernel = GUEST, memory = "32M", cmdline = "kvmc.test=flood"})
    assert(vm:start())
    wait_for_console(vm, "flood line 300 ")
    local ok, err = vm:snapshot(dir)
    assert(ok == nil and err:find("not paused", 1, true), tostring(err))
    assert(vm:pause())
    assert(vm:snapshot(dir))
    local before = vm:console()
    vm:close()
    local bad, berr = kvmc.restore(dir, {memory = "64M"})
    assert(bad == nil and berr:find("32 MiB", 1, true), tostring(berr))
    local vm2 = assert(kvmc.restore(dir, {memory = "32M"}))
    assert(vm2:start())
    wait_for_console(vm2, "flood line 700 ")
    assert(vm2:pause())
    local after = vm2:console()
    -- Fast reset: the count goes on again from the snapshot's line.
    assert(vm2:reset())
    assert(vm2:state() == "paused")
    local mark = #vm2:console()
    assert(vm2:resume())
    for _ = 1, 2000 do
        if vm2:console():sub(mark + 1):find("flood line 400 ", 1, true) then break end
        os.execute("sleep 0.01")
    end
    local first_after = after:match("\n(flood line %d+ )")
    local first_again = vm2:console():sub(mark + 1):match("\n(flood line %d+ )")
    assert(first_after and first_after == first_again,
           ("after the reset: %s, after the restore: %s"):format(tostring(first_again), tostring(first_after)))
    vm2:close()
    local last = assert_count_goes_on(before .. after)
    assert(last and last >= 650, tostring(last))
    assert(not after:find("flood line 0 ", 1, true), "the restored guest started over")
    os.remove(dir .. "/state")
    os.remove(dir .. "/memory")
    os.remove(dir)
end)

-- A diff snapshot holds what changed since the full one before it, and
-- restores with it: the count goes on from the diff's line.
test("a diff snapshot restores on its base", function()
    local tmp = os.tmpname()
    os.remove(tmp)
    assert(os.execute("mkdir -p " .. tmp))
    local base, diff = tmp .. "/base", tmp .. "/diff"
    local vm = assert(kvmc.vm{kernel = GUEST, memory = "32M", cmdline = "kvmc.test=flood"})
    assert(vm:start())
    wait_for_console(vm, "flood line 300 ")
    assert(vm:pause())
    local ok, err = vm:snapshot(diff, {diff = true})
    assert(ok == nil and err:find("take a full one first", 1, true), tostring(err))
    assert(vm:snapshot(base))
    assert(vm:resume())
    wait_for_console(vm, "flood line 500 ")
    assert(vm:pause())
    ok, err = vm:snapshot(diff, {diff = "yes"})
    assert(ok == nil and err:find("opts.diff must be a boolean", 1, true), tostring(err))
    ok, err = vm:snapshot(diff, 7)
    assert(ok == nil and err:find("opts must be a table", 1, true), tostring(err))
    assert(vm:snapshot(diff, {diff = true}))
    local before = vm:console()
    vm:close()
    local vm2 = assert(kvmc.restore(diff, {memory = "32M"}))
    assert(vm2:start())
    wait_for_console(vm2, "flood line 900 ")
    assert(vm2:pause())
    local after = vm2:console()
    vm2:close()
    assert_count_goes_on(before .. after)
    local first = math.tointeger(tonumber(after:match("\nflood line (%d+) ")))
    assert(first and first > 500, "the diff restored an earlier line: " .. tostring(first))
    assert(os.execute("rm -rf " .. tmp))
end)

-- The guest writes its disk, reads the rng and makes a vsock connection on
-- every line (the host's end, a Unix socket answering in capitals, is a
-- small python3 server: plain Lua has no sockets); saved mid-count and
-- restored in a new VM, it counts on, every line ok, its vsock
-- connections after one transport reset.
test("disk, rng and vsock work after a restore", function()
    local tmp = os.tmpname()
    os.remove(tmp)
    assert(os.execute("mkdir -p " .. tmp))
    local disk, uds, dir = tmp .. "/disk.img", tmp .. "/v.sock", tmp .. "/snap"
    assert(os.execute(("truncate -s 1M %s"):format(disk)))
    local server = [[
import socket, sys, threading
l = socket.socket(socket.AF_UNIX); l.bind(sys.argv[1]); l.listen(8)
print("listening", flush=True)
def serve(c):
    with c:
        try:
            c.sendall(c.recv(64).upper())
            while c.recv(64): pass
        except OSError: pass
while True:
    threading.Thread(target=serve, args=(l.accept()[0],), daemon=True).start()
]]
    local f = assert(io.open(tmp .. "/echo.py", "w"))
    f:write(server)
    f:close()
    assert(os.execute(("python3 %s/echo.py %s_5000 > %s/echo.log 2>&1 & echo $! > %s/echo.pid")
                      :format(tmp, uds, tmp, tmp)))
    for _ = 1, 500 do
        local log = io.open(tmp .. "/echo.log")
        local up = log and log:read("a"):find("listening", 1, true)
        if log then log:close() end
        if up then break end
        os.execute("sleep 0.01")
    end
    local config = {kernel = GUEST, memory = "32M", cmdline = "kvmc.test=disk-count",
                    disks = {{path = disk}}, rng = true, vsock = {cid = 3, uds = uds}}
    local vm = assert(kvmc.vm(config))
    assert(vm:start())
    wait_for_console(vm, "disk line 100 ")
    assert(vm:pause())
    assert(vm:snapshot(dir))
    local before = vm:console()
    vm:close()
    assert(not before:find("vsock resets", 1, true), "a transport reset before any restore")
    local last
    for n in before:gmatch("disk line (%d+) ok\n") do last = math.tointeger(tonumber(n)) end
    config.kernel, config.cmdline = nil, nil
    local vm2 = assert(kvmc.restore(dir, config))
    assert(vm2:start())
    wait_for_console(vm2, ("disk line %d "):format(last + 101))
    assert(vm2:pause())
    local after = vm2:console()
    vm2:close()
    local pf = assert(io.open(tmp .. "/echo.pid"))
    os.execute("kill " .. pf:read("l"))
    pf:close()
    local failed = after:match("[^\n]*FAILED[^\n]*")
    assert(not failed, failed)
    local prev
    for line in (before .. after):gmatch("disk line (%d+) ") do
        local n = math.tointeger(tonumber(line))
        assert(prev == nil or n == prev + 1, ("line %d after %s"):format(n, tostring(prev)))
        prev = n
    end
    -- Each line says how many transport resets the guest has seen: one,
    -- after the restore (a first line may have been done before it looked).
    local tails = {}
    for line in after:gmatch("([^\n]*)\n") do -- a cut first line does not match
        tails[#tails + 1] = line:match("^disk line %d+ ok(.*)$")
    end
    for i, tail in ipairs(tails) do
        assert(tail == " vsock resets 1" or (i == 1 and tail == ""),
               ("line %d of %d after the restore ends [%s]"):format(i, #tails, tail))
    end
    assert(#tails >= 90, #tails)
    os.execute("rm -rf " .. tmp)
end)

test("integers come back as integers, 64-bit registers whole", function()
    local vm = assert(kvmc.vm{kernel = GUEST, memory = "32M", cmdline = "kvmc.test=fail"})
    assert(vm:set_regs(0, {r15 = 0x5a5a5a5a5a5a5a5b}))
    assert(vm:get_regs(0).r15 == 0x5a5a5a5a5a5a5a5b)
    local exit = assert(vm:run(20))
    assert(math.type(exit.code) == "integer" and exit.code == 7, tostring(exit.code))
    assert(math.type(exit.vcpu) == "integer" and math.type(exit.rip) == "integer")
    assert(math.type(vm:cpus()) == "integer" and math.type(vm:memory()) == "integer")
    vm:close()
end)

test("close, wait and pause from a device function are refused, not deadlocks", function()
    local vm = assert(kvmc.vm{kernel = GUEST, memory = "32M", cmdline = "kvmc.test=devices"})
    local got = {}
    assert(vm:add_pio_device(0x600, 4, {write = function()
        for _, f in ipairs{vm.close, vm.wait, vm.pause} do
            local r, err = f(vm)
            got[#got + 1] = r == nil and err or "worked"
        end
    end}))
    assert(assert(vm:run(20)).clean)
    assert(#got == 3, #got)
    for _, err in ipairs(got) do
        assert(err:find("called from a device callback", 1, true), err)
    end
    assert(vm:close())
end)

test("a PCI device written in Lua: enumerated, sized, mapped, raising MSI-X", function()
    local vm = assert(kvmc.vm{kernel = GUEST, memory = "64M", cmdline = "kvmc.test=pci"})
    local stored, raised = 0, {}
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
                raised[#raised + 1] = value
                assert(pci:notify(value))
            end
        end,
    })
    assert(pci.slot == 1, pci.slot)
    local ok, err = pci:notify(2)
    assert(ok == nil and err:find("no MSI%-X vector 2"), err)
    assert(assert(vm:run(60)).clean)
    local out = vm:console()
    for _, line in ipairs{"pci: bar sizes 4096 16 65536 0 4096 0", "pci: bar 0 answers: yes",
                          "pci: bar 1 answers: yes", "pci: msix vector 0 delivered: yes",
                          "pci: masked vector held pending, delivered on unmask: yes"} do
        contains(out, line)
    end
    assert(stored == 0x5a5a and #raised == 2)
    vm:close()
    ok, err = pci:notify(0)
    assert(ok == nil and err == "the VM is closed", err)
    -- Bad devices are nil, message.
    vm = assert(kvmc.vm{kernel = GUEST, memory = "32M"})
    ok, err = vm:add_pci_device{vendor = 0x1234, bars = {{size = 3000, kind = "mem32"}}}
    assert(ok == nil and err:find("power of two"), err)
    ok, err = vm:add_pci_device{vendor = 0x1234, bars = {{size = 4096, kind = "rom"}}}
    assert(ok == nil and err:find("kind must be"), err)
    ok, err = vm:add_pci_device{vendor = 0x10000}
    assert(ok == nil and err:find("vendor"), err)
    vm:close()
    -- virtio over PCI.
    vm = assert(kvmc.vm{kernel = GUEST, memory = "64M", rng = true, transport = "pci",
                        cmdline = "kvmc.test=virtio"})
    assert(assert(vm:run(30)).clean)
    contains(vm:console(), "virtio-rng: 64 bytes")
    vm:close()
    ok, err = kvmc.vm{kernel = GUEST, transport = "isa"}
    assert(ok == nil and err:find("transport"), err)
end)

test("VFIO errors name the device", function()
    -- The checks that need no IOMMU; the lab passes a real device through.
    local ok, err = kvmc.vm{kernel = GUEST, vfio = {"zz"}}
    assert(ok == nil and err:find("'zz' is not a PCI address", 1, true), err)
    ok, err = kvmc.vm{kernel = GUEST, vfio = {"00:1f.7", "0000:00:1f.7"}}
    assert(ok == nil and err:find("added twice", 1, true), err)
    ok, err = kvmc.vm{kernel = GUEST, vfio = {"0000:7f:1f.7"}}
    assert(ok == nil and err:find("VFIO device 0000:7f:1f.7: no such PCI device", 1, true), err)
    ok, err = kvmc.vm{kernel = GUEST, vfio = "0000:00:03.0"}
    assert(ok == nil and err:find("list of PCI addresses", 1, true), err)
end)

test("a device raises an interrupt", function()
    local vm = assert(kvmc.vm{kernel = GUEST, memory = "32M", cmdline = "kvmc.test=irq"})
    assert(vm:add_pio_device(0x600, 4, {write = function(_, _, gsi)
        assert(vm:set_irq_line(gsi, true))
        assert(vm:set_irq_line(gsi, false))
    end}))
    assert(assert(vm:run(20)).clean)
    contains(vm:console(), "irq: gsi 10 delivered vector 0x50")
    vm:close()
end)

test("console input, a kernel image and memfd memory", function()
    local f = assert(io.open(GUEST, "rb"))
    local image = f:read("a")
    f:close()
    local vm = assert(kvmc.vm{kernel_image = image, memory = "32M", memory_backing = "memfd",
                              cmdline = IDLE})
    assert(vm:start())
    wait_for_console(vm, "echo: ready")
    assert(vm:console_write("typed in lua\r"))
    assert(assert(vm:wait(20)).clean)
    contains(vm:console(), "echo: typed in lua")
    vm:close()
end)

local function lua_script(body)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(("package.path = %q\npackage.cpath = %q\nlocal kvmc = require 'kvmc'\n")
            :format(package.path, package.cpath))
    f:write(("local vm = assert(kvmc.vm{kernel = %q, memory = '32M', cmdline = %q})\n")
            :format(GUEST, IDLE))
    f:write(body)
    f:close()
    return path
end

test("Ctrl-C during run stops the VM and returns nil, interrupted", function()
    local script = lua_script([[
io.stdout:setvbuf("no")
print("running")
local exit, err = vm:run()
print("run returned", tostring(exit), err, vm:state())
vm:close()
]])
    local p = assert(io.popen(("lua5.4 %s & pid=$!; sleep 1.5; kill -INT $pid; wait $pid; echo rc=$?")
                              :format(script)))
    local out = p:read("a")
    p:close()
    os.remove(script)
    contains(out, "run returned\tnil\tinterrupted\texited")
    contains(out, "rc=0")
end)

test("a script may end with its VM running", function()
    local script = lua_script([[
assert(vm:start())
for _ = 1, 2000 do
    if vm:console():find("echo: ready", 1, true) then break end
    os.execute("sleep 0.01")
end
print("leaving")
]])
    local p = assert(io.popen(("timeout 20 lua5.4 %s; echo rc=$?"):format(script)))
    local out = p:read("a")
    p:close()
    os.remove(script)
    contains(out, "leaving")
    contains(out, "rc=0")
end)

-- Every function of kvmc.h is used by kvmc.lua (through kvmc_core) or the
-- shim, or is listed here with the reason it is not.
local NOT_USED = {
    kvmc_strerror = "messages come from kvmc_last_error",
    kvmc_vm_snapshot = "vm:snapshot calls kvmc_vm_snapshot_ext, which makes both kinds",
    kvmc_config_set_console_fd = "COM1 output is captured into a buffer (console_capture)",
    kvmc_config_set_console_file = "COM1 output is captured into a buffer (console_capture)",
    kvmc_config_set_console_limit = "only for a console file, which the binding never uses",
    kvmc_config_set_vsock_connector = "a connector would run Lua on the I/O thread, which never takes the Lua lock",
    kvmc_vm_set_event_callback = "an event may come from a thread that holds no Lua lock",
    kvmc_vm_set_seccomp = "Lua device functions may make any system call",
    kvmc_seccomp_confine_control_thread = "the Lua interpreter makes any system call",
}

test("the binding follows the header", function()
    local root = GUEST:match("^(.*)/build[^/]*/tests/guests/") or "."
    local function read(path)
        local f = assert(io.open(path, "r"), path)
        local text = f:read("a")
        f:close()
        return text
    end
    local header = read(root .. "/core/include/kvmc/kvmc.h")
    local lua_src = read(root .. "/bindings/lua/kvmc.lua")
    local shim = read(root .. "/bindings/lua/kvmc_lua_shim.c")
    local count = 0
    for name in header:gmatch("KVMC_API[^;(]-%f[%w_](kvmc_[%w_]+)%s*%(") do
        count = count + 1
        local used = lua_src:find("core." .. name .. "(", 1, true) or shim:find(name .. "(", 1, true)
        assert(used or NOT_USED[name], name .. " is in kvmc.h but the Lua binding neither uses it nor says why not")
        assert(not (used and NOT_USED[name]), name .. " is excluded but used")
    end
    assert(count >= 40, "found only " .. count .. " functions in kvmc.h")
end)


test("1000 VMs in one process leave nothing behind", function()
    local function count(dir)
        local p = assert(io.popen("ls -1 " .. dir .. " | wc -l"))
        local n = tonumber(p:read("a"))
        p:close()
        return n
    end
    local function rss_kib()
        for line in io.lines("/proc/self/status") do
            local kib = line:match("^VmRSS:%s+(%d+)")
            if kib then return tonumber(kib) end
        end
    end
    local pid = io.open("/proc/self/stat"):read("n")
    local function cycle(i)
        local vm = assert(kvmc.vm{kernel = GUEST, memory = "16M", cpus = 1 + i % 2,
                                  cmdline = i % 3 ~= 0 and "kvmc.test=boot-only" or nil})
        local exit = assert(vm:run(20))
        assert(exit.reason == "poweroff", exit.message)
        assert(vm:close())
    end
    for i = 1, 50 do cycle(i) end
    collectgarbage()
    local fds, threads, rss = count("/proc/" .. pid .. "/fd"), count("/proc/" .. pid .. "/task"), rss_kib()
    for i = 51, 1000 do cycle(i) end
    collectgarbage()
    assert(count("/proc/" .. pid .. "/fd") == fds, "descriptors grew")
    assert(count("/proc/" .. pid .. "/task") == threads, "threads grew")
    assert(rss_kib() - rss < 8192, ("resident memory grew from %d to %d KiB"):format(rss, rss_kib()))
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

-- kvmc for Lua 5.4: create, run and control KVM guests.
--
--   local kvmc = require "kvmc"
--   local vm = assert(kvmc.vm{kernel = "bzImage", memory = "256M", cmdline = "console=ttyS0"})
--   vm:add_mmio_device(0xd0000000, 0x1000, {
--       read = function(offset, size) return 42 end,
--       write = function(offset, size, value) vm:set_irq_line(10, true) end,
--   })
--   local exit = vm:run(30)       -- {reason = "poweroff", code = 0, message = ...}
--   print(vm:console())
--   vm:close()
--
-- Every function returns its result, or nil and a message (the Lua
-- convention), and never raises: bad arguments, a closed VM and calls that
-- do not apply in the VM's state all come back as nil, message. Device
-- functions run on kvmc's vCPU threads, one at a time: the module lets go
-- of the Lua state only while it waits for the guest (run, wait, pause,
-- close). Ctrl-C during run or wait stops the VM and returns nil,
-- "interrupted".
local core = require "kvmc_core"

local M = {core = core}

local STATES = {[0] = "created", "running", "paused", "exited"}
local BOOT = {auto = core.KVMC_BOOT_AUTO, linux = core.KVMC_BOOT_LINUX, pvh = core.KVMC_BOOT_PVH}
local BACKING = {anon = 0, memfd = core.KVMC_MEM_MEMFD,
                 hugetlb = core.KVMC_MEM_MEMFD | core.KVMC_MEM_HUGEPAGES}
local U32 = 0xffffffff

local function failure()
    return nil, core.kvmc_last_error()
end

-- rc of a C call: true, or nil and kvmc's message.
local function result(rc)
    if rc == core.KVMC_OK then return true end
    return failure()
end

-- Calls f(...) and turns any error it raises (a wrong type caught by the
-- wrapper) into nil, message.
local function protected(f, ...)
    local ok, a, b = pcall(f, ...)
    if not ok then return nil, (tostring(a):gsub("^.-:%d+: ", "")) end
    return a, b
end

-- v as an integer in [lo, hi], or nil and a message naming it.
local function integer(name, v, lo, hi)
    local i = math.type(v) == "integer" and v or (type(v) == "number" and math.tointeger(v))
    if not i then
        return nil, ("%s must be an integer, not %s"):format(name, tostring(v))
    end
    if i < lo or (hi and i > hi) then
        return nil, ("%s %s is out of range (%s to %s)"):format(name, i, lo, hi or "2^63")
    end
    return i
end

local function string_arg(name, v)
    if type(v) ~= "string" then
        return nil, ("%s must be a string, not %s"):format(name, type(v))
    end
    return v
end

function M.parse_size(size)
    if math.type(size) == "integer" then
        if size < 0 then return nil, ("size %d is negative"):format(size) end
        return size
    end
    local n, unit = tostring(size):match("^%s*(%d+)%s*([KkMmGgTt]?)i?B?%s*$")
    if not n then return nil, ("not a size: %q (use e.g. 256M)"):format(tostring(size)) end
    local shift = ({[""] = 0, k = 10, m = 20, g = 30, t = 40})[unit:lower()]
    return math.tointeger(tonumber(n)) << shift
end

local VM = {}
VM.__index = VM

local function configure(cfg, opts)
    if opts.kernel ~= nil and opts.kernel_image ~= nil then
        return nil, "give kernel (a path) or kernel_image (a string), not both"
    end
    local memory, err = M.parse_size(opts.memory or "256M")
    if not memory then return nil, err end
    local cpus, cerr = integer("cpus", opts.cpus or 1, 0, U32)
    if not cpus then return nil, cerr end
    if opts.boot and not BOOT[opts.boot] then
        return nil, ("boot %q: use auto, linux or pvh"):format(tostring(opts.boot))
    end
    local backing = BACKING[opts.memory_backing or "anon"]
    if not backing then
        return nil, ("memory_backing %q: use anon, memfd or hugetlb"):format(tostring(opts.memory_backing))
    end
    for name, v in pairs{kernel = opts.kernel, cmdline = opts.cmdline, initrd = opts.initrd} do
        if v ~= nil and type(v) ~= "string" then
            return nil, ("%s must be a string, not %s"):format(name, type(v))
        end
    end
    local steps = {
        function()
            if opts.kernel_image then return core.set_kernel_image(cfg, opts.kernel_image) end
            if opts.kernel then return core.kvmc_config_set_kernel(cfg, opts.kernel) end
            return core.KVMC_OK -- neither: an empty VM, for vm:load_snapshot
        end,
        function() return core.kvmc_config_set_memory(cfg, memory) end,
        function() return core.kvmc_config_set_memory_flags(cfg, backing) end,
        function() return core.kvmc_config_set_cpus(cfg, cpus) end,
        function() return core.kvmc_config_set_boot_protocol(cfg, BOOT[opts.boot or "auto"]) end,
    }
    if opts.cmdline then
        steps[#steps + 1] = function() return core.kvmc_config_set_cmdline(cfg, opts.cmdline) end
    end
    if opts.initrd then
        steps[#steps + 1] = function() return core.kvmc_config_set_initrd(cfg, opts.initrd) end
    end
    for _, disk in ipairs(opts.disks or {}) do
        local d = type(disk) == "table" and disk or {path = disk}
        local flags = (d.read_only and core.KVMC_DISK_READ_ONLY or 0) |
                      (d.no_lock and core.KVMC_DISK_NO_LOCK or 0)
        steps[#steps + 1] = function()
            return core.kvmc_config_add_disk(cfg, d.path, flags, d.serial)
        end
    end
    if opts.rng then
        steps[#steps + 1] = function() return core.kvmc_config_set_rng(cfg, 1) end
    end
    if opts.pit then
        steps[#steps + 1] = function() return core.kvmc_config_set_pit(cfg, 1) end
    end
    if opts.transport ~= nil then
        local t = ({mmio = core.KVMC_VIRTIO_MMIO, pci = core.KVMC_VIRTIO_PCI})[opts.transport]
        if not t then return nil, ("transport %q: use \"mmio\" or \"pci\""):format(tostring(opts.transport)) end
        steps[#steps + 1] = function() return core.kvmc_config_set_virtio_transport(cfg, t) end
    end
    for _, spec in ipairs(opts.nets or {}) do
        steps[#steps + 1] = function() return core.kvmc_config_add_net(cfg, spec) end
    end
    if opts.vfio ~= nil and type(opts.vfio) ~= "table" then
        return nil, "vfio: a list of PCI addresses, e.g. {\"0000:00:03.0\"}"
    end
    for _, address in ipairs(opts.vfio or {}) do
        steps[#steps + 1] = function() return core.kvmc_config_add_vfio(cfg, address) end
    end
    if opts.vcpu_thread_name ~= nil then
        local name, nerr = string_arg("vcpu_thread_name", opts.vcpu_thread_name)
        if not name then return nil, nerr end
        steps[#steps + 1] = function() return core.kvmc_config_set_vcpu_thread_name(cfg, name) end
    end
    if opts.vsock then
        steps[#steps + 1] = function()
            return core.kvmc_config_set_vsock(cfg, opts.vsock.cid or 0, opts.vsock.uds or "")
        end
    end
    local vc = opts.virtio_console
    if type(vc) == "string" then
        local path = vc:match("^socket:(.+)$")
        if not path then return nil, ("virtio_console %q: use \"socket:PATH\" or true"):format(vc) end
        steps[#steps + 1] = function() return core.kvmc_config_set_virtio_console_socket(cfg, path) end
    end
    for _, step in ipairs(steps) do
        local rc, serr = protected(step)
        if rc == nil then return nil, serr end
        if rc ~= core.KVMC_OK then return failure() end
    end
    return true
end

-- kvmc.vm{kernel=, kernel_image=, memory=, memory_backing=, cpus=, cmdline=,
--         initrd=, boot=, disks=, rng=, pit=, transport = "mmio" | "pci",
--         nets = {"user", "tap=tap0", ...},
--         vsock = {cid = 3, uds = PATH}, virtio_console = "socket:PATH" | true,
--         vfio = {"0000:00:03.0", ...}, vcpu_thread_name = "fc_vcpu "}
-- vcpu_thread_name: the vCPU threads' name before their index ("kvmc-vcpu"
-- by default; at most 13 printable ASCII bytes).
-- vfio passes host PCI devices (bound to vfio-pci) through; the host is
-- checked here: nil and a message naming the device if it cannot be had.
-- With virtio_console = true, vm:virtio_console() is what the guest wrote to
-- hvc0 and vm:virtio_console_write(data) sends it input.
-- kvmc.restore(dir, {memory =, ...}): a new VM from those options (no
-- kernel needed) with the snapshot in dir loaded; nil, message on failure.
function M.restore(dir, opts)
    local vm, err = M.vm(opts or {})
    if not vm then return nil, err end
    local ok, lerr = vm:load_snapshot(dir)
    if not ok then
        vm:close()
        return nil, lerr
    end
    return vm
end

function M.vm(opts)
    if type(opts) ~= "table" then return nil, "kvmc.vm takes a table of options" end
    local rc, cfg = core.kvmc_config_new()
    if rc ~= core.KVMC_OK then return failure() end
    local ok, err = configure(cfg, opts)
    local console = ok and core.console_capture(cfg)
    local vconsole = ok and opts.virtio_console == true and core.console_capture(cfg, "virtio")
    local input, handle
    if ok then
        input, err = core.console_input(cfg)
        ok = input ~= nil
    end
    if ok then
        rc, handle = core.kvmc_vm_create(cfg)
        if rc ~= core.KVMC_OK then ok, err = failure() end
    end
    core.kvmc_config_free(cfg)
    if not ok then return nil, err end
    return setmetatable({handle = handle, console_buffer = console, vconsole_buffer = vconsole or nil,
                         input = input, devices = {}}, VM)
end

local CLOSED = "the VM is closed"

local function refuse_in_callback(what)
    if core.in_callback() then
        return nil, what .. " called from a device callback of this VM: it would wait for "
                    .. "the callback's own thread; call it after run returns"
    end
    return true
end

local function add_device(self, adder, base, size, dev, max)
    if not self.handle then return nil, CLOSED end
    local b, err = integer("base", base, 0, max)
    if not b then return nil, err end
    local s, serr = integer("size", size, 1, max and max + 1 - b)
    if not s then return nil, serr end
    if type(dev) ~= "table" then return nil, "the device is a table {read =, write =}" end
    for _, name in ipairs{"read", "write"} do
        if dev[name] ~= nil and type(dev[name]) ~= "function" then
            return nil, ("the device's %s is a %s, not a function"):format(name, type(dev[name]))
        end
    end
    local d, aerr = protected(adder, self.handle, b, s, dev.read, dev.write)
    if not d then return nil, aerr end
    self.devices[#self.devices + 1] = d -- must live as long as the VM
    return true
end

function VM:add_mmio_device(base, size, dev) return add_device(self, core.add_mmio_device, base, size, dev) end
function VM:add_pio_device(port, size, dev) return add_device(self, core.add_pio_device, port, size, dev, 0xffff) end

-- A PCI device on the VM's root complex, before start:
--   local pci, err = vm:add_pci_device{vendor = 0x1234, device = 0xbeef,
--       class = 0xff0000, msix = 2,
--       bars = {{size = 4096, kind = "mem32"}, {size = 16, kind = "io"}},
--       read = function(bar, offset, size) return 0 end,
--       write = function(bar, offset, size, value) end}
-- BARs count from 0 in read and write; a "mem64" BAR takes the next slot
-- (leave it false). pci.slot is its device number; pci:notify(vector)
-- raises an MSI-X vector, from anywhere (a device function included).
local PCI = {}
PCI.__index = PCI

function VM:add_pci_device(spec)
    if not self.handle then return nil, CLOSED end
    if type(spec) ~= "table" then return nil, "the PCI device is a table {vendor =, ...}" end
    for _, name in ipairs{"read", "write"} do
        if spec[name] ~= nil and type(spec[name]) ~= "function" then
            return nil, ("the device's %s is a %s, not a function"):format(name, type(spec[name]))
        end
    end
    local d, slot = protected(core.add_pci_device, self.handle, spec)
    if not d then return nil, slot end
    self.devices[#self.devices + 1] = d -- must live as long as the VM
    return setmetatable({vm = self, slot = slot}, PCI)
end

function PCI:notify(vector)
    if not self.vm.handle then return nil, CLOSED end
    local v, err = integer("vector", vector, 0, U32)
    if not v then return nil, err end
    return result(core.kvmc_vm_pci_msix_notify(self.vm.handle, self.slot, v))
end

-- Raises (true) or lowers (false) interrupt line gsi (0 to 23), from
-- anywhere, a device function included.
function VM:set_irq_line(gsi, level)
    if not self.handle then return nil, CLOSED end
    local g, err = integer("gsi", gsi, 0, U32)
    if not g then return nil, err end
    return result(core.kvmc_vm_set_irq_line(self.handle, g, level and 1 or 0))
end

function VM:start()
    if not self.handle then return nil, CLOSED end
    return result(core.kvmc_vm_start(self.handle))
end

-- Waits for the guest (timeout in seconds, nil = forever). Returns the exit
-- as a table, or nil and "timeout", "interrupted" (Ctrl-C: the VM was
-- stopped) or an error message.
function VM:wait(timeout)
    if not self.handle then return nil, CLOSED end
    local ok, err = refuse_in_callback("wait")
    if not ok then return nil, err end
    if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
        return nil, "timeout is a number of seconds, at least 0"
    end
    local rc, info = core.wait(self.handle, timeout and math.floor(timeout * 1000) or -1)
    if rc == "interrupted" then return nil, "interrupted" end
    if rc == core.KVMC_ETIMEDOUT then return nil, "timeout" end
    if rc ~= core.KVMC_OK then return nil, info end
    local cb_err = core.callback_error()
    if cb_err then return nil, "device callback failed: " .. cb_err end
    return {reason = core.kvmc_exit_reason_name(info.reason), code = info.code, vcpu = info.vcpu,
            rip = info.rip, message = info.message,
            clean = (info.reason == core.KVMC_EXIT_POWEROFF and info.code == 0)
                    or info.reason == core.KVMC_EXIT_RESET}
end

function VM:run(timeout)
    local ok, err = self:start()
    if not ok then return nil, err end
    return self:wait(timeout)
end

function VM:stop()
    if not self.handle then return nil, CLOSED end
    return result(core.kvmc_vm_stop(self.handle))
end

function VM:pause()
    if not self.handle then return nil, CLOSED end
    local ok, err = refuse_in_callback("pause")
    if not ok then return nil, err end
    return result(core.kvmc_vm_pause(self.handle))
end

function VM:resume()
    if not self.handle then return nil, CLOSED end
    return result(core.kvmc_vm_resume(self.handle))
end

-- Saves the paused VM into directory dir (made if missing): dir/state and
-- dir/memory. The VM stays paused. Every virtio device is saved (vsock
-- connections end with a restore); PCI devices from Lua, VFIO and Lua
-- callback devices cannot be saved yet (the message names them).
-- opts.diff = true writes a diff snapshot: dir/memory holds only the RAM
-- pages that differ from the full snapshot this VM last took or was
-- restored from (its base), which must stay where it is; restoring the
-- diff reads the base too. A diff after a diff holds both one's pages.
function VM:snapshot(dir, opts)
    if not self.handle then return nil, CLOSED end
    local ok, err = refuse_in_callback("snapshot")
    if not ok then return nil, err end
    local d, derr = string_arg("dir", dir)
    if not d then return nil, derr end
    if opts ~= nil and type(opts) ~= "table" then
        return nil, "snapshot: opts must be a table, not a " .. type(opts)
    end
    local diff = opts and opts.diff
    if diff ~= nil and type(diff) ~= "boolean" then
        return nil, "snapshot: opts.diff must be a boolean, not a " .. type(diff)
    end
    local o = core.kvmc_snapshot_options()
    o.version = core.KVMC_SNAPSHOT_OPTIONS_VERSION
    o.flags = diff and core.KVMC_SNAPSHOT_DIFF or 0
    return result(core.kvmc_vm_snapshot_ext(self.handle, d, o))
end

-- Before start: loads the snapshot in dir into this VM, which must have the
-- options the snapshot was taken with (memory, cpus, pit, devices); start
-- then continues the guest where it was saved. A failed load leaves a VM
-- that cannot start: close it.
function VM:load_snapshot(dir)
    if not self.handle then return nil, CLOSED end
    local d, derr = string_arg("dir", dir)
    if not d then return nil, derr end
    return result(core.kvmc_vm_restore(self.handle, d))
end

local STATS = {"exit_io_in", "exit_io_out", "exit_mmio_read", "exit_mmio_write", "exit_other",
               "block_read_count", "block_read_bytes", "block_write_count",
               "block_write_bytes", "block_flush_count", "block_errors", "net_rx_packets",
               "net_rx_bytes", "net_rx_dropped", "net_tx_packets", "net_tx_bytes",
               "vsock_conns_opened", "vsock_conns_closed", "vsock_rx_bytes", "vsock_tx_bytes",
               "rng_bytes", "virtio_errors"}

-- The VM's counters since it was created, by name: vCPU exits by kind and
-- what its virtio devices did ("rx" is towards the guest).
function VM:stats()
    if not self.handle then return nil, CLOSED end
    local s = core.kvmc_stats()
    if core.kvmc_vm_get_stats(self.handle, s) ~= core.KVMC_OK then return failure() end
    local out = {}
    for _, name in ipairs(STATS) do out[name] = s[name] end
    return out
end

-- Presses Ctrl-Alt-Del on the VM's AT keyboard (the i8042): Linux reboots
-- on it, which ends the run with exit reason "reset". Returns at once.
function VM:send_ctrl_alt_del()
    if not self.handle then return nil, CLOSED end
    return result(core.kvmc_vm_send_ctrl_alt_del(self.handle))
end

-- Fast reset: back to the snapshot this VM last took or was restored from
-- (only the RAM pages written since are dropped). A running VM is paused
-- for it and runs on after; a paused one stays paused.
function VM:reset()
    if not self.handle then return nil, CLOSED end
    local ok, err = refuse_in_callback("reset")
    if not ok then return nil, err end
    return result(core.kvmc_vm_reset_to_snapshot(self.handle))
end

function VM:state()
    if not self.handle then return nil, CLOSED end
    return STATES[core.kvmc_vm_get_state(self.handle)]
end

function VM:cpus()
    if not self.handle then return nil, CLOSED end
    return core.kvmc_vm_cpu_count(self.handle)
end

function VM:memory()
    if not self.handle then return nil, CLOSED end
    return core.kvmc_vm_memory_size(self.handle)
end

function VM:console() return core.console_text(self.console_buffer) end

-- Types data into the guest's COM1 console.
function VM:console_write(data)
    if not self.handle then return nil, CLOSED end
    local d, err = string_arg("data", data)
    if not d then return nil, err end
    return core.console_write(self.input, d)
end

function VM:virtio_console()
    if not self.vconsole_buffer then return nil, "no virtio_console = true on this VM" end
    return core.console_text(self.vconsole_buffer)
end

function VM:virtio_console_write(data)
    if not self.handle then return nil, CLOSED end
    local d, err = string_arg("data", data)
    if not d then return nil, err end
    return core.virtio_console_write(self.handle, d)
end

function VM:read_memory(gpa, len)
    if not self.handle then return nil, CLOSED end
    local g, err = integer("gpa", gpa, math.mininteger)
    if not g then return nil, err end
    local l, lerr = integer("length", len, 0, 1 << 26)
    if not l then return nil, lerr end
    return core.read_memory(self.handle, g, l)
end

function VM:write_memory(gpa, data)
    if not self.handle then return nil, CLOSED end
    local g, err = integer("gpa", gpa, math.mininteger)
    if not g then return nil, err end
    local d, derr = string_arg("data", data)
    if not d then return nil, derr end
    return core.write_memory(self.handle, g, d)
end

local REGS = {"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11",
              "r12", "r13", "r14", "r15", "rip", "rflags"}

-- vCPU registers as a table; only while paused, not started, or exited.
function VM:get_regs(vcpu)
    if not self.handle then return nil, CLOSED end
    local v, err = integer("vcpu", vcpu or 0, 0, U32)
    if not v then return nil, err end
    local r = core.kvmc_regs()
    if core.kvmc_vm_get_regs(self.handle, v, r) ~= core.KVMC_OK then return failure() end
    local out = {}
    for _, name in ipairs(REGS) do out[name] = r[name] end
    return out
end

-- Changes the named registers: vm:set_regs(0, {rax = 1}).
function VM:set_regs(vcpu, changes)
    if not self.handle then return nil, CLOSED end
    local v, err = integer("vcpu", vcpu or 0, 0, U32)
    if not v then return nil, err end
    if type(changes) ~= "table" then return nil, "changes is a table {rax = 1, ...}" end
    local r = core.kvmc_regs()
    if core.kvmc_vm_get_regs(self.handle, v, r) ~= core.KVMC_OK then return failure() end
    for name, value in pairs(changes) do
        local known = false
        for _, n in ipairs(REGS) do known = known or n == name end
        if not known then return nil, ("unknown register %s"):format(tostring(name)) end
        if math.type(value) ~= "integer" then
            return nil, ("register %s must be an integer"):format(name)
        end
        r[name] = value
    end
    return result(core.kvmc_vm_set_regs(self.handle, v, r))
end

-- Stops the guest if it runs and frees everything; idempotent. Not from a
-- device function of this VM (it would wait for its own thread).
function VM:close()
    local ok, err = refuse_in_callback("close")
    if not ok then return nil, err end
    if self.handle then
        core.kvmc_vm_destroy(self.handle)
        self.handle = nil
        self.devices = {}
        core.console_input_close(self.input)
    end
    return true
end

VM.__gc = VM.close
VM.__close = VM.close

function M.version() return core.kvmc_version_string() end
-- The real-time signal kvmc interrupts its vCPU threads with: leave it alone.
function M.kick_signal() return core.kvmc_kick_signal() end

return M

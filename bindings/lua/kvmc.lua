-- kvmc for Lua 5.4: create, run and control KVM guests.
--
--   local kvmc = require "kvmc"
--   local vm = assert(kvmc.vm{kernel = "bzImage", memory = "256M", cmdline = "console=ttyS0"})
--   vm:add_mmio_device(0xd0000000, 0x1000, {
--       read = function(offset, size) return 42 end,
--       write = function(offset, size, value) print(value) end,
--   })
--   local exit = vm:run(30)       -- {reason = "poweroff", code = 0, message = ...}
--   print(vm:console())
--   vm:close()
--
-- Errors are returned as nil, message (the Lua convention). Device functions
-- run on kvmc's vCPU threads, one at a time: the module lets go of the Lua
-- state only while it waits for the guest (run, wait, pause, close).
local core = require "kvmc_core"

local M = {core = core}

local REASONS = {[0] = "none", "poweroff", "reset", "stopped", "triple fault",
                 "internal error", "entry failure", "VMM error", "guest panic"}
local STATES = {[0] = "created", "running", "paused", "exited"}
local BOOT = {auto = core.KVMC_BOOT_AUTO, linux = core.KVMC_BOOT_LINUX, pvh = core.KVMC_BOOT_PVH}

local function failure()
    return nil, core.kvmc_last_error()
end

function M.parse_size(size)
    if math.type(size) == "integer" then return size end
    local n, unit = tostring(size):match("^%s*(%d+)%s*([KkMmGgTt]?)i?B?%s*$")
    if not n then return nil, ("not a size: %q (use e.g. 256M)"):format(tostring(size)) end
    local shift = ({[""] = 0, k = 10, m = 20, g = 30, t = 40})[unit:lower()]
    return math.tointeger(tonumber(n)) << shift
end

local VM = {}
VM.__index = VM

local function configure(cfg, opts)
    if not opts.kernel then return nil, "kernel is required" end
    local memory, err = M.parse_size(opts.memory or "256M")
    if not memory then return nil, err end
    if opts.boot and not BOOT[opts.boot] then
        return nil, ("boot %q: use auto, linux or pvh"):format(opts.boot)
    end
    local steps = {
        function() return core.kvmc_config_set_kernel(cfg, opts.kernel) end,
        function() return core.kvmc_config_set_memory(cfg, memory) end,
        function() return core.kvmc_config_set_cpus(cfg, opts.cpus or 1) end,
        function() return core.kvmc_config_set_boot_protocol(cfg, BOOT[opts.boot or "auto"]) end,
    }
    if opts.cmdline then
        steps[#steps + 1] = function() return core.kvmc_config_set_cmdline(cfg, opts.cmdline) end
    end
    if opts.initrd then
        steps[#steps + 1] = function() return core.kvmc_config_set_initrd(cfg, opts.initrd) end
    end
    for _, disk in ipairs(opts.disks or {}) do
        local path = type(disk) == "table" and disk.path or disk
        local flags = type(disk) == "table" and disk.read_only and core.KVMC_DISK_READ_ONLY or 0
        steps[#steps + 1] = function()
            return core.kvmc_config_add_disk(cfg, path, flags, type(disk) == "table" and disk.serial or nil)
        end
    end
    if opts.rng then
        steps[#steps + 1] = function() return core.kvmc_config_set_rng(cfg, 1) end
    end
    if opts.pit then
        steps[#steps + 1] = function() return core.kvmc_config_set_pit(cfg, 1) end
    end
    for _, spec in ipairs(opts.nets or {}) do
        steps[#steps + 1] = function() return core.kvmc_config_add_net(cfg, spec) end
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
        if step() ~= core.KVMC_OK then return failure() end
    end
    return true
end

-- kvmc.vm{kernel=, memory=, cpus=, cmdline=, initrd=, boot=, disks=, rng=, pit=,
--         nets = {"user", "tap=tap0", ...}, vsock = {cid = 3, uds = PATH},
--         virtio_console = "socket:PATH" | true}
-- With virtio_console = true, vm:virtio_console() is what the guest wrote to
-- hvc0 and vm:virtio_console_write(data) sends it input.
function M.vm(opts)
    local rc, cfg = core.kvmc_config_new()
    if rc ~= core.KVMC_OK then return failure() end
    local ok, err = configure(cfg, opts)
    local console = ok and core.console_capture(cfg)
    local vconsole = ok and opts.virtio_console == true and core.console_capture(cfg, "virtio")
    local handle
    if ok then
        rc, handle = core.kvmc_vm_create(cfg)
        if rc ~= core.KVMC_OK then ok, err = failure() end
    end
    core.kvmc_config_free(cfg)
    if not ok then return nil, err end
    return setmetatable({handle = handle, console_buffer = console, vconsole_buffer = vconsole or nil,
                         devices = {}}, VM)
end

local function add_device(self, adder, base, size, dev)
    local d, err = adder(self.handle, base, size, dev.read, dev.write)
    if not d then return nil, err end
    self.devices[#self.devices + 1] = d -- must live as long as the VM
    return true
end

function VM:add_mmio_device(base, size, dev) return add_device(self, core.add_mmio_device, base, size, dev) end
function VM:add_pio_device(port, size, dev) return add_device(self, core.add_pio_device, port, size, dev) end

function VM:start()
    if core.kvmc_vm_start(self.handle) ~= core.KVMC_OK then return failure() end
    return true
end

-- Waits for the guest (timeout in seconds, nil = forever). Returns the exit
-- as a table, or nil and "timeout"/an error message.
function VM:wait(timeout)
    local info = core.kvmc_exit_info()
    local rc = core.kvmc_vm_wait(self.handle, timeout and math.floor(timeout * 1000) or -1, info)
    if rc == core.KVMC_ETIMEDOUT then return nil, "timeout" end
    if rc ~= core.KVMC_OK then return failure() end
    local cb_err = core.callback_error()
    if cb_err then return nil, "device callback failed: " .. cb_err end
    return {reason = REASONS[info.reason], code = info.code, vcpu = info.vcpu, rip = info.rip,
            message = info.message,
            clean = (info.reason == core.KVMC_EXIT_POWEROFF and info.code == 0)
                    or info.reason == core.KVMC_EXIT_RESET}
end

function VM:run(timeout)
    local ok, err = self:start()
    if not ok then return nil, err end
    return self:wait(timeout)
end

function VM:stop() return core.kvmc_vm_stop(self.handle) == core.KVMC_OK or failure() end
function VM:pause() return core.kvmc_vm_pause(self.handle) == core.KVMC_OK or failure() end
function VM:resume() return core.kvmc_vm_resume(self.handle) == core.KVMC_OK or failure() end
function VM:state() return STATES[core.kvmc_vm_get_state(self.handle)] end
function VM:console() return core.console_text(self.console_buffer) end
function VM:virtio_console()
    if not self.vconsole_buffer then return nil, "no virtio_console = true on this VM" end
    return core.console_text(self.vconsole_buffer)
end
function VM:virtio_console_write(data) return core.virtio_console_write(self.handle, data) end
function VM:read_memory(gpa, len) return core.read_memory(self.handle, gpa, len) end
function VM:write_memory(gpa, data) return core.write_memory(self.handle, gpa, data) end

local REGS = {"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11",
              "r12", "r13", "r14", "r15", "rip", "rflags"}

-- vCPU registers as a table; only while paused, not started, or exited.
function VM:get_regs(vcpu)
    local r = core.kvmc_regs()
    if core.kvmc_vm_get_regs(self.handle, vcpu or 0, r) ~= core.KVMC_OK then return failure() end
    local out = {}
    for _, name in ipairs(REGS) do out[name] = r[name] end
    return out
end

-- Changes the named registers: vm:set_regs(0, {rax = 1}).
function VM:set_regs(vcpu, changes)
    local r = core.kvmc_regs()
    if core.kvmc_vm_get_regs(self.handle, vcpu or 0, r) ~= core.KVMC_OK then return failure() end
    for name, value in pairs(changes) do r[name] = value end
    if core.kvmc_vm_set_regs(self.handle, vcpu or 0, r) ~= core.KVMC_OK then return failure() end
    return true
end

function VM:close()
    if self.handle then
        core.kvmc_vm_destroy(self.handle)
        self.handle = nil
        self.devices = {}
    end
end

VM.__gc = VM.close
VM.__close = VM.close

function M.version() return core.kvmc_version_string() end

return M

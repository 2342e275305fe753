"""The binding follows the header: every function, parameter, struct field
and constant of core/include/kvmc/kvmc.h is declared the same way in
kvmc/_ffi.py, and every function is used by the Python API unless the list
below says why not. Adding a function to the header without doing the same
here fails this test."""
import pathlib
import re

from kvmc import _ffi

ROOT = pathlib.Path(__file__).resolve().parents[3]
HEADER = (ROOT / "core" / "include" / "kvmc" / "kvmc.h").read_text()
API = (pathlib.Path(_ffi.__file__).parent / "__init__.py").read_text()

# Functions the Python API does not call, and why.
NOT_USED = {
    "kvmc_strerror": "messages come from kvmc_last_error, codes from ErrorCode",
    "kvmc_config_set_console_fd": "COM1 output is collected through the console callback",
    "kvmc_config_set_console_file": "COM1 output is collected through the console callback",
    "kvmc_config_set_console_limit": "only for a console file, which the binding never uses",
    "kvmc_vm_set_seccomp": "Python callbacks make any system call: seccomp would kill them",
    "kvmc_seccomp_confine_control_thread": "the interpreter makes any system call",
    "kvmc_vm_snapshot": "snapshot() calls kvmc_vm_snapshot_ext, which makes both kinds",
}


def strip_comments(text):
    return re.sub(r"/\*.*?\*/|//[^\n]*", " ", text, flags=re.S)


def functions(text, prefix):
    """name -> normalised parameter types, for 'prefix ret name(params);'."""
    out = {}
    for m in re.finditer(prefix + r"([^;{}()\n]*?)\b(kvmc_\w+)\s*\(([^;{}]*?)\)\s*;",
                         strip_comments(text), re.S):
        params = [normalise_param(p) for p in m.group(3).split(",")]
        out[m.group(2)] = (normalise_type(m.group(1)), params)
    return out


def normalise_type(t):
    return re.sub(r"\s+", " ", t.replace("*", " * ")).strip()


def normalise_param(p):
    p = normalise_type(p)
    if p == "void":
        return p
    return re.sub(r"\s*\b\w+$", "", p) if not p.endswith("*") else p  # drop the name


def structs(text):
    return {m.group(2): re.sub(r"\s+", " ", m.group(1)).strip()
            for m in re.finditer(r"typedef struct \w+ \{(.*?)\} (\w+);", strip_comments(text),
                                 re.S)}


def constants(text):
    found = dict(re.findall(r"#define (KVMC_\w+) (0x[0-9a-f]+|\d+)u?\b", text))
    found.update(re.findall(r"\b(KVMC_[A-Z_0-9]+) = (-?\d+)", strip_comments(text)))
    return {k: int(v, 0) for k, v in found.items()}


def test_every_header_function_is_declared_alike():
    header = functions(HEADER, r"KVMC_API\s+")
    ours = functions(_ffi.CDEF, r"(?m)^")
    assert header, "no function found in the header"
    missing = sorted(set(header) - set(ours))
    assert not missing, f"declared in kvmc.h, not in _ffi.py: {missing}"
    stale = sorted(set(ours) - set(header))
    assert not stale, f"in _ffi.py, no longer in kvmc.h: {stale}"
    for name, sig in header.items():
        assert ours[name] == sig, f"{name}: kvmc.h says {sig}, _ffi.py {ours[name]}"


def test_every_header_function_is_used_or_excluded():
    unused = [name for name in functions(HEADER, r"KVMC_API\s+")
              if f"lib.{name}(" not in API and name not in NOT_USED]
    assert not unused, f"the Python API does not use {unused}: use them or say why not"
    stale = [name for name in NOT_USED if f"lib.{name}(" in API]
    assert not stale, f"excluded but used: {stale}"


def test_structs_match():
    header, ours = structs(HEADER), structs(_ffi.CDEF)
    for name in ("kvmc_exit_info", "kvmc_device_ops", "kvmc_regs", "kvmc_pci_bar",
                 "kvmc_pci_device", "kvmc_snapshot_options"):
        assert header[name] == ours[name], f"{name} differs:\n{header[name]}\n{ours[name]}"


def test_constants_match():
    header, ours = constants(HEADER), constants(_ffi.CDEF)
    for name, value in header.items():
        if name in ("KVMC_MIN_MEMORY", "KVMC_KVMC_H"):
            continue
        assert ours.get(name) == value, f"{name}: kvmc.h {value}, _ffi.py {ours.get(name)}"

"""kvmc's errors as Python exceptions.

Every failure of libkvmc raises a subclass of `KvmcError` that is also the
built-in exception a Python programmer would catch for it (`ValueError` for a
bad argument, `OSError` for the host, `TimeoutError`, ...), and carries the
C library's one-line message and its code (`ErrorCode`)."""
from __future__ import annotations

import enum
from typing import Optional


class ErrorCode(enum.IntEnum):
    """kvmc_error, as in kvmc.h."""
    OK = 0
    EINVAL = -1
    ENOMEM = -2
    EIO = -3
    EKVM = -4
    EFORMAT = -5
    ESTATE = -6
    EBUSY = -7
    ETIMEDOUT = -8
    ENOTSUP = -9


class KvmcError(Exception):
    """A libkvmc call failed: `code` is the ErrorCode (None for errors of the
    binding itself), the message kvmc's."""

    def __init__(self, code: Optional[int], message: str):
        super().__init__(message)
        self.code = ErrorCode(code) if code is not None else None

    def __str__(self) -> str:
        return self.args[0] if self.args else ""


class InvalidArgumentError(KvmcError, ValueError):
    """KVMC_EINVAL: an argument or configuration value is invalid."""


class KvmcMemoryError(KvmcError, MemoryError):
    """KVMC_ENOMEM: the host is out of memory."""


class KvmcOSError(KvmcError, OSError):
    """KVMC_EIO: a host file could not be opened or read."""


class KVMError(KvmcError, OSError):
    """KVMC_EKVM: /dev/kvm is missing or an ioctl failed."""


class ImageFormatError(KvmcError, ValueError):
    """KVMC_EFORMAT: a kernel, initrd or snapshot file is malformed."""


class StateError(KvmcError, RuntimeError):
    """KVMC_ESTATE: the call is not valid in the VM's current state."""


class ClosedError(StateError):
    """The VM was closed; nothing can be done with it any more."""

    def __init__(self, message: str = "the VM is closed"):
        super().__init__(ErrorCode.ESTATE, message)


class BusyError(KvmcError, OSError):
    """KVMC_EBUSY: a bus range overlaps, or a disk image is in use."""


class KvmcTimeoutError(KvmcError, TimeoutError):
    """KVMC_ETIMEDOUT: a wait ran out of time."""


class NotSupportedError(KvmcError, OSError):
    """KVMC_ENOTSUP: the host or the image lacks a needed feature."""


class CallbackError(KvmcError):
    """A Python device, console, connector or event callback raised; the
    exception is the __cause__. The VM was stopped."""

    def __init__(self, message: str):
        super().__init__(None, message)


_BY_CODE = {
    ErrorCode.EINVAL: InvalidArgumentError,
    ErrorCode.ENOMEM: KvmcMemoryError,
    ErrorCode.EIO: KvmcOSError,
    ErrorCode.EKVM: KVMError,
    ErrorCode.EFORMAT: ImageFormatError,
    ErrorCode.ESTATE: StateError,
    ErrorCode.EBUSY: BusyError,
    ErrorCode.ETIMEDOUT: KvmcTimeoutError,
    ErrorCode.ENOTSUP: NotSupportedError,
}


def error_for(code: int, message: str) -> KvmcError:
    """The exception for a kvmc_error code."""
    try:
        cls = _BY_CODE.get(ErrorCode(code), KvmcError)
    except ValueError:
        return KvmcError(None, f"{message} (unknown kvmc error {code})")
    return cls(code, message)

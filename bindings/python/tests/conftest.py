import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
BUILD = pathlib.Path(os.environ.get("KVMC_BUILD_DIR", ROOT / "build"))
os.environ.setdefault("KVMC_LIBRARY", str(BUILD / "core" / "libkvmc.so.1"))


@pytest.fixture(scope="session")
def guest_elf() -> str:
    path = BUILD / "tests" / "guests" / "kvmc-test-guest.elf"
    assert path.exists(), f"test guest not built: {path} (run scripts/dev build)"
    return str(path)


@pytest.fixture(scope="session")
def guest_bzimage() -> str:
    path = BUILD / "tests" / "guests" / "kvmc-test-guest.bzImage"
    assert path.exists(), f"test guest not built: {path}"
    return str(path)


@pytest.fixture(autouse=True, scope="session")
def kvm_present():
    assert os.path.exists("/dev/kvm"), "/dev/kvm is missing: these tests boot real guests"

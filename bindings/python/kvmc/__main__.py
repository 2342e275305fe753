"""python -m kvmc: which kvmc this is, and whether this machine can run it.

    python -m kvmc --version   the package's and the library's versions
    python -m kvmc             the same, where libkvmc was loaded from, and
                               whether /dev/kvm is usable (exit status 1 if not)
"""
from __future__ import annotations

import argparse
import os
import sys

import kvmc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m kvmc",
        description="Report the kvmc package, the libkvmc it loaded, and whether /dev/kvm "
                    "is usable. The API itself is `import kvmc` (help(kvmc)).")
    ap.add_argument("-V", "--version", action="store_true",
                    help="print the package's and libkvmc's versions and exit")
    args = ap.parse_args(argv)
    from importlib.metadata import PackageNotFoundError, version as dist_version
    try:
        package = dist_version("kvmc")
    except PackageNotFoundError:
        package = "(not installed: from a source tree)"
    print(f"kvmc {package} (libkvmc {kvmc.version()})")
    if args.version:
        return 0
    print(f"libkvmc: {kvmc.library_path()}")
    usable = os.access("/dev/kvm", os.R_OK | os.W_OK)
    print("/dev/kvm: " + ("usable" if usable else
                          "missing or not writable: KVM guests cannot run here"))
    return 0 if usable else 1


if __name__ == "__main__":
    sys.exit(main())

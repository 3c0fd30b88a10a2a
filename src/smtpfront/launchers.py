"""smtpfront-launchers DIR: write start-up-lean launchers for the programs into DIR.

pip's console scripts start the interpreter with `site`, which costs about 2 ms on
every connection (it scans site-packages and runs .pth files).  These launchers run
`python -I -S` and put this installation's package directory on sys.path
themselves: no site, no user site, no PYTHON* variables.  smtpfront needs nothing
beyond the standard library, so nothing else has to be found.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .programs import FRONT_ENDS

# name -> (module, function): the front ends' functions are named after them
PROGRAMS = {name: ("programs", name.replace("-", "_")) for name in ("mailfront", *FRONT_ENDS)}
PROGRAMS["smtpfront-server"] = ("forkserver", "main")

TEMPLATE = """#!{python} -IS
# {name}, started without site (-I -S); written by smtpfront-launchers
import sys
sys.path.append({package_parent!r})  # after the standard library: nothing there can shadow it
from smtpfront.{module} import {function}
sys.exit({function}())
"""


def write_launchers(directory: Path, python: str, package_parent: str) -> list[Path]:
    written = []
    for name, (module, function) in PROGRAMS.items():
        path = directory / name
        tmp = directory / f".{name}.tmp"
        tmp.write_text(TEMPLATE.format(python=python, name=name, package_parent=package_parent, module=module,
                                      function=function))
        tmp.chmod(0o755)
        os.replace(tmp, path)  # a running tcpserver never sees a half-written file
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-V"]):
        from . import __version__

        print(f"smtpfront-launchers {__version__}")
        return 0
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: smtpfront-launchers DIR (or --version)", file=sys.stderr)
        return 2
    package_parent = str(Path(__file__).resolve().parent.parent)
    try:
        written = write_launchers(Path(args[0]), sys.executable, package_parent)
    except OSError as e:
        print(f"smtpfront-launchers: cannot write into {args[0]}: {e.strerror}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

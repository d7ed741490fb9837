"""Install the course's Jupyter kernel into the venv, with a quiet start.

``make setup`` runs it. The kernel spec goes into the venv (``sys.prefix``), so every clone has
its own kernel, and it sets two things a student's first cells need:

* ``TF_CPP_MIN_LOG_LEVEL=2`` in the kernel's environment, before TensorFlow is imported;
* ``--IPKernelApp.capture_fd_output=False``: TensorFlow prints its start-up lines (the absl
  notice, oneDNN, "Could not find cuda drivers") from C++ straight to file descriptor 2 before
  any log level is read, and ipykernel (6+) forwards what is written there into the notebook
  as red stderr boxes. Without the capture they go to the terminal that runs Jupyter; Python's
  own ``sys.stderr`` (warnings, tracebacks) still shows in the notebook.

Usage: ``python tools/kernelspec.py [--prefix DIR]`` (default: this Python's ``sys.prefix``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ipykernel.kernelspec import install

KERNEL_NAME = "cnn-course"
DISPLAY_NAME = "Python (cnn-course)"
ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}
QUIET = "--IPKernelApp.capture_fd_output=False"


def install_kernel(prefix: str | None = None) -> Path:
    """Install (or refresh) the kernel spec under ``prefix``; return its ``kernel.json``."""
    folder = Path(
        install(
            kernel_name=KERNEL_NAME,
            display_name=DISPLAY_NAME,
            prefix=prefix or sys.prefix,
            env=ENV,
        )
    )
    path = folder / "kernel.json"
    spec = json.loads(path.read_text(encoding="utf-8"))
    if QUIET not in spec["argv"]:
        spec["argv"].append(QUIET)
    path.write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """Command line: install the kernel spec and print where it went."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", help="install under this prefix (default: sys.prefix)")
    args = parser.parse_args(argv)
    print(install_kernel(args.prefix))
    return 0


if __name__ == "__main__":
    sys.exit(main())

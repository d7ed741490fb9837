"""Colab: the install cell every notebook starts with, and its "Open in Colab" link.

Every notebook (the six lessons and their solutions) gets, right after its title cell, one code
cell tagged ``colab-install``. Outside Colab it does nothing. In Colab it installs the course
package with pip (from the repository at the tag of the package's version, ``v<version>``, or
from ``CNN_UTILS_SOURCE`` when set: a path or any pip requirement), downloads the datasets
the notebook loads, and prints the environment doctor.

The "Open in Colab" link needs the public GitHub address of the repository, which lives in one
place: ``Repository`` under ``[project.urls]`` in ``pyproject.toml``. Without it the notebooks
carry the install cell but no link, and the cell tells a Colab user to set ``CNN_UTILS_SOURCE``.

Usage::

    python tools/colab.py write [--repo https://github.com/OWNER/NAME]  # rewrite the cells
    python tools/colab.py check                                         # exit 1 if stale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted(
    (ROOT / "notebooks" / "solutions").glob("*.ipynb")
)
TAG = "colab-install"
LINK = re.compile(r"\n*\[Open in Colab\]\(https://colab\.research\.google\.com/[^)]*\)\n*")
GITHUB = re.compile(r"^https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?$")
DATASETS = ("fashion_mnist", "mnist")

CELL = """\
# Colab only (nothing happens elsewhere): install the course package and the data this
# notebook loads, then check the environment. CNN_UTILS_SOURCE overrides where pip installs from.
import os
import sys

if "google.colab" in sys.modules:
    import subprocess

    source = os.environ.get("CNN_UTILS_SOURCE", {default})
    if not source:
        raise RuntimeError(
            "This copy of the notebook does not know the course repository: upload the "
            "repository folder and set os.environ['CNN_UTILS_SOURCE'] to its path."
        )
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", source], check=True)
{fetch}    doctor.report()
"""
FETCH = """\
    from cnn_utils import data, doctor

    for name in ({names}):
        data.load_dataset(name)  # the first call downloads it (Keras' own files)
"""


def repository(pyproject: Path = ROOT / "pyproject.toml") -> str | None:
    """The repository's GitHub address from ``[project.urls] Repository``, or ``None``."""
    urls = tomllib.loads(pyproject.read_text())["project"].get("urls", {})
    url = urls.get("Repository")
    if url is not None and not GITHUB.match(url):
        raise ValueError(f"pyproject.toml [project.urls] Repository: not a GitHub address: {url!r}")
    return url


def colab_url(repo: str, notebook: Path, branch: str = "main") -> str:
    """The address that opens ``notebook`` of the GitHub repository ``repo`` in Colab."""
    match = GITHUB.match(repo)
    if match is None:
        raise ValueError(f"repo: expected https://github.com/OWNER/NAME, got {repo!r}")
    owner, name = match.groups()
    relative = notebook.resolve().relative_to(ROOT).as_posix()
    return f"https://colab.research.google.com/github/{owner}/{name}/blob/{branch}/{relative}"


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return source if isinstance(source, str) else "".join(source)


def _is_ours(cell: dict) -> bool:
    return TAG in cell.get("metadata", {}).get("tags", [])


def datasets_of(notebook: dict) -> tuple[str, ...]:
    """The datasets a notebook loads (``"fashion_mnist"`` / ``"mnist"``), in a fixed order."""
    code = "\n".join(
        _source(c) for c in notebook["cells"] if c["cell_type"] == "code" and not _is_ours(c)
    )
    found = set(re.findall(r"[\"'](fashion_mnist|mnist)[\"']", code))
    defaults = (
        r"load_dataset\(\s*(subset|\))"
        r"|training\.trained\(\"(small_cnn|small_cnn_gap|resnet|googlenet)\"\)"
    )
    if re.search(defaults, code):
        found.add("fashion_mnist")  # the default dataset of load_dataset and training.trained
    return tuple(name for name in DATASETS if name in found)


def pinned_version(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The package's version (``[project] version``): the install cell installs its tag."""
    return tomllib.loads(pyproject.read_text())["project"]["version"]


def install_cell_source(notebook: dict, repo: str | None) -> str:
    """The install cell's code for ``notebook``: pip installs the tag ``v<version>`` of ``repo``.

    Pinned, so a notebook installs the package it was written for, not whatever the default
    branch holds when a student opens it (release: ``git tag v<version> && git push --tags``).
    """
    pin = f"git+{repo.removesuffix('/')}@v{pinned_version()}" if repo else ""
    default = json.dumps(pin)
    names = datasets_of(notebook)
    if names:
        listed = ", ".join(json.dumps(name) for name in names) + ("," if len(names) == 1 else "")
        fetch = FETCH.format(names=listed)
    else:
        fetch = "    from cnn_utils import doctor\n\n"
    return CELL.format(default=default, fetch=fetch)


def rewrite(path: Path, repo: str | None) -> dict:
    """``path``'s notebook with the install cell and the link (when ``repo``) up to date."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    source = install_cell_source(notebook, repo)
    cells = [c for c in notebook["cells"] if not _is_ours(c)]
    title = cells[0]
    text = LINK.sub("\n", _source(title)).rstrip("\n")
    if repo:
        text += f"\n\n[Open in Colab]({colab_url(repo, path)})"
    title["source"] = text.splitlines(keepends=True)
    cell = {
        "cell_type": "code",
        "execution_count": None,
        "id": TAG,
        "metadata": {"slideshow": {"slide_type": "skip"}, "tags": [TAG]},
        "outputs": [],
        "source": source.rstrip("\n").splitlines(keepends=True),
    }
    notebook["cells"] = [title, cell, *cells[1:]]
    return notebook


def _text(notebook: dict) -> str:
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write or check the install cells and links; the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("write", "check"))
    parser.add_argument("--repo", help="https://github.com/OWNER/NAME (default: pyproject.toml)")
    args = parser.parse_args(argv)
    repo = args.repo or repository()
    stale = []
    for path in NOTEBOOKS:
        text = _text(rewrite(path, repo))
        if text != path.read_text(encoding="utf-8"):
            stale.append(path)
            if args.command == "write":
                path.write_text(text, encoding="utf-8")
    for path in stale:
        verb = "rewrote" if args.command == "write" else "stale"
        print(f"{verb}: {path.relative_to(ROOT)}")
    if args.command == "check" and stale:
        print("run: python tools/colab.py write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

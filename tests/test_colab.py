"""The Colab install cell (tools/colab.py): present, current, and it installs the package.

The last test runs the cell as Colab would, in a fresh virtual environment that does not have
the package: its dependencies (TensorFlow, ...) are visible through a ``.pth`` file, so pip has
only the course package itself to install (from this checkout, through ``CNN_UTILS_SOURCE``).
"""

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import colab  # noqa: E402


def _cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def test_every_notebook_has_the_current_install_cell():
    assert len(colab.NOTEBOOKS) == 12
    assert colab.main(["check"]) == 0
    for path in colab.NOTEBOOKS:
        cell = _cells(path)[1]
        assert cell["cell_type"] == "code" and colab.TAG in cell["metadata"]["tags"], path
        assert cell["metadata"]["slideshow"]["slide_type"] == "skip"  # not on a slide
        assert '"google.colab" in sys.modules' in "".join(cell["source"])


def test_the_datasets_fetched_are_the_ones_the_notebook_loads():
    by_name = {p.name: colab.datasets_of(json.loads(p.read_text())) for p in colab.NOTEBOOKS}
    assert by_name["06_adversarial_training.ipynb"] == ("fashion_mnist", "mnist")
    assert by_name["03_resnet.ipynb"] == ("fashion_mnist",)
    notebook = {"cells": [{"cell_type": "code", "source": 'training.trained("resnet")'}]}
    assert colab.datasets_of(notebook) == ("fashion_mnist",)  # the default dataset
    assert colab.datasets_of({"cells": [{"cell_type": "code", "source": "x = 1"}]}) == ()


def test_the_link_follows_the_repository(tmp_path, monkeypatch):
    path = ROOT / "notebooks" / "05_adversarial_attacks.ipynb"
    repo = "https://github.com/someone/advanced-cnns"
    with_link = colab.rewrite(path, repo)
    title = "".join(with_link["cells"][0]["source"])
    assert title.count("[Open in Colab]") == 1
    assert title.endswith(
        "(https://colab.research.google.com/github/someone/advanced-cnns/blob/main/"
        "notebooks/05_adversarial_attacks.ipynb)"
    )
    assert '"git+https://github.com/someone/advanced-cnns@v0.1.0"' in "".join(
        with_link["cells"][1]["source"]
    )
    copy = tmp_path / "notebooks" / path.name  # rewriting is idempotent; no repository: no link
    copy.parent.mkdir()
    copy.write_text(colab._text(with_link), encoding="utf-8")
    monkeypatch.setattr(colab, "ROOT", tmp_path)
    again = colab.rewrite(copy, repo)
    assert colab._text(again) == copy.read_text(encoding="utf-8")
    assert "[Open in Colab]" not in "".join(colab.rewrite(copy, None)["cells"][0]["source"])
    assert sum(colab.TAG in c["metadata"].get("tags", []) for c in again["cells"]) == 1


def test_bad_repository_addresses_are_refused(tmp_path):
    with pytest.raises(ValueError, match="repo: expected https://github.com/OWNER/NAME"):
        colab.colab_url("github.com/someone", ROOT / "notebooks" / "01_cnn_revision.ipynb")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n[project.urls]\nRepository = "ftp://x/y"\n')
    with pytest.raises(ValueError, match="Repository: not a GitHub address: 'ftp://x/y'"):
        colab.repository(pyproject)


def test_the_install_cell_installs_the_package_in_a_fresh_environment(tmp_path):
    # Dependencies: a folder of links to this environment's packages, minus the course package.
    site = Path(sysconfig.get_paths()["purelib"])
    deps = tmp_path / "deps"
    deps.mkdir()
    for entry in site.iterdir():
        if "cnn_utils" not in entry.name and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    fresh = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(fresh)
    python = fresh / "bin" / "python"
    fresh_site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(fresh_site, "course_deps.pth").write_text(f"{deps}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(CNN_UTILS_SOURCE=str(ROOT), PIP_DISABLE_PIP_VERSION_CHECK="1")
    check = "import importlib.util, sys; sys.exit(importlib.util.find_spec('cnn_utils') is None)"
    run = {"cwd": tmp_path, "env": env, "capture_output": True, "text": True}
    assert subprocess.run([python, "-c", check], **run).returncode == 1  # not installed yet

    cell = "".join(_cells(ROOT / "notebooks" / "06_adversarial_training.ipynb")[1]["source"])
    as_colab = "import sys, types\nsys.modules['google.colab'] = types.ModuleType('colab')\n"
    done = subprocess.run([python, "-c", as_colab + cell], timeout=600, **run)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Python" in done.stdout and "mnist" in done.stdout  # the doctor's report
    assert subprocess.run([python, "-c", check], **run).returncode == 0  # installed now
    where = subprocess.run(
        [python, "-c", "import cnn_utils; print(cnn_utils.__file__)"], check=True, **run
    ).stdout
    assert where.startswith(fresh_site) and "shipped" in str(
        list(Path(fresh_site, "cnn_utils").iterdir())
    )  # a real install, with the shipped weights

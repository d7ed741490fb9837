"""The environment report: every check, its fix, the datasets and the shipped weights."""

import os
import shutil

import pytest

from cnn_utils import doctor, shipped


def test_doctor_reports_every_check_with_a_fix_for_problems(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_keras_home"))
    table = doctor.report()
    checks = set(table["check"])
    assert {"Python", "tensorflow", "keras", "GPU", "mode", "model cache", "KERAS_HOME"} <= checks
    assert {"dataset mnist", "dataset fashion_mnist"} <= checks
    assert "dataset cifar10" not in checks  # no notebook uses it
    assert set(table["status"]) <= {"ok", "note", "problem"}
    missing = table[table["check"] == "dataset mnist"].iloc[0]
    assert missing["status"] == "note" and "KERAS_HOME" in missing["fix"]
    printed = capsys.readouterr().out
    assert "dataset mnist" in printed and "- dataset mnist:" in printed  # the fix is printed
    assert doctor.report(verbose=0).shape == table.shape
    assert capsys.readouterr().out == ""


def test_doctor_finds_the_seeded_datasets(monkeypatch):
    if "KERAS_HOME" not in os.environ:
        pytest.skip("needs a seeded KERAS_HOME")
    table = doctor.report(verbose=0)
    row = table[table["check"] == "dataset fashion_mnist"].iloc[0]
    assert row["status"] == "ok", row["found"]


def test_doctor_checks_the_shipped_weights(tmp_path, monkeypatch):
    row = doctor.report(verbose=0).set_index("check").loc["shipped weights"]
    assert row["status"] == "ok" and "all hashes match" in row["found"], row["found"]
    assert row["found"].endswith("not in use (CNN_UTILS_SHIPPED=0: every model trains).")
    # A changed file is a problem, named, with the fix.
    copy = tmp_path / "shipped"
    shutil.copytree(shipped.SHIPPED_DIR, copy)
    victim = sorted(copy.glob("*.weights.h5"))[0]
    victim.write_bytes(victim.read_bytes()[:-10])
    monkeypatch.setattr(shipped, "SHIPPED_DIR", copy)
    row = doctor.report(verbose=0).set_index("check").loc["shipped weights"]
    assert row["status"] == "problem" and victim.name.split(".")[0] in row["found"]
    assert "git checkout" in row["fix"]


def test_doctor_names_the_oldest_python_it_supports(monkeypatch):
    monkeypatch.setattr(doctor, "OLDEST_PYTHON", (99, 0))
    row = doctor.report(verbose=0).set_index("check").loc["Python"]
    assert row["status"] == "problem" and "Python 99.0 or newer" in row["fix"]


def test_every_row_reads_as_a_sentence(monkeypatch):
    monkeypatch.setenv("CNN_UTILS_SHIPPED", "1")
    table = doctor.report(verbose=0)
    for found in table["found"]:
        assert found[0].isupper() or found.startswith(("shipped", "tensorflow", "keras"))
        assert found.endswith("."), found
    row = table.set_index("check").loc["shipped weights"]
    assert row["found"].endswith("all hashes match; in use."), row["found"]


def _status(check):
    row = doctor.report(verbose=0).set_index("check").loc[check]
    return row["status"], row["found"], row["fix"]


def test_cache_folder_that_is_a_file_or_below_one_is_a_problem(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for cache in (blocker, blocker / "cache"):
        monkeypatch.setenv("CNN_UTILS_CACHE", str(cache))
        status, found, fix = _status("model cache")
        assert status == "problem" and str(blocker) in found and "CNN_UTILS_CACHE" in fix


def test_cache_folder_that_cannot_be_written_or_is_full_is_a_problem(tmp_path, monkeypatch):
    import errno
    import tempfile
    from collections import namedtuple

    monkeypatch.setenv("CNN_UTILS_CACHE", str(tmp_path))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    status, found, _ = _status("model cache")
    assert status == "problem" and "1 MB free" in found

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    status, found, _ = _status("model cache")
    assert status == "problem" and "not writable" in found


def test_keras_home_empty_or_below_a_file_is_a_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", "")
    status, found, fix = _status("KERAS_HOME")
    assert status == "problem" and "empty" in found and "unset KERAS_HOME" in fix
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    monkeypatch.setenv("KERAS_HOME", str(blocker / "keras"))
    status, found, _ = _status("KERAS_HOME")
    assert status == "problem" and "below the file" in found


def test_read_only_keras_home_with_good_datasets_is_copied_not_deleted(monkeypatch):
    import errno
    import tempfile

    if "KERAS_HOME" not in os.environ:
        pytest.skip("needs a seeded KERAS_HOME")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    table = doctor.report(verbose=0).set_index("check")
    assert table.loc["KERAS_HOME", "status"] == "problem"
    assert "intact" in table.loc["KERAS_HOME", "found"]
    assert "cp -r" in table.loc["KERAS_HOME", "fix"]
    assert not any("rm " in fix or "delete" in fix for fix in table["fix"])
    assert table.loc["dataset fashion_mnist", "status"] == "ok"


def test_a_damaged_dataset_file_is_named_alone(tmp_path, monkeypatch):
    if "KERAS_HOME" not in os.environ:
        pytest.skip("needs a seeded KERAS_HOME")
    home = tmp_path / "keras_home"
    shutil.copytree(os.path.join(os.environ["KERAS_HOME"], "datasets"), home / "datasets")
    damaged = home / "datasets" / "mnist.npz"
    damaged.write_bytes(damaged.read_bytes()[:1000])
    monkeypatch.setenv("KERAS_HOME", str(home))
    table = doctor.report(verbose=0).set_index("check")
    assert table.loc["dataset mnist", "status"] == "problem"
    assert f"rm {damaged}" in table.loc["dataset mnist", "fix"]
    assert table.loc["dataset fashion_mnist", "status"] == "ok"


def test_doctor_in_a_fresh_process_prints_no_native_log_lines():
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-m", "cnn_utils.doctor"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert "shipped weights" in output
    for marker in ("I0000", "E0000", "W0000", "absl::InitializeLog"):
        assert marker not in output, output

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
    assert row["status"] == "ok" and "hashes match" in row["found"], row["found"]
    assert "off" in row["found"]  # the tests turn the shipped weights off
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

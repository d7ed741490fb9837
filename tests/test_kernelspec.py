"""The course kernel: installed per venv, quiet about TensorFlow's C++ start-up lines."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import kernelspec  # noqa: E402


def test_kernel_spec_is_quiet_and_lives_under_the_prefix(tmp_path):
    path = kernelspec.install_kernel(str(tmp_path))
    assert path.is_relative_to(tmp_path)
    spec = json.loads(path.read_text())
    assert spec["env"]["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert spec["argv"].count("--IPKernelApp.capture_fd_output=False") == 1
    assert spec["display_name"] == "Python (cnn-course)"
    again = json.loads(kernelspec.install_kernel(str(tmp_path)).read_text())
    assert again["argv"].count("--IPKernelApp.capture_fd_output=False") == 1  # idempotent

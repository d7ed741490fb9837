"""Tests of plots.live_control: the live widget after a static twin, and when it is left out."""

import sys

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from cnn_utils import plots  # noqa: E402


def _draws():
    calls = []

    def show(epsilon=0.1):
        calls.append(epsilon)

    return show, calls


class _Shell:
    """Stands for a running IPython kernel (get_ipython() returns something)."""


def test_no_kernel_no_widget(capsys):
    show, calls = _draws()
    assert plots.live_control(show, epsilon=[0.1, 0.2]) is None
    assert "no Jupyter kernel" in capsys.readouterr().out
    assert calls == []  # nothing drawn twice: the static twin is the notebook's own figure


def test_without_ipywidgets(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import fails as if not installed
    show, _ = _draws()
    assert plots.live_control(show, epsilon=[0.1, 0.2]) is None
    assert "ipywidgets is not installed" in capsys.readouterr().out


def test_switched_off(monkeypatch, capsys):
    monkeypatch.setenv("CNN_UTILS_WIDGETS", "0")
    show, _ = _draws()
    assert plots.live_control(show, epsilon=[0.1, 0.2]) is None
    assert "CNN_UTILS_WIDGETS=0" in capsys.readouterr().out
    monkeypatch.setenv("CNN_UTILS_WIDGETS", "maybe")
    with pytest.raises(ValueError, match="CNN_UTILS_WIDGETS"):
        plots.live_control(show, epsilon=[0.1, 0.2])


def test_live_widget_in_a_kernel(monkeypatch):
    pytest.importorskip("ipywidgets")
    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: _Shell())
    calls = []

    def show(epsilon=0.1, image=0, axes=None):
        calls.append((epsilon, image, axes))

    widget = plots.live_control(show, epsilon=[0.3, 0.1, 0.2], image=[0, 1])
    assert widget is not None
    sliders = [child for child in widget.widget.children if hasattr(child, "options")]
    assert [s.description for s in sliders] == ["epsilon", "image"]  # axes: no control
    assert sliders[0].options == (0.3, 0.1, 0.2)  # the given order, starting at the first
    assert calls == [(0.3, 0, None)]  # interact draws once now...
    sliders[0].value = 0.2  # ...and again on every change of a control
    assert calls == [(0.3, 0, None), (0.2, 0, None)]


def test_bad_arguments():
    with pytest.raises(ValueError, match="function must be callable"):
        plots.live_control(42, epsilon=[0.1])
    with pytest.raises(ValueError, match="at least one control"):
        plots.live_control(lambda: None)
    with pytest.raises(ValueError, match="epsilon must list at least one value"):
        plots.live_control(lambda epsilon=0: None, epsilon=[])

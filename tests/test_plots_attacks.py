import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cnn_utils import plots  # noqa: E402


def teardown_function():
    plt.close("all")


def test_accuracy_vs_epsilon_draws_one_line_per_curve():
    fig = plots.plot_accuracy_vs_epsilon(
        [0, 0.1, 0.2], {"FGSM": [0.9, 0.5, 0.2], "PGD": [0.9, 0.3, 0.0]}, title="t"
    )
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["FGSM", "PGD"]
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), [0.9, 0.3, 0.0])
    with pytest.raises(ValueError, match="one value per epsilon"):
        plots.plot_accuracy_vs_epsilon([0, 0.1], {"FGSM": [1.0]})
    with pytest.raises(ValueError, match="at least one curve"):
        plots.plot_accuracy_vs_epsilon([0, 0.1], {})


def test_loss_surface_panels():
    a, b = np.linspace(-1, 1, 5), np.linspace(-1, 1, 4)
    loss = np.add.outer(b**2, a)
    assert len([ax for ax in plots.plot_loss_surface(a, b, loss).axes if ax.get_title()]) == 2
    pred = (loss > 0).astype(int)
    fig = plots.plot_loss_surface(a, b, loss, pred=pred, true_label=0, class_names=["no", "yes"])
    titles = [ax.get_title() for ax in fig.axes]
    assert {"loss (contour)", "loss (3-D)", "decision regions"} <= set(titles)
    legend = fig.axes[titles.index("decision regions")].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["no (true)", "yes"]
    with pytest.raises(ValueError, match="loss must have shape"):
        plots.plot_loss_surface(a, b, loss.T)


def test_adversarial_examples_three_rows_and_perturbation_scale():
    rng = np.random.default_rng(0)
    x = rng.random((3, 6, 6, 1), dtype=np.float32)
    x_adv = np.clip(x + 0.1 * np.sign(rng.standard_normal(x.shape)), 0, 1)
    fig = plots.plot_adversarial_examples(
        x, x_adv, clean_titles=list("abc"), adversarial_titles=list("def"), amplify=10
    )
    # One panel per image: rows top to bottom (smaller y is higher), columns left to right.
    grid = sorted(fig.axes[0].images, key=lambda im: (im.get_extent()[3], im.get_extent()[0]))
    assert len(grid) == 9
    perturbation = grid[2 * 3].get_array()  # row 3, column 1
    np.testing.assert_allclose(perturbation, 10 * (x_adv[0, ..., 0] - x[0, ..., 0]), rtol=1e-5)
    np.testing.assert_allclose(grid[3 + 1].get_array(), x_adv[1, ..., 0])  # row 2, column 2
    assert [im.get_label() for im in grid[:3]] == ["a, row: clean", "b", "c"]
    assert grid[6].get_label() == "×10, row: perturbation"
    assert len(fig.axes[0].patches) == 9  # a frame around each panel: white is "no change"
    with pytest.raises(ValueError, match="same shape"):
        plots.plot_adversarial_examples(x, x_adv[:2])
    with pytest.raises(ValueError, match="clean_titles must have one entry"):
        plots.plot_adversarial_examples(x, x_adv, clean_titles=["a"])

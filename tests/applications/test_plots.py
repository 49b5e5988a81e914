import itertools
import json

import numpy as np
import pytest

from applications import config
from applications import experiments
from applications import plots
from tests.helpers import in_pytorch_pass

# Backend-independent (matplotlib on records): the PyTorch pass runs it.
pytestmark = in_pytorch_pass("report logic")

REGIMES = {  # regime: (λ, comparison λ, final test error % on Fashion-MNIST)
    "l2": (1e-4, None, 8.3),
    "psp": (1e-3, None, 8.0),
    "psp_step": (1e-3, None, 8.1),
    "l2_pytorch_init": (1e-4, None, 8.4),
    "psp+soft_diamond": (1e-3, 1e-7, 8.2),
}
WORDED = [
    "L2 (weight decay) 1e-4",
    "PSP, λ 1e-3",
    "PSP, λ 1e-3, step decay (λ ×0.1 at 50 % and 75 %)",
    "L2 (weight decay) 1e-4, PyTorch initialization",
    "PSP, λ 1e-3 + soft diamond, λ 1e-7",
]
EPOCHS = 30
LAYERS = ("conv1", "fc1", "predictions_logits")


def _found(tmp_path, datasets=("fashion_mnist", "mnist")):
    """Records as `records.collect` gives them: 3 seeds per regime whose
    test error falls from 18 % to about 8 % (the Fashion-MNIST case), a
    spike half-way, ⟨z²⟩, activation and weight sparsity, and kernel
    histograms."""
    rng = np.random.default_rng(0)
    found = {}
    for dataset in datasets:
        scale = 1.0 if dataset == "fashion_mnist" else 0.1
        for r, (regime, (strength, other, final)) in enumerate(REGIMES.items()):
            for seed in (1, 2, 3):
                epochs = np.arange(EPOCHS)
                error = scale * (
                    final
                    + 10 * np.exp(-epochs / 2)
                    + rng.normal(0, 0.05, EPOCHS)
                )
                if regime == "l2" and seed == 1:
                    error[EPOCHS * 3 // 4] += 5 * scale  # a single spike
                rows = [
                    {
                        "val_accuracy": str(1 - e / 100),
                        "z2_mean": str((1 + r) * (1 + epoch)),
                        **{
                            f"sparsity/{layer}": str(0.2 + 0.01 * r + 0.1 * i)
                            for i, layer in enumerate(LAYERS[:-1])
                        },
                    }
                    for epoch, e in enumerate(error)
                ]
                record = tmp_path / f"{dataset}_{regime}_{seed}"
                record.mkdir()
                edges = np.linspace(-0.3, 0.3, 11)
                (record / "parameters.json").write_text(
                    json.dumps(
                        [
                            {
                                "layer": layer,
                                "counts": [1, 2, 5, 9, 20, 20, 9, 5, 2, 1],
                                "edges": edges.tolist(),
                            }
                            for layer in LAYERS
                        ]
                    )
                )
                results = {
                    "strength": strength,
                    "comparison_strength": other,
                    "weight_sparsity_per_kernel": {
                        f"{layer}/kernel": 0.01 * (r + seed) for layer in LAYERS
                    },
                }
                found.setdefault((dataset, "lenet5", regime), {})[seed] = (
                    results,
                    rows,
                    str(record),
                )
    return found


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    made = plots.figures(_found(tmp_path_factory.mktemp("records")))
    for figure in made.values():
        figure.canvas.draw()
    yield made
    import matplotlib.pyplot as plt

    for figure in made.values():
        plt.close(figure)


def test_labels_are_words_derived_from_the_regimes():
    assert [
        experiments.label(regime, strength, other)
        for regime, (strength, other, _) in REGIMES.items()
    ] == WORDED
    assert experiments.label("none", 0.0) == "no regularization"
    assert experiments.label("activation_sparsity", 0.0, 1e-3) == (
        "activation sparsity, λ 1e-3"
    )
    assert experiments.number(5e-4) == "5e-4"
    assert experiments.number(0.01) == "0.01"
    # Every regime, data set and model has words (a new one without
    # them fails here, not in a committed plot).
    for regime in experiments.REGIMES:
        words = experiments.label(regime, 1e-3, 1e-5)
        assert "_" not in words and regime not in words.split(", ")
    for dataset in config.DATASETS:
        for model in config.MODELS:
            assert "_" not in plots.in_words(dataset, model)
    with pytest.raises(ValueError, match="regime must be one of"):
        experiments.label("psp_typo", 1e-3)


def test_every_plot_is_made(figures):
    assert list(figures) == list(plots.NAMES)


def _figure_texts(figure):
    """The texts drawn in `figure`: titles, axis and tick labels in view,
    legend entries."""
    texts = list(figure.texts)  # the suptitle
    texts += [t for legend in figure.legends for t in legend.get_texts()]
    for axes in figure.axes:
        if not axes.axison:
            continue
        texts += [axes.title, axes.xaxis.label, axes.yaxis.label]
        for axis, limits in (
            (axes.xaxis, axes.get_xlim()),
            (axes.yaxis, axes.get_ylim()),
        ):
            low, high = sorted(limits)
            for locs, labels in (
                (axis.get_majorticklocs(), axis.get_majorticklabels()),
                (axis.get_minorticklocs(), axis.get_minorticklabels()),
            ):
                texts += [
                    label
                    for loc, label in zip(locs, labels, strict=True)
                    if low - 1e-9 * abs(high) <= loc <= high + 1e-9 * abs(high)
                ]
    return [t for t in texts if t is not None and t.get_text().strip()]


@pytest.mark.parametrize("name", plots.NAMES)
def test_no_two_texts_overlap(figures, name):
    figure = figures[name]
    renderer = figure.canvas.get_renderer()
    boxes = [
        (t.get_text(), t.get_window_extent(renderer).padded(-1))
        for t in _figure_texts(figure)
    ]
    assert len(boxes) > 10
    overlapping = [
        (a, b)
        for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2)
        if box_a.overlaps(box_b)
    ]
    assert overlapping == []
    # Everything lies inside the figure (nothing cut off when saved).
    figure_box = figure.bbox.padded(1)
    for text, box in boxes:
        assert figure_box.contains(box.x0, box.y0), text
        assert figure_box.contains(box.x1, box.y1), text


@pytest.mark.parametrize("name", plots.NAMES)
def test_legends_and_titles_are_in_words(figures, name):
    figure = figures[name]
    (legend,) = figure.legends
    entries = [t.get_text() for t in legend.get_texts()]
    if name == "parameters.png":  # L2 against PSP
        assert entries == WORDED[:2]
    else:
        assert entries == WORDED
    texts = " ".join(t.get_text() for t in _figure_texts(figure))
    for key in [*REGIMES, "fashion_mnist", "lenet5"]:
        assert key not in texts.split()
        assert f"{key} " not in texts and f"{key}," not in texts
    assert "LeNet-5 on Fashion-MNIST" in texts and "LeNet-5 on MNIST" in texts
    # The title says what the lines are: over how many seeds, and what
    # the band or bar is.
    title = figure.get_suptitle()
    if name == "parameters.png":
        assert "seed 1" in texts and "L2 against PSP" in title
    else:
        assert "over 3 seeds" in title
    if name in ("test_error.png", "z2.png"):
        assert "lowest to highest seed" in title


@pytest.mark.parametrize("name", plots.NAMES)
def test_every_axis_is_labelled(figures, name):
    shown = [axes for axes in figures[name].axes if axes.axison]
    assert shown
    for axes in shown:
        assert axes.get_title() and axes.get_xlabel() and axes.get_ylabel()
        if axes.get_yscale() == "log":
            assert "log scale" in axes.get_ylabel()
            # Plain numbers, not 4×10^0.
            labels = [t.get_text() for t in axes.get_yticklabels("both")]
            assert not any("times" in t or "^" in t for t in labels)


def test_test_error_zoom_fits_the_later_epochs(figures, tmp_path):
    axes = {a.get_title(): a for a in figures["test_error.png"].axes}
    top = axes["LeNet-5 on Fashion-MNIST: all 30 epochs"]
    zoom = axes["LeNet-5 on Fashion-MNIST: epochs 16 to 30, zoomed"]
    low, high = zoom.get_ylim()
    top_low, top_high = top.get_ylim()
    # The top row shows all of it, from the first epochs' 18 %; the zoom
    # spans a tenth of that and holds every regime's final mean ± std.
    assert top_high > 17 and top_low < 8.1
    assert high - low < 0.1 * (top_high - top_low)
    found = _found(tmp_path, datasets=("fashion_mnist",))
    for runs in found.values():
        final = [
            100 * (1 - float(rows[-1]["val_accuracy"]))
            for _, rows, _ in runs.values()
        ]
        mean, std = np.mean(final), np.std(final, ddof=1)
        assert low < mean - std and mean + std < high
    # The spike of one seed is in the top row, not in the zoom's range.
    assert high < 8.4 + 5 / 3

"""The reproduction's plots: test error and ⟨z²⟩ per epoch (the paper's
Fig. 2b), per-layer kernel histograms, L2 against PSP (Fig. 3),
per-layer activation sparsity per epoch, and per-layer weight sparsity
at the final epoch.

Each plot says in its titles what it shows (data set, model, measure,
over how many seeds, what the line and the band or bar are); its legends
name the regimes in words (`experiments.label`), each regime in one
colour across a plot's panels.
"""

import os

from applications import config
from applications import experiments
from applications import report
from applications import run_dir as run_dirs

NAMES = (
    "test_error.png",
    "z2.png",
    "parameters.png",
    "sparsity.png",
    "weight_sparsity.png",
)
# The zoomed test-error row: the later half of the epochs, its y-range
# from the lowest mean to this percentile of each regime's mean (single
# spikes leave it; the row above shows them).
ZOOM_PERCENTILE = 90


def write(found, out):
    """Writes the plots of the finished runs `found` into `out` and
    removes those of an earlier report that these runs do not give (all,
    when none finished): no plot outlives its data. Returns the paths
    written."""
    written = plot(found, out) if found else []
    for name in NAMES:
        path = os.path.join(out, name)
        if path not in written and os.path.exists(path):
            os.remove(path)
    return written


def plot(found, out):
    """Writes test_error.png, z2.png, parameters.png (with L2 and PSP runs),
    sparsity.png (with activation sparsity in the history) and
    weight_sparsity.png (with per-kernel weight sparsity in the results);
    returns their paths."""
    import matplotlib.pyplot as plt

    written = []
    for name, figure in figures(found).items():
        path = os.path.join(out, name)
        tmp = f"{path}.tmp{os.getpid()}.png"
        figure.savefig(tmp, dpi=110, bbox_inches="tight")
        plt.close(figure)
        os.replace(tmp, path)
        written.append(path)
    return written


def figures(found):
    """{file name: matplotlib figure} of the plots the runs `found` give
    (`records.collect`'s `{(data set, model, regime): {seed: (results,
    history rows, record dir)}}`), in the order of `NAMES`; the caller
    saves or closes them."""
    import matplotlib

    matplotlib.use("Agg")

    made = {
        "test_error.png": _test_error(found),
        "z2.png": _z2(found),
        "parameters.png": _parameters(found),
        "sparsity.png": _sparsity(found),
        "weight_sparsity.png": _weight_sparsity(found),
    }
    return {name: figure for name, figure in made.items() if figure}


def in_words(dataset, model):
    """ "LeNet-5 on Fashion-MNIST"."""
    words = experiments.WORDS
    return f"{words['model'][model]} on {words['dataset'][dataset]}"


def regime_label(regime, runs):
    """`experiments.label` of `regime` with the λ its runs recorded."""
    results = next(iter(runs.values()))[0]
    return experiments.label(
        regime, results["strength"], results.get("comparison_strength")
    )


def _seeds(count):
    return f"{count} seed{'s' if count != 1 else ''}"


class _Legend:
    """One legend for a figure: each regime's words and colour (in
    `experiments.REGIME_ORDER`), with its number of seeds when the
    regimes' differ (otherwise the title says it)."""

    def __init__(self, found, regimes=None):
        import matplotlib

        present = [
            r
            for r in experiments.REGIME_ORDER
            if any(key[2] == r for key in found)
            and (regimes is None or r in regimes)
        ]
        colors = matplotlib.colormaps[
            "tab10" if len(present) <= 10 else "tab20"
        ]
        self.color = {r: colors(i) for i, r in enumerate(present)}
        counts = {len(runs) for runs in found.values()}
        self.same_seeds = len(counts) == 1
        self.seeds = counts.pop() if self.same_seeds else None
        self.labels = {}

    def label(self, regime, runs):
        text = regime_label(regime, runs)
        if not self.same_seeds:
            text += f" ({_seeds(len(runs))})"
        self.labels[regime] = text
        return text

    def over_seeds(self):
        """ "mean over 3 seeds" or "mean over the seeds in the legend"."""
        if self.same_seeds:
            return f"mean over {_seeds(self.seeds)}"
        return "mean over each regime's seeds (in the legend)"

    def draw(self, figure, alpha=None):
        """The figure's legend below its panels, in regime order."""
        from matplotlib.patches import Patch

        handles = [
            Patch(color=self.color[r], alpha=alpha, label=self.labels[r])
            for r in experiments.REGIME_ORDER
            if r in self.labels
        ]
        figure.legend(
            handles=handles,
            loc="outside lower center",
            ncols=max(
                1,
                min(
                    3,
                    len(handles),
                    int(figure.get_figwidth() * 16)
                    // (max(len(h.get_label()) for h in handles) + 8),
                ),
            ),
            fontsize="small",
            frameon=False,
        )


def _curves(runs, key, scale=1.0, offset=0.0):
    """Each seed's values of history column `key` (`offset + scale *
    value`) over the epochs all have, as an array (seeds, epochs), or
    None when a run lacks them."""
    import numpy as np

    curves = []
    for _, rows, _ in runs.values():
        if not rows or any(row.get(key) in (None, "") for row in rows):
            return None
        curves.append([offset + scale * float(row[key]) for row in rows])
    length = min(len(c) for c in curves)
    return np.array([c[:length] for c in curves])


def _band(axis, curves, color, label, first=1):
    """The mean over seeds (line) and lowest to highest seed (band)."""
    import numpy as np

    epochs = np.arange(first, first + curves.shape[1])
    axis.plot(
        epochs,
        curves.mean(axis=0),
        color=color,
        label=label,
        lw=1.3,
        marker="o" if len(epochs) == 1 else None,
    )
    axis.fill_between(
        epochs, curves.min(axis=0), curves.max(axis=0), color=color, alpha=0.2
    )


def _suptitle(figure, text):
    """`text` above the panels, its lines wrapped to the figure's width."""
    import textwrap

    width = int(figure.get_figwidth() * 14)
    lines = [
        wrapped
        for line in text.split("\n")
        for wrapped in textwrap.wrap(line, width)
    ]
    figure.suptitle("\n".join(lines), fontsize="medium")


def _figure(rows, columns, width, height):
    import matplotlib.pyplot as plt

    return plt.subplots(
        rows,
        columns,
        figsize=(width * columns, height * rows + 1.2),
        squeeze=False,
        layout="constrained",
    )


def _test_error(found):
    """Top row: test error over all epochs (mean and band); bottom row:
    the later half zoomed to the means, where the regimes differ by
    tenths of a point, and beside it the final epoch's mean ± std over
    seeds (the tables' number)."""
    import numpy as np

    groups = sorted({(d, m) for d, m, _ in found})
    legend = _Legend(found)
    figure, axes = _figure(2, len(groups), 5.6, 3.6)
    for (top, zoom), (dataset, model) in zip(axes.T, groups, strict=True):
        regimes = [
            (regime, found[(dataset, model, regime)])
            for regime in experiments.REGIME_ORDER
            if found.get((dataset, model, regime))
        ]
        curves = {
            regime: _curves(runs, "val_accuracy", scale=-100, offset=100)
            for regime, runs in regimes
        }
        length = max(c.shape[1] for c in curves.values())
        start = length // 2
        low, high = np.inf, -np.inf
        for i, (regime, runs) in enumerate(regimes):
            color = legend.color[regime]
            label = legend.label(regime, runs)
            _band(top, curves[regime], color, label)
            later = curves[regime][:, start:]
            mean = later.mean(axis=0)
            zoom.plot(
                range(start + 1, start + 1 + len(mean)),
                mean,
                color=color,
                lw=1.3,
            )
            final = later[:, -1]
            std = final.std(ddof=1) if len(final) > 1 else 0.0
            zoom.errorbar(
                length + (i + 1) * 0.025 * length,
                final.mean(),
                yerr=std,
                color=color,
                marker="o",
                markersize=4,
                capsize=2,
            )
            low = min(low, mean.min(), final.mean() - std)
            high = max(
                high,
                np.percentile(mean, ZOOM_PERCENTILE),
                final.mean() + std,
            )
        pad = 0.1 * (high - low) or 0.05
        zoom.set_ylim(low - pad, high + pad)
        # The error bars stand right of a dashed line, past the epochs.
        zoom.axvline(length + 0.0125 * length, color="0.5", ls="--", lw=0.8)
        zoom.set_xticks([t for t in zoom.get_xticks() if start < t <= length])
        top.set_title(
            f"{in_words(dataset, model)}: "
            + (f"all {length} epochs" if length > 1 else "1 epoch")
        )
        zoom.set_title(
            f"{in_words(dataset, model)}: epochs {start + 1} to {length}, "
            "zoomed"
        )
        for axis in (top, zoom):
            axis.set_xlabel("epoch")
            axis.set_ylabel("test error (%)")
            axis.grid(alpha=0.3)
    _suptitle(
        figure,
        f"Test error on the test set after each epoch ({legend.over_seeds()}; "
        "top row's band: lowest to highest seed).\nBottom: the later "
        "half, means only, y-range up to each mean's "
        f"{ZOOM_PERCENTILE}th percentile (single spikes leave it);\nat its "
        "right, the last epoch's mean ± std over seeds (the tables' number)",
    )
    legend.draw(figure)
    return figure


def _plain_log_labels(axis):
    """A log y-axis labelled in plain numbers: its decades, and 2 and 5
    between them where it spans less than two decades."""
    import math

    from matplotlib import ticker

    def major(value, _):
        return f"{value:g}"

    def minor(value, _):
        low, high = axis.get_ylim()
        if math.log10(high / low) >= 2 or f"{value:.0e}"[0] not in "25":
            return ""
        return f"{value:g}"

    axis.yaxis.set_major_formatter(ticker.FuncFormatter(major))
    axis.yaxis.set_minor_formatter(ticker.FuncFormatter(minor))


def _z2(found):
    groups = sorted({(d, m) for d, m, _ in found})
    legend = _Legend(found)
    figure, axes = _figure(1, len(groups), 5.6, 3.8)
    images = set()
    for axis, (dataset, model) in zip(axes[0], groups, strict=True):
        for regime in experiments.REGIME_ORDER:
            runs = found.get((dataset, model, regime))
            if not runs:
                continue
            curves = _curves(runs, "z2_mean")
            if curves is None:
                continue
            _band(
                axis, curves, legend.color[regime], legend.label(regime, runs)
            )
            images |= {
                results.get("monitor_examples")
                for results, _, _ in runs.values()
            }
        axis.set_yscale("log")
        _plain_log_labels(axis)
        axis.set_title(in_words(dataset, model))
        axis.set_xlabel("epoch")
        axis.set_ylabel("⟨z²⟩, mean over the layers (log scale)")
        axis.grid(alpha=0.3, which="both")
    if not legend.labels:
        import matplotlib.pyplot as plt

        plt.close(figure)
        return None
    # Records from before monitor_examples was recorded ran its default.
    default = config.build_parser().get_default("monitor_examples")
    images = {default if n is None else n for n in images}
    count = images.pop() if len(images) == 1 else "a fixed batch of"
    _suptitle(
        figure,
        f"⟨z²⟩, the mean squared pre-activation, on the first {count} test "
        f"images after each epoch\n({legend.over_seeds()}; band: lowest to "
        "highest seed; the paper's Fig. 2b)",
    )
    legend.draw(figure)
    return figure


def _parameters(found):
    """One row per data set and model: each layer's kernel values, L2
    against PSP, on the lowest seed both have (the paper's Fig. 3)."""
    import numpy as np

    groups = sorted({(d, m) for d, m, _ in found})
    pairs = [
        (d, m)
        for d, m in groups
        if (d, m, "l2") in found and (d, m, "psp") in found
    ]
    if not pairs:
        return None
    histograms = {}
    for dataset, model in pairs:
        seed = min(
            set(found[(dataset, model, "l2")])
            & set(found[(dataset, model, "psp")])
            or found[(dataset, model, "psp")]
        )
        for regime in ("l2", "psp"):
            runs = found[(dataset, model, regime)]
            _, _, record_dir = runs.get(seed, runs[min(runs)])
            layers = run_dirs.read_json(
                os.path.join(record_dir, "parameters.json")
            )
            histograms[(dataset, model, regime)] = (seed, layers)
    legend = _Legend(found, regimes=("l2", "psp"))
    legend.same_seeds = True  # one seed each, named in the row titles
    columns = max(len(h[1]) for h in histograms.values())
    figure, axes = _figure(len(pairs), columns, 3.9, 3.2)
    for row, (dataset, model) in zip(axes, pairs, strict=True):
        for regime in ("l2", "psp"):
            seed, layers = histograms[(dataset, model, regime)]
            color = legend.color[regime]
            label = legend.label(regime, found[(dataset, model, regime)])
            for axis, layer in zip(row, layers, strict=False):
                counts = np.asarray(layer["counts"], dtype=float)
                edges = np.asarray(layer["edges"])
                density = counts / (counts.sum() * np.diff(edges))
                axis.stairs(
                    density,
                    edges,
                    fill=True,
                    alpha=0.45,
                    color=color,
                    label=label,
                )
                axis.set_title(
                    f"{in_words(dataset, model)}, seed {seed}:\n"
                    f"{layer['layer']}",
                    fontsize="medium",
                )
                axis.set_yscale("log")
                _plain_log_labels(axis)
                axis.set_xlabel("kernel value")
                axis.set_ylabel("density (log scale)")
        for axis in row[len(layers) :]:
            axis.axis("off")
    _suptitle(
        figure,
        "Kernel values of each layer after the last epoch, L2 against PSP "
        "(one run each, the seed in the title;\n100-bin histograms scaled "
        "to unit area; the paper's Fig. 3)",
    )
    legend.draw(figure, alpha=0.45)
    return figure


def _sparsity(found):
    """One row per data set and model: each hidden layer's activation
    sparsity per epoch (records from before it was measured have none)."""
    groups = sorted({(d, m) for d, m, _ in found})
    layers = {}
    for dataset, model in groups:
        names = []
        for regime in experiments.REGIME_ORDER:
            for _, rows, _ in found.get((dataset, model, regime), {}).values():
                for key in rows[0] if rows else ():
                    if (
                        key.startswith("sparsity/")
                        and key not in names
                        and all(row.get(key) not in (None, "") for row in rows)
                    ):
                        names.append(key)
        if names:
            layers[(dataset, model)] = names
    if not layers:
        return None
    legend = _Legend(found)
    columns = max(len(names) for names in layers.values())
    figure, axes = _figure(len(layers), columns, 4.0, 3.0)
    for row, ((dataset, model), names) in zip(
        axes, layers.items(), strict=True
    ):
        for axis, key in zip(row, names, strict=False):
            low, high = 1.0, 0.0
            for regime in experiments.REGIME_ORDER:
                runs = found.get((dataset, model, regime), {})
                curves = _curves(runs, key) if runs else None
                if curves is None:
                    continue
                mean = curves.mean(axis=0)
                axis.plot(
                    range(1, len(mean) + 1),
                    mean,
                    marker="o" if len(mean) == 1 else None,
                    color=legend.color[regime],
                    label=legend.label(regime, runs),
                    lw=1.3,
                )
                low, high = min(low, mean.min()), max(high, mean.max())
            pad = 0.1 * (high - low) or 0.02
            axis.set_ylim(max(0.0, low - pad), min(1.0, high + pad))
            axis.set_title(
                f"{in_words(dataset, model)}: {key.split('/', 1)[1]}",
                fontsize="medium",
            )
            axis.set_xlabel("epoch")
            axis.set_ylabel("activation sparsity")
            axis.grid(alpha=0.3)
        for axis in row[len(names) :]:
            axis.axis("off")
    _suptitle(
        figure,
        "Activation sparsity of each hidden layer (perplexity-based: 0 when "
        "all channels are equally active,\n1 when one carries everything) on "
        f"held-out test images after each epoch ({legend.over_seeds()}); "
        "each panel's own y-range",
    )
    legend.draw(figure)
    return figure


def _weight_sparsity(found):
    """One plot per data set and model: each layer's final weight
    sparsity, a bar per regime (mean over seeds, the line spans lowest
    to highest seed)."""
    import numpy as np

    groups = sorted({(d, m) for d, m, _ in found})
    bars = {}
    for dataset, model in groups:
        for regime in experiments.REGIME_ORDER:
            runs = found.get((dataset, model, regime), {})
            per_kernel = report.per_kernel_values(runs)
            if per_kernel:
                bars.setdefault((dataset, model), {})[regime] = (
                    runs,
                    per_kernel,
                )
    if not bars:
        return None
    legend = _Legend(found)
    figure, axes = _figure(len(bars), 1, 10.0, 3.2)
    for axis, ((dataset, model), regimes) in zip(
        axes[:, 0], bars.items(), strict=True
    ):
        kernels = list(
            dict.fromkeys(k for _, values in regimes.values() for k in values)
        )
        width = 0.8 / len(regimes)
        for i, (regime, (runs, values)) in enumerate(regimes.items()):
            x = np.arange(len(kernels)) + (i - (len(regimes) - 1) / 2) * width
            per_run = [np.asarray(values.get(k, [np.nan])) for k in kernels]
            mean = np.array([r.mean() for r in per_run])
            spread = np.array(
                [
                    mean - [r.min() for r in per_run],
                    [r.max() for r in per_run] - mean,
                ]
            )
            axis.bar(
                x,
                mean,
                width,
                yerr=spread,
                color=legend.color[regime],
                label=legend.label(regime, runs),
                error_kw={"lw": 1},
            )
        axis.set_xticks(np.arange(len(kernels)))
        axis.set_xticklabels([k.split("/")[0] for k in kernels])
        axis.set_xlabel("layer (its kernel)")
        axis.set_ylabel("weights ≈ 0 (%)")
        axis.set_title(in_words(dataset, model), fontsize="medium")
        axis.grid(alpha=0.3, axis="y")
    _suptitle(
        figure,
        "Weight sparsity of each layer after the last epoch: the share of "
        "its kernel's weights below 1e-3 of the largest magnitude\n(bar: "
        f"{legend.over_seeds()}; line: lowest to highest seed)",
    )
    legend.draw(figure)
    return figure

"""The reproduction's plots: test error and ⟨z²⟩ per epoch (the paper's
Fig. 2b), per-layer kernel histograms, L2 against PSP (Fig. 3), and
per-layer activation sparsity per epoch, and per-layer weight sparsity
at the final epoch."""

import os

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    def save(figure, name):
        path = os.path.join(out, name)
        tmp = f"{path}.tmp{os.getpid()}.png"
        figure.savefig(tmp, dpi=110, bbox_inches="tight")
        plt.close(figure)
        os.replace(tmp, path)
        return path

    groups = sorted({(d, m) for d, m, _ in found})
    written = []
    for metric, name, ylabel in [
        ("val_accuracy", "test_error.png", "test error (%)"),
        ("z2_mean", "z2.png", "⟨z²⟩ on a held-out batch (mean over layers)"),
    ]:
        figure, axes = plt.subplots(
            1,
            len(groups),
            figsize=(5 * len(groups), 4),
            squeeze=False,
            layout="constrained",
        )
        for axis, (dataset, model) in zip(axes[0], groups, strict=True):
            for regime in experiments.REGIME_ORDER:
                runs = found.get((dataset, model, regime))
                if not runs:
                    continue
                curves = [
                    [float(r[metric]) for r in rows]
                    for _, rows, _ in runs.values()
                ]
                length = min(len(c) for c in curves)
                curves = np.array([c[:length] for c in curves])
                if metric == "val_accuracy":
                    curves = 100 * (1 - curves)
                epochs = np.arange(1, length + 1)
                mean = curves.mean(axis=0)
                seeds = f"{len(curves)} seed{'s' if len(curves) > 1 else ''}"
                axis.plot(epochs, mean, label=f"{regime} ({seeds}, mean)")
                axis.fill_between(
                    epochs, curves.min(axis=0), curves.max(axis=0), alpha=0.2
                )
            axis.set_title(f"{model} on {dataset}")
            axis.set_xlabel("epoch")
            axis.set_ylabel(ylabel)
            if metric == "z2_mean":
                axis.set_yscale("log")
            axis.legend()
        written.append(save(figure, name))

    pairs = [
        (d, m)
        for d, m in groups
        if (d, m, "l2") in found and (d, m, "psp") in found
    ]
    if pairs:
        # One row per data set and model: each layer's kernel values, L2
        # against PSP, on the lowest seed both have (the paper's Fig. 3).
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
        columns = max(len(h[1]) for h in histograms.values())
        figure, axes = plt.subplots(
            len(pairs),
            columns,
            figsize=(4 * columns, 3.5 * len(pairs)),
            squeeze=False,
            layout="constrained",
        )
        for row, (dataset, model) in zip(axes, pairs, strict=True):
            for regime in ("l2", "psp"):
                seed, layers = histograms[(dataset, model, regime)]
                for axis, layer in zip(row, layers, strict=False):
                    counts = np.asarray(layer["counts"], dtype=float)
                    edges = np.asarray(layer["edges"])
                    density = counts / (counts.sum() * np.diff(edges))
                    axis.stairs(
                        density,
                        edges,
                        fill=True,
                        alpha=0.5,
                        label=f"{regime}, seed {seed}",
                    )
                    axis.set_title(f"{dataset}: {layer['layer']}")
                    axis.set_yscale("log")
                    axis.set_xlabel("kernel value")
            for axis in row:
                axis.legend()
        figure.suptitle("kernel values per layer, L2 vs PSP")
        written.append(save(figure, "parameters.png"))

    # One row per data set and model: each hidden layer's activation
    # sparsity per epoch (records from before it was measured have none).
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
    if layers:
        columns = max(len(names) for names in layers.values())
        figure, axes = plt.subplots(
            len(layers),
            columns,
            figsize=(4 * columns, 3.5 * len(layers)),
            squeeze=False,
            layout="constrained",
        )
        for row, ((dataset, model), names) in zip(
            axes, layers.items(), strict=True
        ):
            for axis, key in zip(row, names, strict=False):
                for regime in experiments.REGIME_ORDER:
                    runs = found.get((dataset, model, regime), {})
                    curves = [
                        [float(r[key]) for r in rows]
                        for _, rows, _ in runs.values()
                        if rows
                        and all(r.get(key) not in (None, "") for r in rows)
                    ]
                    if not curves:
                        continue
                    length = min(len(c) for c in curves)
                    mean = np.array([c[:length] for c in curves]).mean(axis=0)
                    seeds = (
                        f"{len(curves)} seed{'s' if len(curves) > 1 else ''}"
                    )
                    axis.plot(
                        np.arange(1, length + 1),
                        mean,
                        marker="o" if length == 1 else None,
                        label=f"{regime} ({seeds}, mean)",
                    )
                axis.set_title(f"{model} on {dataset}: {key.split('/', 1)[1]}")
                axis.set_xlabel("epoch")
                axis.set_ylabel("activation sparsity")
                axis.set_ylim(0, 1)
            # One legend per row, beside its last plot.
            row[len(names) - 1].legend(
                fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1)
            )
            for axis in row[len(names) :]:
                axis.axis("off")
        figure.suptitle("activation sparsity per hidden layer (held-out batch)")
        written.append(save(figure, "sparsity.png"))

    # One plot per data set and model: each layer's final weight sparsity,
    # a bar per regime (mean over seeds, the line spans min to max).
    bars = {}
    for dataset, model in groups:
        for regime in experiments.REGIME_ORDER:
            runs = found.get((dataset, model, regime), {})
            per_kernel = report.per_kernel_values(runs)
            if per_kernel:
                bars.setdefault((dataset, model), {})[regime] = per_kernel
    if bars:
        figure, axes = plt.subplots(
            len(bars),
            1,
            figsize=(11, 3.8 * len(bars)),
            squeeze=False,
            layout="constrained",
        )
        for axis, ((dataset, model), regimes) in zip(
            axes[:, 0], bars.items(), strict=True
        ):
            kernels = list(
                dict.fromkeys(k for values in regimes.values() for k in values)
            )
            width = 0.8 / len(regimes)
            for i, (regime, values) in enumerate(regimes.items()):
                x = (
                    np.arange(len(kernels))
                    + (i - (len(regimes) - 1) / 2) * width
                )
                runs = [np.asarray(values.get(k, [np.nan])) for k in kernels]
                mean = np.array([r.mean() for r in runs])
                spread = np.array(
                    [
                        mean - [r.min() for r in runs],
                        [r.max() for r in runs] - mean,
                    ]
                )
                seeds = len(next(iter(values.values())))
                axis.bar(
                    x,
                    mean,
                    width,
                    yerr=spread,
                    label=f"{regime} ({seeds} seed{'s' if seeds > 1 else ''})",
                )
            axis.set_xticks(np.arange(len(kernels)))
            axis.set_xticklabels([k.split("/")[0] for k in kernels])
            axis.set_ylabel("weights below 1e-3 of the kernel's largest (%)")
            axis.set_title(f"{model} on {dataset}")
            axis.legend(
                fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1)
            )
        figure.suptitle("weight sparsity per layer, final epoch")
        written.append(save(figure, "weight_sparsity.png"))
    return written

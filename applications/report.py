"""The reproduction's report: statistics over seeds and the tables of
`summary.md`."""

import os

from applications import experiments
from applications import records


def mean_std(values):
    import numpy as np

    values = np.asarray(values, dtype=float)
    std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return float(values.mean()), std


def _optional(runs, value):
    """mean ± std over the runs of `value(results, history rows)`, or None
    when a run lacks it (records from before it was measured)."""
    values = []
    for results, history, _ in runs.values():
        try:
            measured = value(results, history)
        except (KeyError, IndexError, TypeError):
            return None
        if measured is None or measured == "":
            return None
        values.append(float(measured))
    return mean_std(values)


# The final weights' and activations' measures of `summarize`'s rows:
# (row key, value of a run's results and history rows).
MEASURES = (
    ("weight_sparsity", lambda r, h: 100 * r["weight_sparsity"]),
    ("compression_ratio", lambda r, h: r["compression_ratio"]),
    ("z2", lambda r, h: h[-1]["z2_mean"]),
    ("activation_sparsity", lambda r, h: h[-1]["sparsity_mean"]),
)


def per_kernel_values(runs):
    """{kernel: [its weight sparsity (%) in each run]}, or None when a run
    lacks the measure or the runs' kernels differ."""
    measured = [
        r.get("weight_sparsity_per_kernel") for r, _, _ in runs.values()
    ]
    if not measured or not all(measured):
        return None
    if any(m.keys() != measured[0].keys() for m in measured):
        return None
    return {
        kernel: [100 * m[kernel] for m in measured] for kernel in measured[0]
    }


def _per_kernel(runs):
    values = per_kernel_values(runs)
    if values is None:
        return None
    return {kernel: mean_std(v) for kernel, v in values.items()}


def summarize(found):
    """The table rows (mean ± std per configuration, per seed, the
    paper's numbers) and the paired differences over shared seeds."""
    rows, pairs = [], []
    for (dataset, model, regime), runs in sorted(
        found.items(), key=lambda item: records.order(item[0])
    ):
        final = [r["final_test_error"] for r, _, _ in runs.values()]
        best = [r["best_test_error"] for r, _, _ in runs.values()]
        any_result = next(iter(runs.values()))[0]
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "regime": regime,
                "strength": any_result["strength"],
                "comparison_strength": any_result.get("comparison_strength"),
                "epochs": any_result["epochs"],
                "seeds": sorted(runs),
                "final": mean_std(final),
                "best": mean_std(best),
                "per_seed": {
                    seed: {
                        "final": r["final_test_error"],
                        "best": r["best_test_error"],
                        "run": os.path.basename(run_dir),
                    }
                    for seed, (r, _, run_dir) in sorted(runs.items())
                },
                "paper": experiments.PAPER.get((dataset, model), {}).get(
                    regime
                ),
                "authors_logs": experiments.AUTHORS_LOGS.get(
                    (dataset, model), {}
                ).get(regime),
                **{key: _optional(runs, value) for key, value in MEASURES},
                "weight_sparsity_per_kernel": _per_kernel(runs),
            }
        )
    for (dataset, model, regime), runs in sorted(found.items()):
        for first, baseline in experiments.PAIRS:
            other = found.get((dataset, model, baseline))
            if regime != first or not other:
                continue
            seeds = sorted(set(runs) & set(other))
            if not seeds:
                continue
            diffs = [
                runs[s][0]["final_test_error"] - other[s][0]["final_test_error"]
                for s in seeds
            ]
            pairs.append(
                {
                    "dataset": dataset,
                    "model": model,
                    "regime": first,
                    "baseline": baseline,
                    "seeds": seeds,
                    "difference": mean_std(diffs),
                    "better": sum(d < 0 for d in diffs),
                }
            )
    return rows, pairs


def _pm(pair, digits=2, kind="f"):
    if pair is None:  # not measured
        return ""
    mean, std = pair
    if std != std:  # one seed: no spread
        return f"{mean:.{digits}{kind}}"
    return f"{mean:.{digits}{kind}} ± {std:.{digits}{kind}}"


def _strengths(row):
    """The λ cell: the regime's own λ, then a comparison regularizer's
    (`psp+soft_diamond`: "0.001 + 1e-06"; `soft_diamond` alone: "1e-06")."""
    own, other = row["strength"], row.get("comparison_strength")
    if other is None:
        return f"{own:g}"
    return f"{other:g}" if own == 0 else f"{own:g} + {other:g}"


def _per_kernel_tables(rows):
    """One table per data set and model: each layer's weight sparsity (%)
    per regime, for the rows that measured it."""
    lines = []
    groups = {}
    for row in rows:
        if row.get("weight_sparsity_per_kernel"):
            groups.setdefault((row["dataset"], row["model"]), []).append(row)
    for (dataset, model), group in groups.items():
        kernels = list(
            dict.fromkeys(
                k for r in group for k in r["weight_sparsity_per_kernel"]
            )
        )
        lines += [
            "",
            f"Weight sparsity per layer on {dataset}, {model} (% of the "
            "kernel's weights below 1e-3 of its largest, final epoch, mean ± "
            "std over seeds):",
            "",
            "| regime | " + " | ".join(k.split("/")[0] for k in kernels) + " |",
            "|---|" + "---|" * len(kernels),
        ]
        for row in group:
            cells = [
                _pm(row["weight_sparsity_per_kernel"].get(k)) for k in kernels
            ]
            lines.append(f"| {row['regime']} | " + " | ".join(cells) + " |")
    return lines


def _against(regime, baseline, by_pair):
    """`regime` − `baseline` from the pairs either way round, as
    "+0.18 ± 0.05, 0/3" (mean ± std in pp, seeds where `regime` was
    lower), or "" when they were not paired."""
    if (regime, baseline) in by_pair:
        pair, sign = by_pair[(regime, baseline)], 1
    elif (baseline, regime) in by_pair:
        pair, sign = by_pair[(baseline, regime)], -1
    else:
        return ""
    mean, std = pair["difference"]
    n = len(pair["seeds"])
    lower = pair["better"] if sign == 1 else n - pair["better"]
    spread = f" ± {std:.2f}" if std == std else ""
    return f"{sign * mean:+.2f}{spread}, {lower}/{n}"


def comparison_tables(rows, pairs):
    """One table per data set and model that has a comparison regularizer
    (issue 16): per regime, the final test error, its paired differences
    to PSP and to no regularization, and the final weights' and
    activations' measures."""
    lines = []
    compared = set(experiments.COMPARED) | {
        f"psp+{method}" for method in experiments.COMPARED
    }
    groups = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["model"]), []).append(row)
    for (dataset, model), group in groups.items():
        if not compared & {row["regime"] for row in group}:
            continue
        by_pair = {
            (p["regime"], p["baseline"]): p
            for p in pairs
            if (p["dataset"], p["model"]) == (dataset, model)
        }
        lines += [
            "",
            f"Comparison on {dataset}, {model} (final epoch; mean ± std over "
            "seeds; differences paired by seed, in pp, with the seeds where "
            "the regime's error was lower):",
            "",
            "| regime | λ | seeds | final test error % | − psp | − none "
            "| weight sparsity % | compression ratio | ⟨z²⟩ "
            "| activation sparsity |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in group:
            regime = row["regime"]
            to_psp, to_none = (
                ""
                if regime == baseline
                else _against(regime, baseline, by_pair)
                for baseline in ("psp", "none")
            )
            lines.append(
                f"| {regime} | {_strengths(row)} | {len(row['seeds'])} "
                f"| {_pm(row['final'])} | {to_psp} | {to_none} "
                f"| {_pm(row.get('weight_sparsity'))} "
                f"| {_pm(row.get('compression_ratio'))} "
                f"| {_pm(row.get('z2'), 3, 'g')} "
                f"| {_pm(row.get('activation_sparsity'), 3)} |"
            )
    return lines


def markdown(rows, pairs, command, failures=()):
    """The report `summary.md`: tables of `summarize`, the failed runs and
    the command that produced it."""
    lines = [
        "| data set | model | regime | λ | epochs | seeds | final test error % "
        "| best-epoch error % | paper | authors' logs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        logs, paper = row["authors_logs"], row["paper"]
        lines.append(
            f"| {row['dataset']} | {row['model']} | {row['regime']} "
            f"| {_strengths(row)} | {row['epochs']} | {len(row['seeds'])} "
            f"| {_pm(row['final'])} | {_pm(row['best'])} "
            f"| {'' if paper is None else f'{paper:.2f}'} "
            f"| {'' if logs is None else f'{logs[0]:.2f} ± {logs[1]:.2f}'} |"
        )
    lines += [
        "",
        "Paired comparisons (final test error, same seeds; the first "
        "regime's minus the second's, e.g. psp − l2 or "
        "psp+soft_diamond − psp):",
        "",
        "| data set | model | comparison | seeds | difference (pp) "
        "| seeds where lower |",
        "|---|---|---|---|---|---|",
    ]
    for pair in pairs:
        lines.append(
            f"| {pair['dataset']} | {pair['model']} "
            f"| {pair['regime']} − {pair['baseline']} | {len(pair['seeds'])} "
            f"| {_pm(pair['difference'], 3)} "
            f"| {pair['better']}/{len(pair['seeds'])} |"
        )
    lines += comparison_tables(rows, pairs)
    measured = [row for row in rows if any(row.get(key) for key, _ in MEASURES)]
    if measured:
        lines += [
            "",
            "Weight sparsity, compression and ⟨z²⟩ (final epoch, mean ± std "
            "over seeds):",
            "",
            "| data set | model | regime | weight sparsity % "
            "| compression ratio | ⟨z²⟩ | activation sparsity |",
            "|---|---|---|---|---|---|---|",
        ]
    for row in measured:
        lines.append(
            f"| {row['dataset']} | {row['model']} | {row['regime']} "
            f"| {_pm(row.get('weight_sparsity'))} "
            f"| {_pm(row.get('compression_ratio'))} "
            f"| {_pm(row.get('z2'), 3, 'g')} "
            f"| {_pm(row.get('activation_sparsity'), 3)} |"
        )
    lines += _per_kernel_tables(rows)
    seeds = sorted({seed for row in rows for seed in row["per_seed"]})
    lines += [
        "",
        "Final test error % per seed:",
        "",
        "| data set | model | regime | "
        + " | ".join(f"seed {seed}" for seed in seeds)
        + " |",
        "|---|---|---|" + "---|" * len(seeds),
    ]
    for row in rows:
        values = [
            f"{row['per_seed'][seed]['final']:.2f}"
            if seed in row["per_seed"]
            else ""
            for seed in seeds
        ]
        lines.append(
            f"| {row['dataset']} | {row['model']} | {row['regime']} | "
            + " | ".join(values)
            + " |"
        )
    if failures:
        lines += [
            "",
            "Failed runs (stopped by a non-finite loss; in no table or "
            "mean above):",
            "",
            "| data set | model | regime | seed | run | reason |",
            "|---|---|---|---|---|---|",
        ]
        for failure in failures:
            lines.append(
                f"| {failure['dataset']} | {failure['model']} "
                f"| {failure['regime']} | {failure['seed']} "
                f"| {failure['run']} | {failure['reason']} |"
            )
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)

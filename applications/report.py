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


def _pm(pair, digits=2):
    mean, std = pair
    if std != std:  # one seed: no spread
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


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
            f"| {row['strength']:g} | {row['epochs']} | {len(row['seeds'])} "
            f"| {_pm(row['final'])} | {_pm(row['best'])} "
            f"| {'' if paper is None else f'{paper:.2f}'} "
            f"| {'' if logs is None else f'{logs[0]:.2f} ± {logs[1]:.2f}'} |"
        )
    lines += [
        "",
        "Paired comparisons (final test error, same seeds; e.g. PSP − L2):",
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

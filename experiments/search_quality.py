"""Search strategies compared on the tiny model against the exhaustive optimum.

    python experiments/search_quality.py [--budget 100] [--seeds 5] [--out results/tiny]

On the cached search-split features of the top 12 screened candidates × their 2 best
timesteps (``search_spaces/tiny.yaml``; the sweep is reused from ``results/autosel.db`` when
there), every selection of up to 3 distinct activations at weight 1 is scored: the exhaustive
optimum. Then, at equal trial budgets and over several seeds, the best-so-far score of:
multi-objective TPE (score ↑, channels ↓, cost ↓), single-objective TPE (score only), random
search, greedy forward selection, and greedy followed by TPE (the default) — all over the same
weight-1 space. Writes a regret-curve PNG and a Markdown table; prints the table. Scores are
deterministic, so they are kept in ``.cache/search_quality_scores.json`` for reruns.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import optuna

from autosel import Resources, RunConfig, Search, load_space
from autosel.catalog import list_activations
from autosel.optimise.selection import Selection, parse_slot_choice, suggest
from autosel.optimise.strategies import ExhaustiveStrategy, GreedyStrategy, GreedyThenTPE
from autosel.optimise.study import quiet_optuna


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("results/tiny"))
    args = parser.parse_args()
    quiet_optuna()
    space = load_space("tiny").replace(search={**load_space("tiny").search.model_dump(), "top_m": 12, "max_activations": 3})
    # the stages of a search, in this process; the sweep comes from results/autosel.db when there
    run = RunConfig(out=Path(".cache/search_quality"), storage=f"sqlite:///{Path('results/autosel.db').resolve()}",
                    cache_dir=Path.home() / ".cache/autosel/activations", cache_memory=4 * 10**9, progress=False)
    search = Search(space, run, Resources(workers=0))
    candidates = search.candidates(search.screen())
    cached = search.cache(candidates)
    worker = search.pool().worker  # workers=0: the one worker, in this process
    catalogue = {p.id: p for p in list_activations("tiny", 64)}
    memo = Path(".cache/search_quality_scores.json")
    scores: dict[str, float] = json.loads(memo.read_text()) if memo.is_file() else {}

    def score(selection: Selection) -> float:
        if selection.key not in scores:
            scores[selection.key] = worker.evaluate(selection.items, cached)["score"]
        return scores[selection.key]

    started = time.perf_counter()
    exhaustive = ExhaustiveStrategy(candidates, 3, 0)
    for params in exhaustive.enumerate():
        items = [(*parse_slot_choice(params[f"a{slot}"]), 1.0) for slot in range(params["n"])]
        score(Selection(tuple(sorted(items))))
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps(scores))
    optimum_key = max(scores, key=scores.get)
    optimum = scores[optimum_key]
    print(f"exhaustive: {len(scores)} selections in {time.perf_counter() - started:.0f} s; optimum {100 * optimum:.2f} = {optimum_key}")

    def run(kind: str, seed: int) -> list[float]:
        if kind == "tpe (multi-objective)":
            study = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                        sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True))
        elif kind == "tpe (score only)":
            study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True))
        else:
            study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
        if kind == "greedy → tpe (default)":
            study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True))
        strategy = {"greedy": GreedyStrategy, "greedy → tpe (default)": GreedyThenTPE}.get(kind)
        strategy = strategy(candidates, 3, seed) if strategy else None
        best, curve = float("-inf"), []
        for _ in range(args.budget):
            if strategy is not None:
                params = strategy.next_params(study)
                if params is None and strategy.exhausted(study):
                    curve.append(best)
                    continue
                if params is not None:
                    study.enqueue_trial(params)
            trial = study.ask()
            selection = suggest(trial, candidates, 3, weights=False)
            value = score(selection)
            best = max(best, value)
            curve.append(best)
            if len(study.directions) > 1:
                study.tell(trial, [value, selection.channels(catalogue), selection.cost(catalogue)])
            else:
                study.tell(trial, value)
        return curve

    kinds = ["tpe (multi-objective)", "tpe (score only)", "random", "greedy", "greedy → tpe (default)"]
    curves = {kind: np.array([run(kind, seed) for seed in range(args.seeds)]) / optimum for kind in kinds}
    rows = []
    for kind, curve in curves.items():
        at = {n: curve[:, n - 1] for n in (25, 50, 100) if n <= args.budget}
        reach = [next((i + 1 for i, v in enumerate(c) if v >= 0.98), None) for c in curve]
        rows.append((kind, {n: (v.mean(), v.min()) for n, v in at.items()}, reach))
    lines = [
        f"Tiny model, correspondence (shapes search split, 100 pairs), top 12 candidates × 2 cached timesteps, "
        f"≤ 3 activations at weight 1: {len(scores)} selections; exhaustive optimum PCK@0.1 {100 * optimum:.2f} "
        f"(`{optimum_key}`). Best-so-far as % of the optimum, mean (worst) over {args.seeds} seeds; "
        f"`python experiments/search_quality.py --budget {args.budget} --seeds {args.seeds}`.",
        "",
        "| strategy | " + " | ".join(f"{n} trials" for n in (25, 50, 100) if n <= args.budget) + " | trials to reach 98% (per seed) |",
        "| --- |" + " ---: |" * (len([n for n in (25, 50, 100) if n <= args.budget]) + 1),
    ]
    for kind, at, reach in rows:
        cells = " | ".join(f"{100 * mean:.1f} ({100 * worst:.1f})" for mean, worst in at.values())
        lines.append(f"| {kind} | {cells} | {', '.join('–' if r is None else str(r) for r in reach)} |")
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search_quality.md").write_text(table + "\n")
    _plot(curves, args.out / "search_quality.png", optimum)


def _plot(curves: dict[str, np.ndarray], path: Path, optimum: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))
    for kind, curve in curves.items():
        regret = 100 * (1 - curve)
        steps = np.arange(1, curve.shape[1] + 1)
        axes.plot(steps, regret.mean(0), label=kind)
        axes.fill_between(steps, regret.min(0), regret.max(0), alpha=0.15)
    axes.axhline(2, color="grey", linestyle="--", linewidth=1, label="2% regret (98% of optimum)")
    axes.set_yscale("symlog", linthresh=1)
    axes.set_ylim(bottom=0)
    axes.set_xlabel("trials")
    axes.set_ylabel("regret: % below the exhaustive optimum")
    axes.set_title(f"tiny · correspondence · search strategies (optimum PCK@0.1 {100 * optimum:.1f})", fontsize=10)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()

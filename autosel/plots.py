"""Plots (matplotlib, Agg: no display or browser needed), readable at a glance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from autosel import atomic


def sweep_heatmap(table: pd.DataFrame, path: str | Path, title: str, metric_label: str) -> Path:
    """Activations × timesteps heatmap of one metric (``table``: id, stage, level, timestep,
    value, in forward order), grouped by stage and level with separators and group labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = list(dict.fromkeys(table["id"]))
    timesteps = sorted(table["timestep"].unique())
    grid = table.pivot_table(index="id", columns="timestep", values="value", aggfunc="first").reindex(index=ids, columns=timesteps)
    groups = table.drop_duplicates("id").set_index("id").loc[ids]
    labels = [_group(stage, level) for stage, level in zip(groups["stage"], groups["level"])]

    height = max(3.0, 0.17 * len(ids) + 1.6)
    figure, axes = plt.subplots(figsize=(3.2 + 0.75 * len(timesteps) + 3.6, height))
    image = axes.imshow(100 * grid.to_numpy(dtype=float), aspect="auto", cmap="viridis", interpolation="nearest")
    if "sigma" in table:  # the noise level each timestep means for this model and size
        sigma = table.drop_duplicates("timestep").set_index("timestep")["sigma"]
        axes.set_xticks(range(len(timesteps)), [f"{t}\nσ {sigma[t]:.2f}" for t in timesteps])
        axes.set_xlabel("timestep t (σ)")
    else:
        axes.set_xticks(range(len(timesteps)), [str(t) for t in timesteps])
        axes.set_xlabel("timestep t")
    axes.set_yticks(range(len(ids)), ids, fontsize=6.5 if len(ids) > 40 else 8)
    axes.set_title(_wrap(title, figure), fontsize=10)
    start = 0
    for row in range(1, len(ids) + 1):
        if row == len(ids) or labels[row] != labels[start]:
            if row < len(ids):
                axes.axhline(row - 0.5, color="white", linewidth=1.2)
            axes.text(len(timesteps) - 0.4, (start + row - 1) / 2, labels[start], va="center", ha="left", fontsize=8, clip_on=False)
            start = row
    best = np.unravel_index(np.nanargmax(grid.to_numpy(dtype=float)), grid.shape)
    axes.add_patch(plt.Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    colorbar = figure.colorbar(image, ax=axes, pad=0.12, fraction=0.04)
    colorbar.set_label(metric_label)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_with(path, lambda temporary: figure.savefig(temporary, dpi=120))
    plt.close(figure)
    return path


def _group(stage: str, level: float | None) -> str:
    if level is None or (isinstance(level, float) and np.isnan(level)):
        return stage
    return f"{stage} {int(level)}"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _wrap(title: str, figure) -> str:
    """``title`` broken at its `` · `` separators into lines that fit the figure's width
    (a long model name would otherwise run past the edge and be cut off)."""
    limit = max(20, int(13 * figure.get_figwidth()))  # characters of a 10 pt title per line
    lines: list[str] = []
    for part in title.split(" · "):
        if lines and len(lines[-1]) + 3 + len(part) <= limit:
            lines[-1] += " · " + part
        else:
            lines.append(part)
    return "\n".join(lines)


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if figure.get_layout_engine() is None:
        figure.tight_layout()
    atomic.write_with(path, lambda temporary: figure.savefig(temporary, dpi=120))
    _pyplot().close(figure)
    return path


def history_plot(trials: pd.DataFrame, path: str | Path, title: str, metric: str) -> Path:
    """Each COMPLETE trial's search score and the best so far, by trial number."""
    plt = _pyplot()
    done = trials[trials["state"] == "COMPLETE"].sort_values("number")
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.scatter(done["number"], 100 * done["score"], s=14, alpha=0.6, label="trial")
    axes.step(done["number"], 100 * done["score"].cummax(), where="post", color="C3", label="best so far")
    axes.set_xlabel("trial")
    axes.set_ylabel(f"{metric} (%) on the search split")
    axes.set_title(_wrap(title, figure), fontsize=10)
    axes.legend(fontsize=8)
    return _save(figure, path)


def pareto_plot(trials: pd.DataFrame, path: str | Path, title: str, metric: str, budget: int | None = None) -> Path:
    """Score vs channels and score vs denoiser cost: every trial, each panel's Pareto front
    (the best score reachable at that many channels / that cost or less: a staircase) and the
    channel budget (trials over it are crosses and not on the front)."""
    plt = _pyplot()
    done = trials[trials["state"] == "COMPLETE"]
    within = done["feasible"].map(lambda f: f is not False) if "feasible" in done else pd.Series(True, index=done.index)
    feasible, over = done[within], done[~within]
    figure, panels = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True, layout="constrained")
    for axes, column, label in ((panels[0], "channels", "total channels"), (panels[1], "cost", "denoiser cost per image (forward fractions)")):
        axes.scatter(feasible[column], 100 * feasible["score"], s=12, alpha=0.4, color="grey", label="trial")
        if len(over):
            axes.scatter(over[column], 100 * over["score"], s=14, alpha=0.5, color="grey", marker="x", label="over the channel budget")
        front = _front(feasible, column)
        axes.step(front[column], 100 * front["score"], where="post", color="C3", marker="o", markersize=5, label="Pareto front")
        axes.set_xlabel(label)
    if budget is not None:
        panels[0].axvline(budget, color="C1", linestyle="--", linewidth=1.2, label=f"channel budget ({budget})")
        low, high = panels[0].get_xlim()
        panels[0].set_xlim(low, max(high, budget + 0.05 * (budget - low)))  # not on the frame, where it would not show
    for axes in panels:
        axes.legend(fontsize=8, loc="lower right")
    panels[0].set_ylabel(f"{metric} (%) on the search split")
    figure.suptitle(_wrap(title, figure), fontsize=10)
    return _save(figure, path)


def _front(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """The rows not beaten by a row with as little ``column`` (or less) and a higher score,
    by increasing ``column``: the score rises along it, so its line never zigzags."""
    ordered = frame.dropna(subset=[column, "score"]).sort_values([column, "score"], ascending=[True, False])
    best_before = ordered["score"].cummax().shift(fill_value=-np.inf)
    return ordered[ordered["score"] > best_before]


def importance_plot(importances: dict[str, float], path: str | Path, title: str) -> Path:
    """Horizontal bars of parameter importances (Optuna's evaluator)."""
    plt = _pyplot()
    names = list(importances)[::-1]
    figure, axes = plt.subplots(figsize=(6, 0.35 * len(names) + 1.4))
    axes.barh(names, [importances[n] for n in names], color="C0")
    axes.set_xlabel("importance for the search score")
    axes.set_title(_wrap(title, figure), fontsize=10)
    return _save(figure, path)


def comparison_plot(rows: list[dict], path: str | Path, title: str, metric: str) -> Path:
    """Held-out score of the best config, the best single activation and the presets."""
    plt = _pyplot()
    names = [r["name"] for r in rows][::-1]
    values = [100 * r["heldout"] for r in rows][::-1]
    longest = max(len(n) for n in names)
    # the bar labels take their room from the figure, not from the plot (whose title would be cut off)
    figure, axes = plt.subplots(figsize=(max(7.0, 4.5 + 0.075 * longest), 0.5 * len(rows) + 1.6), layout="constrained")
    colours = ["C3" if n.startswith("best.yaml") else "C0" for n in names]
    axes.barh(names, values, color=colours)
    for y, v in enumerate(values):
        axes.text(v, y, f" {v:.1f}", va="center", fontsize=8)
    axes.set_xlim(0, 1.12 * max(max(values), 1e-9))  # room for the value written after each bar
    axes.set_xlabel(f"{metric} (%) on the held-out split")
    figure.suptitle(_wrap(title, figure), fontsize=10)
    return _save(figure, path)


def matches_plot(panels: list[list[dict]], column_titles: list[str], path: str | Path, title: str) -> Path:
    """Matched keypoints: one row per image pair, one column per config. Each panel shows the
    source and target images side by side, a line from each visible source keypoint to where
    the config matched it (green: within the PCK threshold of the truth, red: not).

    Args:
        panels: rows of panels; a panel holds ``source``/``target`` (H×W×3 uint8), ``points``
            (K×2 source x, y), ``predicted`` (K×2 target x, y), ``hits`` (K booleans).
        column_titles: one per column (the config's name and its hits on these pairs).
    """
    plt = _pyplot()
    rows, columns = len(panels), len(column_titles)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.3 * rows + 0.8), squeeze=False)
    for row, pair_panels in enumerate(panels):
        for column, panel in enumerate(pair_panels):
            axis = axes[row][column]
            source, target = panel["source"], panel["target"]
            height = max(source.shape[0], target.shape[0])
            canvas = np.full((height, source.shape[1] + target.shape[1], 3), 255, dtype=np.uint8)
            canvas[: source.shape[0], : source.shape[1]] = source
            canvas[: target.shape[0], source.shape[1]:] = target
            axis.imshow(canvas)
            for (sx, sy), (tx, ty), hit in zip(panel["points"], panel["predicted"], panel["hits"]):
                colour = "#2ca02c" if hit else "#d62728"
                axis.plot([sx, tx + source.shape[1]], [sy, ty], color=colour, linewidth=0.9)
                axis.scatter([sx, tx + source.shape[1]], [sy, ty], color=colour, s=8)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(column_titles[column], fontsize=9)
    figure.suptitle(_wrap(title, figure), fontsize=10)
    return _save(figure, path)

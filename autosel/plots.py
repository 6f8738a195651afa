"""Plots (matplotlib, Agg: no display or browser needed), readable at a glance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


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
    axes.set_xticks(range(len(timesteps)), [str(t) for t in timesteps])
    axes.set_yticks(range(len(ids)), ids, fontsize=6.5 if len(ids) > 40 else 8)
    axes.set_xlabel("timestep t")
    axes.set_title(title, fontsize=10)
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
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _group(stage: str, level: float | None) -> str:
    if level is None or (isinstance(level, float) and np.isnan(level)):
        return stage
    return f"{stage} {int(level)}"

"""Designing the label-free correspondence proxy by measurement, then checking it on untuned images.

    python experiments/label_free.py [--stage tune|check|both] [--out results/label-free.md] [--pairs 64]

For ``tiny`` and ``tiny-dit`` (their search spaces: every (id, t) candidate), each variant of
the proxy (warp strength, photometric change, point choice, views per image, the PCK threshold
read) screens every candidate on plain shapes images, and its ranking is compared with the
labelled sweep's (PCK@0.1/bbox/point on 100 keypoint pairs) on the same split:

- ``tune``: the shapes ``search`` split, where the variants are compared and one rule is picked;
- ``check``: the shapes ``heldout`` split (its own seed stream: images neither the rule nor the
  models were tuned or trained on), scored once with the frozen rule (the task's defaults).

Per variant: Spearman ρ of the two rankings, the overlap of their top 12, the labelled best's
rank under the proxy (1 + the (id, t) it scores strictly higher) and the labelled gap of the
proxy's #1 (labelled best − labelled score of the proxy's #1, in PCK points). Every sweep is
cached under ``.cache/label_free/`` (keyed by its settings), so a rerun only prints.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from autosel import variants
from autosel.candidates import select_candidates
from autosel.data.specs import load_plain_images
from autosel.encoding import model_run
from autosel.screen.sweep import screen_rows
from autosel.space import load_space
from autosel.tasks import CorrespondenceTask, LabelFreeCorrespondenceTask, Scorer, Task, TaskResult, label_free_metric
from autosel.tasks.label_free import FROZEN_RULE

LABELLED = "pck@0.1/bbox/point"
TOP = 12
MODELS = ("tiny", "tiny-dit")
CACHE = Path(".cache/label_free")

# name → (task options, metric read); options are complete (the frozen rule is the task's defaults)
BASE = {"views": 1, "rotation": 20.0, "scale": 0.15, "shift": 0.1, "photometric": "hard", "points": "salient", "point_count": 24}
VARIANTS: dict[str, tuple[dict, str]] = {
    "base (20°, ×1.15, 10%; hard; salient; 1 view)": (BASE, label_free_metric(0.1)),
    "base, read at α=0.05": (BASE, label_free_metric(0.05)),
    "base, read at α=0.15": (BASE, label_free_metric(0.15)),
    "photometric none": ({**BASE, "photometric": "none"}, label_free_metric(0.1)),
    "photometric mild": ({**BASE, "photometric": "mild"}, label_free_metric(0.1)),
    "warp weak (5°, ×1.05, 5%)": ({**BASE, "rotation": 5.0, "scale": 0.05, "shift": 0.05}, label_free_metric(0.1)),
    "warp strong (40°, ×1.3, 15%)": ({**BASE, "rotation": 40.0, "scale": 0.3, "shift": 0.15}, label_free_metric(0.1)),
    "grid points": ({**BASE, "points": "grid"}, label_free_metric(0.1)),
    "2 views per image": ({**BASE, "views": 2}, label_free_metric(0.1)),
}
FROZEN = {"frozen rule (warp strong; the task's defaults)": (dict(FROZEN_RULE), label_free_metric(0.1))}


class UnionTask(Task):
    """Several tasks over one image list (identical images forwarded once), so one screening
    pass scores them all; metrics are named ``task-name|metric``."""

    name = "union"
    primary_metric = "none"

    def __init__(self, tasks: dict[str, Task]) -> None:
        self.tasks = tasks
        self.images, self.members, seen = [], {}, {}
        for label, task in tasks.items():
            for local in task.image_order():
                image = task.images[local]
                digest = hashlib.sha256(np.ascontiguousarray(image).tobytes() + str(image.shape).encode()).hexdigest()
                if digest not in seen:
                    seen[digest] = len(self.images)
                    self.images.append(image)
                    self.members[seen[digest]] = []
                self.members[seen[digest]].append((label, local))

    @classmethod
    def from_spec(cls, dataset: str, role: str = "search", **options: object) -> Task:
        raise NotImplementedError

    def scorer(self) -> Scorer:
        return _UnionScorer(self)


class _UnionScorer(Scorer):
    def __init__(self, union: UnionTask) -> None:
        self.union = union
        self.scorers = {label: task.scorer() for label, task in union.tasks.items()}

    def add(self, index: int, features: torch.Tensor) -> None:
        for label, local in self.union.members[index]:
            self.scorers[label].add(local, features)

    def result(self) -> TaskResult:
        metrics = {f"{label}|{name}": value for label, scorer in self.scorers.items()
                   for name, value in scorer.result().metrics.items()}
        return TaskResult(task="union", metrics=metrics, primary=next(iter(metrics)), n_items=0, unit="")


def sweep_tables(model: str, role: str, wanted: dict[str, dict], pairs: int) -> dict[str, pd.DataFrame]:
    """``{label: rows (id, timestep, metric, value)}`` for each wanted task (``labelled`` or a
    label-free option dict), from the cache or from one screening pass over all missing ones."""
    CACHE.mkdir(parents=True, exist_ok=True)
    space = load_space(model)
    def key(options: dict | str) -> str:
        return hashlib.sha256(json.dumps([options, pairs], sort_keys=True).encode()).hexdigest()[:12]

    files = {label: CACHE / f"{model}-{role}-{key(options)}.csv" for label, options in wanted.items()}
    missing = {}
    for label, options in wanted.items():  # one task per distinct file
        if not files[label].is_file() and files[label] not in {files[other] for other in missing}:
            missing[label] = options
    if missing:
        tasks: dict[str, Task] = {}
        plain = load_plain_images("shapes", role, pairs)
        for label, options in missing.items():
            if options == "labelled":
                tasks[label] = CorrespondenceTask.from_spec("shapes", role, pairs=100)
            else:
                views = options.get("views", FROZEN_RULE["views"])
                tasks[label] = LabelFreeCorrespondenceTask(plain.images[: -(-pairs // views)], plain.name, **options)
        union = UnionTask(tasks)
        run = model_run(space, batch_size=32)
        candidates = variants.expand(select_candidates(list(run.catalogue.values()), space.candidates.include,
                                                       space.candidates.exclude, model), space.candidates.post)
        todo = {t: [p.id for p in candidates] for t in space.timesteps}
        print(f"{model} {role}: screening {len(union.images)} images for {', '.join(missing)}", flush=True)
        rows = [row for records in screen_rows(space, union, run, todo, progress=False) for row in records]
        frame = pd.DataFrame(rows)[["id", "timestep", "metric", "value"]]
        split = frame["metric"].str.split("|", n=1, expand=True)
        frame = frame.assign(task=split[0], metric=split[1])
        for label in missing:
            frame[frame["task"] == label].drop(columns="task").to_csv(files[label], index=False)
    return {label: pd.read_csv(path) for label, path in files.items()}


def compare(labelled: pd.DataFrame, proxy: pd.DataFrame, metric: str) -> dict[str, float]:
    """Spearman ρ, top-12 overlap, the labelled best's proxy rank and the proxy #1's labelled gap."""
    truth = labelled[labelled["metric"] == LABELLED].set_index(["id", "timestep"])["value"]
    score = proxy[proxy["metric"] == metric].set_index(["id", "timestep"])["value"].reindex(truth.index)
    rho = float(truth.rank().corr(score.rank()))
    top_truth = set(truth.sort_values(ascending=False, kind="stable").index[:TOP])
    top_proxy = set(score.sort_values(ascending=False, kind="stable").index[:TOP])
    best = truth.max()
    best_keys = truth.index[truth == best]
    rank = min(int((score > score[key]).sum()) + 1 for key in best_keys)
    first = score.sort_values(ascending=False, kind="stable").index[0]
    return {"spearman": rho, "overlap": len(top_truth & top_proxy), "rank": rank, "gap": 100 * (best - truth[first]),
            "first": f"{first[0]} @ {first[1]}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/label-free.md"))
    parser.add_argument("--pairs", type=int, default=64, help="label-free (image, view) pairs per variant")
    parser.add_argument("--stage", choices=("tune", "check", "both"), default="both",
                        help="tune: the variants on the search split; check: the frozen rule on the held-out split")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated models")
    parser.add_argument("--variants", action="append", help="only the tune variants whose label starts with this (repeatable)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    chosen_variants = {k: v for k, v in VARIANTS.items() if not args.variants or any(k.startswith(p) for p in args.variants)}
    lines = []
    stages = {"tune": ("search", chosen_variants),
              "check": ("heldout", {**FROZEN, **(chosen_variants if args.variants else {})})}  # variants: after the fact
    for stage, (role, chosen) in stages.items():
        if args.stage not in (stage, "both"):
            continue
        wanted = {"labelled": "labelled", **{label: options for label, (options, _) in chosen.items()}}
        for model in args.models.split(","):
            tables = sweep_tables(model, role, wanted, args.pairs)
            for label, (_, metric) in chosen.items():
                found = compare(tables["labelled"], tables[label], metric)
                lines.append(f"| {'tune' if role == 'search' else 'check'} | {model} | {label} | {found['spearman']:.2f} | "
                             f"{found['overlap']}/{TOP} | {found['rank']} | {found['gap']:.1f} | {found['first']} |")
                print(lines[-1], flush=True)
    header = ("| images | model | variant | Spearman ρ | top-12 overlap | labelled best's rank | #1's labelled gap (points) "
              "| proxy's #1 (id @ t) |\n|---|---|---|---|---|---|---|---|")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table = args.out.with_name(f"{args.out.stem}-{args.stage}-{args.models.replace(',', '-')}.table.md")
    table.write_text(header + "\n" + "\n".join(lines) + "\n")
    print(f"wrote {table}")


if __name__ == "__main__":
    main()

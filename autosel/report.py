"""Reports on a study: Markdown + PNGs (and optionally one self-contained HTML file).

Everything is read back from the SQL store — the study, its trials and the screening rows —
so a report can be made on any machine that reaches the store, during or after a search.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from autosel import atomic, plots
from autosel.config import FeatureConfig
from autosel.data.records import read_image
from autosel.errors import InvalidInputError, did_you_mean
from autosel.evaluation import extract_combined
from autosel.extract import FeatureExtractor
from autosel.optimise.study import completed, open_storage, pareto_front, quiet_optuna, states, trials_frame
from autosel.protocols import DEFAULT_PROTOCOL
from autosel.store import SweepStore
from autosel.tasks import TASKS, get_task
from autosel.tasks.base import make_task


@dataclass
class Report:
    """The files a report wrote (Markdown first)."""

    markdown: Path
    files: list[Path]


def load_study(name: str, storage: str) -> optuna.Study:
    """Study ``name`` in ``storage``.

    Raises:
        InvalidInputError: no such study (lists the existing ones).
    """
    quiet_optuna()
    rdb = open_storage(storage)
    names = [summary.study_name for summary in optuna.get_all_study_summaries(rdb, include_best_trial=False)]
    if name not in names:
        listed = ", ".join(sorted(names)) or "none"
        raise InvalidInputError(f"no study '{name}' in the store.{did_you_mean(name, names)} Studies there: {listed}")
    return optuna.load_study(study_name=name, storage=rdb)


def study_summaries(storage: str) -> list[dict[str, Any]]:
    """One record per study: model, task, trials by state, best held-out score, last update."""
    quiet_optuna()
    rdb = open_storage(storage)
    records = []
    for summary in optuna.get_all_study_summaries(rdb, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=rdb)
        identity = study.user_attrs.get("autosel", {})
        counts = states(study)
        confirmed = study.user_attrs.get("confirmed") or []
        stamps = [t.datetime_complete or t.datetime_start for t in study.get_trials(deepcopy=False)]
        stamps = [s for s in stamps if s is not None]
        records.append({
            "study": summary.study_name, "model": identity.get("model"), "task": identity.get("task"),
            "dataset": identity.get("dataset"), "complete": counts.get("COMPLETE", 0), "running": counts.get("RUNNING", 0),
            "failed": counts.get("FAIL", 0), "best_heldout": confirmed[0]["heldout"] if confirmed else None,
            "last_update": max(stamps).isoformat(timespec="seconds") if stamps else None,
        })
    return records


def write_report(name: str, storage: str, out: str | Path, html: bool = False, matches: bool = True,
                 device: str | None = None) -> Report:
    """Write ``OUT/report.md`` with its PNGs and ``trials.csv`` (and ``report.html``).

    ``matches`` (correspondence studies) also draws ``matches.png``: best.yaml's and the legacy
    preset's matched keypoints on a few held-out pairs, which runs the model on ``device``
    (the only part of a report that needs the weights).

    Raises:
        InvalidInputError: unknown study, or a study with no complete trial yet.
    """
    study = load_study(name, storage)
    done = completed(study)
    if not done:
        raise InvalidInputError(f"study '{name}' has no complete trial yet: nothing to report (run `autosel search` first)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    identity = study.user_attrs.get("autosel", {})
    model, task, dataset = identity.get("model", "?"), identity.get("task", "?"), identity.get("dataset", "?")
    metric = get_task(task).primary_metric if task in TASKS else "score"
    heading = f"{model} · {task} · {metric}" + (f" · protocol {DEFAULT_PROTOCOL}" if task == "correspondence" else "")
    files: list[Path] = []
    sections: list[str] = [f"# Search report: {name}", "",
                           f"Model `{model}`, task `{task}`, dataset `{dataset}`; generated "
                           f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}.", ""]
    counts = states(study)
    sections += [f"Trials: {counts.get('COMPLETE', 0)} complete, {counts.get('RUNNING', 0)} running, "
                 f"{counts.get('FAIL', 0)} failed.", ""]

    sweep_key = study.user_attrs.get("sweep_key")
    if sweep_key:
        rows = SweepStore(storage).rows(sweep_key)
        primary = rows[rows["metric"] == metric]
        if len(primary):
            heatmap = plots.sweep_heatmap(primary, out / "screen.png", f"{heading} · screen (search split)", f"{metric} (%)")
            files.append(heatmap)
            sections += ["## Screen: every candidate alone", "", f"![screen]({heatmap.name})", ""]

    frame = trials_frame(study)
    history = plots.history_plot(frame, out / "history.png", f"{heading} · optimisation history", metric)
    front_trials = pareto_front(done)
    pareto = plots.pareto_plot(frame, out / "pareto.png", f"{heading} · Pareto front", metric, study.user_attrs.get("channel_budget"))
    files += [history, pareto]
    sections += ["## Optimisation history", "", f"![history]({history.name})", "",
                 "## Pareto front (score vs channels and vs denoiser cost)", "", f"![pareto]({pareto.name})", ""]
    sections += ["| trial | score % | channels | cost | selection |", "| ---: | ---: | ---: | ---: | --- |"]
    sections += [f"| {t.number} | {100 * t.values[0]:.1f} | {t.user_attrs.get('channels')} | {t.user_attrs.get('cost', 0.0):.2f} | `{t.user_attrs.get('selection')}` |"
                 for t in front_trials]
    sections.append("")

    importances = _importances(study)
    if importances:
        chart = plots.importance_plot(importances, out / "importance.png", f"{heading} · parameter importances")
        files.append(chart)
        sections += ["## Parameter importances", "", importance_caption(importances), "", f"![importance]({chart.name})", ""]

    confirmed = study.user_attrs.get("confirmed") or []
    if confirmed:
        rows = [{**c, "name": ("best.yaml: " + c["name"]) if n == 0 else c["name"]} for n, c in enumerate(confirmed)]
        chart = plots.comparison_plot(rows, out / "heldout.png", f"{heading} · held-out split", metric)
        files.append(chart)
        sections += ["## Best config beside the presets (held-out split)", "", f"![held-out]({chart.name})", "",
                     "| config | activations | channels | search % | held-out % |", "| --- | --- | ---: | ---: | ---: |"]
        for row in rows:
            search = "–" if row["search"] is None else f"{100 * row['search']:.1f}"
            sections.append(f"| {row['name']} | {', '.join(row['activations'])} | {row['channels']} | {search} | {100 * row['heldout']:.1f} |")
        sections.append("")
        chosen = matched_configs(confirmed) if matches and task == "correspondence" else []
        if chosen:
            chart, alpha = matches_picture(chosen, dataset, out / "matches.png", f"{heading} · held-out pairs", device)
            files.append(chart)
            sections += ["## Matched keypoints (held-out pairs)", "",
                         f"Each line joins a source keypoint to where the config matches it in the target: green within "
                         f"{alpha:g} × the target box's longer side of the truth (PCK), red beyond.", "",
                         f"![matches]({chart.name})", ""]

    table = out / "trials.csv"
    atomic.write_with(table, lambda temporary: frame.to_csv(temporary, index=False))
    files.append(table)
    sections += ["## Trials", "", f"Every trial with its parameters: [{table.name}]({table.name}).", ""]
    markdown = out / "report.md"
    atomic.write_text(markdown, "\n".join(sections))
    files.insert(0, markdown)
    if html:
        files.append(_html(markdown, out / "report.html"))
    return Report(markdown, files)


MATCH_PAIRS = 3
"""How many held-out pairs the matched-keypoints picture shows."""


def matched_configs(confirmed: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """(column title, config) of best.yaml and the legacy preset (else the first preset) among
    a study's confirmed configs; empty when the study did not record them (older searches)."""
    presets = [c for c in confirmed if c["name"].startswith("preset ")]
    preset = next((c for c in presets if "legacy" in c["name"]), presets[0] if presets else None)
    if not confirmed or preset is None or "config" not in confirmed[0] or "config" not in preset:
        return []
    return [(f"best.yaml ({confirmed[0]['name']})", FeatureConfig.from_dict(confirmed[0]["config"])),
            (preset["name"], FeatureConfig.from_dict(preset["config"]))]


def matches_picture(configs: list[tuple[str, Any]], dataset: str, path: Path, title: str,
                    device: str | None = None, pairs: int = MATCH_PAIRS) -> tuple[Path, float]:
    """Draw each config's matches on the first ``pairs`` held-out pairs of ``dataset``
    (:func:`autosel.plots.matches_plot`); returns the file and the PCK α used for the colours."""
    import torch

    size = configs[0][1].extraction.image_size
    options = {"shapes_size": size if isinstance(size, int) else 64} if dataset == "shapes" else {}
    task = make_task("correspondence", dataset, "heldout", pairs=pairs, **options)
    chosen = task.data.pairs[:pairs]
    alpha = 0.1
    panels: list[list[dict[str, Any]]] = [[] for _ in chosen]
    titles = []
    for name, config in configs:
        extractor = FeatureExtractor(config, device=device)
        maps = dict(enumerate(extract_combined(extractor, task.images, progress=False)))
        predicted = task.predict(chosen, maps)
        hits_total = points_total = 0
        for row, (pair, guess) in enumerate(zip(chosen, predicted)):
            visible = np.asarray(pair.visible, dtype=bool)
            box = pair.target_bbox
            threshold = alpha * max(box[2] - box[0], box[3] - box[1])
            guess = (guess.numpy() if isinstance(guess, torch.Tensor) else np.asarray(guess))[visible]
            truth = np.asarray(pair.target_points)[visible]
            hits = np.linalg.norm(guess - truth, axis=1) <= threshold
            hits_total, points_total = hits_total + int(hits.sum()), points_total + len(hits)
            panels[row].append({"source": read_image(task.images[pair.source]), "target": read_image(task.images[pair.target]),
                                "points": np.asarray(pair.source_points)[visible], "predicted": guess, "hits": hits})
        titles.append(f"{name}: {hits_total}/{points_total} within {alpha:g}")
        del extractor
    return plots.matches_plot(panels, titles, path, title), alpha


PARAMETER_MEANINGS = {"n": "how many activations", "a": "which activation and timestep (`id@t`) fill slot k",
                      "w": "the weight of slot k"}
"""What the study's parameters mean (:func:`autosel.optimise.selection`: ``n``, ``a<k>``, ``w<k>``)."""


def importance_caption(importances: Mapping[str, float]) -> str:
    """The caption of the importance chart, naming only the parameters the study has."""
    present = {name.rstrip("0123456789") for name in importances}
    spelled = "; ".join(f"`{kind}`{'' if kind == 'n' else 'k'}: {meaning}" for kind, meaning in PARAMETER_MEANINGS.items()
                        if kind in present)
    return f"Optuna's default evaluator on the search score ({spelled})."


def _importances(study: optuna.Study) -> dict[str, float]:
    trials = [t for t in completed(study) if t.user_attrs.get("duplicate_of") is None]
    if len(trials) < 4:
        return {}
    try:
        with warnings.catch_warnings():  # it warns that it looks at LOW targets: the score is negated
            warnings.simplefilter("ignore", UserWarning)
            return optuna.importance.get_param_importances(study, target=lambda t: -t.values[0])
    except (RuntimeError, ValueError):  # e.g. no parameter shared by every trial
        return {}


def _html(markdown: Path, path: Path) -> Path:
    """A single HTML file: the Markdown's headings, paragraphs and tables, PNGs inlined."""
    body = []
    lines = markdown.read_text().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{_escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("!["):
            name = re.search(r"\(([^)]+)\)", line).group(1)
            data = base64.b64encode((markdown.parent / name).read_bytes()).decode()
            body.append(f'<p><img alt="{name}" src="data:image/png;base64,{data}"></p>')
        elif line.startswith("|"):
            rows = []
            while index < len(lines) and lines[index].startswith("|"):
                cells = [c.strip() for c in lines[index].strip("|").split("|")]
                if not all(set(c) <= set("-: ") for c in cells):
                    tag = "th" if not rows else "td"
                    rows.append("<tr>" + "".join(f"<{tag}>{_escape(c)}</{tag}>" for c in cells) + "</tr>")
                index += 1
            body.append('<div class="table"><table>' + "".join(rows) + "</table></div>")
            continue
        elif line.strip():
            body.append(f"<p>{_escape(line)}</p>")
        index += 1
    # readable from phone to desktop: images shrink to the page, long selections wrap, a table
    # too wide all the same scrolls by itself instead of the page
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}img{max-width:100%;height:auto}"
             ".table{overflow-x:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
             "code{overflow-wrap:anywhere}")
    atomic.write_text(path, f"<!doctype html><html><head><meta charset='utf-8'>"
                    f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{_escape(lines[0].lstrip('# '))}</title>"
                    f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
    return path


def _escape(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', text)


__all__ = ["Report", "load_study", "study_summaries", "write_report"]

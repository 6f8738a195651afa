"""Benchmark of a whole search, before and after a change, side by side in one run: denoiser
forwards and wall time per stage, on the tiny model (its shipped space) and on an SD1.5-layout
pipeline folder with random weights at 128 px (a small space: see ``SD15_SPACE``).

    python experiments/bench_search.py --before /tmp/base358 [--only tiny|sd15] [--rounds 3]

``--before`` is a checkout of the code to compare with (e.g. ``git worktree add /tmp/base358
358b4c3``); the "after" code is this checkout. Each search runs in its own process, in the
driver (``--workers 0``, so every forward is counted here), with the code's default batch size;
forwards are counted at the capture hook (``Denoiser.capture``'s ``forward_count``) and each
stage (``Search.screen``, ``cache``, ``optimise``, ``confirm``) is timed by wrapping it. The
"after" search of each model is then run again on the same store (a finished search's rerun).
Runs alternate (before, after), ``--rounds`` times on fresh stores, so that a busy machine slows
both alike; the speed-up is reported per round and as the median of the rounds. Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
STAGES = ("screen", "cache", "optimise", "confirm")

SD15_SPACE = {
    "task": "correspondence", "dataset": "shapes", "image_size": 128, "timesteps": [50, 200, 500],
    "candidates": {"include": ["up-level1-*", "up-level2-*"], "exclude": ["*-map"]},
    "proxy": {"pairs": 6, "shapes_size": 128},
    "search": {"top_m": 4, "timesteps_per_candidate": 2, "max_activations": 3, "channel_budget": 3840, "trials": 12,
               "cache_resolution": 16, "cache_dim": 256, "confirm_top": 3},
    "seed": 0,
}

# runs inside the measured process: counts forwards at the capture hook and times each stage
PROBE = r"""
import json, sys, time
import autosel.denoiser as denoiser
import autosel.pipeline as pipeline

counted = {"forwards": 0}
capture = denoiser.Denoiser.capture

def counting(self, *args, **kwargs):
    before = self.forward_count
    try:
        return capture(self, *args, **kwargs)
    finally:
        counted["forwards"] += self.forward_count - before

denoiser.Denoiser.capture = counting
stages = {}

def timed(name):
    method = getattr(pipeline.Search, name)
    def wrapper(self, *args, **kwargs):
        forwards, started = counted["forwards"], time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            stages[name] = {"forwards": counted["forwards"] - forwards, "seconds": time.perf_counter() - started}
    setattr(pipeline.Search, name, wrapper)

for name in ("screen", "cache", "optimise", "confirm"):
    timed(name)
report, sys.argv = sys.argv[1], ["autosel", *sys.argv[2:]]
started = time.perf_counter()
try:
    from autosel.cli import main
    main()
except SystemExit as stop:
    code = stop.code
else:
    code = 0
finally:
    total = time.perf_counter() - started
    with open(report, "w") as handle:
        json.dump({"stages": stages, "forwards": counted["forwards"], "seconds": total, "code": code}, handle)
"""


def search(code: Path, args: list[str], folder: Path) -> dict:
    """One measured ``autosel search ARGS`` with the code of checkout ``code``."""
    report = folder / f"report-{time.monotonic_ns()}.json"
    env = {**os.environ, "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1", "AUTOSEL_CACHE_DIR": str(folder / "cache")}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE, str(report), "search", *args, "--workers", "0", "--no-progress"],
                          cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0 or not report.exists():
        raise SystemExit(f"search with {code} failed:\n{done.stderr[-3000:]}")
    measured = json.loads(report.read_text())
    best = next(Path(folder).rglob("best.yaml"), None)
    measured["wall"] = wall
    # the chosen activations, not how they are written (later code records each one's σ beside t)
    measured["best"] = ([(a["id"], a["timestep"], a.get("weight", 1.0), a.get("post", "none"))
                         for a in yaml.safe_load(best.read_text())["activations"]] if best else None)
    return measured


def models(only: str | None, temp: Path) -> list[tuple[str, list[str]]]:
    chosen = []
    if only in (None, "tiny"):
        chosen.append(("tiny", ["--model", "tiny"]))
    if only in (None, "sd15"):
        sys.path.insert(0, str(HERE))
        from bench_dtype import build_folder

        folder = temp / "sd15-layout"
        build_folder("sd15", folder)
        space = temp / "sd15-layout.yaml"
        space.write_text(yaml.safe_dump({"model": str(folder), **SD15_SPACE}))
        chosen.append(("sd15-layout 128 px", ["--space", str(space)]))
    return chosen


def row(name: str, code: str, measured: dict) -> str:
    cells = []
    for stage in STAGES:
        found = measured["stages"].get(stage)
        cells.append("–" if found is None else f"{found['forwards']} / {found['seconds']:.0f} s")
    return f"| {name} | {code} | " + " | ".join(cells) + f" | {measured['forwards']} | {measured['wall']:.0f} s |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout of the code to compare with")
    parser.add_argument("--only", choices=["tiny", "sd15"])
    parser.add_argument("--rounds", type=int, default=1, help="before/after pairs per model (fresh stores each)")
    args = parser.parse_args()
    after = HERE.parent
    lines = ["| model | code | screen (forwards / s) | cache | optimise | confirm | forwards in all | wall |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    with tempfile.TemporaryDirectory() as temp:
        for name, model_args in models(args.only, Path(temp)):
            speeds = []
            for round_ in range(args.rounds):
                runs = {}
                for code, checkout in (("before", args.before), ("after", after)):
                    folder = Path(temp) / f"{name.split()[0]}-{code}-{round_}"
                    folder.mkdir()
                    runs[code] = search(checkout, model_args, folder)
                    lines.append(row(name, code, runs[code]))
                    print(lines[-1], flush=True)
                speeds.append(runs["before"]["wall"] / runs["after"]["wall"])
            rerun = search(after, model_args, Path(temp) / f"{name.split()[0]}-after-{args.rounds - 1}")
            lines.append(row(name, "after, rerun", rerun))
            same = "the same" if runs["before"]["best"] == runs["after"]["best"] == rerun["best"] else "DIFFERENT"
            rounds = ", ".join(f"{speed:.2f}×" for speed in speeds)
            lines.append(f"| {name} | after vs before | | | | | {runs['before']['forwards']} → {runs['after']['forwards']} "
                         f"| {statistics.median(speeds):.2f}× faster (median; rounds {rounds}); best.yaml activations {same} |")
            print("\n".join(lines[-2:]), flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

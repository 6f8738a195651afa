"""Reports, study listings, the dashboard and quiet output, on a study made in the test."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.request

import numpy as np
import optuna
import pytest
from fixture_data import small_search_space
from needs import free_port
from PIL import Image

from autosel.errors import InvalidInputError
from autosel.optimise.study import open_storage
from autosel.report import write_report

SPACE = small_search_space(trials=10)


@pytest.fixture(scope="module")
def storage(finished_search) -> str:
    """A store holding study 'tiny-correspondence' from a real (small, in-process) search
    (built once per session: the browser tests read it too)."""
    return finished_search


@pytest.mark.slow
def test_the_report_has_real_plots_and_links_only_existing_files(storage, tmp_path):
    report = write_report("tiny-correspondence", storage, tmp_path, html=True)
    names = {path.name for path in report.files}
    assert {"report.md", "screen.png", "history.png", "pareto.png", "heldout.png", "trials.csv", "report.html"} <= names
    for path in report.files:
        if path.suffix == ".png":
            pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
            assert min(pixels.shape) >= 300 and pixels.std() > 15, path.name
    text = report.markdown.read_text()
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links and all((tmp_path / link).is_file() for link in links)
    assert "legacy-tiny" in text and "best.yaml" in text
    assert "data:image/png;base64," in (tmp_path / "report.html").read_text()


@pytest.mark.slow
def test_the_report_shows_matched_keypoints_of_best_yaml_and_the_legacy_preset(storage, tmp_path):
    report = write_report("tiny-correspondence", storage, tmp_path, device="cpu")
    assert tmp_path / "matches.png" in report.files
    text = report.markdown.read_text()
    assert "## Matched keypoints (held-out pairs)" in text and "![matches](matches.png)" in text
    assert "matches.png" not in {p.name for p in write_report("tiny-correspondence", storage, tmp_path / "no", matches=False).files}


def test_an_unknown_study_lists_the_existing_ones(storage, tmp_path):
    with pytest.raises(InvalidInputError, match=r"no study 'tiny-corespondence'.*Did you mean 'tiny-correspondence'.*Studies there: tiny-correspondence"):
        write_report("tiny-corespondence", storage, tmp_path)


def test_an_empty_study_has_nothing_to_report(storage, run_cli, tmp_path):
    optuna.create_study(study_name="empty", storage=open_storage(storage), load_if_exists=True)
    done = run_cli("report", "--study", "empty", "--storage", storage, "--out", str(tmp_path))
    assert done.returncode == 2 and "has no complete trial yet: nothing to report" in done.stderr


def test_studies_lists_the_study_with_its_counts(storage, run_cli):
    done = run_cli("studies", "--storage", storage, "--format", "json")
    assert done.returncode == 0, done.stderr
    record = next(r for r in json.loads(done.stdout) if r["study"] == "tiny-correspondence")
    assert (record["model"], record["task"], record["complete"]) == ("tiny", "correspondence", 10)
    assert 0 < record["best_heldout"] <= 1


@pytest.mark.slow
def test_quiet_prints_nothing_but_errors(storage, run_cli, tmp_path):
    done = run_cli("--quiet", "report", "--study", "tiny-correspondence", "--storage", storage, "--out", str(tmp_path))
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""
    assert (tmp_path / "report.md").is_file()
    failed = run_cli("--quiet", "report", "--study", "nope", "--storage", storage)
    assert failed.returncode == 2 and failed.stdout == "" and failed.stderr.startswith("error: no study 'nope'")


@pytest.mark.slow
def test_the_dashboard_serves_the_study_on_localhost_and_stops_cleanly(storage, autosel_command):
    port = free_port()
    server = subprocess.Popen([*autosel_command, "dashboard", "--storage", storage, "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    answer = None
    try:
        # bounds only against a hang: a loaded 2-core machine may take minutes to import and start it
        deadline = time.time() + 300
        while answer is None and time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=10) as response:
                    answer = json.loads(response.read())
            except OSError:
                assert server.poll() is None, server.stderr.read()
                time.sleep(0.5)
        assert answer is not None and "tiny-correspondence" in json.dumps(answer)
    finally:
        if answer is None:
            server.kill()  # never served: nothing to stop cleanly (the assertion above says why)
        else:
            server.send_signal(signal.SIGINT)
        code = server.wait(timeout=300)
    assert code == 0


@pytest.mark.slow
def test_log_json_reports_each_stage_as_a_json_line(run_cli, tmp_path):
    import yaml

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({**SPACE, "search": {**SPACE["search"], "trials": 3}}))
    done = run_cli("--log-json", "search", "--model", "tiny", "--space", str(space), "--workers", "0",
                   "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    stages = [e["event"] for e in events if e["event"] in {"screen", "cache", "search", "confirm"} and e["message"] != "screen: start"]
    assert events[0]["event"] == "plan" and events[0]["total_forwards"] > 0
    assert stages == ["screen", "cache", "search", "confirm"]
    assert events[-1]["heldout"] > 0 and all(e["level"] == "info" for e in events)

"""Storage URLs are parsed by SQLAlchemy, never pattern-matched: no password reaches a terminal,
a log line or a file, whatever characters it holds."""

from __future__ import annotations

import pytest
from conftest import assert_one_error_line

from autosel.urls import mask_in, mask_url


@pytest.mark.parametrize("url, shown, secret", [
    ("postgresql://alice:pa/ss@127.0.0.1:1/db", "postgresql://alice:***@127.0.0.1:1/db", "pa/ss"),
    ("postgresql://alice:s%40cret@127.0.0.1:1/db", "postgresql://alice:***@127.0.0.1:1/db", "s%40cret"),
    ("mysql+pymysql://root:p:w@127.0.0.1:1/test?charset=utf8", "mysql+pymysql://root:***@127.0.0.1:1/test?charset=utf8", "p:w"),
    ("postgresql://alice:p@ssword@127.0.0.1:1/db", "postgresql://alice:***@127.0.0.1:1/db", "p@ssword"),
])
def test_masking_hides_the_whole_password(url, shown, secret):
    assert mask_url(url) == shown
    assert secret not in mask_in(f"could not connect to {url} as alice with {secret}", url)


def test_urls_without_a_password_are_unchanged():
    assert mask_url("sqlite:////tmp/x/autosel.db") == "sqlite:////tmp/x/autosel.db"
    assert mask_url("postgresql://alice@db.example:5432/studies") == "postgresql://alice@db.example:5432/studies"


@pytest.mark.parametrize("password", ["pa/ss", "pa:ss%2F"])
def test_an_unreachable_store_is_named_without_its_password(cli_main, space_file, tmp_path, password):
    outcome = cli_main("search", "--space", space_file, "--out", tmp_path, "--storage", f"postgresql://alice:{password}@127.0.0.1:1/db")
    line = assert_one_error_line(outcome, "cannot use storage postgresql://alice:***@127.0.0.1:1/db")
    assert password not in line and password not in outcome.stdout


def test_an_unencoded_at_sign_in_a_password_is_refused_without_printing_it(cli_main, space_file, tmp_path):
    outcome = cli_main("sweep", "--space", space_file, "--out", tmp_path, "--storage", "postgresql://alice:p@ssw0rd@127.0.0.1/db")
    line = assert_one_error_line(outcome, "unencoded '@'", "%40")
    assert "ssw0rd" not in line and "p@ss" not in line


def test_a_string_that_is_no_url_is_refused(cli_main, space_file, tmp_path):
    assert_one_error_line(cli_main("sweep", "--space", space_file, "--out", tmp_path, "--storage", "results.db"),
                          "is not a SQLAlchemy URL")


@pytest.mark.slow
def test_files_written_by_a_search_never_hold_the_password(tmp_path, postgres_url):
    """best.yaml, pareto/*.yaml, trials.csv and the log: the password, with a '/' in it, appears nowhere."""
    import logging

    import yaml
    from fixture_data import small_search_space

    import autosel
    from autosel.space import SearchSpace

    secret = "se/cr:et"
    url = postgres_url.replace("://postgres@", f"://postgres:{secret}@")  # trust auth: any password is accepted
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logging.getLogger("autosel").addHandler(handler)
    try:
        space = SearchSpace.from_dict({**small_search_space(trials=3), "search": {**small_search_space()["search"], "trials": 3}})
        run = autosel.RunConfig(storage=url, out=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False)
        outcome = autosel.search(space, run, autosel.Resources(workers=0))
    finally:
        logging.getLogger("autosel").removeHandler(handler)
    written = [path for path in (tmp_path / "out").rglob("*") if path.is_file() and path.suffix in (".yaml", ".csv", ".md")]
    assert outcome.files and any(path.name == "best.yaml" for path in written)
    for path in written:
        assert secret not in path.read_text(), path
    assert yaml.safe_load((outcome.folder / "best.yaml").read_text())["provenance"]["storage"].startswith("postgresql://postgres:***@")
    assert not any(secret in record for record in records)

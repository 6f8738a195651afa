"""Folders autosel must write: probed (created, written, cleaned) before the work they would
receive, so a bad one costs a second, not a screen."""

from __future__ import annotations

from conftest import PRESET, assert_one_error_line


def test_an_output_folder_under_a_file_is_refused_before_the_screen(cli_main, space_file, tmp_path):
    (tmp_path / "a-file").write_text("")
    outcome = cli_main("search", "--space", space_file, "--out", tmp_path / "a-file" / "out")
    assert_one_error_line(outcome, "cannot write the output folder", "--out")


def test_a_cache_folder_that_cannot_be_created_is_refused_before_the_screen(cli_main, space_file, tmp_path):
    (tmp_path / "a-file").write_text("")
    outcome = cli_main("search", "--space", space_file, "--out", tmp_path / "out", "--cache-dir", tmp_path / "a-file" / "cache")
    assert_one_error_line(outcome, "cannot write the activation cache folder", "--cache-dir")
    assert not (tmp_path / "out" / "autosel.db").exists()


def test_extract_refuses_an_existing_folder_as_its_output_file(cli_main, tmp_path):
    (tmp_path / "images").mkdir()
    outcome = cli_main("extract", "--config", PRESET, "--images", tmp_path / "images",
                       "--out", tmp_path)
    assert_one_error_line(outcome, f"--out {tmp_path} is a folder")


def test_probing_leaves_no_file_behind(cli_main, space_file, tmp_path):
    from autosel.runtime.preflight import probe_folder

    probe_folder(tmp_path / "new" / "folder", "output folder", "--out")
    assert list((tmp_path / "new" / "folder").iterdir()) == []

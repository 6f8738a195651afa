"""Malformed SPair-71k annotation fields: one line naming the file and the field."""

from __future__ import annotations

import json

import pytest

from autosel.data.spair import load_spair
from autosel.errors import DatasetError


def corrupt_first_pair(root, change):
    path = sorted((root / "PairAnnotation" / "trn").glob("*.json"))[0]
    record = json.loads(path.read_text())
    path.write_text(json.dumps(change(record)))
    return path


@pytest.mark.parametrize("change, fragment", [
    (lambda record: 42, "must be a JSON object, got int"),
    (lambda record: {**record, "src_imsize": ["wide", 64, 3]}, "src_imsize must be [width, height, 3]"),
    (lambda record: {**record, "trg_bndbox": [1, 2, "x", 4]}, "trg_bndbox must be [x1, y1, x2, y2]"),
    (lambda record: {**record, "trg_bndbox": {"x1": 1}}, "trg_bndbox must be [x1, y1, x2, y2]"),
    (lambda record: {**record, "category": 7}, "category must be a file or folder name"),
    (lambda record: {**record, "src_imname": "../../etc/passwd"}, "src_imname must be a file or folder name"),
    (lambda record: {**record, "src_kps": [["a", "b"]]}, "src_kps must be a list of [x, y] points"),
])
def test_a_malformed_field_names_the_file_and_the_field(spair_root, change, fragment):
    path = corrupt_first_pair(spair_root, change)
    with pytest.raises(DatasetError) as raised:
        load_spair(spair_root, "trn")
    assert fragment in str(raised.value) and path.name in str(raised.value) and "\n" not in str(raised.value)

"""A `{category}` prompt: each image gets its category's prompt, in extract, evaluate and search."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from autosel.config import FeatureConfig
from autosel.errors import InvalidInputError
from autosel.evaluation import extract_combined
from autosel.extract import FeatureExtractor
from autosel.models import load_pipeline
from autosel.screen import run_sweep
from autosel.screen.sweep import base_config
from autosel.space import SearchSpace
from autosel.tasks import make_task

UP = "up-level1-upsampler-out"
TEMPLATE = "a photo of a {category}"


@pytest.fixture(scope="module")
def tiny_pipeline():
    return load_pipeline("tiny")


def config(prompt: str) -> FeatureConfig:
    return FeatureConfig.from_dict(
        {"model": {"name": "tiny"}, "extraction": {"image_size": 64, "prompt": prompt}, "activations": [{"id": UP, "timestep": 261}]}
    )


def images(count=3):
    return torch.rand(count, 3, 48, 64, generator=torch.Generator().manual_seed(0))


def test_each_image_gets_the_features_of_its_category_s_fixed_prompt(tiny_pipeline):
    batch = images()
    filled = FeatureExtractor(config(TEMPLATE), pipeline=tiny_pipeline)(batch, ["cat", "dog", "cat"])[UP]
    cat = FeatureExtractor(config("a photo of a cat"), pipeline=tiny_pipeline)(batch)[UP]
    dog = FeatureExtractor(config("a photo of a dog"), pipeline=tiny_pipeline)(batch)[UP]
    assert not torch.allclose(cat, dog, atol=1e-3)
    torch.testing.assert_close(filled[[0, 2]], cat[[0, 2]], atol=1e-4, rtol=0)  # batch sizes differ: rounding only
    torch.testing.assert_close(filled[1], dog[1], atol=1e-4, rtol=0)


def test_one_category_for_all_images_is_exactly_the_fixed_prompt(tiny_pipeline):
    batch = images()
    filled = FeatureExtractor(config(TEMPLATE), pipeline=tiny_pipeline)(batch, ["cat"] * 3)[UP]
    assert torch.equal(filled, FeatureExtractor(config("a photo of a cat"), pipeline=tiny_pipeline)(batch)[UP])


def test_a_template_without_categories_is_a_one_line_error_naming_the_remedy(tiny_pipeline):
    with pytest.raises(InvalidInputError, match=r"\{category\}.*--category") as caught:
        FeatureExtractor(config(TEMPLATE), pipeline=tiny_pipeline)(images())
    assert "\n" not in str(caught.value)


def test_correspondence_and_segmentation_images_carry_their_dataset_s_categories(spair_root, label_folder):
    spair = make_task("correspondence", f"spair:{spair_root}:test", "search")
    assert spair.image_categories() == [path.parent.name for path in spair.images]
    shapes = make_task("segmentation", "shapes", "search", train_images=2, test_images=2)
    assert set(shapes.image_categories()) <= {"house", "tree", "bottle", "car"}
    folder = make_task("segmentation", f"folder:{label_folder}", "search")
    assert folder.image_categories() == [label_folder.name] * len(folder.images)


def test_evaluate_fills_the_prompt_from_the_spair_categories(tiny_pipeline, spair_root):
    task = make_task("correspondence", f"spair:{spair_root}:test", "search")
    categories = task.image_categories()
    filled = extract_combined(FeatureExtractor(config(TEMPLATE), pipeline=tiny_pipeline), task.images, False, categories)
    for category in set(categories):
        fixed = FeatureExtractor(config(f"a photo of a {category}"), pipeline=tiny_pipeline)
        indices = [i for i, c in enumerate(categories) if c == category]
        expected = extract_combined(fixed, [task.images[i] for i in indices], False)
        for index, value in zip(indices, expected):
            torch.testing.assert_close(filled[index].float(), value.float(), atol=2e-3, rtol=0)  # stored float16


def test_cli_evaluate_with_a_template_on_one_category_scores_as_its_fixed_prompt(run_cli, tmp_path):
    from fixture_data import write_spair

    root = write_spair(tmp_path / "SPair-71k", categories=("house",))
    scores = []
    for prompt in (TEMPLATE, "a photo of a house"):
        path = tmp_path / "config.yaml"
        config(prompt).to_yaml(path)
        done = run_cli("evaluate", "--config", str(path), "--dataset", f"spair:{root}:test", "--format", "json", "--no-progress")
        assert done.returncode == 0, done.stderr
        scores.append(json.loads(done.stdout)["metrics"])
    assert scores[0] == scores[1]


def test_the_search_sweep_uses_the_space_s_template_as_a_separate_evaluation_does(tiny_pipeline, tmp_path):
    from autosel.evaluation import evaluate_config

    space = SearchSpace(model="tiny", image_size=64, timesteps=[261], prompt=TEMPLATE,
                        candidates={"include": [UP], "exclude": []}, proxy={"pairs": 6})
    result = run_sweep(space, out=tmp_path, pipeline=tiny_pipeline, batch_size=8, progress=False, write_files=False)
    chosen = base_config(space, UP, 261)
    assert chosen.extraction.prompt == TEMPLATE
    task = make_task("correspondence", "shapes", "search", **space.task_options())
    separate = evaluate_config(FeatureExtractor(chosen, pipeline=tiny_pipeline, batch_size=8), task, progress=False)
    assert dict(zip(result.rows["metric"], result.rows["value"])) == separate.metrics


def _write_folder(root, layout):
    for index, relative in enumerate(layout):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(index).integers(0, 255, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
    return root


def test_cli_extract_takes_the_category_from_each_image_s_folder(run_cli, tmp_path):
    root = _write_folder(tmp_path / "photos", ["cat/a.png", "cat/b.png", "dog/c.png"])
    template, fixed = tmp_path / "template.yaml", tmp_path / "fixed.yaml"
    config(TEMPLATE).to_yaml(template)
    config("a photo of a cat").to_yaml(fixed)
    assert run_cli("extract", "-c", str(template), "-i", str(root), "-o", str(tmp_path / "t.safetensors")).returncode == 0
    assert run_cli("extract", "-c", str(fixed), "-i", str(root / "cat"), "-o", str(tmp_path / "f.safetensors")).returncode == 0
    by_folder, by_prompt = load_file(tmp_path / "t.safetensors"), load_file(tmp_path / "f.safetensors")
    torch.testing.assert_close(by_folder[f"cat/a.png/{UP}"], by_prompt[f"a.png/{UP}"], atol=1e-4, rtol=0)
    assert not torch.allclose(by_folder[f"dog/c.png/{UP}"], by_prompt[f"a.png/{UP}"], atol=1e-3)


def test_cli_extract_category_option_names_every_image_s_category(run_cli, tmp_path):
    root = _write_folder(tmp_path / "loose", ["a.png", "b.png"])
    template, fixed = tmp_path / "template.yaml", tmp_path / "fixed.yaml"
    config(TEMPLATE).to_yaml(template)
    config("a photo of a cat").to_yaml(fixed)
    done = run_cli("extract", "-c", str(template), "-i", str(root), "-o", str(tmp_path / "t.safetensors"), "--category", "cat")
    assert done.returncode == 0, done.stderr
    assert run_cli("extract", "-c", str(fixed), "-i", str(root), "-o", str(tmp_path / "f.safetensors")).returncode == 0
    assert torch.equal(load_file(tmp_path / "t.safetensors")[f"a.png/{UP}"], load_file(tmp_path / "f.safetensors")[f"a.png/{UP}"])


def test_cli_extract_of_loose_images_with_a_template_is_a_one_line_error(run_cli, tmp_path):
    root = _write_folder(tmp_path / "loose", ["a.png"])
    path = tmp_path / "template.yaml"
    config(TEMPLATE).to_yaml(path)
    done = run_cli("extract", "-c", str(path), "-i", str(root), "-o", str(tmp_path / "t.safetensors"))
    assert done.returncode != 0
    assert "a.png" in done.stderr and "--category" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "t.safetensors").exists()

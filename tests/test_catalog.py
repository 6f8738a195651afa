"""The activation catalogue: the seed codebase's ids, measured shapes, depths, selection."""

from __future__ import annotations

import math

import pytest
import torch

from autosel.capture import ActivationCapture
from autosel.catalog import list_activations, measure_catalogue, select_activations
from autosel.errors import UnknownActivationError
from autosel.models import load_architecture, load_pipeline, resolve_model, shipped_architecture

BLOCK_KINDS = ["self-q", "self-k", "self-v", "self-map", "cross-q", "cross-map", "ffn-inner", "out"]


def seed_ids(down, mid_blocks, up):
    """The seed codebase's id set, written from its naming scheme (independent of discovery).

    ``down``/``up`` list (repeats, transformer blocks per attention, has sampler) per level.
    """
    ids = ["unet-in", "unet-after-conv-in", "unet-out"]

    def pair(prefix, blocks):
        names = [f"{prefix}-res-increment", f"{prefix}-res-out"]
        if blocks:
            vit = prefix + "-vit" if not prefix.startswith("mid") else "mid-vit"
            names += [f"{vit}-block{i}-{kind}" for i in range(blocks) for kind in BLOCK_KINDS] + [f"{vit}-out"]
        return names

    for stage, levels in (("down", down), ("up", up)):
        for level, (repeats, blocks, sampler) in enumerate(levels):
            for repeat in range(repeats):
                ids += pair(f"{stage}-level{level}-repeat{repeat}", blocks)
            if sampler:
                ids.append(f"{stage}-level{level}-{stage}sampler-out")
    ids += pair("mid-repeat0", mid_blocks) + pair("mid-repeat1", 0)
    return set(ids)


SD15_IDS = seed_ids(
    down=[(2, 1, True), (2, 1, True), (2, 1, True), (2, 0, False)],
    mid_blocks=1,
    up=[(3, 0, True), (3, 1, True), (3, 1, True), (3, 1, False)],
)
SDXL_IDS = seed_ids(
    down=[(2, 0, True), (2, 2, True), (2, 10, False)],
    mid_blocks=10,
    up=[(3, 10, True), (3, 2, True), (3, 0, False)],
)


def test_seed_id_sets_have_the_published_sizes():
    assert (len(SD15_IDS), len(SDXL_IDS)) == (197, 612)


@pytest.mark.slow
@pytest.mark.parametrize(("model", "expected"), [("sd15", SD15_IDS), ("sd21", SD15_IDS), ("sdxl", SDXL_IDS), ("sdxl-turbo", SDXL_IDS)])
def test_offline_catalogue_holds_every_seed_id(model, expected):
    ids = {point.id for point in list_activations(model) if not point.extra}
    assert ids == expected


@pytest.mark.parametrize(
    ("activation_id", "shape"),
    [
        ("unet-in", (4, 128, 128)),
        ("down-level0-repeat1-res-out", (320, 128, 128)),
        ("down-level1-downsampler-out", (640, 32, 32)),
        ("down-level2-repeat1-vit-block9-self-k", (1280, 32, 32)),
        ("mid-repeat1-res-out", (1280, 32, 32)),
        ("mid-vit-block0-cross-map", (77, 32, 32)),
        ("mid-vit-out", (1280, 32, 32)),
        ("up-level0-repeat0-vit-block7-out", (1280, 32, 32)),
        ("up-level0-repeat0-vit-block5-self-map", (1024, 32, 32)),
        ("up-level0-upsampler-out", (1280, 64, 64)),
        ("up-level1-repeat0-vit-block0-cross-q", (640, 64, 64)),
        ("up-level1-repeat2-vit-block1-ffn-inner", (2560, 64, 64)),
        ("up-level2-repeat2-res-out", (320, 128, 128)),
        ("unet-out", (4, 128, 128)),
    ],
)
def test_sdxl_points_have_the_published_shapes(activation_id, shape):
    points = {point.id: point for point in list_activations("sdxl")}
    point = points[activation_id]
    assert (point.channels, point.height, point.width) == shape


def test_sd15_up_levels_have_the_published_shapes():
    points = {point.id: point for point in list_activations("sd15")}
    assert (points["up-level1-repeat1-vit-block0-cross-q"].channels, points["up-level1-repeat1-vit-block0-cross-q"].height) == (1280, 16)
    assert (points["up-level2-repeat1-res-out"].channels, points["up-level2-repeat1-res-out"].height) == (640, 32)
    assert (points["up-level3-repeat0-vit-block0-self-k"].channels, points["up-level3-repeat0-vit-block0-self-k"].height) == (320, 64)


def test_non_square_images_give_the_real_latent_grid():
    points = {point.id: point for point in list_activations("sd15", (512, 768))}
    assert (points["up-level3-repeat0-vit-block0-self-k"].height, points["up-level3-repeat0-vit-block0-self-k"].width) == (64, 96)
    assert points["up-level1-repeat0-vit-block0-self-map"].channels == 16 * 24


@pytest.mark.slow
def test_ids_and_shapes_are_stable_across_two_builds():
    architecture = shipped_architecture("sd15")
    first = measure_catalogue(architecture, cache=False)
    second = measure_catalogue(architecture, cache=False)
    assert [p.to_dict() for p in first] == [p.to_dict() for p in second]


@pytest.mark.parametrize("model", ["sd15", "sdxl", "tiny-xl-random"])
def test_depth_grows_along_the_forward_from_zero_to_one(model):
    depths = [point.depth for point in list_activations(model)]
    assert depths == sorted(depths)
    assert depths[0] < 0.01 and depths[-1] == 1.0  # only the time embedding precedes unet-in
    assert len(set(depths)) > len(depths) // 2  # a real measurement, not a handful of steps


def test_up_stage_points_are_deeper_than_down_stage_points():
    points = list_activations("sdxl")
    assert max(p.depth for p in points if p.stage == "down") < min(p.depth for p in points if p.stage == "up")


@pytest.mark.parametrize("model", ["tiny-random", "tiny-xl-random"])
def test_every_point_fires_in_a_real_forward_with_the_announced_shape(model):
    image_size = (64, 96)  # non-square on purpose
    catalogue = list_activations(model, image_size)
    unet = load_pipeline(model).unet
    architecture = load_architecture(resolve_model(model))
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, architecture.latent_channels, *architecture.latent_size(image_size), generator=generator)
    conditioning = architecture.dummy_conditioning(2, device="cpu")
    conditioning["encoder_hidden_states"].normal_(generator=generator)
    with torch.no_grad(), ActivationCapture(unet, {p.id: p.tap for p in catalogue}) as capture:
        features = capture.run(latents, torch.tensor([50]), **conditioning)
    assert list(features) == [p.id for p in catalogue]
    for point in catalogue:
        value = features[point.id]
        assert tuple(value.shape) == (2, point.channels, point.height, point.width), point.id
        assert torch.isfinite(value).all(), point.id


def test_capture_leaves_no_hooks_behind():
    unet = load_pipeline("tiny-random").unet
    catalogue = list_activations("tiny-random")
    with ActivationCapture(unet, {p.id: p.tap for p in catalogue}):
        pass
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in unet.modules())


def test_self_map_rows_are_probability_distributions():
    unet = load_pipeline("tiny-random").unet
    point = next(p for p in list_activations("tiny-random") if p.kind == "self-map")
    conditioning = load_architecture(resolve_model("tiny-random")).dummy_conditioning(1, device="cpu")
    with torch.no_grad(), ActivationCapture(unet, {point.id: point.tap}) as capture:
        attention = capture.run(torch.randn(1, 4, 16, 16), torch.tensor([10]), **conditioning)[point.id]
    # channels are key positions: summing them gives each query position's total attention, 1
    assert torch.allclose(attention.sum(dim=1), torch.ones(1, point.height, point.width), atol=1e-5)
    assert point.channels == point.height * point.width


def test_catalogue_of_a_pipeline_folder_matches_its_builtin_twin(tiny_xl_folder):
    from_folder = [p.to_dict() for p in list_activations(str(tiny_xl_folder))]
    builtin = [p.to_dict() for p in list_activations("tiny-xl-random")]
    assert from_folder == builtin


def test_select_resolves_globs_in_forward_order():
    catalogue = list_activations("sd15")
    chosen = select_activations(catalogue, ["up-level3-repeat0-vit-block0-self-k", "up-level1-*-cross-q"])
    assert [p.id for p in chosen] == [
        "up-level1-repeat0-vit-block0-cross-q",
        "up-level1-repeat1-vit-block0-cross-q",
        "up-level1-repeat2-vit-block0-cross-q",
        "up-level3-repeat0-vit-block0-self-k",
    ]
    assert math.isclose(chosen[-1].depth, max(p.depth for p in chosen))


def test_unknown_id_names_the_closest_ids_and_the_catalog_command():
    with pytest.raises(UnknownActivationError) as caught:
        select_activations(list_activations("sd15"), ["up-level1-repeat1-vit-block0-crossq"], model_name="sd15")
    message = str(caught.value)
    assert "up-level1-repeat1-vit-block0-cross-q" in message
    assert "autosel catalog --model sd15" in message


def test_a_glob_matching_nothing_is_an_error():
    with pytest.raises(UnknownActivationError):
        select_activations(list_activations("tiny"), ["up-level9-*"])

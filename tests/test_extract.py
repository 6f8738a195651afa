"""Feature extraction: exact captures, early exit, determinism, dtypes, aggregation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from autosel.catalog import list_activations
from autosel.config import FeatureConfig
from autosel.errors import UnknownActivationError
from autosel.extract import FeatureExtractor, reduce_pca
from autosel.models import load_pipeline

RES = "down-level0-repeat0-res-out"
SELF_K = "down-level0-repeat0-vit-block0-self-k"
FFN = "down-level0-repeat0-vit-block0-ffn-inner"
UP = "up-level1-repeat1-vit-block0-cross-q"


def config_for(*activations, model="tiny-random", **extraction):
    return FeatureConfig.from_dict(
        {"model": {"name": model}, "extraction": extraction, "activations": [{"id": i, "timestep": t} for i, t in activations]}
    )


def images(count=2, seed=0, size=(72, 80)):
    return torch.rand(count, 3, *size, generator=torch.Generator().manual_seed(seed))


def record_inputs(module):
    seen = {}
    handle = module.register_forward_pre_hook(lambda m, args: seen.setdefault("args", args))
    return seen, handle


def fold(tokens, height, width):
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, height, width)


def test_captures_equal_values_recomputed_by_hand_from_module_inputs():
    extractor = FeatureExtractor(config_for((RES, 50), (SELF_K, 50), (FFN, 50)), device="cpu")
    unet = extractor.unet
    block = unet.down_blocks[0].attentions[0].transformer_blocks[0]
    resnet = unet.down_blocks[0].resnets[0]
    res_seen, h1 = record_inputs(resnet)
    k_seen, h2 = record_inputs(block.attn1.to_k)
    ffn_seen, h3 = record_inputs(block.ff.net[0])
    try:
        features = extractor(images())
    finally:
        for handle in (h1, h2, h3):
            handle.remove()
    height, width = features[RES].shape[-2:]

    x, temb = res_seen["args"]
    hidden = resnet.conv1(F.silu(resnet.norm1(x)))
    hidden = hidden + resnet.time_emb_proj(F.silu(temb))[:, :, None, None]
    hidden = resnet.conv2(F.silu(resnet.norm2(hidden)))
    shortcut = resnet.conv_shortcut(x) if resnet.conv_shortcut is not None else x
    assert torch.allclose(features[RES], (shortcut + hidden) / resnet.output_scale_factor, atol=1e-5)

    (tokens,) = k_seen["args"]
    key = tokens @ block.attn1.to_k.weight.T
    assert torch.allclose(features[SELF_K], fold(key, height, width), atol=1e-5)

    (tokens,) = ffn_seen["args"]
    projected = tokens @ block.ff.net[0].proj.weight.T + block.ff.net[0].proj.bias
    value, gate = projected.chunk(2, dim=-1)
    assert torch.allclose(features[FFN], fold(value * F.gelu(gate), height, width), atol=1e-5)


def test_early_exit_skips_the_rest_of_the_forward_and_changes_nothing():
    calls = []
    early = FeatureExtractor(config_for((SELF_K, 50)), device="cpu", stop_early=True)
    full = FeatureExtractor(config_for((SELF_K, 50)), device="cpu", stop_early=False)
    handle = early.unet.conv_out.register_forward_hook(lambda *_: calls.append("early"))
    handle_full = full.unet.conv_out.register_forward_hook(lambda *_: calls.append("full"))
    try:
        early_features, full_features = early(images()), full(images())
    finally:
        handle.remove()
        handle_full.remove()
    assert calls == ["full"]
    assert torch.equal(early_features[SELF_K], full_features[SELF_K])


def test_same_config_and_seed_give_bitwise_identical_features():
    config = config_for((SELF_K, 50), (UP, 300), ensemble=2)
    first = FeatureExtractor(config, device="cpu")(images())
    second = FeatureExtractor(config, device="cpu")(images())
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_another_seed_gives_other_features():
    first = FeatureExtractor(config_for((UP, 300)), device="cpu")(images())
    other = FeatureExtractor(config_for((UP, 300), noise_seed=1), device="cpu")(images())
    assert not torch.equal(first[UP], other[UP])


def test_features_of_an_image_do_not_depend_on_its_batch():
    extractor = FeatureExtractor(config_for((UP, 300)), device="cpu")
    batch = images(3)
    together = extractor(batch)[UP]
    alone = extractor(batch[2:])[UP]
    assert torch.allclose(together[2:], alone, atol=1e-5)


def test_ensemble_averages_distinct_noise_draws():
    single = FeatureExtractor(config_for((UP, 500)), device="cpu")(images())[UP]
    averaged = FeatureExtractor(config_for((UP, 500), ensemble=4), device="cpu")(images())[UP]
    assert not torch.allclose(single, averaged)
    assert averaged.shape == single.shape


def test_sdxl_like_model_on_non_square_images_matches_the_catalogue():
    ids = ["up-level0-repeat0-vit-block1-out", "up-level1-repeat0-vit-block0-cross-map", "mid-vit-block1-self-q"]
    config = config_for(*[(i, 100) for i in ids], model="tiny-xl-random", image_size=[64, 96], prompt="a red square")
    features = FeatureExtractor(config, device="cpu")(images(2))
    points = {p.id: p for p in list_activations("tiny-xl-random", (64, 96))}
    for name in ids:
        assert tuple(features[name].shape) == (2, points[name].channels, points[name].height, points[name].width)


def test_hooks_and_training_mode_are_restored():
    pipeline = load_pipeline("tiny-random")
    pipeline.unet.train()
    FeatureExtractor(config_for((UP, 50)), pipeline=pipeline, device="cpu")(images(1))
    assert pipeline.unet.training
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in pipeline.unet.modules())


def test_half_precision_denoiser_keeps_the_vae_in_float32():
    config = FeatureConfig.from_dict(
        {"model": {"name": "tiny-random", "dtype": "bfloat16"}, "activations": [{"id": UP, "timestep": 50}]}
    )
    extractor = FeatureExtractor(config, device="cpu")
    features = extractor(images(1))
    assert next(extractor.unet.parameters()).dtype == torch.bfloat16
    assert next(extractor.vae.parameters()).dtype == torch.float32
    assert features[UP].dtype == torch.float32 and torch.isfinite(features[UP]).all()


def test_unknown_id_is_refused_before_any_work():
    with pytest.raises(UnknownActivationError, match="Closest ids"):
        FeatureExtractor(config_for(("up-level1-repeat1-vit-block0-crossq", 50)), device="cpu")


def test_paths_and_pil_images_give_the_same_features(tmp_path):
    from PIL import Image

    array = (images(1)[0].permute(1, 2, 0).numpy() * 255).astype("uint8")
    Image.fromarray(array).save(tmp_path / "a.png")
    extractor = FeatureExtractor(config_for((UP, 50)), device="cpu")
    from_path = extractor([tmp_path / "a.png"])[UP]
    from_pil = extractor(Image.fromarray(array))[UP]
    assert torch.equal(from_path, from_pil)


def test_concat_aggregation_stacks_normalised_maps_at_the_largest_resolution():
    config = FeatureConfig.from_dict(
        {"model": {"name": "tiny-random"}, "activations": [{"id": RES, "timestep": 50}, {"id": UP, "timestep": 50, "weight": 2.0}]}
    )
    extractor = FeatureExtractor(config, device="cpu")
    features = extractor(images())
    combined = extractor.combine(features)
    assert combined.shape == (2, features[RES].shape[1] + features[UP].shape[1], *features[RES].shape[-2:])
    norms = combined[:, features[RES].shape[1]:].norm(dim=1)
    assert torch.allclose(norms, torch.full_like(norms, 2.0), atol=1e-4)


def test_weighted_sum_of_different_widths_is_a_clear_error():
    config = FeatureConfig.from_dict(
        {"model": {"name": "tiny-random"}, "aggregation": {"combine": "weighted-sum"},
         "activations": [{"id": RES, "timestep": 50}, {"id": UP, "timestep": 50}]}
    )
    extractor = FeatureExtractor(config, device="cpu")
    with pytest.raises(ValueError, match="weighted-sum needs equal channel counts"):
        extractor.combine(extractor(images()))


def test_pca_keeps_the_leading_components_in_order():
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(2, 6, 5, 5, generator=generator) * torch.tensor([5.0, 3, 1, 0.5, 0.2, 0.1]).view(1, 6, 1, 1)
    reduced = reduce_pca(maps, 3)
    variances = reduced.permute(1, 0, 2, 3).reshape(3, -1).var(dim=1)
    assert reduced.shape == (2, 3, 5, 5)
    assert variances[0] > variances[1] > variances[2]
    assert torch.equal(reduced, reduce_pca(maps, 3))


def test_images_are_batched_in_order_with_a_shorter_last_batch():
    from autosel.images import batches

    assert batches(["a", "b", "c", "d", "e"], 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert batches([], 3) == [] and batches(["a"], 8) == [["a"]]

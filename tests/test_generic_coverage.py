"""What the generic path needed to take more of the installed diffusers' image transformers,
each behaviour shown on a small pipeline (the coverage experiment's own small setups, or a
unit of the shape-only forward), with no code branching on a model, pipeline or class name."""

from __future__ import annotations

import inspect

import pytest
import torch
from experiments_loader import load_experiment

from autosel.catalog import forward_flops, list_activations
from autosel.errors import InvalidInputError, UnsupportedModelError
from autosel.models.calls import CallRecorder, LatentLayout, vae_latent_geometry
from autosel.models.families import Architecture
from autosel.models.families.generic import RealOnMeta, block_lists
from autosel.models.tiny import build_tiny_pipeline


@pytest.fixture(scope="module")
def coverage():
    """The coverage experiment (its small setups and ``try_class``)."""
    return load_experiment("diffusers_coverage")


def small(coverage, class_name: str):
    return coverage.build(class_name, coverage.SETUPS[class_name])


def shifted(fraction: float, shift: float) -> float:
    return shift * fraction / (1 + (shift - 1) * fraction)


# -- pipelines whose __call__ takes no sigmas ----------------------------------------------


def test_flow_pipeline_without_sigmas_gets_the_scheduler_shift_of_t(coverage):
    pipeline = small(coverage, "ErnieImageTransformer2DModel")  # builds its own schedule: no `sigmas`
    assert "sigmas" not in inspect.signature(pipeline.__call__).parameters
    recorder = CallRecorder(pipeline)
    shift = float(pipeline.scheduler.config.shift)
    sigmas = [recorder.call("", (64, 64), t).sigma for t in (250, 500, 750)]
    assert sigmas == sorted(sigmas) and len(set(sigmas)) == 3
    assert sigmas == pytest.approx([shifted(t / 1000, shift) for t in (250, 500, 750)], abs=1e-6)
    timestep = recorder.call("", (64, 64), 500).timestep_input(1, "cpu")
    assert float(timestep) == pytest.approx(1000 * sigmas[1], rel=1e-5)  # its denoiser is told σ·1000
    assert "set_timesteps" not in vars(pipeline.scheduler)  # the scheduler's own method again


def test_flow_pipeline_without_sigmas_keeps_its_resolution_dependent_shift(coverage):
    pipeline = small(coverage, "BriaTransformer2DModel")  # dynamic shifting: mu from the image size
    recorder = CallRecorder(pipeline)
    sigmas = [recorder.call("", (64, 64), t).sigma for t in (100, 500, 900)]
    assert 0 < sigmas[0] < sigmas[1] < sigmas[2] < 1
    assert sigmas[1] != pytest.approx(0.5)  # the shift was applied


def test_pipeline_whose_per_step_inputs_need_its_steps_records_at_its_default_steps(coverage):
    pipeline = small(coverage, "Ideogram4Transformer2DModel")  # a guidance schedule of 48 steps
    recorder = CallRecorder(pipeline)
    sigmas = [recorder.call("", (64, 64), t).sigma for t in (250, 750)]
    shift = float(pipeline.scheduler.config.shift)
    assert sigmas == pytest.approx([shifted(0.25, shift), shifted(0.75, shift)], abs=1e-6)


def test_image_tokens_beside_fixed_rows_are_told_by_the_pipelines_noise_draw(coverage):
    pipeline = small(coverage, "Ideogram4Transformer2DModel")  # text padding, then the image tokens
    recorded = CallRecorder(pipeline).call("", (64, 64), 500)
    layout = recorded.layout
    assert layout.kind == "tokens" and layout.fixed is not None and layout.fixed_first
    value = recorded.arguments[recorded.latent]
    latents = torch.randn(3, 32, 16, 16)
    packed = layout.pack(latents)
    assert packed.shape == (3, *value.shape[1:])
    assert torch.equal(packed[:, : layout.fixed.shape[1]], layout.fixed.expand(3, -1, -1))


# -- the VAE's own factor, and latents folded into channels --------------------------------


def test_vae_factor_is_measured_where_the_pipeline_folds_packing_into_its_own(coverage):
    pipeline = small(coverage, "BriaTransformer2DModel")
    assert pipeline.vae_scale_factor == 16  # 2 ** len(block_out_channels): the VAE's 8 × its 2×2 packing
    assert vae_latent_geometry(pipeline.vae) == (8, 16)
    recorder = CallRecorder(pipeline)
    assert recorder.vae_scale_factor == 8
    recorded = recorder.call("", (64, 64), 500)
    assert (recorded.layout.kind, recorded.layout.patch) == ("tokens", 2)
    assert recorder.latent_channels((64, 64)) == 16


def test_latent_folded_into_channels_is_packed_as_the_pipeline_patchifies():
    latents = torch.randn(2, 32, 16, 16)
    layout = LatentLayout.infer(torch.zeros(1, 128, 8, 8), 32, (16, 16), "hidden_states")
    assert (layout.kind, layout.patch) == ("unshuffle", 2)
    b, c, h, w = latents.shape  # diffusers' _patchify_latents
    expected = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)
    assert torch.equal(layout.pack(latents), expected)


# -- pipelines with no prompt, or that choose the size --------------------------------------


def test_required_call_parameters_are_filled_and_a_latent_at_the_pipelines_size_is_taken_as_is(coverage):
    pipeline = small(coverage, "DiTTransformer2DModel")  # class_labels required, no height/width
    recorder = CallRecorder(pipeline)
    recorded = recorder.call("", (64, 64))
    assert recorded.arguments[recorded.latent].shape[-2:] == (16, 16)  # the transformer's sample_size
    assert recorded.layout.kind == "image" and recorder.latent_channels((64, 64)) == 4
    labels = recorded.arguments["class_labels"]
    assert labels.tolist() == [0]
    args, kwargs = recorded.replay(torch.randn(2, 4, 8, 8), torch.full((2,), 500))
    bound = inspect.signature(pipeline.transformer.forward).bind(*args, **kwargs).arguments
    assert bound[recorded.latent].shape == (2, 4, 8, 8) and bound["class_labels"].shape == (2,)


def test_list_of_per_layer_text_states_grows_with_the_batch(coverage):
    pipeline = small(coverage, "BriaFiboTransformer2DModel")  # text_encoder_layers: a list of B×T×D
    recorded = CallRecorder(pipeline).call("", (64, 64), 500)
    assert any(name.startswith("text_encoder_layers[") for name in recorded.batched)
    args, kwargs = recorded.replay(torch.randn(3, 16, 4, 4), torch.full((3,), 500.0))
    layers = inspect.signature(pipeline.transformer.forward).bind(*args, **kwargs).arguments["text_encoder_layers"]
    assert len(layers) == len(recorded.arguments["text_encoder_layers"]) and all(len(layer) == 3 for layer in layers)


# -- shape-only forwards on the meta device ------------------------------------------------


def test_meta_tensor_selected_by_a_real_mask_gets_the_masks_count():
    mask = torch.tensor([[True, False, True, True], [False, False, True, False]])
    with RealOnMeta():
        tokens = torch.empty(2, 4, 8, device="meta")
        assert tokens[mask].shape == (4, 8) and tokens[~mask].shape == (4, 8)
        assert tokens.masked_select(mask.unsqueeze(-1)).shape == (32,)


def test_autocast_on_the_meta_device_runs_in_a_shape_only_forward():
    with RealOnMeta():
        positions = torch.empty(2, 5, device="meta")
        with torch.autocast(device_type=positions.device.type, enabled=False):
            assert (positions @ torch.empty(5, 3, device="meta")).shape == (2, 3)
    assert torch.autocast is torch.amp.autocast_mode.autocast  # restored


def test_expert_routing_counts_on_the_meta_device_send_every_token_to_one_expert():
    with RealOnMeta():
        choice = torch.empty(10, dtype=torch.long, device="meta")
        counts = choice.bincount()
        assert not counts.is_meta and counts.tolist() == [10]
        assert torch.bincount(choice, minlength=4).tolist() == [10, 0, 0, 0]


def test_numbers_a_denoiser_makes_on_the_meta_device_stay_readable():
    with RealOnMeta():
        tokens = torch.empty(2, 40, 12, device="meta")
        sizes = torch.tensor([4, 6], device=tokens.device).unsqueeze(0).repeat(2, 1)
        assert not sizes.is_meta
        height, width = sizes[0]
        grid = tokens[0, : height * width].reshape(1, height, width, -1)
        assert grid.shape == (1, 4, 6, 12) and grid.is_meta


# -- end to end: record, discover, capture -------------------------------------------------


# -- discovery and the catalogue ------------------------------------------------------------


def _generic(pipeline):
    config = {**pipeline.transformer.config, "_class_name": type(pipeline.transformer).__name__}
    return Architecture.from_config(config, source="a small pipeline").bind_pipeline(lambda: pipeline)


def test_a_denoiser_that_takes_square_latents_only_is_catalogued_square_and_refuses_other_sizes(coverage):
    architecture = _generic(small(coverage, "DiTTransformer2DModel"))  # its unpatchify takes squares only
    outs = [point.id for point in list_activations(architecture, 64) if point.kind == "vit-block-out"]
    assert outs == [f"vit-block{i}-out" for i in range(len(outs))] and outs
    with pytest.raises(InvalidInputError, match="takes square images only") as caught:
        list_activations(architecture, (64, 96))
    assert "\n" not in str(caught.value)


def test_blocks_whose_attention_projection_is_named_after_qkv_are_found():
    class Attention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.img_qkv_proj = torch.nn.Linear(8, 24)

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = Attention()

    denoiser = torch.nn.Module()
    denoiser.blocks = torch.nn.ModuleList([Block(), Block()])
    assert [path for path, _ in block_lists(denoiser)] == ["blocks"]


def test_the_flops_of_a_generic_model_are_counted_before_its_catalogue_is_measured(coverage):
    name = "BriaFibo2Transformer2DModel"  # its attention has no inner_dim: counted by its query width
    assert forward_flops(_generic(small(coverage, name)), coverage.SETUPS[name].image_size) > 0


def test_a_pipeline_call_that_fails_is_one_line_naming_the_pipeline():
    pipeline = build_tiny_pipeline("tiny-chroma-random")

    def broken(*args, **kwargs):
        raise ValueError("the text encoder is missing\nsecond line")

    pipeline.encode_prompt = broken
    with pytest.raises(UnsupportedModelError) as caught:
        CallRecorder(pipeline).call("", (64, 64), 500)
    assert str(caught.value) == (
        "ChromaPipeline.__call__ failed before its transformer was called: ValueError: the text encoder is missing"
    )


# -- end to end ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("class_name", [
    "BriaTransformer2DModel",  # no sigmas; VAE factor ≠ the pipeline's
    "BriaFiboTransformer2DModel",  # no sigmas; a list of per-layer text states
    "HunyuanImageTransformer2DModel",  # boolean-mask indexing in the meta probe
    "Ideogram4Transformer2DModel",  # default steps; fixed rows before the image tokens
    "DiTTransformer2DModel",  # class labels, no size, square latents only
    "HiDreamImageTransformer2DModel",  # rescales the size; experts routed by data; square probes
    "BriaFibo2Transformer2DModel",  # an attention without inner_dim
    "PRXTransformer2DModel",  # a fused projection named img_qkv_proj (prompts cleaned with ftfy)
])
def test_generic_path_records_discovers_and_captures(coverage, class_name):
    result = coverage.try_class(class_name)
    assert result["status"] == "works", result["reason"]

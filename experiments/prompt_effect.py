"""What a per-category prompt changes on `tiny`: PCK@0.1 (target bbox, per point) on the 200
held-out shapes pairs under both correspondence protocols (autosel's default and dift), and
segmentation mIoU on the held-out shapes images, with the empty prompt, DIFT's "a photo of a
{category}" and (autosel protocol) tiny's own training prompt "a {category}", for the tiny
model's best.yaml and its best single activation (segmentation: the single activation).

Run: python experiments/prompt_effect.py   (about 25 minutes on 2 busy CPU cores)
"""

from __future__ import annotations

import sys
from pathlib import Path

from autosel.config import FeatureConfig
from autosel.evaluation import evaluate_config
from autosel.extract import FeatureExtractor
from autosel.protocols import get_protocol
from autosel.tasks import make_task

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "best.yaml (searched)": FeatureConfig.from_yaml(ROOT / "results" / "tiny" / "correspondence" / "best.yaml"),
    "best single: up-level1-repeat0-res-increment@50": FeatureConfig.from_dict(
        {"model": {"name": "tiny"}, "extraction": {"image_size": 64},
         "activations": [{"id": "up-level1-repeat0-res-increment", "timestep": 50}]}),
}
PROMPTS = {"empty": "", "DIFT's": "a photo of a {category}", "tiny's training": "a {category}"}


def with_prompt(config: FeatureConfig, prompt: str) -> FeatureConfig:
    return config.replace(extraction={**config.extraction.model_dump(), "prompt": prompt})


def main() -> None:
    tasks = {
        "autosel": make_task("correspondence", "shapes", "heldout", pairs=200, query=get_protocol("autosel").query),
        "dift": make_task("correspondence", "shapes", "heldout", pairs=200, query=get_protocol("dift").query),
        "segmentation": make_task("segmentation", "shapes", "heldout"),
    }
    columns = [("autosel", prompt) for prompt in PROMPTS] + [(task, prompt) for task in ("dift", "segmentation")
                                                              for prompt in ("empty", "DIFT's")]
    print("| config | " + " | ".join(f"{task}: {prompt}" for task, prompt in columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for label, config in CONFIGS.items():
        cells = []
        for task_name, prompt_name in columns:
            if task_name == "segmentation" and label.startswith("best.yaml"):
                cells.append("")
                continue
            changed = with_prompt(config, PROMPTS[prompt_name])
            if task_name == "dift":  # the protocol's normalisation, with the prompt of this column
                changed = with_prompt(get_protocol("dift").apply(changed), PROMPTS[prompt_name])
            result = evaluate_config(FeatureExtractor(changed, batch_size=16), tasks[task_name], progress=False)
            cells.append(f"{100 * result.value:.1f}")
            print(f"  {label} / {task_name} / {prompt_name}: {cells[-1]}", file=sys.stderr, flush=True)
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\ncorrespondence: {tasks['autosel'].data.name}, {len(tasks['autosel'].data.pairs)} pairs, PCK@0.1 target bbox, "
          f"per point; segmentation: {tasks['segmentation'].data.name}, mIoU")


if __name__ == "__main__":
    main()

"""Prompt templates: ``extraction.prompt`` may name each image's category as ``{category}``.

DIFT prompts every SPair image with "a photo of a {category}"; a config holding that template
gets, per image, the prompt with the category filled in: the dataset's category for the
correspondence and segmentation tasks, the image's parent folder name (torchvision's
ImageFolder convention) or ``--category`` for ``autosel extract``. A prompt without the
placeholder is the same for every image, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

from autosel.errors import InvalidInputError

PLACEHOLDER = "{category}"
DIFT_PROMPT = "a photo of a {category}"
"""DIFT's prompt (its SPair evaluation, ``eval_spair.py``'s ``prompt = f'a photo of a {cat}'``)."""


def is_template(prompt: str) -> bool:
    """Whether ``prompt`` names the image's category (``{category}``)."""
    return PLACEHOLDER in prompt


def fill_prompt(prompt: str, category: str | None) -> str:
    """``prompt`` with ``{category}`` replaced by ``category`` (a plain prompt as it is).

    Raises:
        InvalidInputError: a template and no category (one line: how to give one).
    """
    if not is_template(prompt):
        return prompt
    if not category:
        raise InvalidInputError(
            f"extraction.prompt {prompt!r} names {PLACEHOLDER} but no category is known for this image: give "
            "images in category folders (ImageFolder layout), pass --category NAME, or use a dataset with categories "
            "(shapes, spair:PATH, folder:PATH)"
        )
    return prompt.replace(PLACEHOLDER, category)


def image_prompts(prompt: str, count: int, categories: Sequence[str | None] | None) -> list[str]:
    """The prompt of each of ``count`` images (``categories`` in the same order, or ``None``).

    Raises:
        InvalidInputError: a template with no category for some image, or a category list of
            the wrong length.
    """
    if categories is None:
        categories = [None] * count
    if len(categories) != count:
        raise ValueError(f"{len(categories)} categories for {count} images")
    return [fill_prompt(prompt, category) for category in categories]

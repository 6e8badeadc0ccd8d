"""Reading the image files of an ImageFolder data set: one clear error naming a file that cannot be
decoded (real ImageNet copies hold a few truncated or corrupt JPEGs), an opt-in scan that finds
them all before training, and timm's RandAugment made safe for the installed Pillow."""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from timm.data import auto_augment

log = logging.getLogger(__name__)

HOW_TO_FIX = "remove or replace it (data.verify=true lists every such file before training)"


class BadImageError(ValueError):
    """An image file that cannot be decoded. A ValueError: the entry points print it as one line."""


def load_image(path: str) -> Image.Image:
    """ImageFolder's loader (PIL, RGB), raising `BadImageError` naming the file."""
    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise BadImageError(f"{path}: cannot decode the image ({type(e).__name__}: {e}); {HOW_TO_FIX}") from None


def bad_image_message(error: BaseException) -> str:
    """The one line of a `BadImageError`, also when a loader worker re-raised it inside a traceback."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    last = lines[-1] if lines else str(error)
    return last.split("BadImageError: ", 1)[-1]


def _decode(path: str) -> str | None:
    try:
        load_image(path).load()
        return None
    except BadImageError as e:
        return str(e)


def verify_images(paths: Sequence[str], workers: int) -> None:
    """Decode every file (in `workers` processes); raise one ValueError listing the bad ones."""
    log.info("data.verify: decoding %d images with %d processes", len(paths), max(1, workers))
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            problems = [p for p in pool.imap(_decode, paths, chunksize=64) if p]
    else:
        problems = [p for p in map(_decode, paths) if p]
    if problems:
        shown = "; ".join(p.split(": cannot decode", 1)[0] for p in problems[:5])
        raise ValueError(f"data.verify: {len(problems)} of {len(paths):,} images cannot be decoded ({shown}"
                         f"{', ...' if len(problems) > 5 else ''}); remove or replace them. First: {problems[0]}")


def _posterize(img: Image.Image, bits_to_keep: int, **kw) -> Image.Image:
    """timm's posterize for any bit count its magnitudes produce. With magnitude noise (`mstd`) timm's
    `PosterizeIncreasing` reaches 0 bits, which Pillow >= 13 refuses ("bits must be between or equal
    to 1 and 8"); 0 bits keep nothing, as older Pillow did: a black image."""
    if bits_to_keep < 1:
        return Image.new(img.mode, img.size)
    return auto_augment.posterize(img, min(8, int(bits_to_keep)), **kw)


def register_safe_posterize() -> None:
    """Replace the posterize ops in timm's augmentation registry (`NAME_TO_OP`), which every
    RandAugment / AutoAugment op built afterwards looks up."""
    for name in ("Posterize", "PosterizeIncreasing", "PosterizeOriginal"):
        auto_augment.NAME_TO_OP[name] = _posterize


def image_files(root: Path) -> list[str]:
    from torchvision.datasets import ImageFolder

    return [path for path, _ in ImageFolder(str(root), loader=load_image).samples]

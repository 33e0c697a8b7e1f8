"""What counts as an image file, for every reader that lists a folder (ImageFolder
classification, YOLO txt detection, ``predict.py source=FOLDER``)."""

from __future__ import annotations

from pathlib import Path

# the formats PIL and torchvision.io decode without extra codecs
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def image_files(source: str | Path) -> list[Path]:
    """``predict.py source=``: one image file, or the image files of a folder in name
    order; a missing path or a folder without images is a one-line ``UserError``."""
    from zoo.errors import UserError

    src = Path(source).expanduser()
    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    elif src.is_file():
        files = [src]
    else:
        raise UserError(f"source {src} is neither an image nor a folder")
    if not files:
        raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {src}")
    return files

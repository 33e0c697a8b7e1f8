"""What counts as an image file, for every reader that lists a folder (ImageFolder
classification, YOLO txt detection, ``predict.py source=FOLDER``)."""

from __future__ import annotations

# the formats PIL and torchvision.io decode without extra codecs
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

"""Labelled images for training and evaluation, loaded into memory as uint8 RGB.

Three layouts:
- a folder of images + a CSV ``image,mos[,scene]`` (the development set's format);
- the LDCTIQAC2023 layout: a folder of images + a JSON ``{file: score}`` (scores are rescaled
  from their 0-4 scale only if they are not already on it);
- volumes: a CSV ``ct,pet,rgb,slice,mos[,scene]`` whose slices go through the engine's
  rendering, exactly as ``assess`` renders them.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from ..errors import InputError


@dataclass
class Sample:
    name: str
    image: np.ndarray  # (H, W, 3) uint8
    mos: float
    scene: str
    jpeg_q: int = 0  # first entry of the luminance quantisation table, 0 if not a JPEG


def _read_rgb(path: Path) -> tuple[np.ndarray, int]:
    try:
        with Image.open(path) as im:
            q = int(im.quantization[0][0]) if getattr(im, "quantization", None) else 0
            return np.asarray(im.convert("RGB")), q
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read training image {path}: {e}") from None


def best_of_each_scene(samples: Iterable[Sample], k: int = 1) -> list[Sample]:
    """The ``k`` best-rated pictures of each scene, best first (the first of equals first), scenes in
    the order they come."""
    by_scene: dict[str, list[Sample]] = {}
    for s in samples:
        by_scene.setdefault(s.scene, []).append(s)
    return [s for group in by_scene.values() for s in sorted(group, key=lambda s: -s.mos)[:k]]  # sorted is stable


def load_labelled_folder(images_dir: str | Path, labels_csv: str | Path) -> list[Sample]:
    images_dir, labels_csv = Path(images_dir), Path(labels_csv)
    if not labels_csv.is_file():
        raise InputError(f"labels file {labels_csv} not found (expected columns image,mos[,scene]).")
    with open(labels_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"image", "mos"} <= set(rows[0]):
        raise InputError(f"{labels_csv} needs a header with at least the columns image,mos (and optionally scene).")
    out = []
    for r in rows:
        img, q = _read_rgb(images_dir / r["image"])
        out.append(Sample(r["image"], img, float(r["mos"]), r.get("scene") or r["image"], q))
    return out


def load_ldct_layout(images_dir: str | Path, scores_json: str | Path) -> list[Sample]:
    scores = json.loads(Path(scores_json).read_text())
    out = []
    for name, score in sorted(scores.items()):
        img, q = _read_rgb(Path(images_dir) / name)  # grey files come back as RGB
        out.append(Sample(name, img, float(score), name, q))
    return out


def load_volume_table(table_csv: str | Path) -> list[Sample]:
    from ..render import SliceRenderer

    base = Path(table_csv).parent
    with open(table_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    renderers: dict[tuple, SliceRenderer] = {}
    out = []
    for r in rows:
        key = tuple((base / r[c]) if r.get(c) else None for c in ("ct", "pet", "rgb"))
        if key not in renderers:
            renderers[key] = SliceRenderer(*key)
        k = int(r["slice"])
        out.append(Sample(f"{key}:{k}", renderers[key].render(k, k + 1)[0], float(r["mos"]), r.get("scene") or str(key)))
    return out


def load_dataset(path: str | Path, labels: str | Path | None = None) -> list[Sample]:
    """Pick the layout from what is given: (folder, .csv), (folder, .json) or a volume table .csv."""
    path = Path(path)
    if labels is None:
        if path.suffix == ".csv":
            return load_volume_table(path)
        raise InputError(f"{path}: give a labels CSV/JSON beside the images folder, or a volume table CSV.")
    labels = Path(labels)
    if labels.suffix == ".json":
        return load_ldct_layout(path, labels)
    return load_labelled_folder(path, labels)

"""Reading back the result set ``msiqa assess`` writes (scores.csv, heatmap.nrrd, summary.json)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .causes import CAUSES
from .errors import MSIQAError
from .results import Assessment, Geometry


def read_result_dir(folder: str | os.PathLike) -> Assessment:
    """The :class:`Assessment` a result folder holds: scores by slice, the heatmap on its own
    geometry, threshold, rendering and model from the summary."""
    folder = Path(folder)
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        with open(folder / "scores.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        heatmap = sitk.ReadImage(str(folder / "heatmap.nrrd"))
    except (OSError, ValueError, RuntimeError) as e:  # RuntimeError: SimpleITK
        raise MSIQAError(f"the result set in {folder} cannot be read back ({e}).") from None
    heat = sitk.GetArrayFromImage(heatmap).astype(np.float32, copy=False)
    slices = [int(row["slice"]) for row in rows]
    if slices != list(range(heat.shape[0])) or int(summary.get("slices", -1)) != heat.shape[0]:
        raise MSIQAError(f"the result set in {folder} is inconsistent: {len(rows)} scores, "
                         f"{heat.shape[0]} heatmap slices, summary says {summary.get('slices')}.")
    cause_names, cause_probs = _causes(rows)
    return Assessment(
        scores=np.array([float(row["score"]) for row in rows], dtype=np.float32),
        heatmap=heat,
        geometry=Geometry.of(heatmap),
        threshold=float(summary["threshold"]),
        cause_names=cause_names,
        cause_probs=cause_probs,
        rendering=summary.get("rendering", {}),
        model=summary.get("model", {}),
        complete=bool(summary.get("complete", True)),
    )


def _causes(rows: list[dict[str, str]]) -> tuple[tuple[str, ...], np.ndarray | None]:
    """Cause probabilities that give back each slice's named cause and its confidence, the two
    figures scores.csv keeps (the rest of the distribution is not in the result set: it is
    spread evenly over the other causes). No causes named: none."""
    named = [row.get("cause") or "" for row in rows]
    if not any(named):
        return (), None
    names = CAUSES if set(named) - {""} <= set(CAUSES) else tuple(sorted(set(named) - {""}))
    probs = np.zeros((len(rows), len(names)), dtype=np.float32)
    for k, (cause, row) in enumerate(zip(named, rows)):
        if not cause:
            continue
        confidence = float(row.get("cause_confidence") or 1.0)
        probs[k] = (1.0 - confidence) / max(len(names) - 1, 1)
        probs[k, names.index(cause)] = confidence
    return names, probs

"""Agreement with radiologists: PLCC, SROCC, KROCC and the within-scene SROCC."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np
from scipy import stats


def correlations(pred: Sequence[float], mos: Sequence[float], scenes: Sequence[str] | None = None) -> dict[str, float]:
    pred, mos = np.asarray(pred, float), np.asarray(mos, float)
    if pred.size < 3 or np.ptp(pred) == 0 or np.ptp(mos) == 0:
        raise ValueError("need at least 3 samples with varying predictions and scores to correlate")
    plcc = float(stats.pearsonr(pred, mos)[0])
    srocc = float(stats.spearmanr(pred, mos)[0])
    krocc = float(stats.kendalltau(pred, mos)[0])
    out = {"plcc": plcc, "srocc": srocc, "krocc": krocc, "sum": plcc + srocc + krocc, "n": int(pred.size)}
    if scenes is not None:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(scenes):
            groups[s].append(i)
        within = [
            stats.spearmanr(pred[idx], mos[idx])[0]
            for idx in groups.values()
            if len(idx) >= 3 and np.ptp(pred[idx]) > 0 and np.ptp(mos[idx]) > 0
        ]
        out["within_scene_srocc"] = float(np.mean(within)) if within else float("nan")
        out["scenes"] = len(groups)
    return out

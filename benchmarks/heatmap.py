"""Heatmap faithfulness: does the attention map point at a local degradation?

For each of N trials: take the best-rated version of a random development scene, paste a
strong local degradation (JPEG quality 5, or heavy noise with impulse pixels) into one
random 128x128 region inside the body, and score it with the bundled model. A hit is a
heatmap peak inside the region. Also counts how often the image score drops.

    python benchmarks/heatmap.py --data ../shared/petct-iqa-dev --trials 200
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "MSIQA"))

from msiqa.assess import Scorer  # noqa: E402
from msiqa.training.datasets import load_labelled_folder  # noqa: E402
from msiqa.training.degrade import degrade  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/petct-iqa-dev"))
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--model", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from msiqa.weights import load_model

    scorer = Scorer(load_model(args.model), "auto")
    samples = load_labelled_folder(Path(args.data) / "images", Path(args.data) / "labels.csv")
    best = {}
    for s in samples:
        if s.scene not in best or s.mos > best[s.scene].mos:
            best[s.scene] = s
    clean = sorted(best.values(), key=lambda s: s.scene)
    base_scores = {s.scene: float(scorer(s.image[None])[0][0]) for s in clean}

    rng = np.random.default_rng(args.seed)
    hits = drops = 0
    per_kind = {"jpeg8": [0, 0], "noise+impulse": [0, 0]}
    for t in range(args.trials):
        s = clean[int(rng.integers(len(clean)))]
        img = s.image
        body = img.max(-1) > 12
        for _ in range(50):
            y, x = (int(v) for v in rng.integers(0, 512 - 128, size=2))
            if body[y : y + 128, x : x + 128].mean() > 0.8:
                break
        region = (slice(y, y + 128), slice(x, x + 128))
        kind = "jpeg8" if t % 2 == 0 else "noise+impulse"
        if kind == "jpeg8":
            bad = degrade(img, "jpeg8", 1.0, rng, region)
        else:
            bad = degrade(degrade(img, "gaussian_noise", 0.8, rng, region), "impulse", 0.8, rng, region)
        score, maps = scorer(bad[None])
        py, px = np.unravel_index(int(np.argmax(maps[0])), maps[0].shape)
        hit = y <= py < y + 128 and x <= px < x + 128
        drop = float(score[0]) < base_scores[s.scene]
        hits += hit
        drops += drop
        per_kind[kind][0] += hit
        per_kind[kind][1] += 1
    result = {
        "trials": args.trials,
        "peak_inside_region": hits / args.trials,
        "score_dropped": drops / args.trials,
        "by_kind": {k: v[0] / max(1, v[1]) for k, v in per_kind.items()},
        "model": scorer.model.summary,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Whose map, whose cell scores: held-out SROCC of a cross-validation fold when one network's cell
scores are averaged with another network's attention map, or with none (every cell alike).

    python benchmarks/map_swap.py --fold 2 --base f2_base.safetensors --models f2_tail.safetensors

A picture's score is sum(s * w) / sum(w) over the grid of cell scores s and the map w. When a
fine-tuned network (--models) ranks the fold's held-out development pictures worse than the network
it started from (--base), swapping the two halves says which half lost the ranking; the uniform map
says how much the ranking owes to the map at all (the attention weights are not decoration). The
models are networks trained on the fold's other scenes (benchmarks/accuracy.py's folds), with
their cards beside them. Needs the development data: a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "MSIQA"))
from msiqa.models.msiqa_net import onto_scale  # noqa: E402
from msiqa.training.datasets import load_labelled_folder  # noqa: E402
from msiqa.training.metrics import correlations  # noqa: E402
from msiqa.training.train import map_divergence  # noqa: E402
from msiqa.weights import load_model  # noqa: E402

from accuracy import folds_of  # noqa: E402


def maps_and_cells(path: Path, pictures: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    net = load_model(path).net.eval()
    with torch.inference_mode():
        outs = [net(pictures[i : i + 8]) for i in range(0, len(pictures), 8)]
    return torch.cat([o.weight for o in outs]).float(), torch.cat([o.cell_score for o in outs]).float()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/petct-iqa-dev", help="the development set (default: %(default)s)")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--fold", type=int, required=True, help="whose held-out scenes to score")
    ap.add_argument("--base", type=Path, required=True, help="the network the others are compared with")
    ap.add_argument("--models", type=Path, nargs="*", default=[])
    args = ap.parse_args()
    torch.set_num_threads(2)

    data = Path(args.data)
    samples = load_labelled_folder(data / "images", data / "labels.csv")
    held = set(folds_of(sorted({s.scene for s in samples}), args.folds)[args.fold])
    val = [s for s in samples if s.scene in held]
    pictures = torch.from_numpy(np.stack([s.image for s in val])).permute(0, 3, 1, 2).float().div_(255.0)
    mos, scenes = [s.mos for s in val], [s.scene for s in val]

    def srocc(weight: torch.Tensor, cells: torch.Tensor) -> str:
        score = onto_scale((cells * weight).sum((1, 2, 3)) / weight.sum((1, 2, 3)))
        return f"{correlations(score.numpy(), mos, scenes)['srocc']:.3f}"

    print(f"fold {args.fold} of {args.folds}: {len(val)} held-out pictures of scenes {' '.join(sorted(held))}\n")
    print("| network | own map | its cells, base map | base cells, its map | its cells, uniform map | KL(base map, its map) |")
    print("|---|---|---|---|---|---|")
    wb, cb = maps_and_cells(args.base, pictures)
    flat = torch.ones_like(wb)
    print(f"| {args.base.stem} (base) | {srocc(wb, cb)} | - | - | {srocc(flat, cb)} | - |")
    for path in args.models:
        w, c = maps_and_cells(path, pictures)
        print(f"| {path.stem} | {srocc(w, c)} | {srocc(wb, c)} | {srocc(w, cb)} | {srocc(flat, c)} | {float(map_divergence(wb, w)):.3f} |")


if __name__ == "__main__":
    main()

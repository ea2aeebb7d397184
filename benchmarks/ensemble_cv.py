"""Leave-scenes-out CV of seed ensembles, from fold networks accuracy.py kept.

    python benchmarks/accuracy.py --folds 3 --rows "compact (bundled configuration)" \\
        --keep-networks runs/seed0                   # and again with --seed-offset 3 --keep-networks runs/seed3
    python benchmarks/ensemble_cv.py --data ../shared/petct-iqa-dev --networks runs/seed0 runs/seed3

Each --networks folder holds one network per fold (accuracy.py's cards name the fold and the
scenes it never saw). Per fold, every folder's network and the ensemble of all of them
(``msiqa.models.MSIQAEnsemble``, what ``msiqa ensemble`` writes) score that fold's held-out
scenes; the table gives SROCC and within-scene SROCC per fold and their means.
Needs the development data (not in the repository): this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "MSIQA"))
from msiqa.models import MSIQAEnsemble  # noqa: E402
from msiqa.training.datasets import load_labelled_folder  # noqa: E402
from msiqa.training.metrics import correlations  # noqa: E402
from msiqa.training.train import predict  # noqa: E402
from msiqa.weights import load_model  # noqa: E402

from accuracy import folds_of  # noqa: E402


def fold_network(folder: Path, fold: int, held_out: list[str]):
    """The network of ``folder`` that was trained without ``held_out`` (checked against its card)."""
    for card_file in sorted(folder.glob("*.json")):
        card = json.loads(card_file.read_text())
        if card.get("cv_fold") == fold:
            if card.get("held_out_scenes") != held_out:
                sys.exit(f"{card_file}: fold {fold} held out {card.get('held_out_scenes')}, not {held_out}; "
                         "were these folds made with another --folds or data?")
            return load_model(card_file.with_suffix(".safetensors"))
    sys.exit(f"{folder} has no network for fold {fold}; run accuracy.py with --keep-networks {folder}")


def fold_arguments(doc: str, networks: str) -> argparse.ArgumentParser:
    """The options of a benchmark over accuracy.py's kept fold networks."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/petct-iqa-dev", help="the development set (default: %(default)s)")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--networks", type=Path, nargs="+", required=True,
                    help=f"{networks} folders of kept fold networks (accuracy.py --keep-networks)")
    ap.add_argument("--out", type=Path, help="also write the table to this file")
    return ap


def main() -> None:
    args = fold_arguments(__doc__, "two or more").parse_args()
    if len(args.networks) < 2:
        sys.exit("give two or more --networks folders: an ensemble of one is the network itself")
    torch.set_num_threads(2)

    data = Path(args.data)
    samples = load_labelled_folder(data / "images", data / "labels.csv")
    rows: dict[str, list[dict]] = {}  # one row per folder (its folds' seeds differ), and the ensemble's
    for fold, held in enumerate(folds_of(sorted({s.scene for s in samples}), args.folds)):
        val = [s for s in samples if s.scene in set(held)]
        images, mos, scenes = [s.image for s in val], [s.mos for s in val], [s.scene for s in val]
        members = [fold_network(folder, fold, sorted(held)) for folder in args.networks]
        for folder, member in zip(args.networks, members):
            figs = correlations(predict(member.net, images), mos, scenes)
            rows.setdefault(str(folder), []).append({**figs, "seed": member.card["seed"]})
        ensemble = MSIQAEnsemble.of([m.net for m in members])
        rows.setdefault(f"ensemble of {len(members)}", []).append(correlations(predict(ensemble, images), mos, scenes))
        print(f"fold {fold}: " + ", ".join(f"{k} {v[-1]['srocc']:.3f}" for k, v in rows.items()), flush=True)

    head = "| networks | " + " | ".join(f"fold {f} SROCC / within" for f in range(args.folds)) + " | mean |"
    lines = [head, "|---" * (args.folds + 2) + "|"]
    for name, figs in rows.items():
        cells = [f"{m['srocc']:.3f} / {m['within_scene_srocc']:.3f}" for m in figs]
        mean = (sum(m["srocc"] for m in figs) / len(figs), sum(m["within_scene_srocc"] for m in figs) / len(figs))
        seeds = [str(m["seed"]) for m in figs if "seed" in m]
        label = f"{name} (seeds {', '.join(seeds)})" if seeds else name
        lines.append(f"| {label} | " + " | ".join(cells) + f" | **{mean[0]:.3f} / {mean[1]:.3f}** |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()

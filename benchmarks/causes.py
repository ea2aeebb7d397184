"""Does the cause head name the right fault? Accuracy and confusion matrix on held-out
simulated studies (noise seeds and anatomies never trained on), all three display modes.

    python benchmarks/causes.py --trials 600

Each trial is one whole slice: clean (true cause "none") or with one fault drawn from the
faults that its display mode can show (a PET alone cannot be misregistered), at a severity
of 0.5-1.0; a fault whose label drop is below the naming threshold counts as "none".
Also prints, per display mode, how often a clean slice is flagged at the default threshold.

A second table does the same for the simulator's scanner-made faults (``physical_faults``:
counts, dose, breathing, misregistration, CT motion, metal) on the same held-out patients: every
slice of the bank clean and at five severities, in every display mode that shows its fault; it
also gives how often a fault beyond the label rule's limit of acceptability is flagged.
``--physical-pick visible`` takes breathing and misregistration from the slices where they show.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from synthetic_trials import held_out_slices, make_trial

from msiqa.assess import Scorer
from msiqa.causes import CAUSES
from msiqa.training.labels import CLEAN_MOS, FLAG_AT, NAMED_FROM, faulted_score
from msiqa.training.named_faults import causes_for
from msiqa.training.phantom_bank import MODES, random_pet_voxel_mm, render_layers
from msiqa.training.physical_faults import PICKS, SHOWN_IN, build_bank
from msiqa.weights import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=600)
    ap.add_argument("--model", default=None)
    ap.add_argument("--noise-seeds", type=int, nargs="+", default=[11])
    ap.add_argument("--anatomies", type=int, nargs="+", default=[101, 102], help="simulated patients never trained on")
    ap.add_argument("--threshold", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--physical-slices", type=int, default=2, help="slices per patient and fault family")
    ap.add_argument("--physical-pick", choices=PICKS, default="random",
                    help="visible: breathing and misregistration on the slices where they show (physical_faults.pick_slices)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    scorer = Scorer(load_model(args.model), "auto")
    names = scorer.causes
    if not names:
        raise SystemExit("this model has no cause head")
    slices = held_out_slices(args.noise_seeds, args.anatomies)
    rng = np.random.default_rng(args.seed)
    confusion = np.zeros((len(CAUSES), len(CAUSES)), int)
    clean_scores: dict[str, list[float]] = {m: [] for m in MODES}
    for t in range(args.trials):
        src = slices[int(rng.integers(len(slices)))]
        mode = MODES[t % len(MODES)]
        layers = src.layers(mode, pet_voxel_mm=random_pet_voxel_mm(rng) if mode == "pet" else None)
        options = causes_for(layers)
        cause = "none" if rng.random() < 1.0 / (len(options) + 1) else str(rng.choice(options))
        if cause == "none":
            picture, truth = render_layers(layers), "none"
        else:
            trial = make_trial(layers, cause, rng, local=False, region_px=0, source=mode)
            picture, truth = trial.faulty, trial.cause
        out = scorer(picture[None])
        predicted = names[int(out.causes[0].argmax())]
        confusion[CAUSES.index(truth), CAUSES.index(predicted)] += 1
        if truth == "none":
            clean_scores[mode].append(float(out.scores[0]))
    accuracy, recall = report(confusion, "layer faults (the training imitations)")
    flagged = {m: float(np.mean(np.array(v) < args.threshold)) for m, v in clean_scores.items() if v}
    print("clean slices flagged: " + ", ".join(f"{m} {100 * f:.1f} % of {len(clean_scores[m])}" for m, f in flagged.items()))
    print("clean slices mean score: " + ", ".join(f"{m} {np.mean(v):.2f}" for m, v in clean_scores.items() if v))
    physical = scanner_made(scorer, names, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"trials": int(confusion.sum()), "accuracy": accuracy, "recall": recall, "clean_flagged": flagged,
                       "confusion": {"labels": list(CAUSES), "matrix": confusion.tolist()}, "physical": physical,
                       "model": scorer.model.summary, "noise_seeds": args.noise_seeds,
                       "anatomies": args.anatomies}, f, indent=2)


def report(confusion: np.ndarray, title: str) -> tuple[float, dict]:
    total = confusion.sum()
    accuracy = float(np.trace(confusion) / total)
    recall = {c: float(confusion[i, i] / confusion[i].sum()) for i, c in enumerate(CAUSES) if confusion[i].sum()}
    print(f"\n{title}: trials {total}, accuracy {accuracy:.3f}")
    print("recall per true cause: " + ", ".join(f"{c} {r:.2f}" for c, r in recall.items()))
    rows = [c for i, c in enumerate(CAUSES) if confusion[i].sum() or confusion[:, i].sum()]
    idx = [CAUSES.index(c) for c in rows]
    print("\n| true \\ predicted | " + " | ".join(rows) + " |")
    print("|---|" + "---|" * len(rows))
    for i, c in zip(idx, rows):
        print(f"| {c} | " + " | ".join(str(confusion[i, j]) for j in idx) + " |")
    return accuracy, recall


def scanner_made(scorer: Scorer, names: tuple[str, ...], args) -> dict:
    """Cause and flag of the simulator's own faults on the held-out patients."""
    rng = np.random.default_rng(args.seed)
    bank = build_bank(args.anatomies, args.noise_seeds[0], args.physical_slices, severities=5, seed=args.seed,
                      pick=args.physical_pick)
    confusion = np.zeros((len(CAUSES), len(CAUSES)), int)
    beyond: dict[str, list[bool]] = {}
    for g in bank:
        for mode in SHOWN_IN[g.family]:
            voxel = random_pet_voxel_mm(rng) if mode == "pet" else None
            versions = [(g.clean, 0.0, "none")] + [(f.slice, f.drop, f.cause) for f in g.faulted]
            pictures = np.stack([render_layers(v.layers(mode, voxel)) for v, _, _ in versions])
            out = scorer(pictures)
            for (_, drop, cause), score, probs in zip(versions, out.scores, out.causes):
                truth = cause if drop >= NAMED_FROM else "none"
                confusion[CAUSES.index(truth), CAUSES.index(names[int(probs.argmax())])] += 1
                if faulted_score(CLEAN_MOS, drop) < FLAG_AT:
                    beyond.setdefault(g.family, []).append(bool(score < args.threshold))
    accuracy, recall = report(confusion, f"scanner-made faults (phantom.faults, held-out patients, {args.physical_pick} slices)")
    flagged = {f: float(np.mean(v)) for f, v in beyond.items()}
    print("flagged when beyond the limit of acceptability: "
          + ", ".join(f"{f} {100 * r:.0f} % of {len(beyond[f])}" for f, r in flagged.items()))
    return {"pick": args.physical_pick, "trials": int(confusion.sum()), "accuracy": accuracy, "recall": recall,
            "flagged_beyond_limit": flagged,
            "confusion": confusion.tolist()}


if __name__ == "__main__":
    main()

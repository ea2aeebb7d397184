"""Leave-scenes-out cross-validation on the development set: the bundled configuration,
its ablations and hand-made baselines, each row with the same training budget.

    python benchmarks/accuracy.py --data ../shared/petct-iqa-dev --folds 3 --jobs 2

Every row starts from the training recipe (--recipe, default the bundled model's) and trains for
its budget unless --steps says otherwise. Each (recipe, row, fold) result is cached as one JSON
line in --cache, keyed by the recipe and the training code, so an interrupted run resumes and a
changed recipe or a changed training code is never served old figures; a fold in training
checkpoints under --checkpoints (same key), so a killed run resumes mid-fold, exactly;
the table (mean +- std over folds) is printed (and written to --out). --keep-networks DIR also
writes each fold's final network with a card naming the scenes it never saw (for heatmap.py --scenes).
Needs the development data (not in the repository): this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

# Each row changes the recipe; its ``overrides`` (network fields) are merged into the recipe's own, so
# an ablation of a one-branch recipe stays one-branch. A row that leaves the recipe as it is (the
# ResNet-only row of a ResNet-only recipe) is not trained twice: it is reported as the recipe's row.
ROWS: dict[str, dict] = {
    "compact (bundled configuration)": {},
    "ablation: both branches (fusion)": {"overrides": {"branches": "both"}},
    "ablation: ResNet branch only": {"overrides": {"branches": "cnn"}},
    "ablation: Swin branch only": {"overrides": {"branches": "swin"}},
    "ablation: no AGCA": {"overrides": {"agca": False}},
    "ablation: released head (pooled before score/weight)": {"overrides": {"head": "pooled"}},
    "ablation: no synthetic data": {"synthetic": 0.0},
    "ablation: synthetic, uncalibrated labels": {"labels": "fixed"},
}
ENGINE = Path(__file__).resolve().parents[1] / "MSIQA/msiqa"
RECIPE = ENGINE / "weights/msiqa-compact.train.json"
CARD = ENGINE / "weights/msiqa-compact.json"
sys.path.insert(0, str(ENGINE.parent))  # the engine is imported where it is needed: workers start light
BASELINES = ["8x8 blockiness", "noise estimate", "impulse density", "hand-made regression (3 features)"]


def training_code_sha() -> str:
    """What a network row's figures depend on besides the recipe: the training and model code."""
    h = hashlib.sha256()
    for path in sorted([*ENGINE.glob("training/*.py"), *ENGINE.glob("models/*.py"), ENGINE / "render.py"]):
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def folds_of(scenes: list[str], k: int) -> list[list[str]]:
    return [scenes[i::k] for i in range(k)]


def run_network(row: str, fold: int, args) -> dict:
    import torch

    torch.set_num_threads(1)
    from msiqa.training.datasets import load_labelled_folder
    from msiqa.training.metrics import correlations
    from msiqa.training.train import TrainConfig, predict, train

    data = Path(args.data)
    samples = load_labelled_folder(data / "images", data / "labels.csv")
    held = set(folds_of(sorted({s.scene for s in samples}), args.folds)[fold])
    config = TrainConfig(**{**row_recipe(row, args), "steps": args.steps, "seed": seed_of(fold, args)})
    net = train([s for s in samples if s.scene not in held], config, out_dir=checkpoint_dir(row, fold, args),
                clinical_root=args.clinical_root, progress=False, log=lambda m: None)
    val = [s for s in samples if s.scene in held]
    if args.keep_networks:
        keep_network(net, row, fold, sorted(held), args)
    pred = predict(net, [s.image for s in val])
    return correlations(pred, [s.mos for s in val], [s.scene for s in val])


def keep_network(net, row: str, fold: int, held_out: list[str], args) -> Path:
    """A fold's final network as weights and card, for what the CV figure does not measure
    (``heatmap.py --model FILE --scenes`` the card's ``held_out_scenes``: pointing on unseen scenes)."""
    from msiqa.weights import save_model

    name = checkpoint_dir(row, fold, args).name
    card = {"name": name, "cv_fold": fold, "held_out_scenes": held_out, "seed": seed_of(fold, args),
            "recipe_sha256_12": args.recipe_sha, "training_code_sha256_12": args.code_sha, "row": row}
    path = Path(args.keep_networks) / f"{name}.safetensors"
    save_model(net, path, card)
    return path


def row_recipe(row: str, args) -> dict:
    """The recipe a row trains: the base recipe with the row's changes, network overrides merged."""
    base = args.base_recipe
    change = ROWS[row]
    overrides = {**base.get("overrides", {}), **change.get("overrides", {})}
    return {**base, **change, "overrides": overrides}


def seed_of(fold: int, args) -> int:
    """Fold f trains with seed f + --seed-offset: another offset repeats the CV with other randomness."""
    return fold + args.seed_offset


def same_as_recipe(row: str, args) -> bool:
    """Whether a row trains exactly the recipe: the same network (defaults resolved) and the same rest."""
    from msiqa.models.msiqa_net import preset

    def resolved(recipe: dict) -> tuple:
        rest = {k: v for k, v in recipe.items() if k not in ("preset", "overrides")}
        return preset(recipe.get("preset", "compact"), **recipe.get("overrides", {})), rest

    return resolved(args.base_recipe) == resolved(row_recipe(row, args))


def checkpoint_dir(row: str, fold: int, args) -> Path:
    """One folder per (recipe, training code, budget, seeds, row, fold): a resumed fold never continues another's."""
    slug = "".join(c if c.isalnum() else "-" for c in row.lower()).strip("-")
    seeds = f"-seed+{args.seed_offset}" if args.seed_offset else ""
    return Path(args.checkpoints) / f"{args.recipe_sha}-{args.code_sha}-{args.steps}x{args.folds}{seeds}-{slug}-fold{fold}"


def run_baselines(args) -> list[tuple[str, int, dict]]:
    from msiqa.training.datasets import load_labelled_folder
    from msiqa.training.handcrafted import Calibration, features
    from msiqa.training.metrics import correlations

    data = Path(args.data)
    samples = load_labelled_folder(data / "images", data / "labels.csv")
    feats = np.array([features(s.image) for s in samples])
    mos = np.array([s.mos for s in samples])
    scenes = np.array([s.scene for s in samples])
    out = []
    for fold, held in enumerate(folds_of(sorted(set(scenes)), args.folds)):
        v = np.isin(scenes, held)
        # Columns of handcrafted.features; lower impulse density, noise and blockiness mean better quality.
        for col, name in enumerate(["impulse density", "noise estimate", "8x8 blockiness"]):
            out.append((name, fold, correlations(-feats[v, col], mos[v], scenes[v])))
        cal = Calibration.fit(feats[~v], mos[~v])
        out.append((BASELINES[3], fold, correlations(cal(feats[v]), mos[v], scenes[v])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/petct-iqa-dev"))
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--recipe", default=str(RECIPE), help="training recipe (JSON) every row starts from")
    ap.add_argument("--steps", type=int, help="training steps per fold (default: the recipe's)")
    ap.add_argument("--clinical-root", help="folder of the recipe's clinical_volumes (see msiqa train --help)")
    ap.add_argument("--seed-offset", type=int, default=0,
                    help="fold f trains with seed f + this: repeat the CV with other randomness (default 0)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rows", nargs="*", help="subset of rows (default: all)")
    ap.add_argument("--only-folds", type=int, nargs="+", help="run only these folds (the table uses every cached one)")
    ap.add_argument("--cache", default="benchmarks/accuracy_cache.jsonl")
    ap.add_argument("--checkpoints", default="benchmarks/.checkpoints",
                    help="where folds in training checkpoint (removed once the fold is cached)")
    ap.add_argument("--keep-networks", metavar="DIR",
                    help="also write each fold's final network here (weights + card naming its held-out scenes)")
    ap.add_argument("--out", help="also write the table to this file (RESULTS.md is written by hand: the "
                    "table is one of its sections)")
    ap.add_argument("--update-card", action="store_true", help="write the compact row into the bundled model card")
    ap.add_argument("--cached-only", action="store_true",
                    help="train nothing: write the table (and card) from the folds already in the cache")
    args = ap.parse_args()
    recipe_text = Path(args.recipe).read_text()
    args.base_recipe = json.loads(recipe_text)
    args.steps = args.steps or args.base_recipe["steps"]
    args.recipe_sha = hashlib.sha256(recipe_text.encode()).hexdigest()[:12]
    args.code_sha = training_code_sha()

    cache = Path(args.cache)
    done: dict[tuple[str, int], dict] = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            r = json.loads(line)
            baseline = r["row"] in BASELINES
            key = (r["steps"], r.get("recipe"), r.get("code"), r.get("seed_offset", 0))
            if r["folds"] == args.folds and (baseline or key == (args.steps, args.recipe_sha, args.code_sha, args.seed_offset)):
                done[(r["row"], r["fold"])] = r["metrics"]

    def record(row: str, fold: int, metrics: dict) -> None:
        done[(row, fold)] = metrics
        with open(cache, "a") as f:
            seeds = {"seed_offset": args.seed_offset} if args.seed_offset else {}
            f.write(json.dumps({"row": row, "fold": fold, "steps": args.steps, "folds": args.folds,
                               "recipe": args.recipe_sha, "code": args.code_sha, **seeds, "metrics": metrics}) + "\n")
        shutil.rmtree(checkpoint_dir(row, fold, args), ignore_errors=True)
        print(f"{row} fold {fold}: SROCC {metrics['srocc']:.3f} within {metrics['within_scene_srocc']:.3f}", flush=True)

    if not all((b, f) in done for b in BASELINES for f in range(args.folds)):
        for row, fold, m in run_baselines(args):
            record(row, fold, m)
    folds = args.only_folds if args.only_folds is not None else range(args.folds)
    rows = args.rows or list(ROWS)
    unknown = set(rows) - set(ROWS)
    if unknown:
        ap.error(f"unknown rows {sorted(unknown)}; the rows are {list(ROWS)}")
    bundled = next(iter(ROWS))
    aliases = [r for r in rows if r != bundled and same_as_recipe(r, args)]
    for r in aliases:
        print(f"{r!r} is the recipe itself: reported as {bundled!r}, not trained again", flush=True)
    if aliases and bundled not in rows:
        rows.append(bundled)
    todo = [(r, f) for r in rows if r not in aliases for f in folds if (r, f) not in done and not args.cached_only]
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(run_network, r, f, args): (r, f) for r, f in todo}
        for fut, (r, f) in futures.items():
            record(r, f, fut.result())
    write_table(done, args)
    if args.update_card:
        update_card(done, args)


def update_card(done: dict, args) -> None:
    """Put the bundled configuration's CV figures into its card (the card is not hashed)."""
    row = next(iter(ROWS))
    ms = [done[(row, f)] for f in range(args.folds) if (row, f) in done]
    card = json.loads(CARD.read_text())
    card["cross_validation"] = {
        "protocol": f"leave-scenes-out, {args.folds} folds of {12 // args.folds} scenes ({len(ms)} of them run), "
        f"{args.steps} training steps per fold on 8 scenes (the bundled model: the same recipe on all 12 scenes)",
        "folds_run": len(ms),
        "command": f"python benchmarks/accuracy.py --folds {args.folds} --steps {args.steps}"
        f"{f' --seed-offset {args.seed_offset}' if args.seed_offset else ''} --update-card",
        "seeds": f"fold + {args.seed_offset}" if args.seed_offset else "fold",
        "recipe_sha256_12": args.recipe_sha,
        "training_code_sha256_12": args.code_sha,
        **{k: {"mean": float(np.mean([m[k] for m in ms])), "std": float(np.std([m[k] for m in ms]))}
           for k in ("plcc", "srocc", "krocc", "sum", "within_scene_srocc")},
    }
    CARD.write_text(json.dumps(card, indent=2) + "\n")


def _crops_per_step(args) -> str:
    r = args.base_recipe
    dev = r["batch_scenes"] * r["per_scene"]
    sim = r.get("phantom_scenes", 0) * r["per_scene"]
    real = r.get("clinical_scenes", 0) * r["per_scene"] if r.get("clinical_volumes") else 0
    parts = [f"{dev} development"] + [f"{n} {what}" for n, what in ((sim, "simulated"), (real, "real clinical")) if n]
    return " + ".join(parts) + f" {r['crop']}x{r['crop']}"


def write_table(done: dict, args) -> None:
    lines = [
        "# Accuracy benchmark: leave-scenes-out cross-validation",
        "",
        "Development set: ../shared/petct-iqa-dev (324 images, 12 scenes; Li et al., MICCAI 2025, arXiv 2506.20200).",
        f"{args.folds} folds, each holding out {12 // args.folds} whole scenes; every network row trained from scratch",
        f"with the same budget ({args.steps} steps of {_crops_per_step(args)} crops, seed = fold"
        f"{f' + {args.seed_offset}' if args.seed_offset else ''}), scored on whole 512x512 images.",
        "Mean +- standard deviation over folds. `sum` = PLCC + SROCC + KROCC (the LDCTIQAC2023 figure).",
        "",
        f"Command: `python benchmarks/accuracy.py --folds {args.folds} --steps {args.steps}"
        f"{f' --seed-offset {args.seed_offset}' if args.seed_offset else ''}`"
        f" (recipe {Path(args.recipe).name}, sha256 {args.recipe_sha}...)",
        "",
        "| row | PLCC | SROCC | KROCC | sum | within-scene SROCC | folds |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in list(ROWS) + BASELINES:
        ms = [done[(row, f)] for f in range(args.folds) if (row, f) in done]
        if not ms:
            continue
        cell = lambda k: f"{np.mean([m[k] for m in ms]):.3f} +- {np.std([m[k] for m in ms]):.3f}"
        lines.append(f"| {row} | {cell('plcc')} | {cell('srocc')} | {cell('krocc')} | {cell('sum')} | {cell('within_scene_srocc')} | {len(ms)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()

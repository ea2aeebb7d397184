"""Leave-scenes-out CV of `msiqa refit --score-layer`, on fold networks accuracy.py kept.

    python benchmarks/accuracy.py --folds 3 --rows "compact (bundled configuration)" --keep-networks runs/seed0
    python benchmarks/refit_cv.py --data ../shared/petct-iqa-dev --networks runs/seed0 runs/seed3 \\
        --clinical-root MIRP/test/data [--weight-head] [--ensemble] [--keep runs/refitted] \\
        [--refit-options '{"pointing_mirror": true}'] [--only-folds 0]

Per fold, each folder's network is refitted (``msiqa.training.refit``, what ``msiqa refit --score-layer`` runs) on
the fold's training scenes only, then it and the network as trained score the held-out scenes;
the table gives SROCC / within-scene SROCC per fold and the means. With ``--weight-head`` (the bundled
model's command) the weight head is refitted first, on local faults pasted on the fold's training
scenes only; ``--keep`` writes each refitted network with its card (``held_out_scenes``), for
``heatmap.py --model FILE --scenes ...`` on scenes it never saw. With ``--ensemble``, each fold's
networks of all folders are averaged (``msiqa ensemble``) and refitted as one model. Needs the
development data and the recipe's real volumes (not in the repository): this is a benchmark, not a test.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "MSIQA"))
from msiqa.models import MSIQAEnsemble  # noqa: E402
from msiqa.training.commands import json_object  # noqa: E402
from msiqa.training.datasets import load_labelled_folder  # noqa: E402
from msiqa.training.metrics import correlations  # noqa: E402
from msiqa.training.refit import refit  # noqa: E402
from msiqa.training.refit_slices import RefitConfig, training_slices  # noqa: E402
from msiqa.training.train import TrainConfig, predict  # noqa: E402
from msiqa.weights import card_of_source, save_model  # noqa: E402

from accuracy import folds_of  # noqa: E402
from ensemble_cv import fold_arguments, fold_network  # noqa: E402

BUNDLED_RECIPE = Path(__file__).resolve().parents[1] / "MSIQA/msiqa/weights/msiqa-compact.train.json"


def main() -> None:
    ap = fold_arguments(__doc__, "one or more")
    ap.add_argument("--recipe", type=Path, default=BUNDLED_RECIPE,
                    help="the recipe the fold networks were trained with (checked against their cards; "
                         "default: the bundled one)")
    ap.add_argument("--clinical-root", help="folder the recipe's clinical_volumes are relative to")
    ap.add_argument("--weight-head", action="store_true", help="refit the weight head too (msiqa refit --weight-head)")
    ap.add_argument("--ensemble", action="store_true", help="refit the ensemble of each fold's networks of all folders")
    ap.add_argument("--keep", type=Path, help="write each refitted fold network here (for heatmap.py --scenes)")
    ap.add_argument("--refit-options", type=json_object, default={}, metavar="JSON",
                    help='RefitConfig fields other than the defaults msiqa refit uses, e.g. \'{"pointing_mirror": true}\'')
    ap.add_argument("--only-folds", type=int, nargs="+", help="refit only these folds (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    text = args.recipe.read_text()
    recipe, recipe_sha = TrainConfig(**json.loads(text)), hashlib.sha256(text.encode()).hexdigest()[:12]

    data = Path(args.data)
    samples = load_labelled_folder(data / "images", data / "labels.csv")
    lines = ["| networks | fold | trained SROCC / within | refitted SROCC / within | ridge | whole head |",
             "|---|---|---|---|---|---|"]
    got = {"trained": [], "refitted": []}
    try:
        config = RefitConfig(**args.refit_options)
    except (TypeError, ValueError) as e:
        sys.exit(f"--refit-options: {e}; the fields are those of msiqa.training.refit_slices.RefitConfig")
    # The fit's whole slices depend on the recipe and these options alone: rendered once for every network.
    slices = list(training_slices(recipe, config, args.clinical_root, log=lambda m: None))
    for fold, held in enumerate(folds_of(sorted({s.scene for s in samples}), args.folds)):
        if args.only_folds is not None and fold not in args.only_folds:
            continue
        train = [s for s in samples if s.scene not in held]
        val = [s for s in samples if s.scene in held]
        truth, scenes = [s.mos for s in val], [s.scene for s in val]
        models = {folder.name: fold_network(folder, fold, held) for folder in args.networks}
        for name, model in models.items():
            if model.card.get("recipe_sha256_12", recipe_sha) != recipe_sha:
                sys.exit(f"{name}: fold {fold} was trained with recipe {model.card['recipe_sha256_12']}, not "
                         f"{args.recipe} ({recipe_sha}); give --recipe")
        if args.ensemble:
            ensemble = MSIQAEnsemble.of([m.net for m in models.values()])
            card = {"cv_fold": fold, "held_out_scenes": held, "recipe_sha256_12": recipe_sha,
                    "members": [card_of_source(m.card) for m in models.values()]}
            runs = [("ensemble", ensemble, card)]
        else:
            runs = [(name, m.net, card_of_source(m.card)) for name, m in models.items()]
        for name, net, card in runs:
            before = correlations(predict(net, [s.image for s in val]), truth, scenes)
            fitted = refit(net, train, recipe, config, args.clinical_root, log=lambda m: None,
                           slices=slices, weight_head=args.weight_head)
            if args.keep:
                save_model(net, args.keep / f"{name}-fold{fold}.safetensors", {**card, "refit": fitted})
            after = correlations(predict(net, [s.image for s in val]), truth, scenes)
            got["trained"].append(before)
            got["refitted"].append(after)
            lines.append(f"| {name} | {fold} | {before['srocc']:.3f} / {before['within_scene_srocc']:.3f} | "
                         f"{after['srocc']:.3f} / {after['within_scene_srocc']:.3f} | {fitted['score']['ridge']:g} | "
                         f"{_whole_head(fitted['score'].get('hidden'))} |")
            print(lines[-1], flush=True)
    mean = {k: (np.mean([r["srocc"] for r in v]), np.mean([r["within_scene_srocc"] for r in v])) for k, v in got.items()}
    lines.append(f"| mean of {len(got['trained'])} | | {mean['trained'][0]:.3f} / {mean['trained'][1]:.3f} | "
                 f"{mean['refitted'][0]:.3f} / {mean['refitted'][1]:.3f} | | |")
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


def _whole_head(record: dict | None) -> str:
    """The whole score head's ridge (score_hidden) and, when picked, each candidate's left-out-groups SROCC."""
    if record is None:
        return "-"
    ridge = "the layer alone" if record["ridge"] is None else f"{record['ridge']:g}"
    found = record.get("left_out_scene_groups_srocc")
    return ridge + (" (" + ", ".join(f"{k} {v:.3f}" for k, v in found.items()) + ")" if found else "")


if __name__ == "__main__":
    main()

"""`msiqa train`, `msiqa refit`, `msiqa ensemble` and `msiqa evaluate`: the whole recipe of the bundled model."""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from ..errors import InputError


def json_object(text: str) -> dict:
    """An argparse type: a JSON object of option names and values."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"a JSON object of field names and values is needed, not {text!r}")
    return value


def architecture(config) -> str:
    """The card's one-line description of the network, naming the timm backbones it was built with."""
    resnet, swin = f"timm ResNet ({config.cnn})", f"timm Swin Transformer ({config.swin})"
    backbones = {
        "both": f"{resnet} + {swin}, 4 stages each",
        "cnn": f"{resnet}, the Swin branch left out, 4 stages",
        "swin": f"{swin}, the ResNet branch left out, 4 stages",
    }[config.branches]
    return (
        f"MSIQANet: {backbones} (features_only), RGB + Laplacian high-pass input, per-stage concat/1x1 conv/pool "
        "to the stride-32 grid, AGCA channel attention, per-cell score and weight, score = sum(s*w)/sum(w); "
        "trained from scratch (no ImageNet weights)"
    )


def environment() -> dict:
    """What decides a trained or refitted file besides its recipe and seed: the CPU thread count and the
    libraries whose arithmetic makes the batches and the network (Pillow's codecs, scipy's filters,
    SimpleITK's resampling, numpy's draws). A file repeats bit for bit only where all of these match
    (benchmarks/RESULTS.md, "The bundled training command: the code now repeats model 8's")."""
    import platform

    import numpy
    import PIL
    import scipy
    import SimpleITK
    import timm
    import torch

    return {"python": platform.python_version(),
            **{m.__name__: m.__version__ for m in (torch, numpy, scipy, PIL, SimpleITK, timm)},
            "cpu_threads": torch.get_num_threads()}


DATA_LICENCE = (
    "Trained on the PET-CT-IQA-DS development images and radiologist scores released with Li et al., "
    "MICCAI 2025 (arXiv 2506.20200); no licence is stated for them: the images are not distributed, "
    "cite the paper when reporting results on them."
)

CLINICAL_SOURCE = (
    "Public TCIA studies (CC BY 3.0) as the test data of the MIRP radiomics library carry them: "
    "github.com/oncoray/mirp at d8a6a7264a4d0ccb1f88cc670e0b6d047235909f, folder test/data "
    "(QIN-HEADNECK-01-0139 FDG PET; NSCLC-Radiomics LUNG1-001 and CRLM-CT-1004 CT; Soft-tissue-Sarcoma "
    "PET/CT as the IBSI crops of sts_images). Not distributed here."
)

LAYOUTS = (
    "Three data layouts: IMAGES is a folder of pictures and LABELS a CSV with the columns image,mos[,scene] "
    "(the development set's format); or IMAGES is a folder and LABELS an LDCTIQAC2023 JSON {file: score}; "
    "or IMAGES is a volume table CSV (ct,pet,rgb,slice,mos[,scene]) whose slices are rendered as 'assess' "
    "renders them, and LABELS is left out because the scores are in that table. Scores are on the 0-4 scale."
)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model from scratch (recipe in a JSON config)",
        description="Train an MS-IQA network from scratch (no ImageNet weights) on labelled images plus synthetic "
                    "degradations of them, and write the weights (.safetensors) with their card (.json). "
                    "A checkpoint folder beside the output lets an interrupted run resume exactly where it "
                    "stopped. " + LAYOUTS + " Needs the training extra: pip install msiqa[train].",
    )
    p.add_argument("images", metavar="IMAGES", help="folder of labelled pictures, or a volume table .csv")
    p.add_argument("labels", nargs="?", metavar="LABELS",
                   help="labels CSV (image,mos[,scene]) or LDCTIQAC2023 JSON; leave out for a volume table, "
                        "which holds its own scores")
    p.add_argument("--config", metavar="JSON",
                   help="training recipe (TrainConfig JSON: preset, steps, crop, learning rate, synthetic "
                        "fraction, ...; default: the bundled model's recipe, weights/msiqa-compact.train.json)")
    p.add_argument("--out", required=True, metavar="FILE.safetensors",
                   help="where to write the weights; the card goes beside it as .json and checkpoints into a "
                        "folder of the same name without the suffix")
    p.add_argument("--name", default="msiqa-compact", help="model name written into the card (default: %(default)s)")
    p.add_argument("--steps", type=int, metavar="N", help="train for N steps instead of the config's number")
    p.add_argument("--seed", type=int, metavar="N",
                   help="draw the training's randomness from seed N instead of the config's: the same recipe "
                        "with another seed makes another member for 'msiqa ensemble'")
    p.add_argument("--clinical-root", metavar="FOLDER",
                   help="folder the recipe's clinical_volumes (real studies shown as clean) are relative to; "
                        "needed only by recipes that list some")
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "ensemble", help="average networks trained with different seeds into one model",
        description="Write one model whose outputs (score, attention map, cell scores, cause) are the mean of "
                    "the given networks' outputs. The networks must share one configuration (the same recipe, "
                    "trained with different --seed); each is checked against its own card, whose provenance "
                    "the new card lists under 'members'.",
    )
    p.add_argument("members", nargs="+", metavar="NETWORK.safetensors", help="two or more trained networks")
    p.add_argument("--out", required=True, metavar="FILE.safetensors", help="where to write the ensemble and its card")
    p.add_argument("--name", default="msiqa-compact", help="model name written into the card (default: %(default)s)")
    p.set_defaults(func=_ensemble)

    p = sub.add_parser(
        "refit", help="fit a trained network's cause head (and score layer, weight head) again on whole slices",
        description="Fit the cause head of a trained network again on whole slices made from its recipe's training "
                    "sources (faults on its simulated patients, the simulator's scanner-made faults, its real "
                    "volumes shown clean; misregistration and PET breathing left out, the score does not see "
                    "them), the rest of the network frozen, so its scores and attention maps do not change. With "
                    "--score-layer, also the score head's last layer, on those labelled pictures, while the "
                    "network's scores of the slices above are held. With --weight-head, first the weight head, "
                    "so that the attention map peaks on local faults (the only option that changes the maps). "
                    "An ensemble (msiqa ensemble) is refitted as one model: each member's weight head on its own, "
                    "the cause head and score layer jointly, since its outputs are the members' means. "
                    "Needs the training extra: pip install msiqa[train].",
    )
    p.add_argument("model", metavar="NETWORK.safetensors", help="a trained network or ensemble with its card beside it")
    p.add_argument("--out", required=True, metavar="FILE.safetensors", help="where to write the refitted network and its card")
    p.add_argument("--score-layer", nargs="+", metavar="IMAGES [LABELS]",
                   help="also fit the score layer on these labelled pictures (" + LAYOUTS + ")")
    p.add_argument("--weight-head", action="store_true",
                   help="first fit the weight (attention) head so that its map peaks on local faults pasted on the "
                        "recipe's simulated patients and on the labelled scenes' best pictures; this changes the maps")
    p.add_argument("--weight-context", type=int, default=0, metavar="K",
                   help="with --weight-head: the head also reads each grid cell against the mean of its K x K "
                        "neighbourhood (K odd, >= 3), so that a cell can stand out from the cells around it")
    p.add_argument("--refit-options", type=json_object, default={}, metavar="JSON",
                   help="fields of msiqa.training.refit_slices.RefitConfig other than the defaults, e.g. "
                        "'{\"pointing_mirror\": true}' (the card records every field)")
    p.add_argument("--clinical-root", metavar="FOLDER",
                   help="folder the recipe's clinical_volumes are relative to (as for msiqa train)")
    p.set_defaults(func=_refit)

    p = sub.add_parser(
        "evaluate", help="PLCC, SROCC, KROCC and within-scene SROCC on labelled images",
        description="Score labelled images with a model and compare the scores with the labels: Pearson (PLCC), "
                    "Spearman (SROCC) and Kendall (KROCC) correlations, their sum, and SROCC within each scene "
                    "(how well versions of the same anatomy are ranked). " + LAYOUTS,
    )
    p.add_argument("images", metavar="IMAGES", help="folder of labelled pictures, or a volume table .csv")
    p.add_argument("labels", nargs="?", metavar="LABELS",
                   help="labels CSV (image,mos[,scene]) or LDCTIQAC2023 JSON; leave out for a volume table")
    p.add_argument("--model", metavar="NAME_OR_PATH",
                   help="a bundled model name (see 'msiqa models') or a .safetensors file with its .json card "
                        "beside it (default: the bundled compact model)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    p.set_defaults(func=_evaluate)


def _train(args: argparse.Namespace) -> int:
    from .. import __version__
    from ..weights import WEIGHTS_DIR, save_model
    from .datasets import load_dataset
    from .degrade import codecs
    from .train import TrainConfig, train

    codecs()  # fail now, not after the data has loaded and training has begun
    config_path = Path(args.config) if args.config else WEIGHTS_DIR / "msiqa-compact.train.json"
    config = TrainConfig.load(config_path)
    if args.steps:
        config.steps = args.steps
    if args.seed is not None:
        config.seed = args.seed
    samples = load_dataset(args.images, args.labels)
    out = Path(args.out)
    net = train(samples, config, out_dir=out.with_suffix("") if out.suffix else out.parent / "checkpoints",
                clinical_root=args.clinical_root)
    card = {
        "name": args.name,
        "version": __version__,
        "preset": config.preset,
        "architecture": architecture(net.config),
        "data_licence": DATA_LICENCE,
        "trained": datetime.date.today().isoformat(),
        "training_data": {
            "source": str(args.images),
            "images": len(samples),
            "scenes": len({s.scene for s in samples}),
            "synthetic_fraction": config.synthetic,
            "simulated_studies": {"noise_seeds": config.phantom_noise_seeds, "anatomies": config.phantom_anatomies}
            if config.phantom_scenes else None,
            "clinical_studies": {"volumes": config.clinical_volumes, "tail_volumes": config.tail_clinical_volumes,
                                 "source": CLINICAL_SOURCE}
            if config.clinical_scenes and (config.clinical_volumes or config.tail_clinical_volumes) else None,
            "scanner_made_faults": {"anatomies": config.physical_anatomies, "noise_seed": config.physical_noise_seed,
                                    "slices_per_family": config.physical_slices, "pick": config.physical_pick,
                                    "family_weights": config.physical_weights}
            if config.physical_scenes else None,
        },
        "train_config": config.to_dict(),
        "environment": environment(),
        "command": (f"msiqa train {args.images} {args.labels or ''} --config {config_path.name} --out {out.name}"
                    + (f" --seed {args.seed}" if args.seed is not None else "")
                    + (f" --clinical-root {args.clinical_root}" if args.clinical_root else "")).replace("  ", " "),
    }
    card = save_model(net, out, card)
    print(f"wrote {out} (sha256 {card['sha256'][:16]}...) and {out.with_suffix('.json').name}")
    return 0


def _recipe_of(card: dict, name: str):
    """The recipe that trained a network, or an ensemble's members (alike but for their seeds): the
    refit's slices come from it."""
    from .train import TrainConfig

    recipes = [m.get("train_config") for m in card["members"]] if card.get("members") else [card.get("train_config")]
    if any(r is None for r in recipes):
        raise InputError(f"refit: the card of {name} has no train_config; the slices come from the "
                         "recipe that trained the network.")
    if any({**r, "seed": None} != {**recipes[0], "seed": None} for r in recipes[1:]):
        raise InputError(f"refit: the members of {name} were trained with different recipes, not only other "
                         "seeds; ensemble networks of one recipe.")
    try:
        return TrainConfig(**recipes[0])
    except (TypeError, ValueError) as e:
        raise InputError(f"refit: the card of {name} holds a recipe this version cannot read ({e}).") from None


def _refit(args: argparse.Namespace) -> int:
    from ..models.msiqa_net import NeighbourContrast
    from ..weights import card_of_source, card_path, load_model, resolve, save_model
    from .datasets import load_dataset
    from .refit import refit
    from .refit_slices import RefitConfig

    source, out = resolve(args.model), Path(args.out)
    if out.resolve() == source.resolve():
        raise InputError(f"refit: --out {out} is the network given; write the refitted one to a new file.")
    model = load_model(source)
    recipe = _recipe_of(model.card, source.name)
    labelled = args.score_layer or []
    if len(labelled) > 2:
        raise InputError(f"refit: --score-layer takes IMAGES and at most LABELS, not {len(labelled)} paths.")
    if args.weight_context:
        if not args.weight_head:
            raise InputError("refit: --weight-context shapes the weight head; give --weight-head with it.")
        try:
            NeighbourContrast(args.weight_context)
        except ValueError as e:
            raise InputError(f"refit: --weight-context: {e}.") from None
    samples = load_dataset(*labelled) if labelled else None
    if "weight_context" in args.refit_options:
        raise InputError("refit: give the weight head's neighbourhood as --weight-context K, not in --refit-options.")
    try:
        config = RefitConfig(**args.refit_options, weight_context=args.weight_context)
    except (TypeError, ValueError) as e:
        raise InputError(f"refit: --refit-options: {e}; the fields are those of "
                         "msiqa.training.refit_slices.RefitConfig.") from None
    if config.score_clinical_floor is not None and samples is None:
        raise InputError("refit: score_clinical_floor holds slices while the score layer is fitted; "
                         "give --score-layer.")
    fitted = refit(model.net, samples, recipe, config, args.clinical_root, weight_head=args.weight_head)
    command = (f"msiqa refit {source.name} --out {out.name}"
               + (" --weight-head" if args.weight_head else "")
               + (f" --weight-context {args.weight_context}" if args.weight_context else "")
               + (f" --refit-options '{json.dumps(args.refit_options, sort_keys=True)}'" if args.refit_options else "")
               + (f" --score-layer {' '.join(labelled)}" if labelled else "")
               + (f" --clinical-root {args.clinical_root}" if args.clinical_root else ""))
    network = {"file": source.name, "sha256": model.card["sha256"]}
    card = {**card_of_source(model.card),
            "refit": {**fitted, "network": network, "command": command, "environment": environment()}}
    card = save_model(model.net, out, card)
    print(f"wrote {out} (sha256 {card['sha256'][:16]}...) and {card_path(out).name}")
    return 0


def _ensemble(args: argparse.Namespace) -> int:
    from .. import __version__
    from ..models import MSIQAEnsemble
    from ..weights import load_model, save_model

    if len(args.members) < 2:
        raise InputError(f"ensemble: {len(args.members)} network given; give two or more, trained with the same "
                         "recipe and different --seed.")
    out = Path(args.out)
    if any(out.resolve() == Path(m).resolve() for m in args.members):
        raise InputError(f"ensemble: --out {out} is one of the members; write the ensemble to a new file.")
    loaded = [load_model(Path(m)) for m in args.members]
    nested = [m.path.name for m in loaded if isinstance(m.net, MSIQAEnsemble)]
    if nested:
        raise InputError(f"ensemble: {', '.join(nested)} is already an ensemble; give its member networks instead.")
    try:
        net = MSIQAEnsemble.of([m.net for m in loaded])
    except ValueError as e:
        raise InputError(f"ensemble: {e}. Train every member with the same --config, changing only --seed.") from None
    card = {
        "name": args.name,
        "version": __version__,
        "preset": loaded[0].card.get("preset"),
        "architecture": f"the mean of {len(loaded)} networks' outputs, each {architecture(net.config)}",
        "data_licence": DATA_LICENCE,
        "trained": datetime.date.today().isoformat(),
        "members": [{k: v for k, v in m.card.items() if k not in ("config", "data_licence")} for m in loaded],
        "command": f"msiqa ensemble {' '.join(Path(m).name for m in args.members)} --out {out.name}",
    }
    card = save_model(net, out, card)
    print(f"wrote {out} (sha256 {card['sha256'][:16]}...), the mean of {len(loaded)} networks, and "
          f"{out.with_suffix('.json').name}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from ..assess import Scorer
    from ..weights import load_model
    from .datasets import load_dataset
    from .metrics import correlations

    samples = load_dataset(args.images, args.labels)
    scorer = Scorer(load_model(args.model), "auto")
    pred = [float(scorer(s.image[None])[0][0]) for s in samples]
    try:
        m = correlations(pred, [s.mos for s in samples], [s.scene for s in samples])
    except ValueError as e:  # too few images, or all with one label
        raise InputError(f"evaluate: {len(samples)} labelled images give no correlation ({e}). "
                         "Give at least 3 images whose labels differ.") from None
    if args.json:
        print(json.dumps(m, indent=2))
    else:
        for k, v in m.items():
            print(f"{k:>20}: {v:.4f}" if isinstance(v, float) else f"{k:>20}: {v}")
    return 0

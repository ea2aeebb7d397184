"""Heatmap faithfulness (the pointing game): does the attention map point at a local fault?

    python benchmarks/heatmap.py --data ../shared/petct-iqa-dev --trials 40

For every fault family that can hit part of a picture, and each source of pictures:
- development pictures (512x512 fused, the best-rated version of each scene): a 128x128
  region inside the body;
- held-out simulated slices (PET/CT and CT alone on the 160x160 CT grid): a 64x64 region;
the fault is applied inside the region only, at a severity of 0.5-1.0, and the picture
scored. A hit is a heatmap maximum inside the region; the score should also drop against
the clean picture in the same trial. Pointing is also given over the trials whose score
dropped: where the network does not score the fault at all, its map has nothing to point at,
and a weight head fitted again cannot mend that. Misregistration (the whole PET moves) has no
region and is not part of the game. Clinical faults on development pictures act on their layers
as ``degrade.split_layers`` recovers them and add only their change to the picture, which is
scored as it is (see ``synthetic_trials``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from synthetic_trials import GLOBAL_ONLY, held_out_slices, make_trial

from msiqa.assess import Scorer
from msiqa.training.datasets import best_of_each_scene, load_labelled_folder
from msiqa.training.layer_faults import Layers
from msiqa.training.named_faults import causes_for
from msiqa.training.train import DEV_PX_MM
from msiqa.weights import load_model


def sources(args):
    wanted = lambda source: not args.sources or source in args.sources  # noqa: E731
    data = Path(args.data)
    if wanted("development") and not (data / "labels.csv").is_file():
        if args.scenes or args.sources:  # asked for by name: a table without them would pass for theirs
            raise SystemExit(f"no development data at {data} (no labels.csv), but --scenes or --sources ask for "
                             "development pictures: give --data the folder of the development set")
        print(f"no development data at {data}: simulated pictures only")
    elif wanted("development"):
        samples = load_labelled_folder(data / "images", data / "labels.csv")
        best = best_of_each_scene(s for s in samples if not args.scenes or s.scene in args.scenes)
        if not best:
            raise SystemExit(f"no development scene among {args.scenes} in {data / 'labels.csv'}")
        yield "development", [(Layers.of_picture(s.image, DEV_PX_MM), s.image) for s in best], 128
    modes = [mode for mode in ("petct", "ct") if wanted(f"simulated {mode}")]
    if modes:  # simulating the held-out patients takes minutes
        slices = held_out_slices(args.noise_seeds, args.anatomies)
        for mode in modes:
            yield f"simulated {mode}", [(s.layers(mode), None) for s in slices], 64


def judge(scorer: Scorer, trial) -> tuple[bool, bool]:
    """(the map's peak lies in the trial's region, the faulty picture scores below the clean one)."""
    out = scorer(np.stack([trial.clean, trial.faulty]))
    py, px = np.unravel_index(int(np.argmax(out.maps[1])), out.maps[1].shape)
    ys, xs = trial.region
    return bool(ys.start <= py < ys.stop and xs.start <= px < xs.stop), bool(out.scores[1] < out.scores[0])


def cell(judged: list[tuple[bool, bool]]) -> dict[str, float | int | None]:
    """One family and source: pointing and score drops over all trials, and pointing over the trials
    whose score dropped (None when none did)."""
    hits, dropped = np.array(judged, dtype=bool).reshape(-1, 2).T
    return {"pointing": float(hits.mean()), "score_dropped": float(dropped.mean()), "trials": len(judged),
            "pointing_when_dropped": float(hits[dropped].mean()) if dropped.any() else None}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/petct-iqa-dev"))
    ap.add_argument("--trials", type=int, default=40, help="per family and source")
    ap.add_argument("--model", default=None)
    ap.add_argument("--noise-seeds", type=int, nargs="+", default=[11])
    ap.add_argument("--anatomies", type=int, nargs="+", default=[101, 102], help="simulated patients never trained on")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scenes", nargs="*", help="only these development scenes (those a CV fold's model never saw: "
                    "a model with pointing crops trained on faulted copies of its scenes' best pictures)")
    ap.add_argument("--sources", nargs="*", help='only these sources ("development", "simulated petct", "simulated ct")')
    ap.add_argument("--json")
    args = ap.parse_args()

    scorer = Scorer(load_model(args.model), "auto")
    rng = np.random.default_rng(args.seed)
    table: dict[str, dict[str, dict[str, float]]] = {}
    for source, pictures, region_px in sources(args):
        families = [c for c in causes_for(pictures[0][0]) if c not in GLOBAL_ONLY]
        for family in families:
            judged = []
            while len(judged) < args.trials:
                layers, picture = pictures[int(rng.integers(len(pictures)))]
                trial = make_trial(layers, family, rng, local=True, region_px=region_px, source=source,
                                   picture=picture)
                if trial is not None:
                    judged.append(judge(scorer, trial))
            c = table.setdefault(family, {})[source] = cell(judged)
            print(f"{source:>18} {family:>16}: peak inside {_pct(c['pointing'])}, score dropped "
                  f"{_pct(c['score_dropped'])}, peak inside when it dropped {_pct(c['pointing_when_dropped'])}",
                  flush=True)
    sources_seen = sorted({s for v in table.values() for s in v})
    columns = ("pointing", "score_dropped", "pointing_when_dropped")
    print("\n| family | " + " | ".join(f"{s}: {' / '.join(columns)}" for s in sources_seen) + " |")
    print("|---|" + "---|" * len(sources_seen))
    for family, by in table.items():
        cells = [" / ".join(_pct(by[s][k]) for k in columns) if s in by else "-" for s in sources_seen]
        print(f"| {family} | " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"table": table, "model": scorer.model.summary}, indent=2))


if __name__ == "__main__":
    main()

"""Real clinical studies of diagnostic quality: what share of their slices gets flagged?

    python benchmarks/clinical.py --pet PET_DIR_1 PET_DIR_2 --ct CT_DIR_1 CT_DIR_2

Each volume is assessed alone (a PET alone, a CT alone; ``--pair CT PET`` for a PET/CT pair)
with the bundled model at the default threshold, as a radiologist would load it. Studies of
diagnostic quality should be flagged rarely (target: at most 10 % of slices), and a slice that
passes should not be named after a fault either (counted as "passed but named a fault"). The data are
not part of the repository: public TCIA-derived test data (CC BY 3.0) serve, e.g. the FDG PET
of QIN-HEADNECK-01-0139 and of Soft-tissue-Sarcoma STS_001, and the chest CTs of
NSCLC-Radiomics LUNG1-001 and LIDC-IDRI-0314, as the test suites of public radiomics
libraries carry them.

    python benchmarks/clinical.py --studies IBSI_VALIDATION [--select odd]

``--studies`` takes a folder of patients in either of two layouts: a flat one, each patient a
``<ID>_PET`` and a ``<ID>_CT`` DICOM folder, or the IBSI validation set as its repository holds it
(github.com/theibsi/data_sets, folder ibsi_validation: Soft-tissue-Sarcoma FDG PET/CT, CC BY 3.0,
``dicom/<ID>/PET/image`` and ``dicom/<ID>/CT/image``). It assesses every patient's PET alone, CT
alone and pair; ``--select even`` / ``odd`` keeps the patients whose number is even / odd (a split
that looks at nothing but the number), ``--exclude`` drops patients by ID. The repository also
holds STS_001-003, the crops MIRP's test data carry (STS_002 is shown in the bundled training):
``--exclude STS_001 STS_002 STS_003`` leaves the 48 patients (STS_004-051) measured in
benchmarks/RESULTS.md. The totals per kind close the output.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "MSIQA"))

from msiqa.assess import Scorer, assess  # noqa: E402
from msiqa.weights import load_model  # noqa: E402


def studies_in(folder: Path, select: str = "all", exclude: tuple[str, ...] = ()) -> list[tuple[Path, Path]]:
    """(CT, PET) folders of every patient under ``folder`` that has both, by patient number."""
    folder = Path(folder)
    patients = {p.name: (p / "CT" / "image", p / "PET" / "image") for p in (folder / "dicom").glob("*")}
    for pet in folder.glob("*_PET"):
        patient = pet.name.removesuffix("_PET")
        patients[patient] = (pet.with_name(f"{patient}_CT"), pet)
    found = []
    for patient, (ct, pet) in sorted(patients.items()):
        number = re.search(r"(\d+)$", patient)
        if patient in exclude or not ct.is_dir() or not pet.is_dir() or number is None:
            continue
        if select == "all" or (int(number.group(1)) % 2 == 0) == (select == "even"):
            found.append((ct, pet))
    if not found:
        raise SystemExit(f"--studies {folder}: no <ID>_CT / <ID>_PET folder pairs and no dicom/<ID>/CT|PET/image "
                         f"folders found (select {select}, exclude {list(exclude) or 'none'}).")
    return found


def totals(rows: list[dict], limit: float = 10.0) -> list[str]:
    """Per kind: volumes, slices flagged, and the volumes over ``limit`` % flagged."""
    lines = []
    for kind in dict.fromkeys(r["kind"] for r in rows):
        mine = [r for r in rows if r["kind"] == kind]
        over = [r for r in mine if r["flagged_pct"] > limit]
        lines.append(f"{kind}: {len(mine)} volumes, {sum(r['flagged'] for r in mine)} of "
                     f"{sum(r['slices'] for r in mine)} slices flagged; over {limit:g} %: {len(over)}"
                     + (f" ({', '.join(r['input'] for r in over)})" if over else ""))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pet", nargs="*", default=[], help="PET volumes (file or DICOM folder), each assessed alone")
    ap.add_argument("--ct", nargs="*", default=[], help="CT volumes, each assessed alone")
    ap.add_argument("--pair", nargs=2, action="append", default=[], metavar=("CT", "PET"))
    ap.add_argument("--studies", type=Path,
                    help="a folder of <ID>_CT / <ID>_PET pairs, or of dicom/<ID>/CT|PET/image: each PET alone, CT alone, pair")
    ap.add_argument("--select", choices=("all", "even", "odd"), default="all", help="patients of --studies by number")
    ap.add_argument("--exclude", nargs="*", default=[], metavar="ID", help="patients of --studies left out")
    ap.add_argument("--model", default=None)
    ap.add_argument("--threshold", type=float, default=2.0)
    ap.add_argument("--json")
    args = ap.parse_args()

    if args.studies:
        for ct, pet in studies_in(args.studies, args.select, tuple(args.exclude)):
            args.pet.append(str(pet))
            args.ct.append(str(ct))
            args.pair.append([str(ct), str(pet)])
    scorer = Scorer(load_model(args.model), "auto")
    runs = [("PET alone", {"pet": p}) for p in args.pet] + [("CT alone", {"ct": c}) for c in args.ct]
    runs += [("PET/CT", {"ct": c, "pet": p}) for c, p in args.pair]
    rows = []
    for kind, inputs in runs:
        a = assess(**inputs, scorer=scorer, threshold=args.threshold)
        named = a.causes  # names every slice: read once
        causes = collections.Counter(named[k] for k in np.flatnonzero(a.flagged))
        # A slice that passes but carries a fault's name in scores.csv misleads as much as a false flag.
        passed_named = collections.Counter(named[k] for k in np.flatnonzero(~a.flagged) if named[k] != "none")
        row = {
            "kind": kind,
            "input": " + ".join(str(v) for v in inputs.values()),
            "slices": int(a.scores.size),
            "flagged": int(a.flagged.sum()),
            "flagged_pct": float(100 * a.flagged.mean()),
            "mean": float(a.scores.mean()),
            "p10": float(np.percentile(a.scores, 10)),
            "flagged_causes": dict(causes.most_common()),
            "passed_named_fault": int(sum(passed_named.values())),
            "passed_causes": dict(passed_named.most_common()),
        }
        rows.append(row)
        print(f"{kind:>9} {row['input']}: {row['flagged']}/{row['slices']} flagged ({row['flagged_pct']:.1f} %), "
              f"mean {row['mean']:.2f}, p10 {row['p10']:.2f}, causes {row['flagged_causes']}; "
              f"passed but named a fault {row['passed_named_fault']} {row['passed_causes']}", flush=True)
    print("\n".join(totals(rows)))
    if args.json:
        Path(args.json).write_text(json.dumps({"model": scorer.model.summary, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()

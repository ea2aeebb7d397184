"""Make the README / extension-catalog screenshot headlessly (slicer-core, no GPU needed).

    python benchmarks/make_screenshots.py                 # -> Resources/Screenshots/overlay.png, chart.svg
    python benchmarks/make_screenshots.py --out DIR --allow-untrained   # try it with a placeholder model

Loads the bundled sample PET/CT study, assesses it with the bundled model, puts the results in
a scene with msiqa.mrml.show_results and renders the lowest-scoring slice with the heatmap over
the CT through Slicer's own slice pipeline (msiqa.mrml.render_overlay_png). A placeholder
(untrained) model is refused unless --allow-untrained: its uniform heatmap would be a fake picture.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "MSIQA"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "Resources" / "Screenshots")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--slice", type=int, default=None, help="slice k to show (default: the lowest score)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--opacity", type=float, default=0.5)
    parser.add_argument("--allow-untrained", action="store_true")
    args = parser.parse_args(argv)

    from msiqa import mrml
    from msiqa.assess import assess
    from msiqa.sample_data import load_sample_study
    from msiqa.weights import load_model
    import SimpleITK as sitk

    model = load_model()
    version = str(model.card.get("version", ""))
    if "untrained" in version and not args.allow_untrained:
        print(f"The bundled model is a placeholder ({version}); no screenshot made. "
              "Rerun once the trained weights are in MSIQA/msiqa/weights, or pass --allow-untrained.")
        return 2

    study = load_sample_study()
    ct, pet = sitk.ReadImage(str(study.ct_path)), sitk.ReadImage(str(study.pet_path))
    start = time.time()
    assessment = assess(ct=ct, pet=pet, model=model, device=args.device)
    print(f"assessed {len(assessment.scores)} slices in {time.time() - start:.1f} s on {assessment.model.get('device')}")

    scene, app = mrml.create_scene()
    ct_node = mrml.volume_node_from_image(scene, ct, "CT")
    display = ct_node.GetDisplayNode()
    display.AutoWindowLevelOff()
    display.SetWindowLevel(400, 40)  # mediastinal window, as the network sees the CT
    results = mrml.show_results(scene, assessment, ct_node, app_logic=app, opacity=args.opacity)
    k = int(assessment.scores.argmin()) if args.slice is None else args.slice
    out = mrml.render_overlay_png(
        scene, ct_node, scene.GetNodeByID(results.heatmap), k, args.out / "overlay.png",
        app_logic=app, width=args.width, opacity=args.opacity,
    )
    degraded = "degraded" if k in study.degraded_slices() else "clean"
    print(f"{out}: slice {k} ({degraded} in the sample study), score {assessment.scores[k]:.2f}")
    from msiqa.score_chart import score_chart_svg

    (args.out / "chart.svg").write_text(score_chart_svg(assessment) + "\n", encoding="utf-8")
    print(f"{args.out / 'chart.svg'}: the per-slice chart, as the report shows it")
    return 0


if __name__ == "__main__":
    sys.exit(main())

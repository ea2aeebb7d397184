"""Do the bundled model's frozen features see a scanner-made fault? A linear probe answers.

    python benchmarks/feature_probe.py misregistration --min-severity 10
    python benchmarks/feature_probe.py pet_respiratory_motion --min-severity 20

Scanner-made groups (``training.physical_faults.build_bank``, the slices where the fault shows:
``pick="visible"``; each slice clean and at five severities, shown as PET/CT) of simulated patients
1..N (noise seed 11) fit an L2 logistic regression on the pooled features of every member (what the
cause and score layers read), faulted at ``--min-severity`` or more against clean; patients
101-104 (noise seed 12), never trained on, judge it. Printed for both: the AUC over all slices (the
probe must tell a faulted slice from any clean one) and the share of faulted versions it ranks above
their own clean slice (the same patient and slice: the fault alone differs).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "MSIQA"))

from msiqa.models import members_of  # noqa: E402
from msiqa.training.phantom_bank import render_layers  # noqa: E402
from msiqa.training.physical_faults import SHOWN_IN, build_bank  # noqa: E402
from msiqa.training.refit import _pooled  # noqa: E402
from msiqa.weights import load_model  # noqa: E402


def features(net, pictures: list[np.ndarray]) -> np.ndarray:
    """Each member's pooled features and hidden score cells, side by side: what the refit fits on."""
    with torch.inference_mode():
        return np.hstack([t.astype(np.float64) for m in members_of(net) for t in _pooled(m, np.stack(pictures))])


def groups(net, family: str, anatomies: list[int], noise_seed: int):
    """Features, group index and severity (0: clean) of every slice of the family's bank."""
    start = time.time()
    bank = build_bank(anatomies, noise_seed, slices_per_family=6, severities=5, seed=7, pick="visible",
                      families=[family])
    x, group, severity = [], [], []
    for i, g in enumerate(bank):
        x.append(features(net, [render_layers(s.layers("petct")) for s in [g.clean, *(f.slice for f in g.faulted)]]))
        group += [i] * (1 + len(g.faulted))
        severity += [0.0] + [f.severity for f in g.faulted]
    print(f"patients {anatomies[0]}-{anatomies[-1]}: {len(bank)} groups in {time.time() - start:.0f} s", flush=True)
    return np.vstack(x), np.array(group), np.array(severity)


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    r, n1 = rankdata(score), positive.sum()
    return float((r[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * (len(score) - n1)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("family", choices=[f for f in SHOWN_IN if "petct" in SHOWN_IN[f]])
    ap.add_argument("--min-severity", type=float, required=True, help="faulted from here (the family's unit)")
    ap.add_argument("--patients", type=int, default=10, help="simulated patients 1..N fit the probe")
    ap.add_argument("--l2", type=float, default=0.01)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()

    net = load_model(args.model).net.eval()
    fit = groups(net, args.family, list(range(1, args.patients + 1)), 11)
    judge = groups(net, args.family, [101, 102, 103, 104], 12)
    x, _, severity = fit
    used = (severity == 0) | (severity >= args.min_severity)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    a = torch.tensor((x[used] - mu) / sd)
    y = torch.tensor((severity[used] > 0).astype(np.float64))
    w = torch.zeros(a.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(a @ w + b, y) + args.l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    for name, (x, group, severity) in (("fit", fit), ("held out", judge)):
        score = ((x - mu) / sd) @ w.detach().numpy() + float(b.detach())
        used = (severity == 0) | (severity >= args.min_severity)
        faulted, clean = severity >= args.min_severity, severity == 0
        above = np.concatenate([score[(group == i) & faulted] > score[(group == i) & clean] for i in np.unique(group)])
        print(f"{args.family} >= {args.min_severity:g}, {name}: AUC {auc(score[used], severity[used] > 0):.3f} over "
              f"{used.sum()} slices; faulted above its own clean slice {above.mean():.3f} of {len(above)}")


if __name__ == "__main__":
    main()

"""The ``msiqa`` command line.

    msiqa assess --ct CT --pet PET --out DIR     score every axial slice, write the result set
    msiqa score IMAGE...                         score single 2D pictures (PNG, JPEG, DICOM)
    msiqa demo                                   assess the bundled sample study
    msiqa models                                 list the bundled models and their cards
    msiqa devices [--json]                       the devices the network can run on

Every subcommand is a function ``f(args) -> exit code``, set with ``set_defaults(func=f)``.
Input and settings errors (:class:`msiqa.errors.MSIQAError`) print ``msiqa: error: ...`` and
exit with 2, Ctrl-C exits with 130; in both cases no output is left half-written: result
files are written into a hidden folder beside the target and moved into place only once
all of them are complete. ``--progress jsonl`` makes assess and demo report to a program
instead of a person (see :mod:`msiqa.progress`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import __version__
from .causes import name_causes
from .errors import InputError, MSIQAError
from .pictures import read_picture
from .progress import BarReporter, JsonlReporter, Reporter, event_channel

OUTPUTS = ("scores.csv", "heatmap.nrrd", "summary.json", "report.html")
SLICER_HINT = "install the 'slicer' extra: pip install msiqa[slicer]"
LOWEST_SHOWN = 6


# ---------------------------------------------------------------------------------------
# Argument parsing
# ---------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="msiqa",
        description="MS-IQA: per-slice image-quality assessment of PET/CT volumes.",
        epilog="Run 'msiqa COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"msiqa {__version__}")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    run = argparse.ArgumentParser(add_help=False)
    run.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                     help="where the network runs (default: auto = CUDA, then MPS, then CPU)")
    run.add_argument("--model", default=None, metavar="NAME_OR_PATH",
                     help="a bundled model name (see 'msiqa models') or a .safetensors file with its .json card "
                          "beside it (default: the bundled compact model)")
    batch = argparse.ArgumentParser(add_help=False)
    batch.add_argument("--batch-size", type=_positive_int, default=8, metavar="N",
                       help="slices per network pass (default: 8)")
    batch.add_argument("--threshold", type=_finite_float, default=2.0, metavar="T",
                       help="slices scoring below T are flagged (default: 2.0, on the 0-4 scale)")
    batch.add_argument("--progress", choices=("bar", "jsonl"), default="bar",
                       help="bar: what is happening and a progress bar on stderr (default); jsonl: one JSON "
                            "object per line on stdout (stage, start, progress, then done or error) and "
                            "nothing else there, for programs such as the Slicer module")

    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "assess", parents=[common, run, batch], help="score every axial slice of a volume",
        description="Score every axial slice of a CT, a PET, a PET/CT pair or an RGB fused volume and write "
                    "DIR/scores.csv, DIR/heatmap.nrrd, DIR/summary.json and DIR/report.html.",
    )
    p.add_argument("--ct", metavar="PATH", help="CT volume (NIfTI, NRRD, MHA or a DICOM series folder)")
    p.add_argument("--pet", metavar="PATH", help="PET volume (resampled onto the CT when both are given)")
    p.add_argument("--rgb", metavar="PATH", help="an already fused RGB volume (instead of --ct/--pet)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; earlier outputs are "
                                                               "replaced only once the new ones are complete)")
    p.add_argument("--mrb", metavar="FILE", help="also write a 3D Slicer scene bundle (.mrb); needs slicer-core")
    p.set_defaults(func=cmd_assess)

    p = sub.add_parser(
        "score", parents=[common, run], help="score single 2D pictures",
        description="Score 2D pictures (PNG, JPEG, single-frame DICOM, ...), at least 32x32 pixels. Grey pictures "
                    "are expanded to RGB; a CT DICOM is windowed as 'assess' windows CT. For volumes use "
                    "'msiqa assess'. A picture that cannot be read is listed with the reason in the error column "
                    "(and on stderr), the others are still scored, and the exit code is 2.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="picture files to score")
    p.add_argument("--csv", metavar="OUT", help="write image,score,error rows to this CSV file instead of printing "
                                                "them (kept as it was if no picture could be scored)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser(
        "demo", parents=[common, run, batch], help="assess the bundled sample PET/CT study",
        description="Assess the bundled sample study (CT + PET) and write the same outputs as 'assess'.",
    )
    p.add_argument("--out", default="msiqa-demo", metavar="DIR", help="output folder (default: ./msiqa-demo)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("models", help="list the bundled models", description="Show each bundled model's card.")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("devices", help="list the devices the network can run on",
                       description="List the devices PyTorch sees (CUDA GPUs, Apple MPS, the CPU) and which one "
                                   "--device auto picks.")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=cmd_devices)

    # The training commands live in their own package, which may be absent.
    try:
        from .training.commands import add_parsers
    except ImportError:
        add_parsers = None
    if add_parsers is not None:
        add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors: argparse has printed the message
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    _quiet_libraries()
    if getattr(args, "progress", None) == "jsonl":
        with event_channel() as events:
            return _run(func, args, JsonlReporter(events))
    return _run(func, args, BarReporter(quiet=getattr(args, "quiet", False)))


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace, reporter: Reporter) -> int:
    args.reporter = reporter
    try:
        return int(func(args) or 0)
    except MSIQAError as e:
        print(f"msiqa: error: {e}", file=sys.stderr)
        reporter.error(str(e), 2)
        return 2
    except KeyboardInterrupt:
        print("msiqa: interrupted; no output was written.", file=sys.stderr)
        reporter.error("interrupted; no output was written.", 130)
        return 130
    except BaseException as e:  # a bug: the traceback goes to stderr, the event stream still ends
        reporter.error(f"internal error ({type(e).__name__}: {e}); see the messages on stderr.", 1)
        raise
    finally:
        reporter.close()


def _quiet_libraries() -> None:
    """Keep library chatter off the user's screen; what matters is checked and said in our words.

    ITK and GDCM print raw "WARNING: In .../itkGDCMSeriesFileNames.cxx" lines (for example for a
    folder without DICOM, or a series with a gap, both refused with our own message); they are
    switched off for this process only, the command line's, never inside Slicer.
    """
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)


# ---------------------------------------------------------------------------------------
# Writing a result set all at once
# ---------------------------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _Staging:
    """A hidden folder beside ``out`` (and one beside the .mrb file) to write into.

    :meth:`commit` moves the finished files into place; leaving the ``with`` block removes
    whatever is left, and on an error also the parent folders this created.
    """

    def __init__(self, out: Path, mrb: Path | None = None):
        self.out = out
        self.mrb = mrb
        self._created: list[Path] = []
        self._temps: list[Path] = []
        self.dir: Path | None = None
        self.mrb_file: Path | None = None

    def _mkdirs(self, folder: Path) -> None:
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for d in reversed(missing):
            d.mkdir()
            self._created.append(d)

    def __enter__(self) -> "_Staging":
        try:
            self._mkdirs(self.out.parent)
            self.dir = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.partial-", dir=self.out.parent))
            self._temps.append(self.dir)
            os.chmod(self.dir, 0o777 & ~_umask())  # mkdtemp makes it private; the result folder should not be
            if self.mrb is not None:
                self._mkdirs(self.mrb.parent)
                mrb_dir = Path(tempfile.mkdtemp(prefix=f".{self.mrb.stem}.partial-", dir=self.mrb.parent))
                self._temps.append(mrb_dir)
                self.mrb_file = mrb_dir / self.mrb.name
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        for d in self._temps:
            shutil.rmtree(d, ignore_errors=True)
        if exc_type is not None:
            for d in reversed(self._created):
                try:
                    d.rmdir()  # only if still empty
                except OSError:
                    pass
        return False

    def path(self, name: str) -> Path:
        assert self.dir is not None
        return self.dir / name

    def commit(self, names: tuple[str, ...]) -> None:
        assert self.dir is not None
        if not self.out.exists():
            os.replace(self.dir, self.out)  # one atomic rename
        else:
            # Swap file by file; put the old files back if anything fails half-way.
            backup = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.old-", dir=self.out.parent))
            self._temps.append(backup)
            old: list[str] = []
            new: list[str] = []
            try:
                for name in names:
                    if (self.out / name).exists():
                        os.replace(self.out / name, backup / name)
                        old.append(name)
                for name in names:
                    os.replace(self.dir / name, self.out / name)
                    new.append(name)
            except BaseException:
                for name in new:
                    os.replace(self.out / name, self.dir / name)
                for name in old:
                    os.replace(backup / name, self.out / name)
                raise
        if self.mrb is not None and self.mrb_file is not None:
            shutil.move(str(self.mrb_file), str(self.mrb))


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder (it is created if missing).")
    _check_writable(out.parent, f"--out {out}")
    if out.exists():
        _check_writable(out, f"--out {out}")


def _check_writable(folder: Path, what: str) -> None:
    """Fail now, not after the network has run, if nothing can be written in ``folder`` (or in the
    nearest folder above it that exists, where the missing ones would be created)."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{what}: {existing} is a file, so no folder can be made inside it. Choose another place.")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".msiqa-write-test-", dir=existing))
    except OSError as e:
        raise InputError(f"{what}: cannot write in {existing} ({e.strerror or e}). Choose a folder you can write to.") from None


def _import_write_mrb():
    try:
        from .mrml import write_mrb
    except ImportError as e:
        raise InputError(f"--mrb needs the Slicer scene writer, which could not be imported ({e}); {SLICER_HINT}") from None
    return write_mrb


def _check_mrb(value: str | None) -> tuple[Path | None, Callable | None]:
    if not value:
        return None, None
    path = Path(value)
    if path.suffix.lower() != ".mrb":
        raise InputError(f"--mrb {value}: a Slicer scene bundle file name must end in .mrb.")
    if path.exists() and path.is_dir():
        raise InputError(f"--mrb {value} is a folder; give a file name ending in .mrb.")
    _check_writable(path.parent, f"--mrb {value}")
    return path, _import_write_mrb()


def _write_scores_csv(path: Path, assessment) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["slice", "score", "flagged", "cause", "cause_confidence"])
        rows = zip(assessment.scores, assessment.flagged, assessment.causes, assessment.cause_confidence)
        for k, (score, flagged, cause, confidence) in enumerate(rows):
            w.writerow([k, f"{float(score):.4f}", int(bool(flagged)), cause,
                        "" if np.isnan(confidence) else f"{float(confidence):.3f}"])


HEATMAP_GZIP_LEVEL = 6  # 9 gains 1 % and takes 4x as long


def write_heatmap(assessment, path: Path) -> None:
    """Write the heatmap as a gzip NRRD, its values rounded to the colour table's steps: the float
    noise in the low bits is what kept gzip from shrinking it (512x512x200: 154 MB -> 16.7 MB).
    Rounds ``assessment.heatmap`` in place, slice by slice (no second copy of a large study in
    memory), so that the assessment equals what the file holds."""
    import SimpleITK as sitk

    from .colormap import display_steps

    for k, heat in enumerate(assessment.heatmap):
        assessment.heatmap[k] = display_steps(heat)
    sitk.WriteImage(assessment.heatmap_image(), str(path), True, HEATMAP_GZIP_LEVEL)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _describe(summary: dict[str, Any]) -> str:
    flagged = summary["flagged_slices"]
    shown = ", ".join(map(str, flagged[:20])) + (", ..." if len(flagged) > 20 else "")
    text = (f"mean score {summary['mean']:.2f}, min {summary['min']:.2f} (slice {summary['min_slice']}), "
            f"{summary['flagged_count']} of {summary['slices']} slices below {summary['threshold']:g}")
    return text + (f": {shown}" if flagged else "")


def assess_to_dir(
    out: str | Path,
    inputs: dict[str, str | os.PathLike | None],
    *,
    device: str = "auto",
    batch_size: int = 8,
    threshold: float = 2.0,
    model: str | None = None,
    mrb: str | None = None,
    reporter: Reporter = Reporter(),
    title: str = "MS-IQA image-quality report",
):
    """Assess ``inputs`` ({"CT": path, "PET": path} or {"RGB": path}) and write the result set to ``out``,
    telling ``reporter`` what happens (see :mod:`msiqa.progress`).

    Returns (assessment, summary dict as written to summary.json).
    """
    out = Path(out)
    _check_out_dir(out)
    paths = {role: Path(p) for role, p in inputs.items() if p}
    if not paths:
        raise InputError("nothing to assess: give --ct and/or --pet, or --rgb.")
    if "RGB" in paths and len(paths) > 1:
        raise InputError("give either --rgb, or --ct and/or --pet, not both.")
    mrb_path, write_mrb = _check_mrb(mrb)

    reporter.stage("reading", inputs=list(paths))
    from .render import SliceRenderer
    from .report import collect_lowest, write_report

    renderer = SliceRenderer(ct=paths.get("CT"), pet=paths.get("PET"), rgb=paths.get("RGB"))
    images = {role: img for role, img in (("CT", renderer.ct), ("PET", renderer.pet), ("RGB", renderer.rgb))
              if img is not None}
    reporter.stage("loading")
    from .assess import Scorer, assess  # imports torch: seconds, so after the first words to the user
    from .weights import load_model

    scorer = Scorer(load_model(model), device)
    if renderer.ct is not None and renderer.pet is not None:
        reporter.stage("resampling")
    reporter.start(len(renderer), str(scorer.device))
    assessment = assess(
        ct=renderer.ct, pet=renderer.pet, rgb=renderer.rgb, scorer=scorer, batch_size=batch_size,
        threshold=threshold, settings=renderer.settings, progress=reporter.progress,
    )
    reporter.stage("rendering")
    pictures, maps = collect_lowest(assessment, renderer, LOWEST_SHOWN)
    renderer = None  # the input volumes are needed from here on only for the scene bundle:
    if write_mrb is None:  # let them go, so writing (which copies the heatmap) does not raise the peak
        images = {}

    sources = {role: str(p.resolve()) for role, p in paths.items()}
    summary = {
        **assessment.summary(),
        "inputs": sources,
        "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    reporter.stage("writing")
    try:
        with _Staging(out.absolute(), mrb_path.absolute() if mrb_path else None) as staging:
            _write_scores_csv(staging.path("scores.csv"), assessment)
            write_heatmap(assessment, staging.path("heatmap.nrrd"))
            staging.path("summary.json").write_text(
                json.dumps(summary, indent=2, default=_json_default) + "\n", encoding="utf-8"
            )
            write_report(assessment, staging.path("report.html"), pictures=pictures, maps=maps,
                         inputs=sources, title=title)
            if write_mrb is not None:
                name = next(iter(paths.values())).name.split(".")[0] or "MS-IQA"
                try:
                    write_mrb(staging.mrb_file, assessment, images, name=name)
                except ImportError as e:
                    raise InputError(f"--mrb: writing the scene needs slicer-core ({e}); {SLICER_HINT}") from None
            staging.commit(OUTPUTS)
    except OSError as e:
        raise MSIQAError(f"cannot write the outputs to {out}: {e}") from None
    except RuntimeError as e:  # SimpleITK reports write failures as RuntimeError
        raise MSIQAError(f"cannot write the outputs to {out}: {str(e).strip()[-300:]}") from None
    return assessment, summary


# ---------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------


def cmd_assess(args: argparse.Namespace) -> int:
    out = Path(args.out)
    assessment, summary = assess_to_dir(
        out, {"CT": args.ct, "PET": args.pet, "RGB": args.rgb}, device=args.device, batch_size=args.batch_size,
        threshold=args.threshold, model=args.model, mrb=args.mrb, reporter=args.reporter,
    )
    args.reporter.done(str(out.absolute()))
    print(f"wrote {', '.join(OUTPUTS)} to {out}")
    if args.mrb:
        print(f"wrote the Slicer scene {args.mrb}")
    print(_describe(summary))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from .sample_data import load_sample_study
    except ImportError as e:
        raise InputError(f"the bundled sample study is not available in this installation ({e}).") from None
    study = load_sample_study()
    out = Path(args.out)
    assessment, summary = assess_to_dir(
        out, {"CT": study.ct_path, "PET": study.pet_path}, device=args.device, batch_size=args.batch_size,
        threshold=args.threshold, model=args.model, reporter=args.reporter, title="MS-IQA report: sample PET/CT study",
    )
    args.reporter.done(str(out.absolute()))
    print(f"report: {(out / 'report.html').resolve()}")
    print(_describe(summary))
    degraded = getattr(study, "degraded_slices", None)
    if callable(degraded):
        ks = sorted(int(k) for k in degraded())
        if ks:
            print(f"the sample's degraded slices (for comparison): {', '.join(map(str, ks))}")
    return 0


# --- msiqa score -----------------------------------------------------------------------

SCORE_COLUMNS = ("image", "score", "cause", "cause_confidence", "error")


def _score_row(image: str, scored=None, causes: Sequence[str] = (), error: str = "") -> list[str]:
    """One row of ``score``'s CSV from one picture's ``Scored``; an image that could not be scored
    has no score and says why."""
    if scored is None:
        return [image, "", "", "", error]
    cause, confidence = "", ""
    if scored.causes is not None and causes:
        # 'score' flags nothing (it has no threshold), so this is the head's own first choice
        names, probs = name_causes(scored.causes[:1], tuple(causes), np.zeros(1, dtype=bool))
        cause, confidence = names[0], f"{float(probs[0]):.3f}"
    return [image, f"{float(scored.scores[0]):.4f}", cause, confidence, error]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def cmd_score(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .assess import Scorer
    from .weights import load_model

    target = Path(args.csv) if args.csv else None
    if target is not None:
        if target.is_dir():
            raise InputError(f"--csv {target} is a folder; give a file name.")
        _check_writable(target.parent, f"--csv {target}")
    scorer = Scorer(load_model(args.model), args.device)
    rows: list[list[str]] = []
    failures: list[str] = []
    for name in tqdm(args.images, desc="scoring", unit="image", file=sys.stderr, disable=args.quiet or len(args.images) < 2,
                     leave=False, dynamic_ncols=True):
        try:
            picture = read_picture(name)
        except MSIQAError as e:  # score the others; this one is listed with its reason
            failures.append(str(e))
            rows.append(_score_row(name, error=str(e)))
            continue
        rows.append(_score_row(name, scorer(picture[None]), scorer.causes))
    scored = len(rows) - len(failures)
    if scored:  # a file with no score in it would only replace an earlier, useful one
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(SCORE_COLUMNS)
        w.writerows(rows)
        if target is not None:
            _write_file_atomically(target, buf.getvalue())
            note = f" and {_plural(len(failures), 'failure')}" if failures else ""
            print(f"wrote {_plural(scored, 'score')}{note} to {target}", file=sys.stderr)
        else:
            sys.stdout.write(buf.getvalue())
    if len(failures) == 1 and len(rows) == 1:
        raise InputError(failures[0])
    if failures:
        listing = "\n".join(f"  {message}" for message in failures)
        print(f"msiqa: error: {len(failures)} of {len(rows)} images could not be scored"
              f"{' (listed in the CSV with their reason)' if scored else ''}:\n{listing}", file=sys.stderr)
        return 2
    return 0


def _write_file_atomically(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.partial-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise MSIQAError(f"cannot write {target}: {e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- msiqa models ----------------------------------------------------------------------


def _format_value(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for key, sub in value.items():
            if isinstance(sub, (dict, list)) and sub and not _is_flat_list(sub):
                lines.append(f"{pad}{key}:")
                lines += _format_value(sub, indent + 1)
            else:
                lines.append(f"{pad}{key}: {_scalar(sub)}")
        return lines
    if isinstance(value, list):
        if _is_flat_list(value):
            return [pad + _scalar(value)]
        lines = []
        for item in value:
            sub = _format_value(item, indent + 1)
            sub[0] = pad + "- " + sub[0].lstrip()
            lines += sub
        return lines
    return [pad + _scalar(value)]


def _is_flat_list(value: Any) -> bool:
    return isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value)


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_scalar(v) for v in value) if value else "(none)"
    if isinstance(value, dict):
        return "(none)"
    if value is None:
        return "-"
    return str(value)


def format_card(card: dict[str, Any], *, default: bool = False) -> str:
    name = card.get("name", "?")
    lines = [f"{name}{'  (default)' if default else ''}"]
    first = ("version", "preset", "sha256", "dtype", "file")
    for key in first:
        if key in card:
            lines.append(f"  {key + ':':<16}{_scalar(card[key])}")
    config = card.get("config")
    if isinstance(config, dict):
        # A one-branch network names only the backbone it holds.
        branches = config.get("branches", "both")
        keys = [k for k in ("cnn", "swin") if branches in ("both", k)] + ["branches", "head"]
        parts = [f"{k}={config[k]}" for k in keys if k in config]
        lines.append(f"  {'network:':<16}{', '.join(parts)}")
    for key, value in card.items():
        if key in first or key in ("name", "config"):
            continue
        label = key.replace("_", " ")
        if isinstance(value, (dict, list)) and value and not _is_flat_list(value):
            lines.append(f"  {label}:")
            lines += _format_value(value, 2)
        else:
            lines.append(f"  {label + ':':<16}{_scalar(value)}")
    return "\n".join(lines)


def cmd_models(args: argparse.Namespace) -> int:
    from .weights import DEFAULT_MODEL, bundled_models

    cards = bundled_models()
    if not cards:
        raise MSIQAError("no bundled models found; reinstall msiqa.")
    print("\n\n".join(format_card(c, default=c.get("name") == DEFAULT_MODEL) for c in cards))
    return 0


# --- msiqa devices ---------------------------------------------------------------------


def cmd_devices(args: argparse.Namespace) -> int:
    from .devices import probe

    info = probe()
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"PyTorch {info['torch']}; --device auto picks {info['auto']}")
    for d in info["devices"]:
        extra = f", {d['memory_gb']:g} GB" if "memory_gb" in d else ""
        print(f"  {d['key']}{':' + str(d['index']) if 'index' in d else ''}  {d['name']}{extra}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

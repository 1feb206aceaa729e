"""`siamatch evaluate`: our model and the dlib baseline on the same pair lists, in one run.

For each benchmark (an LFW pair list or a TSV) and each method, it reports accuracy at the
method's own threshold (the checkpoint's, chosen on validation pairs; dlib's 0.6), the
best-threshold accuracy (optimistic: chosen on the test pairs themselves), ROC AUC, TAR at
FAR 1e-2 / 1e-3, failures (counted as wrong answers, and reported separately) and pairs/s;
writes metrics.json, per-pair scores, a ROC plot and score histograms.

Our model runs in-process through THE serving path (model.preprocess.Preprocessor, then
model.inference.PairScorer in batches), or with --via-service through a running gRPC service,
which must give the same scores.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.metrics import VerificationReport, summarise
from training.pairs import Pair, read_pairs

FARS = (1e-2, 1e-3)


@dataclass
class MethodRun:
    """One method's scores on one benchmark; NaN marks a pair that failed to process."""

    method: str
    benchmark: str
    scores: np.ndarray
    labels: np.ndarray
    threshold: float
    seconds: float
    score_name: str
    failures: Counter = field(default_factory=Counter)  # reason -> count
    failure_examples: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    @property
    def pairs_per_second(self) -> float:
        return len(self.scores) / self.seconds if self.seconds > 0 else float("nan")

    def report(self) -> VerificationReport:
        return summarise(self.scores, self.labels, self.threshold, FARS)

    def fail(self, index: int, reason: str, message: str) -> None:
        self.scores[index] = np.nan
        self.failures[reason] += 1
        if len(self.failure_examples) < 10:
            self.failure_examples.append(message)


def _chunks(items: list, size: int) -> Iterator[tuple[int, list]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def _new_run(method: str, benchmark: str, pairs: list[Pair], threshold: float, score_name: str):
    return MethodRun(
        method=method,
        benchmark=benchmark,
        scores=np.full(len(pairs), np.nan),
        labels=np.array([p.same for p in pairs], dtype=bool),
        threshold=threshold,
        seconds=0.0,
        score_name=score_name,
    )


class InProcessScorer:
    """Our model exactly as a worker runs it: bytes → Preprocessor → PairScorer, in batches.
    Every pair's images are processed anew (no cache across pairs), as the service does."""

    def __init__(self, checkpoint: str | None, device: str, batch_size: int, detector_score: float):
        from model.checkpoint import load_default_or
        from model.inference import PairScorer
        from model.preprocess import Preprocessor

        self.loaded = load_default_or(checkpoint)
        self.preprocessor = Preprocessor(
            config=self.loaded.preprocess, detector_score=detector_score
        )
        self.scorer = PairScorer(self.loaded, device=device)
        self.batch_size = batch_size

    @property
    def description(self) -> dict:
        return {
            "model_version": self.loaded.model_version,
            "trained": self.loaded.trained,
            "threshold": self.loaded.threshold,
            "device": str(self.scorer.device),
        }

    def run(self, benchmark: str, pairs: list[Pair]) -> MethodRun:
        from model.errors import ImageError

        run = _new_run("ours", benchmark, pairs, self.loaded.threshold, "similarity score")
        start = time.perf_counter()
        with tqdm(total=len(pairs), desc=f"ours / {benchmark}", unit="pair") as bar:
            for offset, chunk in _chunks(pairs, self.batch_size):
                indices, crops_a, crops_b = [], [], []
                for k, pair in enumerate(chunk):
                    try:
                        crop_a = self._crop(pair.path_a)
                        crop_b = self._crop(pair.path_b)
                    except ImageError as exc:
                        run.fail(offset + k, exc.reason, str(exc))
                        continue
                    except OSError as exc:
                        run.fail(offset + k, "UNREADABLE_FILE", str(exc))
                        continue
                    indices.append(offset + k)
                    crops_a.append(crop_a)
                    crops_b.append(crop_b)
                if indices:
                    run.scores[indices] = self.scorer.score(crops_a, crops_b)
                bar.update(len(chunk))
        run.seconds = time.perf_counter() - start
        run.details = self.description
        return run

    def _crop(self, path: Path) -> np.ndarray:
        return self.preprocessor.from_bytes(path.read_bytes(), str(path)).crop


class ServiceScorer:
    """Every pair through a running service's Verify RPC (several in flight, so that the
    workers can batch them). A failure outcome or an RPC error is a failed pair."""

    def __init__(self, address: str, concurrency: int, timeout_s: float, max_message_bytes: int):
        self.address = address
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_message_bytes = max_message_bytes

    def run(self, benchmark: str, pairs: list[Pair]) -> MethodRun:
        import grpc

        from protos.siamatch.v1 import face_verification_pb2 as pb
        from server.client import FaceVerificationClient

        run = _new_run("ours", benchmark, pairs, float("nan"), "similarity score")
        versions: set[tuple[str, bool, float]] = set()
        with FaceVerificationClient(
            self.address, self.max_message_bytes, timeout=self.timeout_s
        ) as client:

            def verify(pair: Pair):
                try:
                    return client.verify(pair.path_a.read_bytes(), pair.path_b.read_bytes())
                except grpc.RpcError as exc:
                    return exc

            start = time.perf_counter()
            with ThreadPoolExecutor(self.concurrency) as pool:
                replies = pool.map(verify, pairs)
                desc = f"ours via {self.address} / {benchmark}"
                for index, reply in enumerate(
                    tqdm(replies, total=len(pairs), desc=desc, unit="pair")
                ):
                    pair = pairs[index]
                    if isinstance(reply, grpc.RpcError):
                        run.fail(
                            index,
                            f"RPC_{reply.code().name}",
                            f"{pair.path_a} | {pair.path_b}: {reply.details()}",
                        )
                    elif reply.WhichOneof("outcome") == "failure":
                        reason = pb.FailureReason.Name(reply.failure.reason)
                        run.fail(index, reason, f"{reply.failure.image}: {reply.failure.message}")
                    else:
                        result = reply.result
                        run.scores[index] = result.score
                        versions.add((result.model_version, result.model_trained, result.threshold))
            run.seconds = time.perf_counter() - start
        if len(versions) > 1:
            raise RuntimeError(f"the service answered with several models/thresholds: {versions}")
        if versions:
            version, trained, threshold = versions.pop()
            run.threshold = threshold
            run.details = {
                "model_version": version,
                "trained": trained,
                "threshold": threshold,
                "via_service": self.address,
            }
        return run


class DlibScorer:
    """dlib's pipeline (see training.dlib_baseline); score = -distance, accepted if >= -0.6.

    Runs in `workers` processes (dlib's descriptor is single-threaded), each keeping the
    descriptors of the photos it has seen: a photo that recurs across pairs is described once."""

    def __init__(self, workers: int = 1) -> None:
        from training.dlib_baseline import DlibFaceModel

        DlibFaceModel()  # fail here, before any work, if dlib or its model files are missing
        self.workers = max(1, workers)

    def run(self, benchmark: str, pairs: list[Pair]) -> MethodRun:
        from training.dlib_baseline import DETECT_MAX_SIDE, TOLERANCE, UPSAMPLE

        run = _new_run("dlib", benchmark, pairs, -TOLERANCE, "-(Euclidean distance), dlib")
        start = time.perf_counter()
        jobs = [(p.path_a, p.path_b) for p in pairs]
        with ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_dlib_start
        ) as pool:
            outcomes = pool.map(_dlib_distance, jobs, chunksize=8)
            bar = tqdm(outcomes, total=len(jobs), desc=f"dlib / {benchmark}", unit="pair")
            for index, (distance, reason, message) in enumerate(bar):
                if distance is None:
                    run.fail(index, reason, message)
                else:
                    run.scores[index] = -distance
        run.seconds = time.perf_counter() - start
        run.details = {
            "tolerance": TOLERANCE,
            "upsample": UPSAMPLE,
            "hog_max_side": DETECT_MAX_SIDE,
            "num_jitters": 1,
            "landmarks": "5-point",
            "detector": "HOG",
            "processes": self.workers,
        }
        return run


_dlib_model = None
_dlib_descriptors: dict[Path, object] = {}


def _dlib_start() -> None:
    global _dlib_model
    from training.dlib_baseline import DlibFaceModel

    _dlib_model = DlibFaceModel()


def _dlib_describe(path: Path):
    """The photo's descriptor, or the exception describing it failed (both remembered)."""
    from training.dlib_baseline import NoFaceForDlib, load_rgb

    if path not in _dlib_descriptors:
        try:
            _dlib_descriptors[path] = _dlib_model.describe(load_rgb(path), str(path))
        except (NoFaceForDlib, OSError) as exc:  # OSError: Pillow cannot read the file
            _dlib_descriptors[path] = exc
    return _dlib_descriptors[path]


def _dlib_distance(paths: tuple[Path, Path]) -> tuple[float | None, str, str]:
    """(distance, "", "") or (None, failure reason, message), for one pair."""
    from training.dlib_baseline import NoFaceForDlib

    a, b = (_dlib_describe(path) for path in paths)
    for side in (a, b):
        if isinstance(side, NoFaceForDlib):
            return None, "NO_FACE", str(side)
        if isinstance(side, Exception):
            return None, "UNDECODABLE_IMAGE", str(side)
    return float(np.linalg.norm(a - b)), "", ""


def parse_benchmark(spec: str) -> tuple[str, Path]:
    """`NAME=PATH` or `PATH` (the name is then the file's stem)."""
    name, sep, path = spec.partition("=")
    if not sep:
        return Path(spec).stem, Path(spec)
    return name, Path(path)


def subsample(pairs: list[Pair], limit: int | None) -> list[Pair]:
    """Evenly spaced pairs (keeps LFW's same/different balance); for quick development runs."""
    if not limit or limit >= len(pairs):
        return pairs
    picks = np.linspace(0, len(pairs) - 1, limit).round().astype(int)
    return [pairs[i] for i in picks]


def format_table(runs: list[MethodRun]) -> str:
    header = [
        "benchmark",
        "method",
        "pairs",
        "acc@thr",
        "best acc (optimistic)",
        "AUC",
        "TAR@FAR=1e-2",
        "TAR@FAR=1e-3",
        "failures",
        "pairs/s",
    ]
    rows = [header]
    for run in runs:
        r = run.report()
        rows.append(
            [
                run.benchmark,
                run.method,
                str(r.pairs),
                f"{r.accuracy:.4f}",
                f"{r.best_accuracy_optimistic:.4f}",
                f"{r.auc:.4f}",
                *(r.tar_at_far[f"{far:g}"].describe() for far in FARS),
                f"{r.failures} ({r.failures / max(r.pairs, 1):.1%})",
                f"{run.pairs_per_second:.1f}",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def write_outputs(out: Path, runs: list[MethodRun], pairs_by_benchmark: dict, meta: dict) -> dict:
    from training.plots import plot_roc, plot_score_histogram

    out.mkdir(parents=True, exist_ok=True)
    results = []
    for run in runs:
        report = run.report()
        results.append(
            {
                "benchmark": run.benchmark,
                "method": run.method,
                **report.to_dict(),
                "score": run.score_name,
                "seconds": run.seconds,
                "pairs_per_second": run.pairs_per_second,
                "failure_reasons": dict(run.failures),
                "failure_examples": run.failure_examples,
                "details": run.details,
            }
        )
        slug = f"{run.benchmark}_{run.method}"
        plot_score_histogram(
            run.scores,
            run.labels,
            run.threshold,
            out / f"scores_{slug}.png",
            f"{run.method} on {run.benchmark}",
            run.score_name,
        )
    for benchmark, pairs in pairs_by_benchmark.items():
        bench_runs = [r for r in runs if r.benchmark == benchmark]
        plot_roc(
            {r.method: (r.scores, r.labels) for r in bench_runs},
            out / f"roc_{benchmark}.png",
            f"ROC on {benchmark} ({len(pairs)} pairs; failures rejected)",
        )
        with open(out / f"scores_{benchmark}.tsv", "w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t")
            writer.writerow(["path_a", "path_b", "same", *(r.method for r in bench_runs)])
            for i, pair in enumerate(pairs):
                writer.writerow(
                    [
                        pair.path_a,
                        pair.path_b,
                        int(pair.same),
                        *(
                            "" if np.isnan(r.scores[i]) else f"{r.scores[i]:.6f}"
                            for r in bench_runs
                        ),
                    ]
                )
    document = {**meta, "results": results}
    (out / "metrics.json").write_text(json.dumps(document, indent=2, default=_json_default) + "\n")
    return document


def _json_default(value):
    if isinstance(value, float | np.floating):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Evaluate our model and the dlib baseline on pair lists.", add_help=add_help
    )
    parser.add_argument(
        "--pairs",
        action="append",
        required=True,
        metavar="[NAME=]PATH",
        help="a pair list: LFW format (pairsDevTest.txt, pairs.txt) or TSV path<TAB>path<TAB>0|1 "
        "(relative paths resolved against the TSV's folder). Repeat for several benchmarks.",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="image root of LFW-format lists (the folder of per-person folders)",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="our checkpoint (default: the shipped one, else untrained weights)",
    )
    parser.add_argument(
        "--via-service",
        default=None,
        metavar="ADDRESS",
        help="score our model through a running gRPC service at ADDRESS instead of in-process",
    )
    parser.add_argument(
        "--baseline",
        choices=("auto", "dlib", "none"),
        default="auto",
        help="peer baseline: auto = dlib when installed (the [baseline] extra)",
    )
    parser.add_argument(
        "--skip-ours",
        action="store_true",
        help="baseline only (e.g. LFW View 2, which our model may have seen)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/evaluate"),
        help="folder for metrics.json, per-pair scores and the plots",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per forward pass")
    parser.add_argument("--device", default="auto", help="torch device for our model")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch and OpenCV threads; dlib processes"
    )
    parser.add_argument(
        "--detector-score",
        type=float,
        default=0.7,
        help="YuNet score threshold (the serving default)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="with --via-service: requests in flight"
    )
    parser.add_argument(
        "--service-timeout",
        type=float,
        default=60.0,
        help="with --via-service: deadline per request, seconds",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="evaluate only N evenly spaced pairs of each list (development)",
    )
    return parser


def main(args: argparse.Namespace) -> dict:
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    benchmarks = {}
    for spec in args.pairs:
        name, path = parse_benchmark(spec)
        if name in benchmarks:
            raise SystemExit(f"benchmark name {name!r} given twice; use NAME=PATH")
        benchmarks[name] = subsample(read_pairs(path, args.root), args.limit)

    methods: list[tuple[str, Callable[[str, list[Pair]], MethodRun]]] = []
    if not args.skip_ours:
        if args.via_service:
            from siamatch.settings import Settings

            scorer = ServiceScorer(
                args.via_service,
                args.concurrency,
                args.service_timeout,
                Settings().grpc_max_message_bytes,
            )
        else:
            scorer = InProcessScorer(
                args.checkpoint, args.device, args.batch_size, args.detector_score
            )
            if not scorer.loaded.trained:
                print(
                    f"warning: {scorer.loaded.model_version} has untrained weights; its scores "
                    "are meaningless",
                    file=sys.stderr,
                )
        methods.append(("ours", scorer.run))
    if args.baseline != "none":
        from training.dlib_baseline import INSTALL_HINT, is_available

        if is_available():
            methods.append(("dlib", DlibScorer(args.threads).run))
        elif args.baseline == "dlib":
            raise SystemExit(INSTALL_HINT)
        else:
            print(f"note: no dlib baseline in this run; {INSTALL_HINT}", file=sys.stderr)
    if not methods:
        raise SystemExit("nothing to evaluate: --skip-ours with --baseline none")

    runs = []
    for name, pairs in benchmarks.items():
        for _, method_run in methods:
            runs.append(method_run(name, pairs))
            print(format_table(runs[-1:]), flush=True)  # each result as soon as it exists
    meta = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "benchmarks": {
            name: {"pairs": len(p), "source": str(parse_benchmark(s)[1])}
            for (name, p), s in zip(benchmarks.items(), args.pairs, strict=True)
        },
        "hardware": {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "conventions": {
            "accuracy": "at the method's own threshold; a failed pair counts as wrong",
            "best_accuracy_optimistic": "threshold chosen on these same pairs: optimistic",
            "roc_auc_tar": "failed pairs rejected (lowest score), as NIST FRVT counts failures",
            "tar_at_far": "null when negatives < 1/FAR (that FAR cannot be measured)",
        },
    }
    document = write_outputs(args.out, runs, benchmarks, meta)
    print(format_table(runs))
    print(f"\nwrote {args.out / 'metrics.json'}, roc_*.png, scores_*.png, scores_*.tsv")
    return document


if __name__ == "__main__":
    main(get_args_parser().parse_args())

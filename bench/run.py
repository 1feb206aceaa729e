"""`python -m bench.run`: the issue 5 benchmark in one command. Prints a table, writes PNG plots
and a JSON of every figure under bench/results/ (git-ignored).

Parts, in order: decode cost of a phone photo; the in-process floor (worker pipeline and model
alone); the service through real gRPC clients at each concurrency (`siamatch serve`, its own
private Redis); the batching sweep; dlib's pipeline on the same LFW photos; the targets.
Two photo sets: `lfw` (250 px LFW JPEGs) and `phone` (the same faces as 12 MP JPEGs).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

from bench import plots
from bench.inprocess import aligned_crops, decode_cost, model_rate, pipeline_rate
from bench.load import run_load
from bench.photos import PhotoPair, lfw_pairs, phone_pairs
from bench.service import ServiceConfig, private_redis, running_service, scratch_dir
from siamatch.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = Settings()
PARTS = ("decode", "floor", "service", "sweep", "dlib")
# Issue 5's targets.
TARGET_RATIO = 0.85
TARGET_P50_GAP_MS = 10.0
TARGET_DLIB_FACTOR = 5.0


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--lfw-root",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "lfw",
        help="LFW folder holding pairsDevTest.txt and lfw-deepfunneled/",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--duration-s",
        type=float,
        default=10.0,
        help="measured seconds per point (after a warm-up)",
    )
    parser.add_argument(
        "--full", action="store_true", help="the issue's 1-minute runs (sets --duration-s 60)"
    )
    parser.add_argument(
        "--warmup-s",
        type=float,
        default=None,
        help="unmeasured seconds before each service point (default: max(2, duration/5))",
    )
    parser.add_argument("--sets", default="lfw,phone", help="photo sets: lfw, phone")
    parser.add_argument("--pairs", type=int, default=32, help="LFW pairs used")
    parser.add_argument("--phone-pairs", type=int, default=8, help="of those, made phone-size")
    parser.add_argument(
        "--batch-sizes",
        type=ints,
        default=[1, 4, 8, 16, 32],
        help="in-process pipeline batch sizes",
    )
    parser.add_argument("--model-batch-sizes", type=ints, default=[1, 8, 16, 32, 64])
    parser.add_argument("--concurrency", type=ints, default=[1, 4, 16, 64])
    parser.add_argument("--workers", type=int, default=1, help="worker processes of `serve`")
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=DEFAULTS.max_batch_size,
        help="service under test (default: the service's own default)",
    )
    parser.add_argument(
        "--max-batch-wait-ms",
        type=float,
        default=DEFAULTS.max_batch_wait_ms,
        help="service under test (default: the service's own default)",
    )
    parser.add_argument("--sweep-batch-sizes", type=ints, default=[4, 16, 32])
    parser.add_argument("--sweep-waits-ms", type=floats, default=[0.0, 2.0, 10.0])
    parser.add_argument("--sweep-concurrency", type=int, default=16)
    parser.add_argument("--sweep-set", default="lfw", help="photo set of the batching sweep")
    parser.add_argument("--skip", default="", help=f"comma-separated parts to skip: {PARTS}")
    return parser


def main(args: argparse.Namespace) -> dict:
    if args.full:
        args.duration_s = 60.0
    warmup_s = args.warmup_s if args.warmup_s is not None else max(2.0, args.duration_s / 5)
    skip = set(filter(None, args.skip.split(",")))
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    lfw = lfw_pairs(args.lfw_root, args.pairs)
    photo_sets: dict[str, list[PhotoPair]] = {}
    for name in filter(None, args.sets.split(",")):
        if name == "lfw":
            photo_sets["lfw"] = lfw
        elif name == "phone":
            photo_sets["phone"] = phone_pairs(lfw[: args.phone_pairs], args.out / "photos")
        else:
            raise SystemExit(f"unknown photo set {name!r} (lfw, phone)")
    report: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "photo_sets": {
            name: {
                "pairs": len(pairs),
                "mean_bytes_per_pair": round(sum(p.nbytes for p in pairs) / len(pairs)),
            }
            for name, pairs in photo_sets.items()
        },
        "floor": {},
        "model_alone": [],
        "service": {},
        "sweep": [],
    }

    if "decode" not in skip and "phone" in photo_sets:
        report["decode"] = asdict(decode_cost(photo_sets["phone"][0].selfie))
        say("decode", report["decode"])
    if "floor" not in skip:
        measure_floor(args, photo_sets, report)
    latencies: dict[str, dict[int, list[float]]] = {}
    scratch = scratch_dir()
    service_config = ServiceConfig(args.workers, args.max_batch_size, args.max_batch_wait_ms)
    with open(args.out / "serve.log", "wb") as log, private_redis(scratch) as redis_url:
        if "service" not in skip:
            for name, pairs in photo_sets.items():
                runs, latencies[name] = [], {}
                with running_service(service_config, redis_url, pairs[0], log) as served:
                    for concurrency in args.concurrency:
                        result = run_load(
                            served.address, pairs, concurrency, args.duration_s, warmup_s
                        )
                        runs.append(result.summary())
                        latencies[name][concurrency] = result.latencies_ms
                        say(f"service {name} x{concurrency}", runs[-1])
                report["service"][name] = runs
        if "sweep" not in skip and args.sweep_set in photo_sets:
            pairs = photo_sets[args.sweep_set]
            for size in args.sweep_batch_sizes:
                for wait_ms in args.sweep_waits_ms:
                    config = ServiceConfig(args.workers, size, wait_ms)
                    with running_service(config, redis_url, pairs[0], log) as served:
                        result = run_load(
                            served.address,
                            pairs,
                            args.sweep_concurrency,
                            args.duration_s,
                            warmup_s,
                        )
                    row = {"max_batch_size": size, "max_batch_wait_ms": wait_ms, **result.summary()}
                    report["sweep"].append(row)
                    say(f"sweep {config.label()}", row)
    if "dlib" not in skip and "lfw" in photo_sets:
        measure_dlib(args, photo_sets["lfw"], report)

    report["targets"] = targets(report)
    report["elapsed_s"] = round(time.time() - started, 1)
    report["plots"] = write_plots(report, latencies, args.out)
    (args.out / "latencies.json").write_text(json.dumps(latencies))
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"\nwritten: {args.out / 'report.json'}, " + ", ".join(report["plots"]))
    return report


def measure_floor(args: argparse.Namespace, photo_sets: dict, report: dict) -> None:
    """The worker's own pipeline and the model alone, in this process, with a worker's threads."""
    from siamatch.settings import Settings
    from worker.main import configure_threads
    from worker.pairs import PairModel

    settings = Settings(workers=args.workers)
    threads = configure_threads(settings)
    model = PairModel.load(settings)
    report["floor_threads"] = threads
    for name, pairs in photo_sets.items():
        rates = []
        for size in args.batch_sizes:
            rate = pipeline_rate(model, pairs, size, args.duration_s)
            rates.append({**asdict(rate), "pairs_per_s": round(rate.pairs_per_s, 3)})
            say(f"floor {name} batch {size}", rates[-1])
        best = max(rates, key=lambda r: r["pairs_per_s"])
        single = next((r for r in rates if r["batch_size"] == 1), None)
        report["floor"][name] = {
            "by_batch_size": rates,
            "best_batch_size": best["batch_size"],
            "best_pairs_per_s": best["pairs_per_s"],
            "single_pair_ms": round(single["round_ms_p50"], 2) if single else None,
        }
    crops = aligned_crops(model, photo_sets.get("lfw") or next(iter(photo_sets.values())))
    for size in args.model_batch_sizes:
        rate = model_rate(model, crops, size, args.duration_s)
        report["model_alone"].append({**asdict(rate), "pairs_per_s": round(rate.pairs_per_s, 3)})
        say(f"model alone batch {size}", report["model_alone"][-1])
    del model, crops
    gc.collect()


def measure_dlib(args: argparse.Namespace, pairs: list[PhotoPair], report: dict) -> None:
    from bench.peer import dlib_rate
    from training.dlib_baseline import BaselineUnavailable

    try:
        rate, missed = dlib_rate(pairs, args.duration_s)
    except BaselineUnavailable as exc:
        report["dlib"] = {"unavailable": str(exc)}
        say("dlib", report["dlib"])
        return
    report["dlib"] = {
        "set": "lfw",
        "pairs": rate.pairs,
        "seconds": round(rate.seconds, 3),
        "pairs_per_s": round(rate.pairs_per_s, 3),
        "pair_ms_p50": round(rate.round_ms_p50, 2),
        "no_face_pairs": missed,
    }
    say("dlib", report["dlib"])


def targets(report: dict) -> list[dict]:
    """Issue 5's three figures, per photo set where they apply; `met` is None when unmeasured."""
    rows = []
    for name, runs in report["service"].items():
        floor = report["floor"].get(name, {})
        best = max((r["pairs_per_s"] for r in runs), default=0.0)
        if floor.get("best_pairs_per_s"):
            ratio = best / floor["best_pairs_per_s"]
            rows.append(
                {
                    "target": f"service/floor >= {TARGET_RATIO} ({name})",
                    "value": round(ratio, 3),
                    "met": ratio >= TARGET_RATIO,
                }
            )
        single = next((r for r in runs if r["concurrency"] == 1), None)
        if single and floor.get("single_pair_ms") is not None:
            gap = single["p50_ms"] - floor["single_pair_ms"]
            rows.append(
                {
                    "target": f"p50 at 1 caller - in-process pair <= {TARGET_P50_GAP_MS:g} ms "
                    f"({name})",
                    "value": round(gap, 2),
                    "met": gap <= TARGET_P50_GAP_MS,
                }
            )
    dlib = report.get("dlib", {}).get("pairs_per_s")
    if dlib:
        for label, ours in (
            ("in-process floor", report["floor"].get("lfw", {}).get("best_pairs_per_s")),
            (
                "service",
                max((r["pairs_per_s"] for r in report["service"].get("lfw", [])), default=None),
            ),
        ):
            if ours:
                factor = ours / dlib
                rows.append(
                    {
                        "target": f"{label} / dlib >= {TARGET_DLIB_FACTOR:g}x (lfw)",
                        "value": round(factor, 2),
                        "met": factor >= TARGET_DLIB_FACTOR,
                    }
                )
    return rows


def write_plots(report: dict, latencies: dict, out: Path) -> list[str]:
    written = []
    if report["service"]:
        written.append(str(plots.throughput_vs_concurrency(report, out / "throughput.png")))
        written.append(str(plots.latency_cdf(latencies, out / "latency_cdf.png")))
    if report["sweep"]:
        written.append(str(plots.batching_sweep(report["sweep"], out / "batching_sweep.png")))
    return written


def table(report: dict) -> str:
    lines = [
        f"\n== siamese-matching benchmark ({report['machine']['cpus']} CPUs, "
        f"{report['settings']['duration_s']:g} s per point) =="
    ]
    for name, info in report["photo_sets"].items():
        lines.append(
            f"photos {name}: {info['pairs']} pairs, "
            f"{info['mean_bytes_per_pair'] / 1e6:.2f} MB per pair"
        )
    if "decode" in report:
        d = report["decode"]
        lines.append(
            f"\ndecode one phone JPEG ({d['source']}), ms: server check "
            f"{d['validate_ms']:.1f} | worker decode → {d['worker_decoded_to']} "
            f"{d['worker_decode_ms']:.1f} | full {d['full_decode_ms']:.1f} | "
            f"1/4 {d['quarter_decode_ms']:.1f}"
        )
    if report["floor"]:
        lines.append("\nin-process floor (decode → detect → align → model), pairs/s by batch size")
        for name, floor in report["floor"].items():
            cells = "  ".join(
                f"b{r['batch_size']}: {r['pairs_per_s']:.2f}" for r in floor["by_batch_size"]
            )
            lines.append(
                f"  {name:6} {cells}  | best {floor['best_pairs_per_s']:.2f} "
                f"(b{floor['best_batch_size']}), one pair {floor['single_pair_ms']} ms"
            )
    if report["model_alone"]:
        cells = "  ".join(
            f"b{r['batch_size']}: {r['pairs_per_s']:.2f}" for r in report["model_alone"]
        )
        lines.append(f"model alone (aligned crops), pairs/s: {cells}")
    if report["service"]:
        lines.append("\nservice (gRPC Verify, siamatch serve)")
        lines.append(
            f"  {'set':6} {'callers':>7} {'pairs/s':>8} {'/floor':>7} {'p50 ms':>8} "
            f"{'p95 ms':>8} {'p99 ms':>8} {'batch':>6}  errors"
        )
        for name, runs in report["service"].items():
            floor = report["floor"].get(name, {}).get("best_pairs_per_s")
            for r in runs:
                ratio = f"{r['pairs_per_s'] / floor:.2f}" if floor else "-"
                problems = {**r["failures"], **r["errors"]}
                lines.append(
                    f"  {name:6} {r['concurrency']:>7} {r['pairs_per_s']:>8.2f} "
                    f"{ratio:>7} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} "
                    f"{r['p99_ms']:>8.1f} {r['mean_batch_size']:>6.1f}  "
                    f"{problems or ''}"
                )
    if report["sweep"]:
        lines.append(
            f"\nbatching sweep ({report['settings']['sweep_set']}, "
            f"{report['settings']['sweep_concurrency']} callers)"
        )
        lines.append(
            f"  {'max batch':>9} {'max wait':>9} {'pairs/s':>8} {'p50 ms':>8} "
            f"{'p99 ms':>8} {'batch':>6}"
        )
        for r in report["sweep"]:
            lines.append(
                f"  {r['max_batch_size']:>9} {r['max_batch_wait_ms']:>9g} "
                f"{r['pairs_per_s']:>8.2f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
                f"{r['mean_batch_size']:>6.1f}"
            )
    if "dlib" in report:
        d = report["dlib"]
        if "unavailable" in d:
            lines.append(f"\ndlib: not measured ({d['unavailable']})")
        else:
            lines.append(
                f"\ndlib (HOG + 5 points + ResNet, lfw): {d['pairs_per_s']:.2f} pairs/s, "
                f"{d['pair_ms_p50']:.0f} ms per pair, {d['no_face_pairs']} without a face"
            )
    if report.get("targets"):
        lines.append("\ntargets (issue 5)")
        for t in report["targets"]:
            lines.append(f"  {'MET ' if t['met'] else 'MISS'} {t['target']}: {t['value']}")
    return "\n".join(lines)


def say(what: str, figures: dict) -> None:
    """Progress on stderr as each point lands (a full run takes minutes)."""
    print(f"[bench] {what}: {json.dumps(figures)}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main(get_args_parser().parse_args())

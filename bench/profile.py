"""`python -m bench.profile`: where the two cores go while the service is under load.

Starts `siamatch serve` (as bench.run does), drives it with N gRPC callers, and reports:
- CPU time of every process taking part (the bench's own callers, Redis, the gRPC server, each
  worker), from /proc, as cores used over the run: what the service costs beside the model;
- with py-spy installed (`pip install py-spy`), a sampling profile of the server and its
  workers: the functions holding most samples per process, by their own time and, for this
  repository's functions, including what they call. Raw stacks are kept in the output folder
  (`py-spy record --format raw`; load them in speedscope or flamegraph.pl).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from bench.load import run_load
from bench.photos import lfw_pairs, phone_pairs
from bench.service import ServiceConfig, private_redis, running_service, scratch_dir
from siamatch.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
REPO_PACKAGES = {"server", "worker", "model", "siamatch", "training", "bench", "protos"}
FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def process_table() -> dict[int, tuple[int, float, str]]:
    """pid -> (parent pid, CPU seconds so far, command line) for every process we can read."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:  # ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
        table[int(entry.name)] = (int(fields[1]), cpu, cmdline)
    return table


def family(table: dict[int, tuple[int, float, str]], root: int) -> list[int]:
    """`root` and all its descendants."""
    members, frontier = [root], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _, _) in table.items() if ppid == parent]
        members += children
        frontier += children
    return members


def role(cmdline: str, pid: int, sampler: int | None) -> str:
    if pid == sampler:
        return "py-spy (the profiler itself)"
    if pid == os.getpid():
        return "bench callers (gRPC clients)"
    if "redis-server" in cmdline:
        return "redis-server"
    if "worker.main" in cmdline:
        return "worker"
    if "siamatch.cli serve" in cmdline:
        return "server (siamatch serve)"
    return cmdline[:40]


def cpu_by_process(
    before: dict, after: dict, wall_s: float, sampler: int | None
) -> list[tuple[str, int, float]]:
    """(role, pid, cores used) for processes of this run, busiest first."""
    rows = []
    for pid in family(after, os.getpid()):
        if pid not in after:
            continue
        used = after[pid][1] - before.get(pid, (0, 0.0, ""))[1]
        rows.append((role(after[pid][2], pid, sampler), pid, used / wall_s))
    return sorted(rows, key=lambda row: -row[2])


def summarise_stacks(raw: Path, top: int) -> str:
    """Per process: the leaf functions with most samples, and this repository's functions by
    inclusive samples (each stack counted once per function)."""
    own: dict[str, Counter[str]] = defaultdict(Counter)
    inclusive: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        processes = [f for f in frames if f.startswith("process ")]  # parent first
        process = "?"
        if processes:
            process = "worker" if "worker.main" in processes[-1] else "server"
        frames = frames[len(processes) :]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        samples = int(count)
        totals[process] += samples
        own[process][_short(frames[-1])] += samples
        seen = {_short(f) for f in frames if _in_repo(f)}
        for name in seen:
            inclusive[process][name] += samples
    lines = []
    for process in sorted(totals):
        n = totals[process]
        lines.append(f"\n-- {process}: {n} samples --")
        lines.append("  own time:")
        for name, samples in own[process].most_common(top):
            lines.append(f"    {100 * samples / n:5.1f}%  {name}")
        lines.append("  this repository's functions, including callees:")
        for name, samples in inclusive[process].most_common(top):
            lines.append(f"    {100 * samples / n:5.1f}%  {name}")
    return "\n".join(lines)


def _short(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    file = match["file"]
    for prefix in (str(ROOT) + "/", "site-packages/"):
        if prefix in file:
            file = file.split(prefix, 1)[1]
    return f"{match['name']} ({file})"


def _in_repo(frame: str) -> bool:
    """py-spy names files by module path when it can ("worker/main.py"), else in full."""
    match = FRAME.match(frame)
    if not match or "/.venv/" in match["file"] or "site-packages" in match["file"]:
        return False
    file = match["file"].removeprefix(str(ROOT) + "/")
    return file.split("/", 1)[0] in REPO_PACKAGES


def get_args_parser() -> argparse.ArgumentParser:
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--lfw-root", type=Path, default=ROOT.parent / "shared" / "data" / "lfw")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "profile")
    parser.add_argument("--set", dest="photo_set", choices=("lfw", "phone"), default="lfw")
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration-s", type=float, default=30.0)
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size)
    parser.add_argument("--max-batch-wait-ms", type=float, default=defaults.max_batch_wait_ms)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=12, help="functions listed per process")
    return parser


def main(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    pairs = lfw_pairs(args.lfw_root, args.pairs)
    if args.photo_set == "phone":
        pairs = phone_pairs(pairs[:8], args.out.parent / "photos")
    config = ServiceConfig(1, args.max_batch_size, args.max_batch_wait_ms)
    beside_python = Path(sys.executable).parent / "py-spy"  # a venv's bin/ is often not on PATH
    py_spy = shutil.which("py-spy") or (str(beside_python) if beside_python.is_file() else None)
    raw = args.out / f"stacks-{args.photo_set}-c{args.concurrency}.txt"
    with (
        open(args.out / "serve.log", "wb") as log,
        private_redis(scratch_dir()) as redis_url,
        running_service(config, redis_url, pairs[0], log) as served,
    ):
        sampler = None
        if py_spy:
            sampler = subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(served.pid),
                    "--subprocesses",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--rate",
                    str(args.rate),
                    "--output",
                    str(raw),
                    "--duration",
                    str(round(args.warmup_s + args.duration_s)),
                ],  # fmt: skip
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        before, start = process_table(), time.perf_counter()
        result = run_load(served.address, pairs, args.concurrency, args.duration_s, args.warmup_s)
        after, wall_s = process_table(), time.perf_counter() - start
        if sampler is not None:
            sampler.wait(timeout=60)
    summary = result.summary()
    print(
        f"== {args.photo_set}, {args.concurrency} callers, {args.duration_s:g} s measured: "
        f"{summary['pairs_per_s']:.1f} pairs/s, p50 {summary['p50_ms']:.0f} ms, "
        f"mean batch {summary['mean_batch_size']:.1f} =="
    )
    print(f"\nCPU over {wall_s:.0f} s (cores used; this machine has {os.cpu_count()}):")
    rows = cpu_by_process(before, after, wall_s, sampler.pid if sampler else None)
    for name, pid, cores in rows:
        print(f"  {cores:5.2f}  {name} [{pid}]")
    print(f"  {sum(r[2] for r in rows):5.2f}  in all")
    if py_spy is None:
        print("\npy-spy is not installed (pip install py-spy): no function profile")
    elif raw.is_file():
        print(summarise_stacks(raw, args.top))
        print(f"\nraw stacks: {raw}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())

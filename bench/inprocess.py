"""The in-process floor: the worker's own pipeline (decode → detect → align → model) and the model
alone, with no service around them, and what decoding a phone photo costs.

Every measurement is a bounded loop: it runs for `duration_s` (at least one round, at most
`MAX_ROUNDS`) after one untimed warm-up round, and reports pairs per second of wall time.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.photos import PhotoPair
from model.decode import DecodeLimits, decode_rgb, validate_image
from model.preprocess import DECODE_MAX_SIDE
from worker.contract import JobPayload
from worker.pairs import Pair, PairModel

MAX_ROUNDS = 100_000


@dataclass(frozen=True)
class Rate:
    """Pairs per second at one batch size, and the time one round (one batch) took."""

    batch_size: int
    pairs: int
    seconds: float
    round_ms_p50: float

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.seconds if self.seconds else 0.0


def timed_rounds(round_fn: Callable[[], int], duration_s: float) -> tuple[int, float, list[float]]:
    """Call `round_fn` (returns pairs done) after one warm-up call, until `duration_s` passed."""
    round_fn()
    done, durations = 0, []
    started = time.perf_counter()
    for _ in range(MAX_ROUNDS):
        t0 = time.perf_counter()
        done += round_fn()
        durations.append(time.perf_counter() - t0)
        if time.perf_counter() - started >= duration_s:
            break
    return done, time.perf_counter() - started, durations


def _batches(pairs: list[PhotoPair], batch_size: int) -> Callable[[], list[PhotoPair]]:
    """Successive batches cycling through `pairs` (a batch may repeat a pair when it is short)."""
    position = 0

    def next_batch() -> list[PhotoPair]:
        nonlocal position
        batch = [pairs[(position + i) % len(pairs)] for i in range(batch_size)]
        position = (position + batch_size) % len(pairs)
        return batch

    return next_batch


def pipeline_rate(
    model: PairModel, pairs: list[PhotoPair], batch_size: int, duration_s: float
) -> Rate:
    """PairModel.run on batches of encoded pairs: exactly what a worker does with a batch."""
    next_batch = _batches(pairs, batch_size)
    payload = JobPayload()

    def one_round() -> int:
        batch = [Pair(p.name, payload, p.selfie, p.id_document) for p in next_batch()]
        outcomes = model.run(batch)
        return len(outcomes)

    done, seconds, durations = timed_rounds(one_round, duration_s)
    return Rate(batch_size, done, seconds, statistics.median(durations) * 1000.0)


def aligned_crops(model: PairModel, pairs: list[PhotoPair]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each pair's two 112 px crops, made once (the model-alone runs start from these)."""
    crops = []
    for pair in pairs:
        a = model.preprocessor.from_bytes(pair.selfie, "selfie")
        b = model.preprocessor.from_bytes(pair.id_document, "id_document")
        crops.append((a.crop, b.crop))
    return crops


def model_rate(
    model: PairModel,
    crops: list[tuple[np.ndarray, np.ndarray]],
    batch_size: int,
    duration_s: float,
) -> Rate:
    """PairScorer.score on pre-aligned crops: the model's own limit."""
    reps = math.ceil(batch_size / len(crops))
    batch = (crops * reps)[:batch_size]
    side_a = [a for a, _ in batch]
    side_b = [b for _, b in batch]

    def one_round() -> int:
        return len(model.scorer.score(side_a, side_b))

    done, seconds, durations = timed_rounds(one_round, duration_s)
    return Rate(batch_size, done, seconds, statistics.median(durations) * 1000.0)


@dataclass(frozen=True)
class DecodeCost:
    """Milliseconds per image (median) for each way of reading one phone photo."""

    source: str  # e.g. "4032x3024, 2.8 MB"
    validate_ms: float  # the server's edge check (model.decode.validate_image)
    worker_decode_ms: float  # decode_rgb as the worker calls it (max_side=DECODE_MAX_SIDE)
    worker_decoded_to: str
    full_decode_ms: float  # decode_rgb without max_side
    quarter_decode_ms: float  # decode_rgb at max_side = long side / 4 (JPEG draft 1/4)


def decode_cost(data: bytes, repeats: int = 5) -> DecodeCost:
    """Does the reduced (draft) decode hold for a 12 MP JPEG? Times each path `repeats` times."""
    limits = DecodeLimits()

    def median_ms(fn: Callable[[], object]) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000.0

    full = decode_rgb(data, "photo", limits)
    reduced = decode_rgb(data, "photo", limits, max_side=DECODE_MAX_SIDE)
    long_side = max(full.shape[:2])
    return DecodeCost(
        source=f"{full.shape[1]}x{full.shape[0]}, {len(data) / 1e6:.1f} MB",
        validate_ms=median_ms(lambda: validate_image(data, "photo", limits)),
        worker_decode_ms=median_ms(
            lambda: decode_rgb(data, "photo", limits, max_side=DECODE_MAX_SIDE)
        ),
        worker_decoded_to=f"{reduced.shape[1]}x{reduced.shape[0]}",
        full_decode_ms=median_ms(lambda: decode_rgb(data, "photo", limits)),
        quarter_decode_ms=median_ms(
            lambda: decode_rgb(data, "photo", limits, max_side=long_side // 4)
        ),
    )

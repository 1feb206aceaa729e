"""The gRPC load generator: N concurrent callers, each issuing Verify back to back, for a while.

Real clients (grpc.aio, one HTTP/2 channel, the service's own protobuf messages) in the bench
process. The first `warmup_s` seconds fill the queue and are not counted; throughput is the
calls that finished inside the measured window over its length, and latency percentiles are
those calls' wall times (so at high concurrency they include the time queued behind others).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import grpc
import numpy as np

from bench.photos import PhotoPair
from protos.siamatch.v1 import face_verification_pb2 as pb
from protos.siamatch.v1 import face_verification_pb2_grpc as pb_grpc
from server.client import pair_request
from siamatch.settings import Settings

CALL_TIMEOUT_S = 60.0


@dataclass
class LoadResult:
    concurrency: int
    seconds: float  # length of the measured window
    latencies_ms: list[float] = field(default_factory=list)  # successful calls, in order
    failures: Counter[str] = field(default_factory=Counter)  # OK calls with a Failure
    errors: Counter[str] = field(default_factory=Counter)  # gRPC status codes
    batch_sizes: list[int] = field(default_factory=list)

    @property
    def pairs_per_s(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def summary(self) -> dict:
        return {
            "concurrency": self.concurrency,
            "seconds": round(self.seconds, 3),
            "calls": len(self.latencies_ms),
            "pairs_per_s": round(self.pairs_per_s, 3),
            "p50_ms": round(self.percentile_ms(50), 2),
            "p95_ms": round(self.percentile_ms(95), 2),
            "p99_ms": round(self.percentile_ms(99), 2),
            "mean_batch_size": round(float(np.mean(self.batch_sizes)), 2)
            if self.batch_sizes
            else 0.0,
            "failures": dict(self.failures),
            "errors": dict(self.errors),
        }


async def _load(
    address: str, pairs: list[PhotoPair], concurrency: int, duration_s: float, warmup_s: float
) -> LoadResult:
    limit = Settings().grpc_max_message_bytes
    requests = [pair_request(p.selfie, p.id_document) for p in pairs]
    result = LoadResult(concurrency, 0.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    window_start = started + warmup_s
    window_end = window_start + duration_s

    async with grpc.aio.insecure_channel(
        address,
        options=[
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
        ],
    ) as channel:
        stub = pb_grpc.FaceVerificationStub(channel)

        async def caller(index: int) -> None:
            position = index
            while loop.time() < window_end:
                request = requests[position % len(requests)]
                position += concurrency
                t0 = loop.time()
                # Calls still running when the window closes are abandoned (the server cancels
                # their jobs), so a deep queue cannot stretch the run.
                timeout = min(CALL_TIMEOUT_S, max(1.0, window_end + 1.0 - t0))
                try:
                    reply = await stub.Verify(request, timeout=timeout)
                except grpc.aio.AioRpcError as exc:
                    if window_start <= loop.time() <= window_end:
                        result.errors[exc.code().name] += 1
                    continue
                t1 = loop.time()
                if not window_start <= t1 <= window_end:
                    continue  # warm-up, or after the window closed
                if reply.HasField("failure"):
                    result.failures[pb.FailureReason.Name(reply.failure.reason)] += 1
                else:
                    result.latencies_ms.append((t1 - t0) * 1000.0)
                    result.batch_sizes.append(reply.result.timings.batch_size)

        await asyncio.gather(*(caller(i) for i in range(concurrency)))
    result.seconds = duration_s
    return result


def run_load(
    address: str, pairs: list[PhotoPair], concurrency: int, duration_s: float, warmup_s: float
) -> LoadResult:
    """Drive `concurrency` back-to-back Verify callers for warmup_s + duration_s seconds."""
    return asyncio.run(_load(address, pairs, concurrency, duration_s, warmup_s))

"""The one home of every runtime setting: default, env var, CLI flag and help text.

Each field of `Settings` is declared once here; the CLI builds its flags from these
declarations, the env vars override defaults, and `tests/test_settings.py` keeps the README
table in step with this file.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024


def _setting(env: str, flag: str, help: str, roles: tuple[str, ...]) -> dict[str, Any]:
    return {"env": env, "flag": flag, "help": help, "roles": roles}


ALL = ("serve", "server", "worker", "client")
SERVICE = ("serve", "server", "worker")


@dataclass
class Settings:
    redis_url: str = field(
        default="",
        metadata=_setting(
            "SIAMATCH_REDIS_URL",
            "--redis-url",
            "Redis URL. Empty: redis://127.0.0.1:6379/0; `serve` starts a private redis-server "
            "if nothing answers there.",
            ("serve", "server", "worker", "worker-health"),
        ),
    )
    address: str = field(
        default="127.0.0.1:50051",
        metadata=_setting(
            "SIAMATCH_ADDRESS",
            "--address",
            "gRPC address: where the server listens (port 0: any free port), or where the "
            "client commands connect.",
            ("serve", "server", "client"),
        ),
    )
    workers: int = field(
        default=1,
        metadata=_setting(
            "SIAMATCH_WORKERS", "--workers", "Worker processes started by `serve`.", ("serve",)
        ),
    )
    max_image_bytes: int = field(
        default=10 * MIB,
        metadata=_setting(
            "SIAMATCH_MAX_IMAGE_BYTES",
            "--max-image-bytes",
            "Per-image byte cap; larger images are refused with INVALID_ARGUMENT. The gRPC "
            "receive limit is set to fit two images at this cap.",
            ("serve", "server"),
        ),
    )
    max_image_pixels: int = field(
        default=40_000_000,
        metadata=_setting(
            "SIAMATCH_MAX_IMAGE_PIXELS",
            "--max-image-pixels",
            "Per-image pixel cap (width x height, read from the header before decoding).",
            SERVICE,
        ),
    )
    min_image_side: int = field(
        default=32,
        metadata=_setting(
            "SIAMATCH_MIN_IMAGE_SIDE",
            "--min-image-side",
            "Smallest accepted width and height in pixels.",
            SERVICE,
        ),
    )
    result_ttl_s: int = field(
        default=600,
        metadata=_setting(
            "SIAMATCH_RESULT_TTL_S",
            "--result-ttl-s",
            "Seconds a finished job's result stays readable by GetVerifyResult.",
            SERVICE,
        ),
    )
    job_ttl_s: int = field(
        default=600,
        metadata=_setting(
            "SIAMATCH_JOB_TTL_S",
            "--job-ttl-s",
            "Seconds a queued job (and its image bytes) may wait before it expires.",
            ("serve", "server"),
        ),
    )
    default_deadline_s: float = field(
        default=30.0,
        metadata=_setting(
            "SIAMATCH_DEFAULT_DEADLINE_S",
            "--default-deadline-s",
            "How long Verify waits when the caller set no deadline.",
            ("serve", "server"),
        ),
    )
    max_batch_size: int = field(
        default=32,
        metadata=_setting(
            "SIAMATCH_MAX_BATCH_SIZE",
            "--max-batch-size",
            "Most pairs a worker runs through the model in one batch.",
            ("serve", "worker"),
        ),
    )
    max_batch_wait_ms: float = field(
        default=5.0,
        metadata=_setting(
            "SIAMATCH_MAX_BATCH_WAIT_MS",
            "--max-batch-wait-ms",
            "Longest a worker waits for more pairs once it holds one (not after a batch of one "
            "with nothing queued: a lone caller never waits).",
            ("serve", "worker"),
        ),
    )
    heartbeat_s: float = field(
        default=2.0,
        metadata=_setting(
            "SIAMATCH_HEARTBEAT_S",
            "--heartbeat-s",
            "Worker heartbeat period; a worker silent for 3 periods is dead and its jobs are "
            "re-queued by the others.",
            ("serve", "worker"),
        ),
    )
    max_attempts: int = field(
        default=3,
        metadata=_setting(
            "SIAMATCH_MAX_ATTEMPTS",
            "--max-attempts",
            "Times a job is tried before it fails (a worker dying counts as one try).",
            ("serve", "server", "worker"),
        ),
    )
    checkpoint: str = field(
        default="",
        metadata=_setting(
            "SIAMATCH_CHECKPOINT",
            "--checkpoint",
            "Model checkpoint. Empty: the checkpoint shipped in model/weights/ (or untrained "
            "weights if none is shipped, said in every result).",
            ("serve", "worker"),
        ),
    )
    device: str = field(
        default="auto",
        metadata=_setting(
            "SIAMATCH_DEVICE",
            "--device",
            "Torch device for inference: auto (CUDA when present), cpu, cuda, cuda:N.",
            ("serve", "worker"),
        ),
    )
    torch_threads: int = field(
        default=0,
        metadata=_setting(
            "SIAMATCH_TORCH_THREADS",
            "--torch-threads",
            "CPU threads per worker for torch and OpenCV; 0: cores / workers.",
            ("serve", "worker"),
        ),
    )
    detector_score: float = field(
        default=0.7,
        metadata=_setting(
            "SIAMATCH_DETECTOR_SCORE",
            "--detector-score",
            "YuNet confidence a face needs to count as found.",
            ("serve", "worker"),
        ),
    )
    metrics_port: int = field(
        default=0,
        metadata=_setting(
            "SIAMATCH_METRICS_PORT",
            "--metrics-port",
            "Port for Prometheus /metrics, on the host of the gRPC address; 0: off. `serve` "
            "gives its workers port+1+index.",
            ("serve", "server", "worker"),
        ),
    )
    log_level: str = field(
        default="INFO",
        metadata=_setting(
            "SIAMATCH_LOG_LEVEL",
            "--log-level",
            "Python logging level.",
            ("serve", "server", "worker"),
        ),
    )
    max_image_aspect: float = field(
        default=10.0,
        metadata=_setting(
            "SIAMATCH_MAX_IMAGE_ASPECT",
            "--max-image-aspect",
            "Largest accepted ratio of an image's longer side to its shorter side (read from "
            "the header; refuses strips and slivers).",
            SERVICE,
        ),
    )

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or "redis://127.0.0.1:6379/0"

    @property
    def grpc_max_message_bytes(self) -> int:
        """Room for two images at the cap plus the protobuf envelope."""
        return 2 * self.max_image_bytes + 64 * 1024

    @classmethod
    def fields(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in cls.fields():
            raw = environ.get(f.metadata["env"])
            if raw is not None and raw != "":
                values[f.name] = _convert(f, raw)
        return cls(**values)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, role: str) -> None:
        """Add the flags of one role; their defaults come from the environment."""
        base = cls.from_env()
        for f in cls.fields():
            if role not in f.metadata["roles"]:
                continue
            parser.add_argument(
                f.metadata["flag"],
                dest=f.name,
                type=_type_of(f),
                default=getattr(base, f.name),
                help=f"{f.metadata['help']} [env {f.metadata['env']}; default: %(default)s]",
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        base = cls.from_env()
        values = {f.name: getattr(args, f.name, getattr(base, f.name)) for f in cls.fields()}
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The env vars that reproduce these settings in a child process."""
        return {f.metadata["env"]: str(getattr(self, f.name)) for f in self.fields()}


def _type_of(f: dataclasses.Field) -> type:
    return {"int": int, "float": float, "str": str}[str(f.type)]


def _convert(f: dataclasses.Field, raw: str) -> Any:
    try:
        return _type_of(f)(raw)
    except ValueError as exc:
        raise ValueError(f"{f.metadata['env']}={raw!r} is not a valid {f.type}") from exc


def markdown_table() -> str:
    """The README's configuration table, generated from the declarations above."""
    rows = [
        "| Env var | Flag | Default | Used by | Meaning |",
        "|---|---|---|---|---|",
    ]
    for f in Settings.fields():
        meta = f.metadata
        default = f.default if f.default != "" else "(empty)"
        rows.append(
            f"| `{meta['env']}` | `{meta['flag']}` | `{default}` | {', '.join(meta['roles'])} "
            f"| {meta['help']} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())

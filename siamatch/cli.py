"""The `siamatch` command: run the service (serve, server, worker) or call it (verify, submit,
result).

Each subcommand is one entry in COMMANDS. Only the chosen subcommand's flags are built, so the
client commands never import torch; settings flags come from Settings.add_arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from siamatch.settings import Settings

log = logging.getLogger("siamatch")

# Exit codes of the client commands (documented in `siamatch verify --help`).
EXIT_OK = 0
EXIT_RPC_ERROR = 1
EXIT_USAGE = 2
EXIT_FAILED_OUTCOME = 3
EXIT_NOT_FINISHED = 4
# How often `serve` looks at its child processes.
SUPERVISE_EVERY_S = 1.0


class UsageError(Exception):
    """A problem with what the user asked for (a file, a flag value): exit 2 with the message."""


def positive_seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


@dataclass(frozen=True)
class Command:
    """A subcommand: its help, how to build its flags, and what runs it (returns the exit code).

    `parents` is for modules that expose a torchvision-style `get_args_parser(add_help=False)`.
    """

    help: str
    run: Callable[[argparse.Namespace], int | None]
    configure: Callable[[argparse.ArgumentParser], None] | None = None
    parents: Callable[[], list[argparse.ArgumentParser]] | None = None
    epilog: str = ""


def call(module: str, function: str) -> Callable[[argparse.Namespace], int | None]:
    """`module.function(args)`, imported only when the subcommand runs."""

    def run(args: argparse.Namespace) -> int | None:
        return getattr(importlib.import_module(module), function)(args)

    return run


def parents_of(module: str, function: str = "get_args_parser") -> Callable[[], list[Any]]:
    """The argument parser a module exposes, adopted as a subcommand's parent (its own -h, if
    it has one, gives way to the subcommand's)."""

    def parents() -> list[argparse.ArgumentParser]:
        build = getattr(importlib.import_module(module), function)
        try:
            return [build(add_help=False)]
        except TypeError:
            return [build()]

    return parents


# ----- service roles ------------------------------------------------------------------------


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def run_server(args: argparse.Namespace) -> int:
    from server.app import run

    settings = Settings.from_args(args)
    configure_logging(settings)
    run(settings)
    return EXIT_OK


def run_worker(args: argparse.Namespace) -> int:
    from worker.main import run

    settings = Settings.from_args(args)
    configure_logging(settings)
    run(settings)
    return EXIT_OK


def run_serve(args: argparse.Namespace) -> int:
    """Redis (found or started), N worker processes and the gRPC server, in one command."""
    from siamatch.local_redis import RedisServerMissing, ensure_redis
    from siamatch.supervisor import Supervisor

    settings = Settings.from_args(args)
    configure_logging(settings)
    with Supervisor() as supervisor:
        try:
            settings = replace(settings, redis_url=ensure_redis(settings, supervisor))
        except RedisServerMissing as exc:
            log.error("%s", exc)
            return EXIT_RPC_ERROR
        for index in range(settings.workers):
            worker_env = settings.to_env()
            if settings.metrics_port:  # the server has metrics_port; worker i gets port+1+i
                worker_env["SIAMATCH_METRICS_PORT"] = str(settings.metrics_port + 1 + index)
            supervisor.start(
                f"worker-{index}", [sys.executable, "-m", "worker.main"], worker_env, restart=True
            )
        asyncio.run(_serve_supervised(settings, supervisor))
        owned = ", ".join(child.name for child in supervisor.children)
        log.info("stopping what serve started: %s", owned or "nothing")
    return EXIT_OK


async def _serve_supervised(settings: Settings, supervisor: Any) -> None:
    from server.app import serve

    async def watch() -> None:
        while True:
            supervisor.check()
            await asyncio.sleep(SUPERVISE_EVERY_S)

    watcher = asyncio.create_task(watch())
    try:
        await serve(settings)
    finally:
        watcher.cancel()


# ----- client commands ----------------------------------------------------------------------


def add_pair_arguments(parser: argparse.ArgumentParser) -> None:
    Settings.add_arguments(parser, "client")
    parser.add_argument("selfie", type=Path, help="Selfie image file.")
    parser.add_argument("id_document", type=Path, help="ID-document image file.")
    parser.add_argument(
        "--threshold", type=float, default=None, help="Decision threshold in [0, 1] for this "
        "request (default: the model's calibrated threshold)."
    )  # fmt: skip
    parser.add_argument("--client-request-id", default="", help="Echoed back in the reply.")
    parser.add_argument(
        "--timeout", type=positive_seconds, default=30.0, help="Call deadline in seconds."
    )
    parser.add_argument("--json", action="store_true", help="Print the full reply as JSON.")


def add_result_arguments(parser: argparse.ArgumentParser) -> None:
    Settings.add_arguments(parser, "client")
    parser.add_argument("job_id", help="A job id printed by `siamatch submit`.")
    parser.add_argument(
        "--wait", type=float, default=0.0, help="Poll up to this many seconds for the job to end."
    )
    parser.add_argument(
        "--timeout", type=positive_seconds, default=10.0, help="Call deadline in seconds."
    )
    parser.add_argument("--json", action="store_true", help="Print the full reply as JSON.")


def run_verify(args: argparse.Namespace) -> int:
    import grpc

    from server.client import FaceVerificationClient

    selfie, id_document = _read_pair(args)
    with FaceVerificationClient(Settings.from_args(args).address) as client:
        try:
            reply = client.verify(
                selfie, id_document, args.threshold, args.client_request_id, args.timeout
            )
        except grpc.RpcError as exc:
            return _rpc_error(exc, args)
    return _print_outcome(reply, args.json)


def run_submit(args: argparse.Namespace) -> int:
    import grpc

    from server.client import FaceVerificationClient

    selfie, id_document = _read_pair(args)
    with FaceVerificationClient(Settings.from_args(args).address) as client:
        try:
            reply = client.submit(
                selfie, id_document, args.threshold, args.client_request_id, args.timeout
            )
        except grpc.RpcError as exc:
            return _rpc_error(exc, args)
    print(_to_json(reply) if args.json else reply.job_id)
    return EXIT_OK


def run_result(args: argparse.Namespace) -> int:
    import grpc

    from server.client import FaceVerificationClient

    with FaceVerificationClient(Settings.from_args(args).address, timeout=args.timeout) as client:
        try:
            if args.wait > 0:
                reply = client.wait_result(args.job_id, timeout=args.wait)
            else:
                reply = client.result(args.job_id)
        except grpc.RpcError as exc:
            return _rpc_error(exc)
    if not args.json:
        from protos.siamatch.v1 import face_verification_pb2 as pb

        print(f"state       {pb.JobState.Name(reply.state)}")
    code = _print_outcome(reply, args.json)
    return code if reply.WhichOneof("outcome") else EXIT_NOT_FINISHED


def add_health_arguments(parser: argparse.ArgumentParser) -> None:
    Settings.add_arguments(parser, "client")
    parser.add_argument(
        "--timeout", type=positive_seconds, default=3.0, help="Call deadline in seconds."
    )


def run_health(args: argparse.Namespace) -> int:
    """The standard gRPC health check (for compose/Kubernetes probes): exit 0 when SERVING."""
    import grpc

    from server.client import FaceVerificationClient

    with FaceVerificationClient(Settings.from_args(args).address) as client:
        try:
            status = client.health(timeout=args.timeout)
        except grpc.RpcError as exc:
            return _rpc_error(exc)
    print(status)
    return EXIT_OK if status == "SERVING" else EXIT_RPC_ERROR


def run_worker_health(args: argparse.Namespace) -> int:
    """Exit 0 when a worker of this host holds a live registration (its heartbeat renews it)."""
    import socket

    import redis
    from rq.worker import Worker

    settings = Settings.from_args(args)
    prefix = f"siamatch-{socket.gethostname()}-"
    try:
        connection = redis.Redis.from_url(settings.effective_redis_url, socket_timeout=3)
        live = [w.name for w in Worker.all(connection=connection) if w.name.startswith(prefix)]
    except redis.RedisError as exc:
        print(f"error: Redis unreachable: {exc}", file=sys.stderr)
        return EXIT_RPC_ERROR
    print("\n".join(live) if live else f"no live worker named {prefix}*")
    return EXIT_OK if live else EXIT_RPC_ERROR


def _read_pair(args: argparse.Namespace) -> tuple[bytes, bytes]:
    """Both files, refused here (exit 2, naming the file) when unreadable or over the per-image
    cap, rather than as an anonymous gRPC message-size error."""
    cap = Settings.from_env().max_image_bytes
    images = []
    for path in (args.selfie, args.id_document):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        if len(data) > cap:
            raise UsageError(
                f"{path}: {len(data):,} bytes, over the per-image cap of {cap:,} bytes "
                "(SIAMATCH_MAX_IMAGE_BYTES)"
            )
        images.append(data)
    return images[0], images[1]


def _rpc_error(exc: Any, args: argparse.Namespace | None = None) -> int:
    """Print the status; an image the server names ("selfie: ...") is shown with its file."""
    details = exc.details() or ""
    for side in ("selfie", "id_document"):
        path = getattr(args, side, None)
        if path is not None and details.startswith(f"{side}:"):
            details = f"{side} ({path}){details[len(side) :]}"
    print(f"error: {exc.code().name}: {details}", file=sys.stderr)
    return EXIT_RPC_ERROR


def _to_json(message: Any) -> str:
    from google.protobuf.json_format import MessageToDict

    data = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return json.dumps(data, indent=2)


def _print_outcome(reply: Any, as_json: bool) -> int:
    """Print a Verify/GetVerifyResult reply; the exit code says whether a result came back."""
    outcome = reply.WhichOneof("outcome")
    if as_json:
        print(_to_json(reply))
    else:
        print("\n".join(describe(reply)))
    if outcome == "failure":
        return EXIT_FAILED_OUTCOME
    return EXIT_OK


def describe(reply: Any) -> list[str]:
    """Human-readable lines for a reply carrying a result or a failure."""
    from protos.siamatch.v1 import face_verification_pb2 as pb

    lines = [f"job         {reply.job_id}"]
    if reply.client_request_id:
        lines.append(f"request id  {reply.client_request_id}")
    outcome = reply.WhichOneof("outcome")
    if outcome == "failure":
        failure = reply.failure
        image = f" ({failure.image})" if failure.image else ""
        lines.append(
            f"failed      {pb.FailureReason.Name(failure.reason)}{image}: {failure.message}"
        )
        return lines
    if outcome != "result":
        return lines
    result = reply.result
    timings = result.timings
    lines += [
        f"score       {result.score:.4f}",
        f"threshold   {result.threshold:.4f}",
        f"decision    {'MATCH' if result.match else 'NO MATCH'}",
        f"model       {result.model_version}",
        f"faces       selfie: {_face(result.selfie_face)}; "
        f"id_document: {_face(result.id_document_face)}",
        f"timings     queue {timings.queue_wait_ms:.1f} ms, preprocess "
        f"{timings.preprocess_ms:.1f} ms, inference {timings.inference_ms:.1f} ms "
        f"(batch of {timings.batch_size})",
    ]
    if not result.model_trained:
        lines.append(
            "WARNING: the model is UNTRAINED (no trained checkpoint loaded); "
            "the score and decision are meaningless."
        )
    return lines


def _face(face: Any) -> str:
    box = face.box
    return (
        f"{face.faces_found} found, confidence {face.confidence:.2f}, box "
        f"{box.x:.0f},{box.y:.0f} {box.width:.0f}x{box.height:.0f}"
    )


# ----- the command table ----------------------------------------------------------------------

CLIENT_EXITS = (
    f"exit codes: {EXIT_OK} a result came back (match or not); {EXIT_FAILED_OUTCOME} the service "
    f"answered with a failure (e.g. NO_FACE); {EXIT_NOT_FINISHED} (result) the job has not "
    f"ended yet; {EXIT_RPC_ERROR} the call failed (the gRPC status is printed); {EXIT_USAGE} "
    "usage error (bad flag, unreadable or oversized file)."
)

COMMANDS: dict[str, Command] = {
    "serve": Command(
        "All-in-one on one machine: Redis (started if none answers), N workers, gRPC server.",
        run_serve,
        configure=lambda p: Settings.add_arguments(p, "serve"),
    ),
    "server": Command(
        "The gRPC server alone (workers run elsewhere).",
        run_server,
        configure=lambda p: Settings.add_arguments(p, "server"),
    ),
    "worker": Command(
        "One batching worker process: loads the model once, serves the Redis queue.",
        run_worker,
        configure=lambda p: Settings.add_arguments(p, "worker"),
    ),
    "verify": Command(
        "Verify SELFIE against ID_DOCUMENT and print the score and decision.",
        run_verify,
        configure=add_pair_arguments,
        epilog=CLIENT_EXITS,
    ),
    "submit": Command(
        "Queue SELFIE and ID_DOCUMENT for verification; prints the job id.",
        run_submit,
        configure=add_pair_arguments,
    ),
    "result": Command(
        "The state and, once ended, the outcome of a submitted job.",
        run_result,
        configure=add_result_arguments,
        epilog=CLIENT_EXITS,
    ),
    "health": Command(
        "gRPC health check of a server; exit 0 when SERVING (for container probes).",
        run_health,
        configure=add_health_arguments,
    ),
    "worker-health": Command(
        "Exit 0 when a worker on this host is alive (for container probes).",
        run_worker_health,
        configure=lambda p: Settings.add_arguments(p, "worker-health"),
    ),
    # Modules with torchvision-style get_args_parser()/main(args) join in two lines:
    "train": Command(
        "Train SiameseResNet18 on a folder of face photos (one sub-folder per person).",
        call("training.train", "main"),
        parents=parents_of("training.train"),
    ),
    "make-idcard-benchmark": Command(
        "Render the selfie-vs-ID benchmark from an LFW pair list and DocXPand templates.",
        call("training.idcard", "main"),
        parents=parents_of("training.idcard"),
    ),
    "evaluate": Command(
        "Evaluate our model (and the dlib baseline) on pair lists.",
        call("training.evaluate", "main"),
        parents=parents_of("training.evaluate"),
    ),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser, with flags built only for the subcommand named in `argv`."""
    parser = argparse.ArgumentParser(
        prog="siamatch", description="Face verification: selfie vs ID-document photo."
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, command in COMMANDS.items():
        parents = command.parents() if name == chosen and command.parents else []
        sub = subcommands.add_parser(
            name,
            help=command.help,
            description=command.help,
            epilog=command.epilog or None,
            parents=parents,
            conflict_handler="resolve",
        )
        if name == chosen and command.configure is not None:
            command.configure(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    try:
        code = args.run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return code if isinstance(code, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

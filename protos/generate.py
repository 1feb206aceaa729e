"""Generate the Python gRPC stubs from the .proto files (run at install time, never committed)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_FILES = sorted((ROOT / "protos").rglob("*.proto"))


def generate(out_dir: Path = ROOT) -> list[Path]:
    """Write *_pb2.py, *_pb2.pyi and *_pb2_grpc.py beside each .proto under `out_dir`."""
    import grpc_tools
    from grpc_tools import protoc  # build-time dependency only

    include = Path(grpc_tools.__file__).parent / "_proto"
    for proto in PROTO_FILES:
        rel = proto.relative_to(ROOT)
        code = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{ROOT}",
                f"-I{include}",
                f"--python_out={out_dir}",
                f"--pyi_out={out_dir}",
                f"--grpc_python_out={out_dir}",
                str(rel),
            ]
        )
        if code != 0:
            raise RuntimeError(f"protoc failed on {rel} (exit {code})")
    return [
        out_dir / p.relative_to(ROOT).with_name(p.stem + suffix)
        for p in PROTO_FILES
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
    ]


if __name__ == "__main__":
    for path in generate():
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path, file=sys.stderr)

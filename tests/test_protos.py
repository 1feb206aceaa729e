"""The generated gRPC stubs (built at install, never committed) match the .proto files."""

from __future__ import annotations

import subprocess
from pathlib import Path

from protos.generate import ROOT, generate


def test_generated_stubs_are_current(tmp_path: Path) -> None:
    fresh = generate(tmp_path)
    for path in fresh:
        installed = ROOT / path.relative_to(tmp_path)
        assert installed.is_file(), f"{installed} missing: run `make protos`"
        assert installed.read_text() == path.read_text(), f"{installed} is stale: `make protos`"


def test_generated_stubs_are_not_committed() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "protos"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked, "protos/ should hold the .proto files"
    assert not [name for name in tracked if "_pb2" in name]


def test_service_is_versioned() -> None:
    from protos.siamatch.v1 import face_verification_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["FaceVerification"]
    assert service.full_name == "siamatch.v1.FaceVerification"
    assert {m.name for m in service.methods} == {"Verify", "SubmitVerify", "GetVerifyResult"}

"""`make demo`: start the whole service (Redis, a worker, the gRPC server) on a free port and
verify real photo pairs through it: two LFW photos of one person, two different people, and a
selfie against a photographed (fictitious) ID card carrying the same person's other photo."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np

from server.client import FaceVerificationClient
from siamatch.cli import describe

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
STARTUP_TIMEOUT_S = 180


def free_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def wait_until_serving(client: FaceVerificationClient, service: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise SystemExit(f"siamatch serve exited with code {service.returncode}")
        try:
            if client.health(timeout=1.0) == "SERVING":
                return
        except grpc.RpcError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the service did not become SERVING within {STARTUP_TIMEOUT_S} s")


def id_card_photo(face_photo: Path) -> bytes:
    """The same renderer as the selfie-vs-ID benchmark (training/idcard.py), on the shipped
    template fixture; seeded, so the demo shows the same card every time."""
    from PIL import Image

    from model.detect import FaceDetector
    from training.idcard import load_template, render_id_photo

    detector = FaceDetector()
    template = load_template(FIXTURES / "id_card_td1_a_front.png", detector)
    face = np.asarray(Image.open(face_photo).convert("RGB"))
    found = detector.detect_all(face)
    landmarks = found[0].landmarks if found else None
    return render_id_photo(face, landmarks, [template], np.random.default_rng(7)).jpeg


def main() -> int:
    address = free_address()
    env = {**os.environ, "SIAMATCH_ADDRESS": address, "SIAMATCH_WORKERS": "1"}
    print(f"starting: siamatch serve --address {address} --workers 1", flush=True)
    service = subprocess.Popen([sys.executable, "-m", "siamatch.cli", "serve"], env=env)
    try:
        with FaceVerificationClient(address) as client:
            wait_until_serving(client, service)
            card = id_card_photo(FIXTURES / "George_W_Bush_0002.jpg")
            out = ROOT / "runs" / "demo"
            out.mkdir(parents=True, exist_ok=True)
            (out / "id_card_George_W_Bush_0002.jpg").write_bytes(card)
            pairs = [
                ("same person (LFW)", "George_W_Bush_0001.jpg", "George_W_Bush_0002.jpg", None),
                (
                    "different people (LFW)",
                    "Colin_Powell_0001.jpg",
                    "Serena_Williams_0001.jpg",
                    None,
                ),
                (
                    "selfie vs photographed ID card, same person",
                    "George_W_Bush_0001.jpg",
                    "runs/demo/id_card_George_W_Bush_0002.jpg",
                    card,
                ),
                (
                    "selfie vs photographed ID card, different people",
                    "Colin_Powell_0001.jpg",
                    "runs/demo/id_card_George_W_Bush_0002.jpg",
                    card,
                ),
            ]
            for title, selfie, id_name, id_bytes in pairs:
                print(f"\n== {title}: {selfie} vs {id_name}")
                reply = client.verify(
                    (FIXTURES / selfie).read_bytes(),
                    id_bytes if id_bytes is not None else (FIXTURES / id_name).read_bytes(),
                    timeout=60,
                )
                print("\n".join(describe(reply)), flush=True)
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=60)
        except subprocess.TimeoutExpired:
            service.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())

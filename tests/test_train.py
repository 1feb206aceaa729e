"""A tiny but real training run on fixture photos: split, crop cache, losses, checkpoint, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint
from training.train import get_args_parser, main

FIXTURES = Path(__file__).parent / "fixtures"
PEOPLE = {
    "George_W_Bush": ["George_W_Bush_0001.jpg", "George_W_Bush_0002.jpg"],
    "Colin_Powell": ["Colin_Powell_0001.jpg", "Colin_Powell_0002.jpg"],
    "Serena_Williams": ["Serena_Williams_0001.jpg"],
    "Tony_Blair": ["Tony_Blair_0001.jpg"],
}


@pytest.fixture
def face_folder(tmp_path: Path) -> Path:
    root = tmp_path / "faces"
    for person, files in PEOPLE.items():
        (root / person).mkdir(parents=True)
        for name in files:
            shutil.copy(FIXTURES / name, root / person / name)
    # Copies stand in for more people: training and validation each keep a multi-image person
    # and a single-image one after the test identities are removed.
    shutil.copytree(root / "George_W_Bush", root / "George_W_Bush_copy")
    shutil.copytree(root / "Serena_Williams", root / "Serena_Williams_copy")
    shutil.copytree(root / "Tony_Blair", root / "Tony_Blair_copy")
    return root


def run(face_folder: Path, tmp_path: Path, *extra: str) -> Path:
    test_pairs = tmp_path / "test_pairs.txt"
    test_pairs.write_text("1\nTony_Blair\t1\tSerena_Williams\t1\n")
    args = get_args_parser().parse_args([
        "--data", str(face_folder), "--exclude-pairs", str(test_pairs),
        "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
        "--epochs", "1", "--max-steps-per-epoch", "1", "--p", "2", "--k", "2", "--extra", "1",
        "--val-fraction", "0.5", "--threads", "1", *extra,
    ])  # fmt: skip
    return main(args)


def test_training_writes_a_loadable_trained_checkpoint_and_excludes_test_people(
    face_folder: Path, tmp_path: Path
) -> None:
    best = run(face_folder, tmp_path)
    loaded = load_checkpoint(best)
    assert loaded.trained and 0.0 <= loaded.threshold <= 1.0
    assert "far_1e-3" in loaded.thresholds
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["distill"] == 0.0  # no teacher given
    assert (tmp_path / "run" / "curves.png").stat().st_size > 0
    cached = list((tmp_path / "cache").glob("crops-train-*.npz"))
    with np.load(cached[0]) as data:
        names = {Path(p).parts[0] for p in data["paths"]}
    assert not names & {"Tony_Blair", "Serena_Williams"}, "a test identity was trained on"


def test_teacher_embeddings_drive_the_distillation_loss(face_folder: Path, tmp_path: Path) -> None:
    paths = [str(p.relative_to(face_folder)) for p in sorted(face_folder.rglob("*.jpg"))]
    rng = np.random.default_rng(0)
    teacher = tmp_path / "teacher.npz"
    np.savez(teacher, paths=np.array(paths), embeddings=rng.normal(size=(len(paths), 128)))
    run(face_folder, tmp_path, "--teacher", str(teacher))
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["distill"] > 0.0
    assert record["embed_distill"] > 0.0


def test_resume_continues_after_the_last_epoch(face_folder: Path, tmp_path: Path) -> None:
    run(face_folder, tmp_path)
    run(face_folder, tmp_path, "--resume", "--epochs", "2")
    epochs = [
        json.loads(line)["epoch"]
        for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs == [0, 1]


def test_init_from_starts_at_the_given_checkpoint_with_imprinted_centres(
    face_folder: Path, tmp_path: Path
) -> None:
    first = tmp_path / "first.pt"
    run(face_folder, tmp_path).replace(first)
    # lr 0: the weights stay where --init-from put them (BatchNorm statistics still move)
    again = run(face_folder, tmp_path, "--init-from", str(first), "--lr", "0", "--seed", "1")
    start = load_checkpoint(first).model.state_dict()
    end = load_checkpoint(again).model.state_dict()
    weights = [k for k in start if k.endswith("weight") and "bn" not in k]
    assert weights and all(torch.equal(start[k], end[k]) for k in weights)
    # CosFace centres imprinted from the initial model's embeddings: unit rows, not ~0.16
    centres = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["cosface"]["weight"]
    assert torch.allclose(centres.norm(dim=1), torch.ones(len(centres)), atol=1e-4)

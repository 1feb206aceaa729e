"""Checkpoints: plain data with metadata; missing or incompatible files are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.checkpoint import (
    SHIPPED_CHECKPOINT,
    load_checkpoint,
    load_default_or,
    save_checkpoint,
    untrained_model,
)
from model.errors import CheckpointError
from model.siamese import SiameseResNet18


def test_round_trip_keeps_weights_and_metadata(tmp_path: Path) -> None:
    model = untrained_model().model
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model, model_version="v-test", threshold=0.42, trained=True,
                    thresholds={"far_1e-3": 0.9}, metrics={"auc": 0.5})  # fmt: skip
    loaded = load_checkpoint(path)
    assert (loaded.model_version, loaded.threshold, loaded.trained) == ("v-test", 0.42, True)
    assert loaded.thresholds == {"far_1e-3": 0.9} and loaded.preprocess.input_size == 112
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name
    # plain data: loadable with weights_only=True (no pickled classes)
    assert torch.load(path, weights_only=True)["format_version"] == 1


def test_fp16_checkpoint_loads_back_as_float32(tmp_path: Path) -> None:
    path = tmp_path / "half.pt"
    save_checkpoint(path, untrained_model().model, model_version="h", threshold=0.5,
                    trained=True, half=True)  # fmt: skip
    loaded = load_checkpoint(path)
    assert next(loaded.model.parameters()).dtype == torch.float32


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_unreadable_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(path)


def test_other_format_or_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"format_version": 99}, path)
    with pytest.raises(CheckpointError, match="format 99"):
        load_checkpoint(path)
    small = SiameseResNet18(embedding_dim=64)
    save_checkpoint(path, small, model_version="s", threshold=0.5, trained=True)
    payload = torch.load(path, weights_only=True)
    payload["architecture"]["embedding_dim"] = 128  # weights no longer fit the declared shape
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(path)


def test_default_is_the_shipped_checkpoint_when_present() -> None:
    loaded = load_default_or(None)
    assert loaded.trained == SHIPPED_CHECKPOINT.is_file()


def test_export_writes_a_half_precision_copy_with_the_metadata(tmp_path: Path) -> None:
    from training.export import get_args_parser, main

    source, target = tmp_path / "full.pt", tmp_path / "shipped.pt"
    save_checkpoint(source, untrained_model().model, model_version="e1", threshold=0.3,
                    trained=True, thresholds={"balanced": 0.3})  # fmt: skip
    main(get_args_parser().parse_args([str(source), str(target), "--model-version", "v2"]))
    payload = torch.load(target, weights_only=True)
    assert payload["state_dict"]["backbone.conv1.weight"].dtype == torch.float16
    loaded = load_checkpoint(target)
    assert (loaded.model_version, loaded.threshold, loaded.thresholds) == (
        "v2",
        0.3,
        {"balanced": 0.3},
    )
    assert target.stat().st_size < 0.6 * source.stat().st_size

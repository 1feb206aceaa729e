"""The selfie-vs-ID benchmark builder on the fixture template and fixture LFW photos."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from model.detect import FaceDetector
from model.preprocess import Preprocessor
from tests.conftest import FIXTURES
from training import idcard
from training.pairs import Pair, read_pairs

TEMPLATE = FIXTURES / "id_card_td1_a_front.png"


@pytest.fixture(scope="module")
def template() -> idcard.Template:
    cv2.setNumThreads(1)
    return idcard.load_template(TEMPLATE)


@pytest.fixture(scope="module")
def blair() -> tuple[np.ndarray, np.ndarray]:
    face = np.asarray(Image.open(FIXTURES / "Tony_Blair_0001.jpg").convert("RGB"))
    found = FaceDetector().detect(face, try_rotations=False)
    assert found is not None
    return face, found[0].landmarks


def test_template_portrait_slot_surrounds_the_placeholder_face(template: idcard.Template) -> None:
    x0, y0, x1, y1 = template.slot
    # measured by eye on id_card_td1_a (1000x631): the portrait rectangle
    assert abs(x0 - 23) <= 4 and abs(y0 - 185) <= 4 and abs(x1 - 351) <= 4 and abs(y1 - 606) <= 4
    xs, ys = template.landmarks[:, 0], template.landmarks[:, 1]
    assert x0 < xs.min() and xs.max() < x1 and y0 < ys.min() and ys.max() < y1
    assert template.ghosts == ()  # td1_a has no ghost portrait


def test_template_without_a_face_is_refused(tmp_path: Path) -> None:
    blank = tmp_path / "front.png"
    Image.new("RGBA", (1000, 630), (200, 210, 220, 255)).save(blank)
    with pytest.raises(idcard.TemplateError, match="no placeholder portrait"):
        idcard.load_template(blank)


def test_placed_face_lands_on_the_placeholder_and_stays_in_the_slot(
    template: idcard.Template, blair
) -> None:
    face, landmarks = blair
    card = idcard.place_face(template, face, landmarks, "colour", np.random.default_rng(0))
    x0, y0, x1, y1 = template.slot
    changed = np.any(card[:, :, :3] != template.card[:, :, :3], axis=2)
    ys, xs = np.nonzero(changed)
    assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
    found = FaceDetector().detect_all(np.ascontiguousarray(card[:, :, :3]))
    assert found, "YuNet must find the pasted face"
    # the pasted face sits where the placeholder's was (least-squares similarity on 5 points,
    # so single landmarks of a tilted head or another expression can be off)
    eyes = float(np.linalg.norm(template.landmarks[1] - template.landmarks[0]))
    offsets = np.linalg.norm(found[0].landmarks - template.landmarks, axis=1)
    assert np.linalg.norm(found[0].landmarks.mean(0) - template.landmarks.mean(0)) < 0.06 * eyes
    assert offsets.max() < 0.3 * eyes  # mouth corners follow the expression, not the warp


def test_rendering_is_deterministic_per_seed(template: idcard.Template, blair) -> None:
    face, landmarks = blair
    first = idcard.render_id_photo(face, landmarks, [template], idcard.pair_rng(0, 7))
    again = idcard.render_id_photo(face, landmarks, [template], idcard.pair_rng(0, 7))
    other = idcard.render_id_photo(face, landmarks, [template], idcard.pair_rng(0, 8))
    assert first.jpeg == again.jpeg
    assert first.jpeg != other.jpeg


def test_rendered_card_is_a_camera_photo_with_a_findable_face(
    template: idcard.Template, blair
) -> None:
    face, landmarks = blair
    for index in range(3):
        rendered = idcard.render_id_photo(face, landmarks, [template], idcard.pair_rng(1, index))
        with Image.open(io.BytesIO(rendered.jpeg)) as image:
            assert image.format == "JPEG"
            width, height = image.size
        assert 1600 <= width <= 2000 and height == width * 3 // 4
        assert rendered.template == "id_card_td1_a_front"  # named after the file outside <design>/
        assert rendered.style in idcard.PORTRAIT_STYLES
        aligned = Preprocessor().from_bytes(rendered.jpeg, f"card {index}")
        assert aligned.crop.shape == (112, 112, 3)


def test_missing_source_landmarks_fall_back_to_the_lfw_median(
    template: idcard.Template, blair
) -> None:
    face, _ = blair
    rendered = idcard.render_id_photo(face, None, [template], idcard.pair_rng(0, 0))
    assert rendered.landmarks_found is False
    Preprocessor().from_bytes(rendered.jpeg, "fallback card")


def test_build_benchmark_writes_a_movable_tsv_and_manifest(tmp_path: Path) -> None:
    templates_dir = tmp_path / "templates" / "id_card_td1_a"
    templates_dir.mkdir(parents=True)
    shutil.copy(TEMPLATE, templates_dir / "front.png")
    lfw = tmp_path / "lfw"
    for name, numbers in {
        "Colin_Powell": (1, 2),
        "Serena_Williams": (1,),
        "Tony_Blair": (1,),
    }.items():
        (lfw / name).mkdir(parents=True)
        for i in numbers:
            shutil.copy(FIXTURES / f"{name}_{i:04d}.jpg", lfw / name / f"{name}_{i:04d}.jpg")
    listing = tmp_path / "pairsDevTest.txt"
    listing.write_text("1\nColin_Powell\t1\t2\nSerena_Williams\t1\tTony_Blair\t1")
    out = tmp_path / "bench"
    args = idcard.get_args_parser().parse_args(
        [
            "--pairs",
            str(listing),
            "--lfw",
            str(lfw),
            "--templates",
            str(tmp_path / "templates"),
            "--out",
            str(out),
        ]
    )
    manifest = idcard.main(args)

    assert manifest["pairs"] == 2 and manifest["yunet_detection_rate"] == 1.0
    assert json.loads((out / "manifest.json").read_text())["seed"] == 0
    pairs = read_pairs(out / "pairs.tsv")
    assert pairs == [
        Pair(out / "selfie/0000.jpg", out / "id/0000.jpg", True),
        Pair(out / "selfie/0001.jpg", out / "id/0001.jpg", False),
    ]
    # the selfie is the first photo, byte for byte
    assert (out / "selfie/0001.jpg").read_bytes() == (
        FIXTURES / "Serena_Williams_0001.jpg"
    ).read_bytes()
    rows = manifest["rows"]
    assert rows[1]["id_source"].endswith("Tony_Blair_0001.jpg")

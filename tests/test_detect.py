"""Issue 4, kinds 10-11: which face is used when there are several, and a face found in a photo
of an ID card held sideways or upside down, with the rotation reported.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from model.detect import UPRIGHT_CONFIDENCE, FaceDetector, rotate_clockwise
from model.errors import NoFaceFound
from model.preprocess import Preprocessor
from tests.conftest import FIXTURES


def rgb(name: str, size: int | None = None) -> np.ndarray:
    with Image.open(FIXTURES / name) as img:
        img = img.convert("RGB")
        if size is not None:
            img = img.resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(img)


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def canvas_with(*placed: tuple[np.ndarray, int, int], size: tuple[int, int] = (900, 600)):
    """A grey canvas (width, height) with each (photo, x, y) pasted at its top-left corner."""
    canvas = np.full((size[1], size[0], 3), 128, np.uint8)
    for photo, x, y in placed:
        canvas[y : y + photo.shape[0], x : x + photo.shape[1]] = photo
    return canvas


def centre_of(box: tuple[float, float, float, float]) -> tuple[float, float]:
    x, y, w, h = box
    return x + w / 2, y + h / 2


def inside(point: tuple[float, float], x: int, y: int, side: int) -> bool:
    return x <= point[0] <= x + side and y <= point[1] <= y + side


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    cv2.setNumThreads(1)
    return FaceDetector()


@pytest.fixture(scope="module")
def preprocessor() -> Preprocessor:
    return Preprocessor()


# -- kind 10: several faces ------------------------------------------------------------------


@pytest.mark.parametrize("big", ["Tony_Blair_0001.jpg", "Serena_Williams_0001.jpg"])
def test_several_faces_the_largest_is_used_and_all_are_counted(
    big: str, detector: FaceDetector, preprocessor: Preprocessor
) -> None:
    small = "Serena_Williams_0001.jpg" if big == "Tony_Blair_0001.jpg" else "Tony_Blair_0001.jpg"
    # The smaller face sits nearer the centre: size, not position, decides.
    canvas = canvas_with((rgb(big, 400), 20, 100), (rgb(small, 180), 480, 200))
    faces = detector.detect_all(canvas)
    assert len(faces) >= 2
    assert inside(centre_of(faces[0].box), 20, 100, 400)
    assert any(inside(centre_of(f.box), 480, 200, 180) for f in faces[1:])

    aligned = preprocessor.from_bytes(png(canvas), "selfie")
    assert aligned.detection.faces_found == len(faces)
    assert inside(centre_of(aligned.detection.box), 20, 100, 400)
    alone = preprocessor.from_rgb(rgb(big, 400), "alone")
    # The same five landmarks as the big photo on its own (3% of its side: detector noise).
    assert np.abs(aligned.detection.landmarks - (20, 100) - alone.detection.landmarks).max() < 12


def test_equal_faces_the_most_central_is_used(detector: FaceDetector) -> None:
    face = rgb("George_W_Bush_0001.jpg", 250)
    canvas = canvas_with((face, 10, 10), (face, 325, 175), size=(900, 600))  # 2nd is central
    faces = detector.detect_all(canvas)
    assert len(faces) >= 2
    assert inside(centre_of(faces[0].box), 325, 175, 250)


def test_no_face_is_refused_naming_the_image(preprocessor: Preprocessor) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    for pixels in (noise, np.full((300, 400, 3), 200, np.uint8)):
        with pytest.raises(NoFaceFound) as refused:
            preprocessor.from_bytes(png(pixels), "id_document")
        assert refused.value.image == "id_document"
        assert refused.value.reason == "NO_FACE"


# -- kind 11: an ID card (or a photo) held sideways or upside down ---------------------------


@pytest.mark.parametrize("turned", [0, 90, 180, 270])
def test_turned_id_card_face_found_and_rotation_reported(
    turned: int, detector: FaceDetector, preprocessor: Preprocessor
) -> None:
    card = rgb("id_card_td1_a_front.png")
    photo = rotate_clockwise(card, turned)
    found = detector.detect(photo)
    assert found is not None
    face, upright = found
    assert face.rotation_degrees == (360 - turned) % 360
    assert np.array_equal(upright, card)
    assert face.confidence >= UPRIGHT_CONFIDENCE

    aligned = preprocessor.from_bytes(png(photo), "id_document")
    reference = preprocessor.from_rgb(card, "upright")
    assert aligned.detection.rotation_degrees == face.rotation_degrees
    assert np.array_equal(aligned.crop, reference.crop)


@pytest.mark.parametrize("turned", [90, 180, 270])
def test_turned_photo_without_exif_is_turned_back(turned: int, detector: FaceDetector) -> None:
    photo = rgb("Serena_Williams_0001.jpg")
    found = detector.detect(rotate_clockwise(photo, turned))
    assert found is not None
    assert found[0].rotation_degrees == (360 - turned) % 360


def test_rotations_can_be_switched_off(detector: FaceDetector) -> None:
    card = rotate_clockwise(rgb("id_card_td1_a_front.png"), 180)
    found = detector.detect(card, try_rotations=False)
    assert found is None or found[0].rotation_degrees == 0


@pytest.mark.parametrize("shape", [(32, 32), (32, 320), (320, 32), (1, 1), (3000, 300)])
def test_detection_on_extreme_shapes_does_not_crash(
    shape: tuple[int, int], detector: FaceDetector
) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    detector.detect(pixels)  # any answer; what matters is no exception

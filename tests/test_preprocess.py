"""The one preprocessing path: decode → detect → align, as serving, training and eval use it."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from model.align import align_face
from model.preprocess import Preprocessor
from tests.conftest import photo


def test_aligned_crop_is_the_model_input_size() -> None:
    aligned = Preprocessor().from_bytes(photo("Colin_Powell_0001.jpg"), "selfie")
    assert aligned.crop.shape == (112, 112, 3) and aligned.crop.dtype == np.uint8
    assert aligned.detection.faces_found >= 1


def _upscaled(side: int) -> bytes:
    buffer = io.BytesIO()
    small = Image.open(io.BytesIO(photo("Colin_Powell_0001.jpg")))
    small.resize((side, side), Image.BICUBIC).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_box_is_reported_in_the_pixels_sent_even_when_decoded_at_reduced_size() -> None:
    """A 16 MP photo decodes at reduced size (4000 → 2000 px); its face box must still be in the
    coordinates of the image as sent: the same, relative to the side, as for a 1000 px copy
    that decodes at full size."""
    preprocessor = Preprocessor()
    full = np.array(preprocessor.from_bytes(_upscaled(1000), "selfie").detection.box) / 1000
    reduced = np.array(preprocessor.from_bytes(_upscaled(4000), "selfie").detection.box) / 4000
    np.testing.assert_allclose(reduced, full, atol=0.01)


@pytest.mark.parametrize("cut", [0, 80])
def test_a_small_face_in_a_big_photo_aligns_like_the_face_alone(cut: int) -> None:
    """align_face shrinks only the region around the crop (and folds its offset and scale into
    the matrix): the crop must match aligning the face at its own size, also when the photo is
    cut through the crop's region (`cut`: the face's top-left trimmed, the photo's corner)."""
    face = np.asarray(Image.open(io.BytesIO(photo("Colin_Powell_0001.jpg"))).convert("RGB"))
    landmarks = Preprocessor().from_rgb(face, "selfie").detection.landmarks - cut
    face = np.ascontiguousarray(face[cut:, cut:])
    zoom, canvas = 6, np.full((2400, 3000, 3), 90, np.uint8)
    big_face = cv2.resize(face, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
    x0, y0 = (0, 0) if cut else (1200, 700)
    canvas[y0 : y0 + big_face.shape[0], x0 : x0 + big_face.shape[1]] = big_face
    expected = align_face(face, landmarks)
    got = align_face(canvas, landmarks * zoom + np.array([x0, y0], np.float32))
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 4.0

"""The one preprocessing path: decode → detect → align, as serving, training and eval use it."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

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

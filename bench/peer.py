"""The peer: dlib's face-verification pipeline (training.dlib_baseline, run as face_recognition
runs it) on the same encoded photos, pairs per second including the decode, like our floor."""

from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image

from bench.inprocess import MAX_ROUNDS, Rate
from bench.photos import PhotoPair


def rgb_of(data: bytes) -> np.ndarray:
    """face_recognition.load_image_file on bytes: Pillow, converted to RGB."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def dlib_rate(pairs: list[PhotoPair], duration_s: float) -> tuple[Rate, int]:
    """(pairs/s, pairs where dlib found no face). Raises BaselineUnavailable without dlib."""
    from training.dlib_baseline import DlibFaceModel, NoFaceForDlib

    model = DlibFaceModel()

    def one(pair: PhotoPair) -> bool:
        try:
            a = model.describe(rgb_of(pair.selfie), "selfie")
            b = model.describe(rgb_of(pair.id_document), "id_document")
        except NoFaceForDlib:
            return False
        float(np.linalg.norm(a - b))
        return True

    one(pairs[0])  # warm-up
    done, missed, durations = 0, 0, []
    started = time.perf_counter()
    for index in range(MAX_ROUNDS):
        t0 = time.perf_counter()
        missed += not one(pairs[index % len(pairs)])
        durations.append(time.perf_counter() - t0)
        done += 1
        if time.perf_counter() - started >= duration_s:
            break
    seconds = time.perf_counter() - started
    return Rate(1, done, seconds, float(np.median(durations)) * 1000.0), missed

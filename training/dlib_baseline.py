"""The peer baseline: dlib's public-domain face model, run exactly as `face_recognition` runs it.

Pipeline (face_recognition 1.3, `face_encodings(model="small")` + `compare_faces`): image loaded
with Pillow as RGB; HOG frontal face detector with 1 upsample; 5-point shape predictor; the
128-D ResNet descriptor with num_jitters=1; Euclidean distance; same person if distance <= 0.6.
face_recognition leaves the choice among several faces to its caller; we take the largest, the
rule our own pipeline uses, so both methods judge the same face. No HOG face: a failure.

One departure, for time: HOG searches a copy scaled down to at most DETECT_MAX_SIDE px on the
long side (landmarks and the descriptor still read the full-resolution photo). HOG with one
upsample costs seconds on a 2000 px photographed ID card, and the portrait there is ~260 px
tall, far above what HOG needs; LFW photos (250 px) are searched as they are.

Optional: `pip install 'siamese-matching[baseline]'` (dlib-bin, face-recognition-models).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

TOLERANCE = 0.6  # face_recognition.compare_faces' default, dlib's published operating point
UPSAMPLE = 1
DETECT_MAX_SIDE = 1024
NUM_JITTERS = 1
INSTALL_HINT = (
    "the dlib baseline needs the optional extra: .venv/bin/pip install -e '.[baseline]' "
    "(dlib-bin and face-recognition-models)"
)


class BaselineUnavailable(ImportError):
    """dlib or its model files are not installed."""


class NoFaceForDlib(ValueError):
    """dlib's HOG detector found no face in the named image."""


def dlib_model_dir() -> Path:
    """face_recognition_models' data folder, found without importing the package: its
    __init__ imports pkg_resources, which current setuptools no longer provides."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise BaselineUnavailable(INSTALL_HINT)
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def is_available() -> bool:
    return (
        importlib.util.find_spec("dlib") is not None
        and importlib.util.find_spec("face_recognition_models") is not None
    )


def load_rgb(path: Path) -> np.ndarray:
    """face_recognition.load_image_file: Pillow, converted to RGB, no EXIF rotation."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@dataclass
class DlibFaceModel:
    """HOG detector + 5-point predictor + ResNet descriptor, loaded once (not thread-safe)."""

    def __post_init__(self) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise BaselineUnavailable(INSTALL_HINT) from exc
        models = dlib_model_dir()
        predictor = models / "shape_predictor_5_face_landmarks.dat"
        encoder = models / "dlib_face_recognition_resnet_model_v1.dat"
        for file in (predictor, encoder):
            if not file.is_file():
                raise BaselineUnavailable(f"{file} is missing; {INSTALL_HINT}")
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(predictor))
        self._encoder = dlib.face_recognition_model_v1(str(encoder))

    def describe(self, rgb: np.ndarray, image: str) -> np.ndarray:
        """The 128-D descriptor of the largest HOG face; raises NoFaceForDlib."""
        rect = self._largest_face(rgb, image)
        shape = self._predictor(rgb, rect)
        descriptor = self._encoder.compute_face_descriptor(rgb, shape, NUM_JITTERS)
        return np.asarray(descriptor, dtype=np.float64)

    def _largest_face(self, rgb: np.ndarray, image: str):
        height, width = rgb.shape[:2]
        scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
        searched = rgb
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            searched = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
        faces = self._detector(searched, UPSAMPLE)
        if len(faces) == 0:
            raise NoFaceForDlib(f"{image}: dlib's HOG detector found no face")
        face = max(faces, key=lambda r: r.width() * r.height())
        return self._dlib.rectangle(
            *(round(v / scale) for v in (face.left(), face.top(), face.right(), face.bottom()))
        )

    def distance(self, path_a: Path, path_b: Path) -> float:
        """Euclidean distance between the two photos' descriptors (same person if <= 0.6)."""
        a = self.describe(load_rgb(path_a), str(path_a))
        b = self.describe(load_rgb(path_b), str(path_b))
        return float(np.linalg.norm(a - b))

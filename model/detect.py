"""Face detection with OpenCV's YuNet (the ONNX file shipped in model/assets/).

Detection runs on a copy scaled to at most `detect_max_side` pixels; boxes and landmarks are
returned in the coordinates of the image passed in. A photo of an ID card held sideways or upside
down (issue 4, kind 11) is handled by trying the 90/180/270-degree rotations; see `detect`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

YUNET_PATH = Path(__file__).parent / "assets" / "face_detection_yunet_2023mar.onnx"
ROTATIONS = (0, 90, 270, 180)  # clockwise degrees, tried in this order (ties go to the first)
# YuNet finds sideways and upside-down faces too, with lower confidence and landmarks placed as
# if the face were upright (useless for alignment). On the LFW fixtures and the DocXPand card an
# upright face scored 0.92-0.94 and the same face turned 90/180/270 degrees 0.56-0.87; below this
# confidence at 0 degrees, every rotation is tried and the most confident one wins.
UPRIGHT_CONFIDENCE = 0.9

# OpenCV 5 warns on every YuNet creation about DNN targets; it is noise for us.
with contextlib.suppress(AttributeError):
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


@dataclass(frozen=True)
class DetectedFace:
    box: tuple[float, float, float, float]  # x, y, width, height in the input image
    landmarks: np.ndarray  # 5x2: eye (image left), eye (image right), nose, mouth left, right
    confidence: float
    faces_found: int
    rotation_degrees: int = 0

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


class FaceDetector:
    """Not thread-safe (YuNet keeps its input size); one per worker thread or process."""

    def __init__(
        self,
        score_threshold: float = 0.7,
        nms_threshold: float = 0.3,
        detect_max_side: int = 640,
        model_path: Path = YUNET_PATH,
    ) -> None:
        if not model_path.is_file():
            raise FileNotFoundError(f"YuNet model not found at {model_path}")
        self._net = cv2.FaceDetectorYN.create(
            str(model_path), "", (320, 320), score_threshold, nms_threshold, 5000
        )
        self.detect_max_side = detect_max_side

    def detect_all(self, rgb: np.ndarray) -> list[DetectedFace]:
        """All faces in `rgb`, the one to use first.

        The rule (issue 4, kind 10): the largest face (box area) is the subject: the person
        holding the phone in a selfie with someone behind, the main portrait on an ID card with a
        small ghost portrait. Boxes within 10% of the largest area are ranked by distance from
        the image centre instead, so two equally sized faces give a stable, central choice.
        """
        h, w = rgb.shape[:2]
        scale = min(1.0, self.detect_max_side / max(h, w))
        small = rgb
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(small[:, :, ::-1])
        self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, raw = self._net.detect(bgr)
        if raw is None:
            return []
        faces = []
        for row in raw:
            box = tuple(float(v) / scale for v in row[:4])
            landmarks = (row[4:14].reshape(5, 2) / scale).astype(np.float32)
            faces.append(DetectedFace(box, landmarks, float(row[14]), len(raw)))
        return _rank(faces, w, h)

    def detect(
        self, rgb: np.ndarray, try_rotations: bool = True
    ) -> tuple[DetectedFace, np.ndarray] | None:
        """The face to use and the (possibly rotated) image it was found in, or None.

        Upright first: a face found there with confidence >= UPRIGHT_CONFIDENCE is used at once
        (one detection, the common case). Otherwise all four rotations are tried and the one
        whose most confident face scores highest wins; `rotation_degrees` reports it (clockwise),
        `faces_found` counts the faces in that rotation.
        """
        best: tuple[float, int, list[DetectedFace], np.ndarray] | None = None
        for degrees in ROTATIONS if try_rotations else (0,):
            rotated = rotate_clockwise(rgb, degrees)
            faces = self.detect_all(rotated)
            if not faces:
                continue
            confidence = max(f.confidence for f in faces)
            if best is None or confidence > best[0]:
                best = (confidence, degrees, faces, rotated)
            if degrees == 0 and confidence >= UPRIGHT_CONFIDENCE:
                break
        if best is None:
            return None
        _, degrees, faces, rotated = best
        face = faces[0]
        return (
            DetectedFace(face.box, face.landmarks, face.confidence, len(faces), degrees),
            rotated,
        )


def _rank(faces: list[DetectedFace], width: int, height: int) -> list[DetectedFace]:
    """Largest first; near-ties (within 10% of the largest area) by distance from the centre."""
    largest = max(f.area for f in faces)

    def key(face: DetectedFace) -> tuple[bool, float]:
        x, y, w, h = face.box
        off_centre = (x + w / 2 - width / 2) ** 2 + (y + h / 2 - height / 2) ** 2
        near_largest = face.area >= 0.9 * largest
        return (not near_largest, off_centre if near_largest else -face.area)

    return sorted(faces, key=key)


def rotate_clockwise(rgb: np.ndarray, degrees: int) -> np.ndarray:
    """`rgb` turned clockwise by 0, 90, 180 or 270 degrees (a view-free copy except for 0)."""
    if degrees == 0:
        return rgb
    code = {
        90: cv2.ROTATE_90_CLOCKWISE,
        180: cv2.ROTATE_180,
        270: cv2.ROTATE_90_COUNTERCLOCKWISE,
    }[degrees]
    return cv2.rotate(rgb, code)

"""Face detection with OpenCV's YuNet (the ONNX file shipped in model/assets/).

Detection runs on a copy scaled to at most `detect_max_side` pixels; boxes and landmarks are
returned in the coordinates of the image passed in. When the upright image has no face, the
detector retries on 90/270/180-degree rotations (an ID card held sideways or upside down).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

YUNET_PATH = Path(__file__).parent / "assets" / "face_detection_yunet_2023mar.onnx"
ROTATIONS = (0, 90, 270, 180)  # clockwise degrees, tried in this order

try:  # OpenCV 5 warns on every YuNet creation about DNN targets; it is noise for us
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
except AttributeError:  # pragma: no cover
    pass


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
        """All faces in `rgb`, largest first (the documented rule: the largest face is used)."""
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
        return sorted(faces, key=lambda f: f.area, reverse=True)

    def detect(self, rgb: np.ndarray, try_rotations: bool = True) -> tuple[DetectedFace, np.ndarray] | None:
        """The face to use and the (possibly rotated) image it was found in, or None."""
        for degrees in ROTATIONS if try_rotations else (0,):
            rotated = rotate_clockwise(rgb, degrees)
            faces = self.detect_all(rotated)
            if faces:
                best = faces[0]
                return (
                    DetectedFace(
                        best.box, best.landmarks, best.confidence, len(faces), degrees
                    ),
                    rotated,
                )
        return None


def rotate_clockwise(rgb: np.ndarray, degrees: int) -> np.ndarray:
    if degrees == 0:
        return rgb
    code = {
        90: cv2.ROTATE_90_CLOCKWISE,
        180: cv2.ROTATE_180,
        270: cv2.ROTATE_90_COUNTERCLOCKWISE,
    }[degrees]
    return cv2.rotate(rgb, code)

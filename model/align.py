"""Five-point similarity alignment onto the ArcFace 112x112 template (insightface)."""

from __future__ import annotations

import cv2
import numpy as np

# Eye (image left), eye (image right), nose tip, mouth corners, for a 112x112 crop
# (insightface, recognition/arcface_torch and the ArcFace paper's preprocessing).
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


def align_face(rgb: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Warp `rgb` so the landmarks land on the template; returns size x size x 3 uint8."""
    template = ARCFACE_TEMPLATE_112 * (size / 112.0)
    matrix, _ = cv2.estimateAffinePartial2D(
        landmarks.astype(np.float32), template, method=cv2.LMEDS
    )
    if matrix is None:  # degenerate landmarks (all on one point): fall back to a plain fit
        matrix = cv2.getAffineTransform(landmarks[:3].astype(np.float32), template[:3])
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    # Downscaling by more than 2x with bilinear sampling aliases: pre-blur with INTER_AREA.
    if scale < 0.5:
        factor = 1.0 / scale / 1.5
        h, w = rgb.shape[:2]
        rgb = cv2.resize(
            rgb, (max(1, int(w / factor)), max(1, int(h / factor))), interpolation=cv2.INTER_AREA
        )
        matrix = matrix.copy()
        matrix[:, :2] *= factor
    return cv2.warpAffine(
        rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )

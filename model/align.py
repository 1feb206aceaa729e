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
        rgb, matrix = _shrink_around_crop(rgb, matrix, size, factor=1.0 / scale / 1.5)
    return cv2.warpAffine(
        rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def _shrink_around_crop(
    rgb: np.ndarray, matrix: np.ndarray, size: int, factor: float
) -> tuple[np.ndarray, np.ndarray]:
    """Shrink by `factor` only the part of the photo the crop samples (plus a margin), and
    the matrix with it. Shrinking the whole frame of a phone photo cost a tenth of a worker's
    time; the face is a small part of it. Where the crop overhangs the photo, the region is
    clipped at the photo's edge, so border replication sees the same edge pixels as before."""
    h, w = rgb.shape[:2]
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
    source = corners @ cv2.invertAffineTransform(matrix).T.astype(np.float64)
    margin = 2.0 * factor
    x0 = int(np.clip(np.floor(source[:, 0].min() - margin), 0, w - 1))
    y0 = int(np.clip(np.floor(source[:, 1].min() - margin), 0, h - 1))
    x1 = int(np.clip(np.ceil(source[:, 0].max() + margin), x0 + 1, w))
    y1 = int(np.clip(np.ceil(source[:, 1].max() + margin), y0 + 1, h))
    region_w, region_h = x1 - x0, y1 - y0
    small_w, small_h = max(1, int(region_w / factor)), max(1, int(region_h / factor))
    small = cv2.resize(rgb[y0:y1, x0:x1], (small_w, small_h), interpolation=cv2.INTER_AREA)
    # source = (x0, y0) + diag(fx, fy) @ small  =>  fold both into the matrix
    fx, fy = region_w / small_w, region_h / small_h
    shrunk = matrix.astype(np.float64).copy()
    shrunk[:, 2] += matrix[:, :2] @ np.array([x0, y0], np.float64)
    shrunk[:, 0] *= fx
    shrunk[:, 1] *= fy
    return small, shrunk

"""THE one path from image bytes to a model input: decode → detect → align → crop.

Serving (worker), training (cached crops), evaluation and benchmarks all call `Preprocessor`,
so a score means the same thing wherever it is computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from model.align import align_face
from model.decode import DecodeLimits, decode_rgb, read_header
from model.detect import DetectedFace, FaceDetector
from model.errors import NoFaceFound

# Detection and alignment need no more than this many pixels on the longer side; larger JPEGs
# are decoded at reduced size (see decode_rgb).
DECODE_MAX_SIDE = 1600


@dataclass(frozen=True)
class PreprocessConfig:
    """Stored in every checkpoint so that a model is always fed the way it was trained."""

    input_size: int = 112
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    alignment: str = "arcface-5point"

    def to_dict(self) -> dict:
        return {
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "alignment": self.alignment,
        }

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessConfig:
        return cls(
            input_size=int(data["input_size"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            alignment=str(data["alignment"]),
        )


@dataclass(frozen=True)
class AlignedFace:
    crop: np.ndarray  # input_size x input_size x 3 uint8 RGB
    detection: DetectedFace  # box in the upright (EXIF-applied), possibly rotated image


@dataclass
class Preprocessor:
    config: PreprocessConfig = field(default_factory=PreprocessConfig)
    limits: DecodeLimits = field(default_factory=DecodeLimits)
    detector_score: float = 0.7
    _detector: FaceDetector | None = field(default=None, init=False, repr=False)

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:  # created lazily: no work at import or construction
            self._detector = FaceDetector(score_threshold=self.detector_score)
        return self._detector

    def from_bytes(self, data: bytes, image: str) -> AlignedFace:
        """Raises UndecodableImage or NoFaceFound naming `image`. The reported box is in the
        pixels of the image as sent (upright), even when it was decoded at reduced size."""
        header = read_header(data, image, self.limits)
        rgb = decode_rgb(data, image, self.limits, max_side=DECODE_MAX_SIDE)
        aligned = self.from_rgb(rgb, image)
        scale = max(header.width, header.height) / max(rgb.shape[:2])
        if scale == 1.0:
            return aligned
        box = tuple(v * scale for v in aligned.detection.box)
        return replace(aligned, detection=replace(aligned.detection, box=box))

    def from_rgb(self, rgb: np.ndarray, image: str) -> AlignedFace:
        found = self.detector.detect(rgb)
        if found is None:
            raise NoFaceFound(image, "no face found")
        detection, oriented = found
        crop = align_face(oriented, detection.landmarks, self.config.input_size)
        return AlignedFace(crop, detection)


def crops_to_tensor(crops: list[np.ndarray], config: PreprocessConfig) -> torch.Tensor:
    """N x H x W x 3 uint8 crops → normalised N x 3 x H x W float tensor (CPU)."""
    batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(config.mean).view(1, 3, 1, 1)
    std = torch.tensor(config.std).view(1, 3, 1, 1)
    return batch.sub_(mean).div_(std)

"""The benchmark's inputs: real LFW pairs as JPEG bytes, and the same faces as phone-size photos.

LFW photos are 250x250 JPEGs of ~15 KB; a phone's camera writes ~12 MP JPEGs of a few MB, and
decoding those costs more than the model at 112 px unless they are decoded at reduced size
(issue 5). `phone_jpeg` turns an LFW photo into such a file: the face upscaled to the photo's
height on a 4:3 canvas, with sensor-like noise so that the JPEG weighs what a real one weighs.
Phone photos are cached under the results folder (git-ignored): making one takes a second.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from training.pairs import read_pairs

# A 12 MP phone photo (4032 x 3024, the 4:3 sensor of most phones).
PHONE_SIZE = (4032, 3024)
PHONE_QUALITY = 92
# Sensor noise (std of a per-pixel Gaussian, in 8-bit levels): brings an upscaled 250 px face to
# the 3-5 MB of a real 12 MP JPEG instead of the ~1 MB of a smooth upscale.
PHONE_NOISE = 6.0


@dataclass(frozen=True)
class PhotoPair:
    """One pair of encoded images, named for the report."""

    name: str
    selfie: bytes
    id_document: bytes

    @property
    def nbytes(self) -> int:
        return len(self.selfie) + len(self.id_document)


def lfw_pairs(lfw_root: Path, count: int) -> list[PhotoPair]:
    """The first `count` pairs of LFW's pairsDevTest.txt, same- and different-person mixed
    (both halves of the list are interleaved), as the JPEG bytes on disk."""
    lfw_root = Path(lfw_root)
    pairs = read_pairs(lfw_root / "pairsDevTest.txt", root=lfw_root / "lfw-deepfunneled")
    half = len(pairs) // 2
    chosen = [p for pair in zip(pairs[:half], pairs[half:], strict=True) for p in pair][:count]
    return [
        PhotoPair(f"{p.path_a.stem}~{p.path_b.stem}", p.path_a.read_bytes(), p.path_b.read_bytes())
        for p in chosen
    ]


def phone_jpeg(data: bytes, seed: int = 0) -> bytes:
    """An LFW JPEG → a 12 MP 4:3 JPEG of a few MB, the face filling the photo's height."""
    width, height = PHONE_SIZE
    with Image.open(io.BytesIO(data)) as img:
        face = img.convert("RGB").resize((height, height), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", PHONE_SIZE)
    # Edge columns stretched to the sides: a background, not black bars.
    left = face.crop((0, 0, 1, height)).resize(((width - height) // 2, height))
    right = face.crop((height - 1, 0, height, height)).resize((width - height - left.width, height))
    canvas.paste(left, (0, 0))
    canvas.paste(face, (left.width, 0))
    canvas.paste(right, (left.width + height, 0))
    rng = np.random.default_rng(seed)
    pixels = np.asarray(canvas, dtype=np.int16)
    pixels = pixels + rng.normal(0.0, PHONE_NOISE, pixels.shape).astype(np.int16)
    out = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(
        out, "JPEG", quality=PHONE_QUALITY, subsampling="4:2:0"
    )
    return out.getvalue()


def phone_pairs(pairs: list[PhotoPair], cache_dir: Path) -> list[PhotoPair]:
    """The same pairs as 12 MP phone photos (made once, then read from `cache_dir`)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)

    def convert(data: bytes) -> bytes:
        digest = hashlib.sha256(data).hexdigest()[:16]
        path = cache_dir / f"{digest}-{PHONE_SIZE[0]}x{PHONE_SIZE[1]}-q{PHONE_QUALITY}.jpg"
        if not path.is_file():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(phone_jpeg(data, seed=int(digest[:8], 16)))
            tmp.replace(path)
        return path.read_bytes()

    return [PhotoPair(p.name, convert(p.selfie), convert(p.id_document)) for p in pairs]

"""Bytes → upright 8-bit RGB pixels, with the limits checked from the header before decoding.

Every image the product touches (server validation, worker, training, evaluation) goes through
`read_header` and `decode_rgb`, so a refusal and a decoded pixel mean the same thing everywhere.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model.errors import UndecodableImage

try:  # HEIC/HEIF (iPhone camera default); optional at import so a broken wheel cannot stop us
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a declared dependency
    pass

# Our own pixel cap is the guard against decompression bombs; Pillow's (which only warns below
# ~179 MP) is disabled so that one documented limit applies.
Image.MAX_IMAGE_PIXELS = None

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF", "TIFF", "BMP", "MPO")
# Transparent pixels are flattened onto this colour (documented in the README).
ALPHA_BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int = 40_000_000
    min_side: int = 32


def read_header(data: bytes, image: str, limits: DecodeLimits) -> ImageHeader:
    """Identify the format and size from the header alone and check them against the limits."""
    if not data:
        raise UndecodableImage(image, "empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                header = ImageHeader(img.format or "", img.width, img.height)
    except UnidentifiedImageError:
        raise UndecodableImage(
            image, f"not a recognised image format (accepted: {', '.join(ACCEPTED_FORMATS)})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any parser error in a header is a bad input
        raise UndecodableImage(image, f"unreadable image header ({exc})") from None
    if header.format not in ACCEPTED_FORMATS:
        raise UndecodableImage(
            image,
            f"format {header.format} is not accepted (accepted: {', '.join(ACCEPTED_FORMATS)})",
        )
    if header.width * header.height > limits.max_pixels:
        raise UndecodableImage(
            image,
            f"{header.width}x{header.height} is {header.width * header.height:,} pixels, over "
            f"the cap of {limits.max_pixels:,}",
        )
    if min(header.width, header.height) < limits.min_side:
        raise UndecodableImage(
            image,
            f"{header.width}x{header.height} is smaller than the minimum of "
            f"{limits.min_side} px per side",
        )
    return header


def validate_image(data: bytes, image: str, limits: DecodeLimits) -> ImageHeader:
    """The edge check: header limits plus proof that the data is complete, without a full decode.

    A truncated JPEG is found by decoding it at 1/8 scale (DCT scaling: a few ms even for 12 MP);
    a truncated PNG by its missing IEND chunk. Pillow would otherwise grey-fill or raise late.
    """
    header = read_header(data, image, limits)
    if header.format == "PNG" and not data.rstrip(b"\0").endswith(b"IEND\xaeB`\x82"):
        raise UndecodableImage(image, "PNG data is truncated (no IEND chunk)")
    if header.format in ("JPEG", "MPO"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img = Image.open(io.BytesIO(data))
                img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
                img.load()
        except Exception as exc:  # noqa: BLE001 - truncated/corrupt data surfaces as many types
            raise UndecodableImage(image, f"JPEG data is truncated or corrupt ({exc})") from None
    return header


def decode_rgb(
    data: bytes, image: str, limits: DecodeLimits, max_side: int | None = None
) -> np.ndarray:
    """Decode to an upright HxWx3 uint8 RGB array.

    `max_side` lets JPEGs decode at reduced size (DCT scaling, Pillow's draft mode): a 12 MP
    phone photo then costs a fraction of a full decode; the result keeps at least `max_side`
    pixels on its longer side whenever the source has them.
    """
    read_header(data, image, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
            if max_side and img.format == "JPEG":
                scale = max(img.width, img.height) / max_side
                if scale >= 2:
                    img.draft("RGB", (int(img.width / scale) + 1, int(img.height / scale) + 1))
            img.load()
    except Exception as exc:  # noqa: BLE001 - truncated/corrupt data surfaces as many types
        raise UndecodableImage(image, f"cannot be decoded ({exc})") from None
    img = _apply_orientation(img)
    return np.asarray(_to_rgb(img))


def _apply_orientation(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception:  # noqa: BLE001 - broken EXIF: ignore the tag, keep the pixels
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.uint32 if img.mode == "I" else np.uint16)
        peak = 65535 if img.mode != "I" or arr.max() > 255 else 255
        arr8 = (arr.astype(np.float32) * (255.0 / peak)).round().clip(0, 255).astype(np.uint8)
        img = Image.fromarray(arr8, mode="L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img

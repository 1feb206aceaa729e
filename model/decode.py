"""Bytes → upright 8-bit RGB pixels, with the limits checked from the header before decoding.

Every image the product touches (server validation, worker, training, evaluation) goes through
`read_header` and `decode_rgb`, so a refusal and a decoded pixel mean the same thing everywhere.
Each messy-input kind of issue 4 is handled here once, as a kind:

- limits (pixel cap, minimum side, maximum aspect ratio) come from the header, before any pixel
  is decoded, so a decompression bomb costs no memory;
- EXIF orientation is applied only when it is a well-formed value 1..8; broken EXIF is ignored;
- grey, palette, 16-bit and CMYK/YCCK images become 8-bit RGB with the right colours;
- transparency (alpha, palette or colour-key tRNS) is flattened onto `ALPHA_BACKGROUND`, so
  colours hidden under transparent pixels never reach the model.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import simplejpeg
from PIL import ExifTags, Image, UnidentifiedImageError

from model.completeness import prove_complete
from model.errors import ImageError, UndecodableImage

if TYPE_CHECKING:
    from siamatch.settings import Settings

try:  # HEIC/HEIF (iPhone camera default); optional at import so a broken wheel cannot stop us
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a declared dependency
    pass

# Our own pixel cap is the guard against decompression bombs; Pillow's (which only warns below
# ~179 MP) is disabled so that one documented limit applies.
Image.MAX_IMAGE_PIXELS = None

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF", "TIFF", "BMP", "MPO")
JPEG_FORMATS = ("JPEG", "MPO")  # MPO: a JPEG followed by more JPEGs (we read the first)
# Transparent pixels are flattened onto this colour (documented in the README).
ALPHA_BACKGROUND = (255, 255, 255)
# EXIF orientation → the transpose that makes the pixels upright (EXIF 2.32, tag 0x0112).
_ORIENTATION_FIX = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int


@dataclass(frozen=True)
class DecodeLimits:
    """The documented input limits; defaults match siamatch.settings.Settings."""

    max_pixels: int = 40_000_000
    min_side: int = 32
    # Longer side / shorter side. A face photo is never a 1:40 strip; past this ratio detection
    # would run on a sliver a few pixels high (issue 4, kind 8).
    max_aspect: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DecodeLimits:
        return cls(
            max_pixels=settings.max_image_pixels,
            min_side=settings.min_image_side,
            max_aspect=settings.max_image_aspect,
        )


def read_header(data: bytes, image: str, limits: DecodeLimits) -> ImageHeader:
    """Identify the format and size from the header alone and check them against the limits."""
    if not data:
        raise UndecodableImage(image, "empty (0 bytes)")
    try:
        with _quiet(), Image.open(io.BytesIO(data)) as img:
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
    size = f"{header.width}x{header.height}"
    if header.width * header.height > limits.max_pixels:
        raise UndecodableImage(
            image,
            f"{size} is {header.width * header.height:,} pixels, over the cap of "
            f"{limits.max_pixels:,}",
        )
    if min(header.width, header.height) < limits.min_side:
        raise UndecodableImage(
            image, f"{size} is smaller than the minimum of {limits.min_side} px per side"
        )
    if max(header.width, header.height) > limits.max_aspect * min(header.width, header.height):
        raise UndecodableImage(
            image,
            f"{size} is more elongated than the maximum aspect ratio of {limits.max_aspect:g}:1",
        )
    return header


def validate_image(data: bytes, image: str, limits: DecodeLimits) -> ImageHeader:
    """The edge check: header limits plus proof that the data is complete, without a full decode.

    Cheap enough to run on every request (see model.completeness): a JPEG's segments and scans
    are walked to its end-of-image marker, a PNG's compressed stream is inflated and counted but
    never stored, other formats get structural checks. What passes here may still fail the
    worker's decode (a JPEG cut and re-closed, a corrupt HEVC payload); that reaches the caller
    as an UNDECODABLE_IMAGE result, never a crash and never a grey-filled picture scored.
    """
    header = read_header(data, image, limits)
    prove_complete(data, header.format, image)
    return header


def decode_rgb(
    data: bytes, image: str, limits: DecodeLimits, max_side: int | None = None
) -> np.ndarray:
    """Decode to an upright HxWx3 uint8 RGB array.

    `max_side` lets large images decode at reduced size: JPEGs by DCT scaling (a fraction of a
    full decode's cost), others by a box-filter reduction after decoding.
    The result keeps at least `max_side` pixels on its longer side whenever the source has them.
    """
    header = read_header(data, image, limits)
    try:
        with _quiet():
            img = Image.open(io.BytesIO(data))
            orientation = _orientation(img)  # from the header: nothing decoded yet
            is_jpeg = header.format in JPEG_FORMATS
            reduced = _dct_reduced_size(header, max_side) if is_jpeg else None
            rgb = _jpeg_rgb(data, image, reduced) if is_jpeg else None
            if rgb is None:
                if reduced is not None:
                    img.draft(img.mode, reduced)
                img.load()
                rgb = _to_rgb(img, image)
            if max_side:
                factor = max(rgb.width, rgb.height) // max_side
                if factor >= 2:
                    rgb = rgb.reduce(factor)
            for step in _ORIENTATION_FIX.get(orientation, ()):
                rgb = rgb.transpose(step)
            pixels = np.asarray(rgb)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated/corrupt data surfaces as many types
        raise UndecodableImage(image, f"cannot be decoded ({exc})") from None
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise UndecodableImage(image, f"decoded to an unexpected array {pixels.shape}")
    return pixels


def _dct_reduced_size(header: ImageHeader, max_side: int | None) -> tuple[int, int] | None:
    """The smallest size a JPEG may decode at by DCT scaling and keep `max_side` pixels on its
    longer side; None when not worth it (under 2x)."""
    if not max_side:
        return None
    scale = max(header.width, header.height) / max_side
    if scale < 2:
        return None
    return math.ceil(header.width / scale), math.ceil(header.height / scale)


def _jpeg_rgb(data: bytes, image: str, reduced: tuple[int, int] | None) -> Image.Image | None:
    """A YCbCr/grey/RGB JPEG decoded by libjpeg-turbo (simplejpeg) with its warnings heard.

    Pillow decodes through libjpeg too but drops its warnings: a JPEG cut short and closed with
    an end-of-image marker decodes with the missing rows filled grey, and would be scored. Here
    a warning that means lost pixels (premature end, corrupt entropy data) refuses the image;
    a harmless one (extraneous bytes between segments, common in camera files) sends the
    image to Pillow, as do CMYK/YCCK JPEGs (Pillow converts those with the Adobe conventions,
    `_to_rgb`): None. DCT scaling gives the reduced size, as Pillow's draft mode does.
    """
    try:
        _, _, colorspace, _ = simplejpeg.decode_jpeg_header(data, strict=False)
    except ValueError as exc:
        raise UndecodableImage(image, f"JPEG header cannot be read ({exc})") from None
    if colorspace not in ("YCbCr", "Gray", "RGB"):
        return None
    size = {"min_width": reduced[0], "min_height": reduced[1]} if reduced else {}
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True, **size)
    except ValueError as exc:
        message = str(exc)
        lowered = message.lower()
        if ("premature end" in lowered or "corrupt" in lowered) and "extraneous" not in lowered:
            reason = f"JPEG data is truncated or corrupt ({message})"
            raise UndecodableImage(image, reason) from None
        return None  # harmless to the pixels, or beyond simplejpeg: Pillow decodes it
    return Image.fromarray(pixels)


class _quiet(warnings.catch_warnings):
    """Pillow warns about corrupt EXIF, odd chunks and so on: we decide, it need not shout."""

    def __enter__(self) -> None:
        super().__enter__()
        warnings.simplefilter("ignore")


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation when it is well formed, else 1 (issue 4, kind 2: ignore, not guess).

    Pillow tolerates a doubled "Exif\\0\\0Exif\\0\\0" header and reads the tag behind it; we do
    not: a writer that mangled the header may have mangled the tag too, and the detector's
    rotation retry finds a sideways face anyway.
    """
    raw = img.info.get("exif")
    if isinstance(raw, bytes) and raw.startswith(b"Exif\0\0Exif\0\0"):
        return 1
    try:
        value = img.getexif().get(ExifTags.Base.Orientation)
    except Exception:  # noqa: BLE001 - broken EXIF: ignore the tag, keep the pixels
        return 1
    return value if type(value) is int and 1 <= value <= 8 else 1


def _to_rgb(img: Image.Image, image: str) -> Image.Image:
    """Any decoded mode → 8-bit RGB with transparency flattened onto ALPHA_BACKGROUND."""
    mode = img.mode
    if mode == "CMYK" and img.format in ("JPEG", "MPO") and "adobe" not in img.info:
        # Pillow reads every CMYK JPEG as Adobe-inverted; without an Adobe APP14 marker the
        # data is plain CMYK (libjpeg's convention), so undo Pillow's inversion.
        img = img.point(lambda v: 255 - v)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = _high_depth_to_l(img)
        mode = img.mode
    if mode == "1":
        img = img.convert("L")
        mode = "L"
    if mode in ("P", "L", "RGB") and "transparency" in img.info:
        img = img.convert("RGBA")  # palette tRNS or colour-key tRNS becomes a real alpha channel
        mode = "RGBA"
    if mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return img
    try:
        return img.convert("RGB")
    except ValueError:
        raise UndecodableImage(image, f"pixel mode {mode} is not supported") from None


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float grey → 8-bit L by scaling (issue 4, kind 5: never clipped).

    A colour-key tRNS on a 16-bit grey PNG is kept as an alpha channel (mode LA).
    """
    values = np.asarray(img)
    if img.mode == "F":
        peak = 1.0 if float(np.nanmax(values, initial=0.0)) <= 1.0 else 255.0
    elif img.mode.startswith("I;16") or int(values.max(initial=0)) > 255:
        peak = 65535.0
    else:  # mode I holding 8-bit values (some TIFF writers)
        peak = 255.0
    scaled = np.nan_to_num(values.astype(np.float64) * (255.0 / peak), nan=0.0)
    grey = Image.fromarray(scaled.round().clip(0, 255).astype(np.uint8))
    key = img.info.get("transparency")
    if isinstance(key, int) and not isinstance(key, bool):
        alpha = np.where(values == key, 0, 255).astype(np.uint8)
        grey = Image.merge("LA", (grey, Image.fromarray(alpha)))
    return grey

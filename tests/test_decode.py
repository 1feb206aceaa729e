"""Issue 4, kinds 1-9: every messy image is decoded as if it were a clean upright RGB photo, or is
refused by the edge check naming the image and the reason. Each case is a real LFW photo that
the test transforms itself.
"""

from __future__ import annotations

import io
import resource
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from model.checkpoint import load_default_or
from model.decode import ALPHA_BACKGROUND, DecodeLimits, decode_rgb, read_header, validate_image
from model.errors import UndecodableImage
from model.inference import PairScorer
from model.preprocess import Preprocessor
from tests.conftest import FIXTURES

LIMITS = DecodeLimits()


def fixture_image(name: str = "Colin_Powell_0001.jpg") -> Image.Image:
    with Image.open(FIXTURES / name) as img:
        return img.convert("RGB")


def encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB")).astype(np.int16)


def exif_with_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def with_app1(jpeg: bytes, payload: bytes) -> bytes:
    """`jpeg` with an APP1 segment holding `payload` right after SOI (where cameras put EXIF)."""
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def tiff_orientation_ifd(value: int, field_type: int = 3, count: int = 1) -> bytes:
    """A little-endian TIFF header and one IFD holding only the orientation tag (0x0112)."""
    entry = struct.pack("<HHI", 0x0112, field_type, count) + struct.pack("<HH", value, 0)
    return b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + struct.pack("<I", 0)


@pytest.fixture(scope="module")
def preprocessor() -> Preprocessor:
    torch.set_num_threads(1)
    return Preprocessor()


@pytest.fixture(scope="module")
def scorer() -> PairScorer:
    torch.set_num_threads(1)
    return PairScorer(load_default_or(None), device="cpu")


# -- kind 1: EXIF orientation ----------------------------------------------------------------

# The transpose that, applied to upright pixels, gives what a camera stores with each tag value
# (the inverse of what the tag tells a viewer to do).
STORED_AS = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def stored_with_orientation(upright: Image.Image, value: int, fmt: str, **options: object) -> bytes:
    transpose = STORED_AS[value]
    stored = upright if transpose is None else upright.transpose(transpose)
    return encode(stored, fmt, exif=exif_with_orientation(value), **options)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_png_gives_the_upright_pixels_crop_and_score(
    orientation: int, preprocessor: Preprocessor, scorer: PairScorer
) -> None:
    # Non-square, so a missed or wrong rotation changes the shape, not only the content.
    upright = fixture_image().crop((0, 10, 250, 240))
    other = preprocessor.from_bytes((FIXTURES / "Colin_Powell_0002.jpg").read_bytes(), "other")
    reference = preprocessor.from_bytes(encode(upright, "PNG"), "upright")

    data = stored_with_orientation(upright, orientation, "PNG")
    assert np.array_equal(decode_rgb(data, "selfie", LIMITS), np.asarray(upright))
    face = preprocessor.from_bytes(data, "selfie")
    assert np.array_equal(face.crop, reference.crop)
    scores = scorer.score([face.crop, reference.crop], [other.crop, other.crop])
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_phone_jpeg_scores_as_upright(
    orientation: int, preprocessor: Preprocessor, scorer: PairScorer
) -> None:
    # 240x224 at quality 100 without chroma subsampling: block-aligned, so re-encoding the
    # turned pixels adds only rounding noise (a phone's own JPEG is what the tag describes).
    upright = fixture_image().crop((5, 10, 245, 234))
    options = {"quality": 100, "subsampling": 0}
    reference = preprocessor.from_bytes(encode(upright, "JPEG", **options), "upright")
    other = preprocessor.from_bytes((FIXTURES / "Colin_Powell_0002.jpg").read_bytes(), "other")

    data = stored_with_orientation(upright, orientation, "JPEG", **options)
    decoded = decode_rgb(data, "selfie", LIMITS)
    assert decoded.shape == (224, 240, 3)
    assert np.abs(decoded.astype(np.int16) - pixels(upright)).mean() < 1.0
    face = preprocessor.from_bytes(data, "selfie")
    assert face.detection.rotation_degrees == 0
    assert np.abs(face.crop.astype(np.int16) - reference.crop).mean() < 2.0
    scores = scorer.score([face.crop, reference.crop], [other.crop, other.crop])
    # The turned copy was re-encoded, so its pixels carry JPEG rounding noise (checked above:
    # crop within 2 levels); the shipped model's score moves by up to 0.004 under it (seen for
    # orientations 7 and 8). The lossless PNG test above holds the score to float noise.
    assert scores[0] == pytest.approx(scores[1], abs=1e-2)


# -- kind 2: broken EXIF ---------------------------------------------------------------------

BROKEN_EXIF = {
    "garbage": b"Exif\0\0" + bytes(range(256)) * 2,
    "header only": b"Exif\0\0",
    "truncated IFD": b"Exif\0\0" + tiff_orientation_ifd(6)[:14],
    "IFD count past the end": b"Exif\0\0" + tiff_orientation_ifd(6)[:8] + struct.pack("<H", 50),
    "IFD offset past the end": b"Exif\0\0II*\0" + struct.pack("<I", 1_000_000_000),
    "IFD pointing at itself": b"Exif\0\0II*\0"
    + struct.pack("<IH", 8, 1)
    + struct.pack("<HHII", 0x8769, 4, 1, 8)
    + struct.pack("<I", 8),
    "orientation 0": b"Exif\0\0" + tiff_orientation_ifd(0),
    "orientation 9": b"Exif\0\0" + tiff_orientation_ifd(9),
    "orientation 65535": b"Exif\0\0" + tiff_orientation_ifd(65535),
    "orientation as ASCII": b"Exif\0\0" + tiff_orientation_ifd(6, field_type=2),
    "orientation as RATIONAL": b"Exif\0\0" + tiff_orientation_ifd(6, field_type=5),
    "orientation count 1000": b"Exif\0\0" + tiff_orientation_ifd(6, count=1000),
    "doubled Exif header": b"Exif\0\0Exif\0\0" + tiff_orientation_ifd(6),
}


@pytest.mark.parametrize("case", BROKEN_EXIF)
def test_broken_exif_is_ignored_and_the_pixels_scored(case: str) -> None:
    plain = encode(fixture_image(), "JPEG", quality=95)
    data = with_app1(plain, BROKEN_EXIF[case])
    validate_image(data, "selfie", LIMITS)
    assert np.array_equal(decode_rgb(data, "selfie", LIMITS), decode_rgb(plain, "selfie", LIMITS))


def test_broken_exif_in_png_is_ignored() -> None:
    upright = fixture_image()
    data = encode(upright, "PNG", exif=b"Exif\0\0" + exif_with_orientation(6))  # doubled header
    validate_image(data, "selfie", LIMITS)
    assert np.array_equal(decode_rgb(data, "selfie", LIMITS), np.asarray(upright))


# -- kind 3: grey, palette and transparency --------------------------------------------------

FRAME = (slice(0, 40), slice(None))  # the top 40 rows: away from the face


def with_frame_alpha(img: Image.Image, hidden: tuple[int, ...]) -> Image.Image:
    """`img` + alpha: the top rows fully transparent and painted `hidden`, one band half."""
    rgba = np.dstack([np.asarray(img), np.full(img.size[::-1], 255, np.uint8)])
    rgba[FRAME] = (*hidden, 0)[-rgba.shape[2] :]
    rgba[40:50, :, -1] = 128
    return Image.fromarray(rgba)


def test_grey_photo_becomes_equal_rgb_channels(preprocessor: Preprocessor) -> None:
    grey = fixture_image().convert("L")
    decoded = decode_rgb(encode(grey, "PNG"), "selfie", LIMITS)
    assert decoded.shape == (250, 250, 3)
    for channel in range(3):
        assert np.array_equal(decoded[:, :, channel], np.asarray(grey))
    preprocessor.from_bytes(encode(grey, "JPEG"), "selfie")  # a grey JPEG still finds a face


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_flattened_on_the_documented_background(mode: str) -> None:
    img = fixture_image() if mode == "RGBA" else fixture_image().convert("L")
    hidden = (255, 0, 0) if mode == "RGBA" else (0,)
    data = encode(with_frame_alpha(img, hidden), "PNG")
    decoded = decode_rgb(data, "selfie", LIMITS).astype(np.int16)
    assert ALPHA_BACKGROUND == (255, 255, 255)
    assert (decoded[FRAME] == ALPHA_BACKGROUND).all()
    half = decoded[40:50]  # alpha 128: half photo, half background
    expected = (pixels(img)[40:50].astype(np.int32) * 128 + 255 * 127 + 127) // 255
    assert np.abs(half - expected).max() <= 1
    assert np.array_equal(decoded[50:], pixels(img)[50:])


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_colours_hidden_under_transparent_pixels_never_reach_the_model(
    fmt: str, preprocessor: Preprocessor
) -> None:
    photo = fixture_image()
    # exact=True: libwebp otherwise drops the RGB under alpha 0 itself, hiding what we test.
    options = {"lossless": True, "exact": True} if fmt == "WEBP" else {}
    noise = tuple(np.random.default_rng(0).integers(0, 256, 3).tolist())
    first = encode(with_frame_alpha(photo, (0, 0, 0)), fmt, **options)
    second = encode(with_frame_alpha(photo, noise), fmt, **options)
    assert first != second
    assert np.array_equal(decode_rgb(first, "a", LIMITS), decode_rgb(second, "b", LIMITS))
    face_a, face_b = preprocessor.from_bytes(first, "a"), preprocessor.from_bytes(second, "b")
    assert np.array_equal(face_a.crop, face_b.crop)


def palette_with_transparent_index(hidden: tuple[int, int, int]) -> Image.Image:
    """A 255-colour palette photo whose top rows use index 255 (colour `hidden`), marked clear."""
    img = fixture_image().quantize(255)
    img.paste(255, (0, 0, img.width, 40))
    img.putpalette(img.getpalette()[: 255 * 3] + list(hidden))
    return img


def test_palette_photo_decodes_to_its_colours() -> None:
    img = fixture_image().quantize(256)
    decoded = decode_rgb(encode(img, "PNG"), "selfie", LIMITS)
    assert np.array_equal(decoded, np.asarray(img.convert("RGB")))


def test_palette_transparency_is_flattened_and_hides_the_palette_colour() -> None:
    first = encode(palette_with_transparent_index((255, 0, 0)), "PNG", transparency=255)
    second = encode(palette_with_transparent_index((0, 0, 255)), "PNG", transparency=255)
    assert first != second
    decoded = decode_rgb(first, "selfie", LIMITS)
    assert (decoded[FRAME] == ALPHA_BACKGROUND).all()
    assert np.array_equal(decoded, decode_rgb(second, "selfie", LIMITS))


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_colour_key_transparency_is_flattened(mode: str) -> None:
    img = np.asarray(fixture_image().convert(mode)).copy()
    key = (1, 2, 3) if mode == "RGB" else 7
    img[FRAME] = key
    data = encode(Image.fromarray(img), "PNG", transparency=key)
    decoded = decode_rgb(data, "selfie", LIMITS)
    assert (decoded[FRAME] == ALPHA_BACKGROUND).all()


# -- kind 4: CMYK and YCCK JPEGs -------------------------------------------------------------


def cmyk_jpeg(variant: str) -> bytes:
    """The photo as a 4-channel JPEG: Adobe (inverted, Pillow's and Photoshop's way), plain CMYK
    without an Adobe marker, or YCCK (Adobe transform 2, what libjpeg writes for print)."""
    cmyk = np.asarray(fixture_image().convert("CMYK"))
    options = {"quality": 95, "subsampling": 0}
    if variant == "adobe":
        return encode(Image.fromarray(cmyk, mode="CMYK"), "JPEG", **options)
    if variant == "plain":
        # Pillow stores CMYK inverted; feed it inverted values so the file holds plain CMYK,
        # then drop the Adobe APP14 segment that would say "inverted".
        data = encode(Image.fromarray(255 - cmyk, mode="CMYK"), "JPEG", **options)
        start = data.index(b"Adobe") - 4  # the APP14 marker and its length come first
        (length,) = struct.unpack(">H", data[start + 2 : start + 4])
        return data[:start] + data[start + 2 + length :]
    # YCCK: the decoder turns components 1-3 from YCbCr into RGB, CMY = 255 - RGB, K as stored;
    # Pillow then undoes the Adobe inversion. So store YCbCr(C, M, Y) and K, inverted for Pillow.
    ycc = np.asarray(Image.fromarray(cmyk[:, :, :3], mode="RGB").convert("YCbCr"))
    stored = np.dstack([255 - ycc, cmyk[:, :, 3]])
    data = bytearray(encode(Image.fromarray(stored, mode="CMYK"), "JPEG", **options))
    data[data.index(b"Adobe") + 11] = 2  # Adobe APP14 transform flag: 2 = YCCK
    return bytes(data)


@pytest.mark.parametrize("variant", ["adobe", "plain", "ycck"])
def test_cmyk_and_ycck_jpegs_keep_their_colours(variant: str, preprocessor: Preprocessor) -> None:
    original = pixels(fixture_image())
    data = cmyk_jpeg(variant)
    with Image.open(io.BytesIO(data)) as probe:
        assert probe.mode == "CMYK"
    validate_image(data, "scan", LIMITS)
    decoded = decode_rgb(data, "scan", LIMITS).astype(np.int16)
    assert np.abs(decoded - original).mean() < 3.0  # inverted colours would be ~116 off
    preprocessor.from_bytes(data, "scan")


# -- kind 5: 16-bit grey ---------------------------------------------------------------------


def test_16_bit_grey_png_is_scaled_not_clipped() -> None:
    grey = np.asarray(fixture_image().convert("L"))
    data = encode(Image.fromarray(grey.astype(np.uint16) * 257), "PNG")
    with Image.open(io.BytesIO(data)) as probe:
        assert probe.mode.startswith("I")  # really a 16-bit file
    decoded = decode_rgb(data, "scan", LIMITS)
    assert np.array_equal(decoded[:, :, 0], grey)  # 0..65535 maps back onto 0..255
    assert (decoded < 255).mean() > 0.9  # clipping would make it all white


# -- kind 6: truncated, empty, and not an image at all ---------------------------------------

HTML_ERROR = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>\n"
)


def truncated_png_with_iend() -> bytes:
    """A PNG cut in its pixel data, then given an IEND chunk so it *looks* complete."""
    data = encode(fixture_image(), "PNG")
    cut = data[: len(data) // 2]
    return cut + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def heif_bytes() -> bytes:
    return encode(fixture_image(), "HEIF", quality=90)


REFUSED = {
    "zero bytes": lambda: b"",
    "text renamed .jpg": lambda: b"this is not a photo, just some notes\n" * 20,
    "HTML error page": lambda: HTML_ERROR,
    "JPEG cut in half": lambda: encode(fixture_image(), "JPEG")[:4000],
    "JPEG missing its last 200 bytes": lambda: encode(fixture_image(), "JPEG")[:-200],
    "progressive JPEG cut": lambda: encode(fixture_image(), "JPEG", progressive=True)[:-2000],
    "JPEG header only": lambda: encode(fixture_image(), "JPEG")[:600],
    "PNG cut in half": lambda: encode(fixture_image(), "PNG")[:20000],
    "PNG cut, IEND appended": truncated_png_with_iend,
    "WebP cut": lambda: encode(fixture_image(), "WEBP")[:-500],
    "HEIF cut": lambda: heif_bytes()[: len(heif_bytes()) // 2],
    "BMP cut": lambda: encode(fixture_image(), "BMP")[:-5000],
    "TIFF cut": lambda: encode(fixture_image(), "TIFF")[:-5000],
    "GIF (not accepted)": lambda: encode(fixture_image(), "GIF"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_refused_at_the_edge_naming_the_image(case: str) -> None:
    data = REFUSED[case]()
    with pytest.raises(UndecodableImage) as refused:
        validate_image(data, "id_document", LIMITS)
    assert refused.value.image == "id_document"
    assert str(refused.value).startswith("id_document: ")
    with pytest.raises(UndecodableImage):  # the worker never grey-fills and scores it either
        decode_rgb(data, "id_document", LIMITS)


def test_jpeg_cut_and_reclosed_passes_the_edge_but_is_never_grey_filled() -> None:
    """Cut in its scan data, then given an end-of-image marker: structurally whole (the edge
    cannot tell without decoding), but the decoder hears libjpeg's warning and refuses."""
    whole = encode(fixture_image(), "JPEG")
    reclosed = whole[: len(whole) // 2] + b"\xff\xd9"
    validate_image(reclosed, "selfie", LIMITS)
    for max_side in (None, 64):
        with pytest.raises(UndecodableImage, match="truncated or corrupt"):
            decode_rgb(reclosed, "selfie", LIMITS, max_side=max_side)


def test_jpeg_with_extraneous_bytes_between_segments_still_decodes() -> None:
    """Camera firmware sometimes pads between segments; libjpeg warns, the pixels are whole."""
    whole = encode(fixture_image(), "JPEG")
    at = whole.index(b"\xff\xda")  # before the scan
    padded = whole[:at] + b"\x00\x00\x00" + whole[at:]
    validate_image(padded, "selfie", LIMITS)
    assert np.array_equal(decode_rgb(padded, "selfie", LIMITS), decode_rgb(whole, "x", LIMITS))


def _cut_in_a_later_table(jpeg: bytes) -> bytes:
    """A progressive JPEG cut inside a Huffman table that follows its first scan (Pillow's
    header reader stops at the first scan, so only our walk sees it)."""
    later_table = jpeg.index(b"\xff\xc4", jpeg.index(b"\xff\xda"))
    return jpeg[: later_table + 8]


@pytest.mark.parametrize(
    "case, broken, reason",
    [
        ("second SOI", lambda j: j[:2] + b"\xff\xd8" + j[2:], "second start-of-image"),
        ("table after a scan cut short", _cut_in_a_later_table, "runs past the end"),
    ],
)
def test_jpeg_structure_errors_are_named(case: str, broken, reason: str) -> None:
    with pytest.raises(UndecodableImage, match=reason):
        validate_image(broken(encode(fixture_image(), "JPEG", progressive=True)), "selfie", LIMITS)


def test_png_with_garbage_after_iend_is_still_accepted() -> None:
    data = encode(fixture_image(), "PNG") + b"\0" * 64
    validate_image(data, "selfie", LIMITS)


def interlaced_png(img: Image.Image) -> bytes:
    """An Adam7-interlaced PNG (Pillow cannot write one): the seven passes, filter type 0."""
    rgb = np.asarray(img)
    passes = (
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    )
    raw = bytearray()
    for x0, y0, dx, dy in passes:
        sub = rgb[y0::dy, x0::dx]
        for row in sub if sub.shape[1] else ():
            raw += b"\0" + row.tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", rgb.shape[1], rgb.shape[0], 8, 2, 0, 0, 1)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(raw)))
        + chunk(b"IEND", b"")
    )


def test_interlaced_png_is_accepted() -> None:
    img = fixture_image().crop((0, 0, 237, 201))  # sizes that leave partial Adam7 passes
    data = interlaced_png(img)
    validate_image(data, "selfie", LIMITS)
    assert np.array_equal(decode_rgb(data, "selfie", LIMITS), np.asarray(img))


# -- kind 7: decompression bombs -------------------------------------------------------------


def png_bomb(side: int = 30_000) -> bytes:
    """A complete, valid side x side 1-bit grey PNG: a few hundred KB declaring 900 MP."""
    row = b"\0" * (1 + (side + 7) // 8)
    deflate = zlib.compressobj(9)
    idat = b"".join(deflate.compress(row) for _ in range(side)) + deflate.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real JPEG whose SOF0 header is edited to declare width x height."""
    data = bytearray(encode(fixture_image(), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


BOMBS = {
    "30000x30000 PNG": png_bomb,
    "65500x65500 JPEG": lambda: jpeg_declaring(65_500, 65_500),
    "7000x6000 JPEG (just over 40 MP)": lambda: jpeg_declaring(7_000, 6_000),
}


@pytest.mark.parametrize("case", BOMBS)
def test_decompression_bomb_refused_from_the_header_with_flat_memory(case: str) -> None:
    data = BOMBS[case]()
    assert len(data) < 1_000_000
    peak_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    try:
        for check in (validate_image, decode_rgb):
            with pytest.raises(UndecodableImage, match=r"pixels, over the cap of 40,000,000"):
                check(data, "selfie", LIMITS)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 5_000_000  # Python-side: nothing but the header was read
    # Pillow's pixel buffers are C allocations tracemalloc cannot see: the process's peak
    # resident size would jump by ~900 MB if a bomb were decoded.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_rss_kib < 50_000


# -- kind 8: tiny images, strips and extreme aspect ratios -----------------------------------


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        ((1, 1), "minimum of 32 px"),
        ((31, 250), "minimum of 32 px"),
        ((1, 250), "minimum of 32 px"),
        ((250, 1), "minimum of 32 px"),
        ((2000, 40), "aspect ratio of 10:1"),
        ((32, 321), "aspect ratio of 10:1"),
    ],
)
def test_tiny_and_elongated_images_are_refused_with_the_limit(
    size: tuple[int, int], reason: str
) -> None:
    data = encode(fixture_image().resize(size), "PNG")
    for check in (read_header, validate_image, decode_rgb):
        with pytest.raises(UndecodableImage, match=reason):
            check(data, "selfie", LIMITS)


@pytest.mark.parametrize("size", [(32, 32), (32, 320), (320, 32)])
def test_images_at_the_limits_are_accepted(size: tuple[int, int]) -> None:
    data = encode(fixture_image().resize(size), "JPEG")
    validate_image(data, "selfie", LIMITS)
    assert decode_rgb(data, "selfie", LIMITS, max_side=1600).shape == (size[1], size[0], 3)


def test_limits_follow_the_settings() -> None:
    from siamatch.settings import Settings

    limits = DecodeLimits.from_settings(Settings(max_image_aspect=3.0, min_image_side=64))
    assert limits == DecodeLimits(max_pixels=40_000_000, min_side=64, max_aspect=3.0)
    assert DecodeLimits.from_settings(Settings()) == DecodeLimits()


# -- kind 9: accepted formats ----------------------------------------------------------------

FORMATS = {
    "HEIF": ({"quality": 90}, 6.0),
    "WEBP lossy": ({"quality": 90}, 6.0),
    "WEBP lossless": ({"lossless": True}, 0.0),
    "PNG": ({}, 0.0),
    "TIFF": ({}, 0.0),
    "TIFF LZW": ({"compression": "tiff_lzw"}, 0.0),
    "BMP": ({}, 0.0),
    "JPEG": ({"quality": 90}, 6.0),
}


@pytest.mark.parametrize("case", FORMATS)
def test_formats_are_accepted_and_decoded(case: str, preprocessor: Preprocessor) -> None:
    options, tolerance = FORMATS[case]
    img = fixture_image()
    data = encode(img, case.split()[0], **options)
    validate_image(data, "selfie", LIMITS)
    decoded = decode_rgb(data, "selfie", LIMITS)
    assert np.abs(decoded.astype(np.int16) - pixels(img)).mean() <= tolerance
    assert preprocessor.from_bytes(data, "selfie").detection.faces_found >= 1


def test_heif_orientation_is_applied_once() -> None:
    # pillow-heif applies the HEIF transform itself and resets the EXIF tag to 1; applying the
    # tag again would turn the photo twice.
    upright = fixture_image().crop((0, 10, 250, 240))
    data = stored_with_orientation(upright, 6, "HEIF", quality=95)
    decoded = decode_rgb(data, "selfie", LIMITS)
    assert decoded.shape == (230, 250, 3)
    assert np.abs(decoded.astype(np.int16) - pixels(upright)).mean() < 6.0


# -- the reduced-size JPEG path --------------------------------------------------------------


def test_12_megapixel_jpeg_decodes_at_reduced_size_and_keeps_the_face(
    preprocessor: Preprocessor,
) -> None:
    canvas = Image.new("RGB", (4000, 3000), (90, 110, 130))
    canvas.paste(fixture_image().resize((2400, 2400), Image.Resampling.BICUBIC), (800, 300))
    data = encode(canvas, "JPEG", quality=85)
    validate_image(data, "selfie", LIMITS)
    decoded = decode_rgb(data, "selfie", LIMITS, max_side=1600)
    assert decoded.shape == (1500, 2000, 3)  # DCT-scaled by 2: never below max_side
    face = preprocessor.from_bytes(data, "selfie")
    small = preprocessor.from_bytes(encode(fixture_image(), "PNG"), "small")
    assert face.detection.confidence >= 0.9
    assert np.abs(face.crop.astype(np.int16) - small.crop).mean() < 12.0


def test_large_png_is_reduced_after_decoding() -> None:
    data = encode(fixture_image().resize((3300, 3300)), "PNG", compress_level=1)
    assert decode_rgb(data, "selfie", LIMITS, max_side=1600).shape == (1650, 1650, 3)
    assert decode_rgb(data, "selfie", LIMITS).shape == (3300, 3300, 3)

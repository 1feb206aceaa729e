"""The selfie-vs-ID benchmark: LFW pairs whose second photo becomes a photographed ID card.

For every pair of an LFW list (pairsDevTest.txt), the first photo stays the selfie; the second
photo's face is warped onto the placeholder portrait of a DocXPand template (fictitious designs,
MIT), the card gets document degradations (print resolution, blur, JPEG, colour cast, glare),
and is then "photographed": a slight perspective on a table-like background, at camera size,
saved as JPEG. Every random choice comes from a generator seeded by (seed, pair index), so the
benchmark is reproducible from the command line and never committed as images.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from model.detect import FaceDetector
from training.pairs import Pair, read_pairs, write_tsv_pairs

# Median YuNet landmarks on LFW deep-funneled (250x250), measured on 200 random images; used
# only when YuNet misses the face of an LFW photo, so that every pair still gets a card.
LFW_MEDIAN_LANDMARKS = np.array(
    [[104.7, 112.2], [148.0, 111.7], [127.2, 136.5], [108.9, 155.5], [145.9, 155.0]],
    dtype=np.float32,
)
PORTRAIT_STYLES = ("colour", "grey", "faded")
PORTRAIT_STYLE_WEIGHTS = (0.6, 0.25, 0.15)
TEMPLATE_DETECTOR_SCORE = 0.5
GHOST_AREA_RATIO = 0.5  # a second template face smaller than this (by area) is a ghost portrait


class TemplateError(ValueError):
    """A template has no placeholder portrait the detector can find."""


@dataclass(frozen=True)
class Template:
    name: str
    card: np.ndarray  # H x W x 4 uint8 RGBA
    landmarks: np.ndarray  # 5x2, the placeholder portrait's face
    slot: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) of the portrait rectangle
    ghosts: tuple[tuple[np.ndarray, tuple[float, float, float, float]], ...]  # landmarks, box


def _edge(scores: np.ndarray, lo: int, hi: int, face_side: int, min_score: float = 0.8):
    """The straight edge nearest the face among the strongest ones (score: fraction of pixels
    on the line with a strong gradient; textures score lower than a printed frame's edge);
    None when there is no clear edge."""
    lo, hi = max(lo, 0), min(hi, scores.size)
    if hi <= lo:
        return None
    segment = scores[lo:hi]
    strong = np.flatnonzero(segment >= max(min_score, 0.95 * segment.max()))
    if strong.size:
        nearest = strong[np.argmin(np.abs(lo + strong - face_side))]
        return int(lo + nearest)
    best = int(np.argmax(segment))
    return int(lo + best) if segment[best] >= 0.5 else None


def find_portrait_slot(rgb: np.ndarray, box: tuple[float, float, float, float]):
    """The portrait rectangle around a placeholder face: the long straight edges (Sobel) around
    the face box. Where an edge is not found, the face box grown by ID-photo proportions."""
    h_img, w_img = rgb.shape[:2]
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = np.abs(cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)) > 40
    gy = np.abs(cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)) > 40
    x, y, w, h = box
    x0, y0, x1, y1 = int(x), int(y), int(x + w), int(y + h)
    columns = gx[max(y0, 0) : min(y1, h_img)].mean(axis=0)
    left = _edge(columns, int(x0 - 0.9 * w), x0, x0)
    right = _edge(columns, x1 + 1, int(x1 + 0.9 * w), x1)
    # top and bottom edges must span the slot's width, not just the face's (hair lines don't)
    span = (left if left is not None else x0, (right + 1) if right is not None else x1)
    rows = gy[:, max(span[0] + 2, 0) : min(span[1] - 2, w_img)].mean(axis=1)
    top = _edge(rows, int(y0 - 0.6 * h), y0, y0)
    bottom = _edge(rows, y1 + 1, int(y1 + 0.9 * h), y1)
    return (
        left if left is not None else max(0, int(x0 - 0.35 * w)),
        top if top is not None else max(0, int(y0 - 0.35 * h)),
        (right + 1) if right is not None else min(w_img, int(x1 + 0.35 * w)),
        (bottom + 1) if bottom is not None else min(h_img, int(y1 + 0.25 * h)),
    )


def load_template(path: Path, detector: FaceDetector | None = None) -> Template:
    """`path`: a DocXPand front.png (RGBA). The largest face is the portrait; smaller ones are
    ghost portraits, which get the same person too (a real card never shows two people).
    The default detector's threshold (0.5) is below serving's so that faint, halftone ghost
    portraits are found as well."""
    detector = detector or FaceDetector(score_threshold=TEMPLATE_DETECTOR_SCORE)
    with Image.open(path) as image:
        card = np.asarray(image.convert("RGBA")).copy()
    rgb = np.ascontiguousarray(card[:, :, :3])
    faces = detector.detect_all(rgb)
    if not faces:
        raise TemplateError(f"{path}: no placeholder portrait found by the face detector")
    main = faces[0]
    ghosts = tuple((f.landmarks, f.box) for f in faces[1:] if f.area < GHOST_AREA_RATIO * main.area)
    name = path.parent.name if path.name == "front.png" else path.stem
    return Template(name, card, main.landmarks, find_portrait_slot(rgb, main.box), ghosts)


def list_templates(folder: Path) -> list[Path]:
    """templates/<design>/front.png, sorted by design (the order seeds depend on)."""
    found = sorted(Path(folder).glob("*/front.png"))
    if not found:
        raise TemplateError(f"no <design>/front.png under {folder}")
    return found


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    matrix, _ = cv2.estimateAffinePartial2D(
        src.astype(np.float32), dst.astype(np.float32), method=cv2.LMEDS
    )
    if matrix is None:
        matrix = cv2.getAffineTransform(src[:3].astype(np.float32), dst[:3].astype(np.float32))
    return matrix


def _style_portrait(rgb: np.ndarray, style: str, rng: np.random.Generator) -> np.ndarray:
    out = rgb.astype(np.float32)
    if style in ("grey", "faded"):
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)[..., None]
        tint = np.array([1.0, 1.0, 1.0]) + rng.normal(0, 0.03, 3)  # slightly warm/cool grey
        out = np.repeat(grey, 3, axis=2) * tint if style == "grey" else 0.45 * out + 0.55 * grey
    if style == "faded":
        out = out * rng.uniform(0.6, 0.75) + 255 * rng.uniform(0.2, 0.3)
    return np.clip(out, 0, 255).astype(np.uint8)


def fill_black_borders(rgb: np.ndarray) -> np.ndarray:
    """Inpaint the black margins LFW deep-funneled photos carry (most have some, left by the
    funnelling warp), so they do not show up as black bars in the portrait."""
    dark = (rgb.max(axis=2) < 12).astype(np.uint8)
    count, components = cv2.connectedComponents(dark, connectivity=4)
    if count <= 1:
        return rgb
    edge = np.unique(np.r_[components[0], components[-1], components[:, 0], components[:, -1]])
    mask = np.isin(components, edge[edge > 0]).astype(np.uint8)
    if not mask.any():
        return rgb
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
    return cv2.inpaint(np.ascontiguousarray(rgb), mask, 5, cv2.INPAINT_TELEA)


def place_face(
    template: Template,
    face: np.ndarray,
    landmarks: np.ndarray,
    style: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """The template with `face` warped (similarity, 5 landmarks) onto the placeholder face and
    pasted inside the portrait rectangle; ghost portraits get a faded grey copy."""
    card = template.card.copy()
    h, w = card.shape[:2]
    face = fill_black_borders(face)
    warped = cv2.warpAffine(
        face,
        _similarity(landmarks, template.landmarks),
        (w, h),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    )
    x0, y0, x1, y1 = template.slot
    card[y0:y1, x0:x1, :3] = _style_portrait(warped[y0:y1, x0:x1], style, rng)
    for ghost_landmarks, (gx, gy, gw, gh) in template.ghosts:
        ghost = cv2.warpAffine(
            face,
            _similarity(landmarks, ghost_landmarks),
            (w, h),
            flags=cv2.INTER_AREA,
            borderMode=cv2.BORDER_REPLICATE,
        )
        ghost = _style_portrait(ghost, "faded", rng).astype(np.float32)
        mask = np.zeros((h, w), np.float32)
        centre = (int(gx + gw / 2), int(gy + gh / 2))
        cv2.ellipse(mask, centre, (int(gw * 0.75), int(gh * 0.8)), 0, 0, 360, 0.8, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), max(gw, gh) * 0.12)[..., None]
        card[:, :, :3] = (card[:, :, :3] * (1 - mask) + ghost * mask).astype(np.uint8)
    return card


def degrade_document(card: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What a printed, laminated card does to a photo: print resolution, blur, JPEG, colour
    cast, and sometimes glare. Works on RGB; the alpha (card shape) is kept."""
    rgb, alpha = card[:, :, :3], card[:, :, 3]
    h, w = rgb.shape[:2]
    factor = rng.uniform(0.45, 0.8)  # print resolution below the template's
    small = cv2.resize(rgb, (int(w * factor), int(h * factor)), interpolation=cv2.INTER_AREA)
    rgb = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    rgb = cv2.GaussianBlur(rgb, (0, 0), rng.uniform(0.3, 1.1))
    rgb = _jpeg_roundtrip(rgb, int(rng.integers(35, 76)))
    out = rgb.astype(np.float32)
    out = out * (1.0 + rng.normal(0, 0.05, 3)) + rng.uniform(-15, 15)  # colour cast, exposure
    if rng.random() < 0.6:  # glare on the laminate: a soft bright blob
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
        radius = rng.uniform(0.08, 0.25) * w
        blob = np.exp(
            -((xx - cx) ** 2 + ((yy - cy) * rng.uniform(0.6, 1.6)) ** 2) / (2 * radius**2)
        )
        strength = rng.uniform(0.3, 0.75)
        out = out + (255 - out) * (strength * blob)[..., None]
    rgb = np.clip(out, 0, 255).astype(np.uint8)
    return np.dstack([rgb, alpha])


def _jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as image:
        return np.asarray(image.convert("RGB"))


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A table-like surface: base colour, low-frequency mottling, sometimes wood grain.
    Built at quarter size and upscaled (smooth anyway, and 16x cheaper)."""
    palette = np.array(
        [
            [120, 84, 52],
            [160, 120, 80],
            [90, 62, 40],
            [200, 196, 188],
            [70, 72, 78],
            [228, 224, 214],
            [140, 140, 136],
            [40, 42, 46],
        ],
        np.float32,
    )
    base = palette[rng.integers(len(palette))] * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    w, h = width // 4, height // 4
    coarse = rng.normal(0, 1, (max(2, h // 30), max(2, w // 30))).astype(np.float32)
    light = 1 + 0.06 * cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.5:  # wood grain: gently wavy stripes
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        waves = cv2.resize(
            rng.normal(0, 1, (4, 6)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
        )
        grain = np.sin(yy * rng.uniform(0.08, 0.25) + waves * 2.0 + xx * 0.004)
        light = light * (1 + 0.07 * grain)
    out = cv2.resize(light, (width, height), interpolation=cv2.INTER_LINEAR)[..., None] * base
    return out.astype(np.float32)


def photograph(card: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The card photographed on a table: slight rotation and perspective, soft shadow, uneven
    light, lens blur, sensor noise; a 4:3 frame 1600-2000 px wide."""
    width = int(rng.integers(1600, 2001))
    height = width * 3 // 4
    ch, cw = card.shape[:2]
    target_w = rng.uniform(0.55, 0.8) * width
    scale = target_w / cw
    centre = np.array([width / 2, height / 2]) + rng.uniform(-0.08, 0.08, 2) * [width, height]
    angle = np.deg2rad(rng.uniform(-8, 8))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float32)
    dst = (src - [cw / 2, ch / 2]) * scale @ rotation.T + centre
    dst += rng.uniform(-0.04, 0.04, (4, 2)) * target_w  # the camera is not quite square-on
    matrix = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    warped = cv2.warpPerspective(
        card,
        matrix,
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0, 0),
    )
    alpha = warped[:, :, 3:4].astype(np.float32) / 255.0
    frame = _background(width, height, rng)
    # soft shadow, blurred at quarter size (it is smooth anyway)
    small = cv2.resize(alpha[:, :, 0], (width // 4, height // 4), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), target_w * 0.005)
    offset = rng.uniform(1, 6, 2)
    small = cv2.warpAffine(
        small, np.float32([[1, 0, offset[0]], [0, 1, offset[1]]]), small.shape[::-1]
    )
    shadow = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)[..., None]
    frame *= 1 - 0.45 * shadow
    frame = frame * (1 - alpha) + warped[:, :, :3].astype(np.float32) * alpha
    direction = rng.normal(0, 1, 2)
    direction = (0.15 * direction / (np.abs(direction).sum() + 1e-6)).astype(np.float32)
    ramp = (
        np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :] * direction[0]
        + np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None] * direction[1]
    )
    frame *= (1 + ramp)[..., None]  # uneven light
    frame = cv2.GaussianBlur(frame, (0, 0), rng.uniform(0.4, 1.2))  # lens / focus
    frame += rng.standard_normal(frame.shape, dtype=np.float32) * rng.uniform(1.5, 4.0)  # sensor
    return np.clip(frame, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class RenderedCard:
    jpeg: bytes
    template: str
    style: str
    landmarks_found: bool


def render_id_photo(
    face: np.ndarray,
    landmarks: np.ndarray | None,
    templates: list[Template],
    rng: np.random.Generator,
) -> RenderedCard:
    """One photographed ID card showing `face` (RGB). `landmarks` None: the LFW median is used."""
    template = templates[int(rng.integers(len(templates)))]
    style = PORTRAIT_STYLES[rng.choice(len(PORTRAIT_STYLES), p=PORTRAIT_STYLE_WEIGHTS)]
    found = landmarks is not None
    if landmarks is None:
        landmarks = LFW_MEDIAN_LANDMARKS * (np.array(face.shape[1::-1]) / 250.0)
    card = place_face(template, face, landmarks, style, rng)
    frame = photograph(degrade_document(card, rng), rng)
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, "JPEG", quality=int(rng.integers(75, 93)))
    return RenderedCard(buffer.getvalue(), template.name, style, found)


def pair_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def build_benchmark(
    pairs: list[Pair],
    templates: list[Template],
    out: Path,
    seed: int,
    check_detection: bool = True,
    indices: list[int] | None = None,
) -> dict:
    """Writes out/selfie/NNNN.jpg (the first photo, copied unchanged), out/id/NNNN.jpg (the
    second, rendered), out/pairs.tsv and out/manifest.json; returns the manifest. NNNN and the
    random stream of a pair are its index in the full list (`indices`), so a subset renders
    exactly as it does in the full benchmark."""
    (out / "selfie").mkdir(parents=True, exist_ok=True)
    (out / "id").mkdir(parents=True, exist_ok=True)
    detector = FaceDetector()
    checker = None
    if check_detection:
        from model.preprocess import Preprocessor

        checker = Preprocessor()
    rows, written = [], []
    indices = list(range(len(pairs))) if indices is None else indices
    for index, pair in zip(
        tqdm(indices, desc="rendering ID cards", unit="pair"), pairs, strict=True
    ):
        selfie = out / "selfie" / f"{index:04d}{pair.path_a.suffix.lower()}"
        shutil.copyfile(pair.path_a, selfie)
        with Image.open(pair.path_b) as image:
            face = np.asarray(image.convert("RGB"))
        found = detector.detect(face, try_rotations=False)
        rendered = render_id_photo(
            face, found[0].landmarks if found else None, templates, pair_rng(seed, index)
        )
        id_photo = out / "id" / f"{index:04d}.jpg"
        id_photo.write_bytes(rendered.jpeg)
        detected = None
        if checker is not None:
            from model.errors import ImageError

            try:
                checker.from_bytes(rendered.jpeg, str(id_photo))
                detected = True
            except ImageError:
                detected = False
        written.append(Pair(selfie, id_photo, pair.same))
        rows.append(
            {
                "index": index,
                "same": pair.same,
                "selfie_source": str(pair.path_a),
                "id_source": str(pair.path_b),
                "template": rendered.template,
                "style": rendered.style,
                "source_landmarks_found": rendered.landmarks_found,
                "yunet_finds_id_face": detected,
            }
        )
    write_tsv_pairs(out / "pairs.tsv", written)
    checked = [r["yunet_finds_id_face"] for r in rows if r["yunet_finds_id_face"] is not None]
    manifest = {
        "seed": seed,
        "pairs": len(rows),
        "templates": [t.name for t in templates],
        "yunet_detection_rate": (sum(checked) / len(checked)) if checked else None,
        "source_landmarks_fallbacks": sum(not r["source_landmarks_found"] for r in rows),
        "rows": rows,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Build the selfie-vs-ID benchmark from an LFW pair list.", add_help=add_help
    )
    parser.add_argument(
        "--pairs",
        type=Path,
        required=True,
        help="LFW pair list (pairsDevTest.txt): first photo = selfie, second = ID",
    )
    parser.add_argument(
        "--lfw",
        type=Path,
        required=True,
        help="LFW image root (lfw-deepfunneled: one folder per person)",
    )
    parser.add_argument(
        "--templates",
        type=Path,
        required=True,
        help="DocXPand templates folder (<design>/front.png)",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder (images, pairs.tsv, manifest.json)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="benchmark seed (per pair: seed, index)"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="only the first N pairs of each class (development)"
    )
    parser.add_argument(
        "--no-check-detection",
        dest="check_detection",
        action="store_false",
        help="skip running YuNet on every rendered card",
    )
    return parser


def main(args: argparse.Namespace) -> dict:
    cv2.setNumThreads(1)
    pairs = read_pairs(args.pairs, args.lfw)
    indices = list(range(len(pairs)))
    if args.limit:
        same = [i for i in indices if pairs[i].same][: args.limit]
        indices = same + [i for i in indices if not pairs[i].same][: args.limit]
    templates = [load_template(path) for path in list_templates(args.templates)]
    manifest = build_benchmark(
        [pairs[i] for i in indices], templates, args.out, args.seed, args.check_detection, indices
    )
    rate = manifest["yunet_detection_rate"]
    found = f"; YuNet finds the ID face in {rate:.1%} of cards" if rate is not None else ""
    print(f"wrote {manifest['pairs']} pairs to {args.out / 'pairs.tsv'}{found}")
    return manifest


if __name__ == "__main__":
    main(get_args_parser().parse_args())

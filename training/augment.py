"""Augmentations of aligned 112x112 crops, including what ID-document photos suffer:
print-size downscale, grey portraits, JPEG artefacts, blur, slight rotation/perspective, glare."""

from __future__ import annotations

import cv2
import numpy as np


def augment(crop: np.ndarray, rng: np.random.Generator, id_document_p: float = 0.5) -> np.ndarray:
    out = crop
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = _geometry(out, rng)
    out = _colour(out, rng)
    if rng.random() < id_document_p:
        out = _id_document(out, rng)
    return np.ascontiguousarray(out)


def _geometry(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = img.shape[0]
    angle = rng.uniform(-8, 8)
    scale = rng.uniform(0.92, 1.08)
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    matrix[:, 2] += rng.uniform(-4, 4, size=2)
    if rng.random() < 0.3:  # a card photographed at a slight angle: mild perspective
        src = np.float32([[0, 0], [size, 0], [size, size], [0, size]])
        dst = src + rng.uniform(-size * 0.05, size * 0.05, size=(4, 2)).astype(np.float32)
        persp = cv2.getPerspectiveTransform(src, dst)
        affine = np.vstack([matrix, [0, 0, 1]])
        return cv2.warpPerspective(
            img, persp @ affine, (size, size), borderMode=cv2.BORDER_REPLICATE
        )
    return cv2.warpAffine(img, matrix, (size, size), borderMode=cv2.BORDER_REPLICATE)


def _colour(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = img.astype(np.float32)
    out = out * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25)  # contrast, brightness
    grey = out.mean(axis=2, keepdims=True)
    out = grey + (out - grey) * rng.uniform(0.6, 1.4)  # saturation
    out = out * rng.uniform(0.9, 1.1, size=(1, 1, 3))  # colour cast
    return out.clip(0, 255).astype(np.uint8)


def _id_document(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = img.shape[0]
    out = img
    if rng.random() < 0.7:  # printed portrait, photographed: fewer real pixels on the face
        small = int(rng.uniform(28, 72))
        out = cv2.resize(out, (small, small), interpolation=cv2.INTER_AREA)
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.3:
        grey = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
        out = np.repeat(grey[:, :, None], 3, axis=2)
    if rng.random() < 0.4:
        sigma = rng.uniform(0.4, 1.5)
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    if rng.random() < 0.3:
        out = _glare(out, rng)
    if rng.random() < 0.6:
        quality = int(rng.uniform(20, 75))
        ok, buf = cv2.imencode(".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    return out


def _glare(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = img.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cx, cy = rng.uniform(0, size, size=2)
    radius = rng.uniform(size * 0.15, size * 0.5)
    mask = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2))[:, :, None]
    strength = rng.uniform(0.2, 0.6)
    out = img.astype(np.float32) * (1 - strength * mask) + 255 * strength * mask
    return out.clip(0, 255).astype(np.uint8)

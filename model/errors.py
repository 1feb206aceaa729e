"""Named failures of the model package; the server and the worker translate them at their edge."""

from __future__ import annotations


class ImageError(ValueError):
    """An input image is unusable; `image` names which one ("selfie", "id_document", a path)."""

    reason = "UNDECODABLE_IMAGE"

    def __init__(self, image: str, message: str) -> None:
        super().__init__(f"{image}: {message}")
        self.image = image
        self.message = message


class UndecodableImage(ImageError):
    reason = "UNDECODABLE_IMAGE"


class NoFaceFound(ImageError):
    reason = "NO_FACE"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not fit this code."""

"""The LFW folder layout (one sub-folder per person) and the identities a pair list names.

Training excludes every identity named in the test pair list (pairsDevTest.txt), so that no
reported test figure is leaked.
"""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def list_identities(root: Path) -> dict[str, list[Path]]:
    """name -> sorted image paths, for every sub-folder of `root` holding at least one image."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    identities = {}
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(p for p in person.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if images:
            identities[person.name] = images
    if not identities:
        raise ValueError(f"{root} has no sub-folders with images (expected one per person)")
    return identities


def identities_in_pair_list(pairs_file: Path) -> set[str]:
    """Names in an LFW pair list (`Name i j` and `Name1 i Name2 j` lines)."""
    names: set[str] = set()
    for line in Path(pairs_file).read_text().splitlines():
        fields = line.split()
        if len(fields) == 3:
            names.add(fields[0])
        elif len(fields) == 4:
            names.update((fields[0], fields[2]))
    return names

"""Pair lists: LFW's protocol files (View 1 and View 2) and a plain TSV of path, path, same.

An evaluation is only as honest as its pair list, so parsing is strict: a malformed line raises
`PairListError` naming the file and line instead of being skipped.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

TSV_LABEL_HEADERS = ("same", "label", "is_same")  # a first row naming its columns is skipped


class PairListError(ValueError):
    """A pair list is malformed or names an image that does not exist."""


@dataclass(frozen=True)
class Pair:
    path_a: Path
    path_b: Path
    same: bool
    fold: int = 0  # LFW View 2 fold (0-9); 0 for lists without folds


def lfw_image_path(root: Path, name: str, number: int) -> Path:
    """LFW's layout: <root>/<Name>/<Name>_<i:04d>.jpg (i is 1-based)."""
    return Path(root) / name / f"{name}_{number:04d}.jpg"


def read_pairs(path: Path, root: Path | None = None, check_exists: bool = True) -> list[Pair]:
    """Any supported list, recognised by its first line.

    LFW lists (header `N` or `folds<TAB>N`) need `root`, the folder of per-person folders. TSV
    lists hold `path<TAB>path<TAB>same` (same is 0/1); relative paths are resolved against the
    TSV's own folder, so a generated benchmark can be moved as one folder.
    """
    path = Path(path)
    if not path.is_file():
        raise PairListError(f"pair list not found: {path}")
    lines = path.read_text().splitlines()  # copes with a missing final newline
    if not lines:
        raise PairListError(f"{path}: empty pair list")
    header = lines[0].split()
    if header and all(field.isdigit() for field in header) and len(header) <= 2:
        if root is None:
            raise PairListError(f"{path} is an LFW pair list: give the image root (--root)")
        pairs = read_lfw_pairs(path, Path(root))
    else:
        pairs = read_tsv_pairs(path)
    if check_exists:
        missing = [p for pair in pairs for p in (pair.path_a, pair.path_b) if not p.is_file()]
        if missing:
            raise PairListError(f"{path}: {len(missing)} image(s) not found, e.g. {missing[0]}")
    return pairs


def read_lfw_pairs(path: Path, root: Path) -> list[Pair]:
    """pairsDevTrain/pairsDevTest (header `N`: N same then N different) or pairs.txt (header
    `folds<TAB>N`: per fold N same then N different). Line counts are checked against the header.
    """
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    header = [int(v) for v in lines[0].split()]
    folds, per_fold = (1, header[0]) if len(header) == 1 else (header[0], header[1])
    body = lines[1:]
    if len(body) != folds * 2 * per_fold:
        raise PairListError(
            f"{path}: header promises {folds} fold(s) x {per_fold} same + {per_fold} different "
            f"= {folds * 2 * per_fold} pairs, found {len(body)} lines"
        )
    pairs = []
    for index, line in enumerate(body):
        fields = line.split()
        where = f"{path}:{index + 2}"
        try:
            if len(fields) == 3:
                name, i, j = fields
                pair = Pair(
                    lfw_image_path(root, name, int(i)),
                    lfw_image_path(root, name, int(j)),
                    True,
                    index // (2 * per_fold),
                )
            elif len(fields) == 4:
                name_a, i, name_b, j = fields
                pair = Pair(
                    lfw_image_path(root, name_a, int(i)),
                    lfw_image_path(root, name_b, int(j)),
                    False,
                    index // (2 * per_fold),
                )
            else:
                raise PairListError(f"{where}: expected 3 or 4 fields, got {len(fields)}")
        except ValueError as exc:  # int() of a non-number
            if isinstance(exc, PairListError):
                raise
            raise PairListError(f"{where}: image numbers must be integers ({line!r})") from None
        expected_same = (index % (2 * per_fold)) < per_fold
        if pair.same != expected_same:
            raise PairListError(
                f"{where}: a {'same' if pair.same else 'different'}-person line "
                f"where the protocol puts {'same' if expected_same else 'different'}"
            )
        pairs.append(pair)
    return pairs


def read_tsv_pairs(path: Path) -> list[Pair]:
    base = Path(path).parent
    pairs = []
    with open(path, newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or (len(row) == 1 and not row[0].strip()) or row[0].startswith("#"):
                continue
            if len(row) != 3 or row[2].strip() not in ("0", "1"):
                if number == 1 and len(row) == 3 and row[2].strip().lower() in TSV_LABEL_HEADERS:
                    continue
                raise PairListError(f"{path}:{number}: expected path<TAB>path<TAB>0|1, got {row}")
            a, b = (Path(p) if Path(p).is_absolute() else base / p for p in row[:2])
            pairs.append(Pair(a, b, row[2].strip() == "1"))
    if not pairs:
        raise PairListError(f"{path}: no pairs")
    return pairs


def write_tsv_pairs(path: Path, pairs: list[Pair]) -> None:
    """Paths are written relative to the TSV's folder when they lie under it."""
    base = Path(path).parent.resolve()
    with open(path, "w", newline="") as handle:
        for pair in pairs:
            cols = []
            for p in (pair.path_a, pair.path_b):
                resolved = Path(p).resolve()
                cols.append(
                    str(resolved.relative_to(base))
                    if resolved.is_relative_to(base)
                    else str(resolved)
                )
            handle.write(f"{cols[0]}\t{cols[1]}\t{int(pair.same)}\n")

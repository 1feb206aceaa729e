"""Pair-list parsing, the dlib baseline, and `siamatch evaluate` end to end on real LFW photos."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.checkpoint import SHIPPED_CHECKPOINT
from tests.conftest import FIXTURES
from training import evaluate
from training.dlib_baseline import is_available
from training.pairs import Pair, PairListError, read_pairs, write_tsv_pairs

PEOPLE = {
    "Colin_Powell": (1, 2),
    "George_W_Bush": (1, 2),
    "Serena_Williams": (1,),
    "Tony_Blair": (1,),
}


@pytest.fixture
def lfw_root(tmp_path: Path) -> Path:
    """The fixture photos in LFW's layout: <root>/<Name>/<Name>_<i:04d>.jpg."""
    root = tmp_path / "lfw"
    for name, numbers in PEOPLE.items():
        (root / name).mkdir(parents=True)
        for i in numbers:
            shutil.copy(FIXTURES / f"{name}_{i:04d}.jpg", root / name / f"{name}_{i:04d}.jpg")
    return root


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_view1_list_without_final_newline(tmp_path: Path, lfw_root: Path) -> None:
    listing = write(
        tmp_path / "pairsDevTest.txt",
        "2\nColin_Powell\t1\t2\nGeorge_W_Bush\t1\t2\n"
        "Serena_Williams\t1\tTony_Blair\t1\nColin_Powell\t1\tTony_Blair\t1",
    )
    pairs = read_pairs(listing, lfw_root)
    assert [p.same for p in pairs] == [True, True, False, False]
    assert pairs[0] == Pair(
        lfw_root / "Colin_Powell/Colin_Powell_0001.jpg",
        lfw_root / "Colin_Powell/Colin_Powell_0002.jpg",
        True,
        0,
    )
    assert pairs[2].path_b == lfw_root / "Tony_Blair/Tony_Blair_0001.jpg"


def test_view2_list_has_folds(tmp_path: Path, lfw_root: Path) -> None:
    listing = write(
        tmp_path / "pairs.txt",
        "2\t1\nColin_Powell\t1\t2\nSerena_Williams\t1\tTony_Blair\t1\n"
        "George_W_Bush\t1\t2\nColin_Powell\t2\tTony_Blair\t1\n",
    )
    pairs = read_pairs(listing, lfw_root)
    assert [(p.same, p.fold) for p in pairs] == [(True, 0), (False, 0), (True, 1), (False, 1)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3\nColin_Powell\t1\t2\nSerena_Williams\t1\tTony_Blair\t1\n", "header promises"),
        ("1\nSerena_Williams\t1\tTony_Blair\t1\nColin_Powell\t1\t2\n", "where the protocol puts"),
        ("1\nColin_Powell\tone\t2\nSerena_Williams\t1\tTony_Blair\t1\n", "integers"),
        ("1\nColin_Powell\t1\t3\nSerena_Williams\t1\tTony_Blair\t1\n", "not found"),
    ],
)
def test_malformed_lfw_lists_are_refused(
    tmp_path: Path, lfw_root: Path, text: str, message: str
) -> None:
    with pytest.raises(PairListError, match=message):
        read_pairs(write(tmp_path / "pairs.txt", text), lfw_root)


def test_lfw_list_needs_a_root(tmp_path: Path) -> None:
    with pytest.raises(PairListError, match="--root"):
        read_pairs(write(tmp_path / "p.txt", "1\nA\t1\t2\nA\t1\tB\t1\n"), None)


def test_tsv_round_trip_with_relative_paths(tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    (bench / "img").mkdir(parents=True)
    for name in ("Colin_Powell_0001.jpg", "Tony_Blair_0001.jpg"):
        shutil.copy(FIXTURES / name, bench / "img" / name)
    pairs = [Pair(bench / "img/Colin_Powell_0001.jpg", bench / "img/Tony_Blair_0001.jpg", False)]
    write_tsv_pairs(bench / "pairs.tsv", pairs)
    assert (
        bench / "pairs.tsv"
    ).read_text() == "img/Colin_Powell_0001.jpg\timg/Tony_Blair_0001.jpg\t0\n"
    moved = tmp_path / "moved"
    bench.rename(moved)  # relative paths follow the folder
    assert read_pairs(moved / "pairs.tsv") == [
        Pair(moved / "img/Colin_Powell_0001.jpg", moved / "img/Tony_Blair_0001.jpg", False)
    ]


def test_tsv_with_header_and_bad_label(tmp_path: Path) -> None:
    a, b = FIXTURES / "Colin_Powell_0001.jpg", FIXTURES / "Colin_Powell_0002.jpg"
    ok = write(tmp_path / "ok.tsv", f"path_a\tpath_b\tsame\n{a}\t{b}\t1")
    assert read_pairs(ok) == [Pair(a, b, True)]
    with pytest.raises(PairListError, match=r"bad.tsv:1"):
        read_pairs(write(tmp_path / "bad.tsv", f"{a}\t{b}\tyes\n"))


needs_dlib = pytest.mark.skipif(not is_available(), reason="the [baseline] extra is not installed")


@needs_dlib
def test_dlib_baseline_separates_fixture_people_and_reports_no_face(tmp_path: Path) -> None:
    from training.dlib_baseline import TOLERANCE, DlibFaceModel, NoFaceForDlib

    model = DlibFaceModel()
    same = model.distance(FIXTURES / "Colin_Powell_0001.jpg", FIXTURES / "Colin_Powell_0002.jpg")
    different = model.distance(
        FIXTURES / "Serena_Williams_0001.jpg", FIXTURES / "Tony_Blair_0001.jpg"
    )
    assert same < TOLERANCE < different
    blank = tmp_path / "blank.jpg"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    with pytest.raises(NoFaceForDlib, match="blank.jpg"):
        model.distance(blank, FIXTURES / "Tony_Blair_0001.jpg")


@needs_dlib
def test_dlib_searches_a_big_photo_downscaled_and_describes_it_at_full_size(
    tmp_path: Path,
) -> None:
    from training.dlib_baseline import DETECT_MAX_SIDE, DlibFaceModel

    model = DlibFaceModel()
    original = FIXTURES / "Colin_Powell_0001.jpg"
    big = tmp_path / "big.png"
    with Image.open(original) as image:
        factor = DETECT_MAX_SIDE // max(image.size) + 2
        image.resize((image.width * factor, image.height * factor), Image.LANCZOS).save(big)
    # the same face: a wrongly scaled-back box would misplace the landmarks and the descriptor
    assert model.distance(original, big) < 0.2


def test_evaluate_end_to_end(tmp_path: Path, lfw_root: Path) -> None:
    """Untrained model + dlib (when installed) on an LFW-format list and a TSV holding a photo
    with no face: every number, file and the failure accounting."""
    import torch

    torch.set_num_threads(1)
    lfw = write(
        tmp_path / "pairsDevTest.txt",
        "2\nColin_Powell\t1\t2\nGeorge_W_Bush\t1\t2\n"
        "Serena_Williams\t1\tTony_Blair\t1\nColin_Powell\t1\tGeorge_W_Bush\t1",
    )
    blank = tmp_path / "blank.jpg"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    tsv = write(
        tmp_path / "odd.tsv",
        f"{FIXTURES / 'Colin_Powell_0001.jpg'}\t{blank}\t1\n"
        f"{FIXTURES / 'George_W_Bush_0001.jpg'}\t{FIXTURES / 'Tony_Blair_0001.jpg'}\t0\n",
    )
    out = tmp_path / "out"
    args = evaluate.get_args_parser().parse_args(
        [
            "--pairs",
            f"lfw={lfw}",
            "--pairs",
            str(tsv),
            "--root",
            str(lfw_root),
            "--out",
            str(out),
            "--threads",
            "1",
            "--batch-size",
            "3",
        ]
    )
    document = evaluate.main(args)

    saved = json.loads((out / "metrics.json").read_text())
    assert saved["results"] == json.loads(json.dumps(document["results"]))
    methods = ["ours", "dlib"] if is_available() else ["ours"]
    assert [(r["benchmark"], r["method"]) for r in saved["results"]] == [
        (b, m) for b in ("lfw", "odd") for m in methods
    ]
    by = {(r["benchmark"], r["method"]): r for r in saved["results"]}
    ours = by[("lfw", "ours")]
    assert ours["pairs"] == 4 and ours["failures"] == 0
    assert ours["tar_at_far"]["0.01"]["tar"] is None  # 2 negatives cannot measure FAR 1e-2
    assert ours["details"]["trained"] is SHIPPED_CHECKPOINT.is_file()  # default: the shipped one
    odd = by[("odd", "ours")]
    assert odd["failures"] == 1 and odd["failure_reasons"] == {"NO_FACE": 1}
    assert odd["accuracy"] <= 0.5  # the failed pair is a wrong answer
    for name in ("roc_lfw.png", "roc_odd.png", "scores_lfw_ours.png", "scores_odd_ours.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (out / "scores_odd.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:3] == ["path_a", "path_b", "same"]
    assert rows[1].split("\t")[3] == ""  # failed pair: no score
    if is_available():
        dlib = by[("lfw", "dlib")]
        assert dlib["accuracy"] == 1.0 and dlib["threshold"] == -0.6
        assert by[("odd", "dlib")]["failure_reasons"] == {"NO_FACE": 1}


def test_in_process_scores_are_the_serving_scores(lfw_root: Path) -> None:
    """The in-process path is THE serving path: Preprocessor + PairScorer on the same bytes."""
    import torch

    from model.checkpoint import load_default_or
    from model.inference import PairScorer
    from model.preprocess import Preprocessor

    torch.set_num_threads(1)
    pairs = [
        Pair(FIXTURES / "Colin_Powell_0001.jpg", FIXTURES / "Colin_Powell_0002.jpg", True),
        Pair(FIXTURES / "Serena_Williams_0001.jpg", FIXTURES / "Tony_Blair_0001.jpg", False),
    ]
    run = evaluate.InProcessScorer(None, "cpu", 16, 0.7).run("fixtures", pairs)
    loaded = load_default_or(None)
    pre = Preprocessor(config=loaded.preprocess)
    crops = [
        pre.from_bytes(p.read_bytes(), str(p)).crop
        for pair in pairs
        for p in (pair.path_a, pair.path_b)
    ]
    expected = PairScorer(loaded, "cpu").score(crops[0::2], crops[1::2])
    np.testing.assert_allclose(run.scores, expected, rtol=1e-5, atol=1e-6)


def test_subsample_keeps_balance() -> None:
    pairs = [Pair(Path(f"{i}a"), Path(f"{i}b"), i < 500) for i in range(1000)]
    picked = evaluate.subsample(pairs, 50)
    assert len(picked) == 50 and sum(p.same for p in picked) == 25


def test_parser_is_reusable_as_a_subcommand() -> None:
    parent = argparse.ArgumentParser()
    sub = parent.add_subparsers(dest="command")
    sub.add_parser("evaluate", parents=[evaluate.get_args_parser(add_help=False)])
    args = parent.parse_args(["evaluate", "--pairs", "x.tsv", "--via-service", "localhost:1"])
    assert args.via_service == "localhost:1" and args.pairs == ["x.tsv"]


def test_via_service_gives_the_in_process_scores(redis_url: str, tmp_path: Path) -> None:
    """A real server and worker process: `--via-service` must reproduce the in-process scores
    (the model is deterministic) and report the same failures."""
    import torch

    from server.client import FaceVerificationClient
    from tests.service_harness import ServerThread, running_workers, service_settings

    torch.set_num_threads(1)
    blank = tmp_path / "blank.jpg"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    tsv = write(
        tmp_path / "pairs.tsv",
        f"{FIXTURES / 'Colin_Powell_0001.jpg'}\t{FIXTURES / 'Colin_Powell_0002.jpg'}\t1\n"
        f"{FIXTURES / 'George_W_Bush_0001.jpg'}\t{FIXTURES / 'Tony_Blair_0001.jpg'}\t0\n"
        f"{FIXTURES / 'Serena_Williams_0001.jpg'}\t{blank}\t0\n",
    )
    pairs = read_pairs(tsv)
    local = evaluate.InProcessScorer(None, "cpu", 16, 0.7).run("fixtures", pairs)

    settings = service_settings(redis_url.rsplit("/", 1)[0] + "/6", workers=1)
    with running_workers(settings, 1), ServerThread(settings) as server:
        with FaceVerificationClient(server.address) as client:  # wait for the model to load
            warm_up = [
                (FIXTURES / n).read_bytes()
                for n in ("Colin_Powell_0001.jpg", "Tony_Blair_0001.jpg")
            ]
            client.verify(*warm_up, timeout=180)
        remote = evaluate.ServiceScorer(server.address, 4, 60.0, 8 << 20).run("fixtures", pairs)

    np.testing.assert_allclose(remote.scores, local.scores, rtol=0, atol=1e-5, equal_nan=True)
    assert remote.failures == local.failures == {"NO_FACE": 1}
    assert remote.threshold == pytest.approx(local.threshold)
    assert remote.details["model_version"] == local.details["model_version"]

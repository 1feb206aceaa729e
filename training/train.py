"""`siamatch train`: SiameseResNet18 from scratch (or ImageNet-initialised) on a folder of face
photos with one sub-folder per person, identity-disjoint from the test pair list.

Shape after torchvision's references/classification/train.py: get_args_parser(), main(args),
train_one_epoch(), evaluate(); resumable checkpoints hold plain data only.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from model.checkpoint import load_checkpoint, save_checkpoint
from model.preprocess import Preprocessor, crops_to_tensor
from model.siamese import SiameseResNet18
from training.augment import augment
from training.curves import plot_history
from training.data import (
    CropSet,
    PKSampler,
    build_crops,
    load_packed,
    pack_crops,
    split_identities,
)
from training.losses import (
    CosFace,
    embedding_distillation,
    mine_pairs,
    pair_loss,
    similarity_distillation,
)
from training.validation import ValidationPairs, validation_metrics

log = logging.getLogger("siamatch.train")

TEACHER_DIM = 128  # dlib's descriptor


@dataclass
class EpochStats:
    epoch: int
    loss: float
    cosface: float
    pair: float
    distill: float
    embed_distill: float
    pair_accuracy: float
    lr: float
    seconds: float
    images_per_s: float


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    shared = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "lfw"
    p = argparse.ArgumentParser(description="Train SiameseResNet18", add_help=add_help)
    p.add_argument(
        "--data",
        type=Path,
        default=shared / "lfw-deepfunneled",
        help="folder with one sub-folder of face photos per person",
    )
    p.add_argument(
        "--exclude-pairs",
        type=Path,
        nargs="*",
        default=[shared / "pairsDevTest.txt"],
        help="pair lists whose identities are never trained or validated on",
    )
    p.add_argument("--out", type=Path, default=Path("runs/train"), help="checkpoints, logs, plots")
    p.add_argument("--cache-dir", type=Path, default=Path("runs/cache"), help="aligned-crop cache")
    p.add_argument(
        "--packed",
        type=Path,
        default=None,
        help="read both splits' crops from a pack made with --pack-to (no photos "
        "needed: how training data travels to a lent GPU machine)",
    )
    p.add_argument(
        "--pack-to",
        type=Path,
        default=None,
        help="write the aligned crops of both splits to this .npz and exit",
    )
    p.add_argument(
        "--teacher",
        type=Path,
        default=None,
        help="dlib teacher embeddings (.npz from python -m training.teacher)",
    )
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--max-steps-per-epoch", type=int, default=0, help="0: a full epoch")
    p.add_argument(
        "--time-budget-min",
        type=float,
        default=0.0,
        help="train for this many minutes instead of --epochs: the learning-rate "
        "schedule follows elapsed time, so a busy CPU still ends annealed",
    )
    p.add_argument("--p", type=int, default=24, help="identities per batch")
    p.add_argument("--k", type=int, default=4, help="images per identity in a batch")
    p.add_argument("--extra", type=int, default=32, help="random extra images per batch")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--embedding-dim", type=int, default=256)
    p.add_argument("--distill-weight", type=float, default=1.0)
    p.add_argument(
        "--embed-distill-weight",
        type=float,
        default=2.0,
        help="weight of regressing the teacher's descriptor (needs --teacher)",
    )
    p.add_argument("--pair-weight", type=float, default=1.0)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument(
        "--imagenet-weights",
        action="store_true",
        help="start from torchvision's ImageNet ResNet18 (needs the file in the torch "
        "hub cache; nothing is downloaded)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--threads", type=int, default=0, help="CPU threads; 0: torch's default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="start from this checkpoint's weights (e.g. the shipped model) instead of random",
    )
    p.add_argument("--model-version", default="siamatch-r18-lfw")
    return p


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_teacher(path: Path | None, crops: CropSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher embeddings aligned with `crops`, centred by their mean (dlib's raw cosines are all
    high; centring spreads them so that they are a usable similarity target)."""
    teacher = torch.zeros(len(crops), TEACHER_DIM)
    has = torch.zeros(len(crops), dtype=torch.bool)
    if path is None:
        return teacher, has
    with np.load(path) as data:
        lookup = dict(zip(data["paths"].tolist(), data["embeddings"], strict=True))
        mean = data["embeddings"].mean(axis=0)
    for i, rel in enumerate(crops.paths):
        if rel in lookup:
            teacher[i] = torch.from_numpy(lookup[rel] - mean)
            has[i] = True
    log.info("teacher embeddings for %d of %d training images", int(has.sum()), len(crops))
    return teacher, has


def train_one_epoch(
    model: SiameseResNet18,
    cosface: CosFace,
    distill_head: torch.nn.Linear,
    optimizer: torch.optim.Optimizer,
    progress: Progress,
    warmup: float,
    crops: CropSet,
    teacher: torch.Tensor,
    has_teacher: torch.Tensor,
    sampler: PKSampler,
    args: argparse.Namespace,
    epoch: int,
    device: torch.device,
    preprocess,
    step0: int,
) -> EpochStats:
    model.train()
    rng = np.random.default_rng(args.seed * 1000 + epoch)
    labels_all = torch.from_numpy(crops.labels)
    totals = dict.fromkeys(("loss", "cosface", "pair", "distill", "embed_distill"), 0.0)
    totals |= {"correct": 0, "pairs": 0}
    steps = (
        len(sampler)
        if not args.max_steps_per_epoch
        else min(len(sampler), args.max_steps_per_epoch)
    )
    start = time.monotonic()
    images = 0
    batches = zip(range(steps), sampler.batches(), strict=False)
    bar = tqdm(batches, total=steps, desc=f"epoch {epoch}", unit="batch")
    lr, done_steps = 0.0, 0
    for step, index in bar:
        if progress.done:
            break
        lr = cosine_lr(args.lr, progress(step0 + step), warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = crops_to_tensor([augment(crops.crops[i], rng) for i in index], preprocess)
        labels = labels_all[index].to(device)
        # channels_last: ~1.5x faster convolutions on this CPU (oneDNN) as on CUDA
        batch = batch.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            emb = model.embedding(batch).float()
            a, b, targets = mine_pairs(emb, labels)
            logits = model.logits(emb[a], emb[b]).float()
            l_cos = cosface(emb, labels)
            l_pair = pair_loss(logits, targets)
            batch_teacher = teacher[index].to(device)
            batch_has = has_teacher[index].to(device)
            l_dist = similarity_distillation(emb, batch_teacher, batch_has)
            l_embed = embedding_distillation(distill_head(emb).float(), batch_teacher, batch_has)
            loss = (
                l_cos
                + args.pair_weight * l_pair
                + args.distill_weight * l_dist
                + args.embed_distill_weight * l_embed
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        images += len(index)
        done_steps += 1
        totals["loss"] += loss.item()
        totals["cosface"] += l_cos.item()
        totals["pair"] += l_pair.item()
        totals["distill"] += l_dist.item()
        totals["embed_distill"] += l_embed.item()
        totals["correct"] += int(((logits > 0).float() == targets).sum())
        totals["pairs"] += len(targets)
        n = step + 1
        bar.set_postfix(
            loss=f"{totals['loss'] / n:.3f}",
            pair_acc=f"{totals['correct'] / max(1, totals['pairs']):.3f}",
            lr=f"{lr:.2e}",
        )
    seconds = time.monotonic() - start
    n = max(1, done_steps)
    return EpochStats(
        epoch=epoch,
        loss=totals["loss"] / n,
        cosface=totals["cosface"] / n,
        pair=totals["pair"] / n,
        distill=totals["distill"] / n,
        embed_distill=totals["embed_distill"] / n,
        pair_accuracy=totals["correct"] / max(1, totals["pairs"]),
        lr=lr,
        seconds=seconds,
        images_per_s=images / max(seconds, 1e-9),
    )


@torch.no_grad()
def embed_crops(
    model: SiameseResNet18, crops: np.ndarray, device: torch.device, preprocess, batch_size: int
) -> torch.Tensor:
    model.eval()
    embeddings = []
    for start in tqdm(range(0, len(crops), batch_size), desc="embedding", unit="batch"):
        batch = crops_to_tensor(list(crops[start : start + batch_size]), preprocess)
        batch = batch.to(device).contiguous(memory_format=torch.channels_last)
        embeddings.append(model.embedding(batch).float().cpu())
    return torch.cat(embeddings)


@torch.no_grad()
def imprint_class_centres(
    cosface: CosFace, model: SiameseResNet18, crops: CropSet, device, preprocess
) -> None:
    """Start each identity's CosFace centre at its photos' mean embedding (weight imprinting,
    Qi et al. 2018): random centres under a trained backbone give a loss of ~20 whose first
    gradients would mostly undo what --init-from brought."""
    embeddings = embed_crops(model, crops.crops, device, preprocess, batch_size=256)
    labels = torch.from_numpy(crops.labels)
    centres = torch.zeros_like(cosface.weight).cpu().index_add_(0, labels, embeddings)
    cosface.weight.copy_(F.normalize(centres, dim=1).to(cosface.weight.device))


@torch.no_grad()
def evaluate(
    model: SiameseResNet18,
    pairs: ValidationPairs,
    device: torch.device,
    preprocess,
    batch_size: int = 256,
) -> dict:
    """Scores the held-out identities' pairs with the head; picks the thresholds there."""
    emb = embed_crops(model, pairs.crops, device, preprocess, batch_size)
    scores = []
    for start in range(0, len(pairs.a), 4096):
        a = pairs.a[start : start + 4096]
        b = pairs.b[start : start + 4096]
        scores.append(torch.sigmoid(model.logits(emb[a].to(device), emb[b].to(device))).cpu())
    return validation_metrics(torch.cat(scores).numpy(), pairs.same)


def cosine_lr(base_lr: float, progress: float, warmup: float) -> float:
    """Linear warm-up over the first `warmup` fraction, then cosine decay to 0 at progress 1."""
    if progress < warmup:
        return base_lr * max(progress, 1e-3) / warmup
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))


class Progress:
    """Training progress in [0, 1]: by steps, or by wall-clock time against a budget."""

    def __init__(self, total_steps: int, budget_s: float, elapsed_s: float = 0.0) -> None:
        self.total_steps, self.budget_s = total_steps, budget_s
        self.elapsed_before = elapsed_s
        self.started = time.monotonic()

    @property
    def elapsed_s(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def __call__(self, step: int) -> float:
        if self.budget_s > 0:
            return min(1.0, self.elapsed_s / self.budget_s)
        return min(1.0, step / max(1, self.total_steps))

    @property
    def done(self) -> bool:
        return self.budget_s > 0 and self.elapsed_s >= self.budget_s


def main(args: argparse.Namespace) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    seed_everything(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    preprocessor = Preprocessor()
    if args.packed:
        train_crops, val_crops = load_packed(args.packed)
    else:
        split = split_identities(args.data, args.exclude_pairs, args.val_fraction, args.seed)
        log.info(
            "identities: %d train, %d val, %d excluded (test)",
            len(split.train),
            len(split.val),
            len(split.excluded),
        )
        assert not (set(split.train) | set(split.val)) & split.excluded, "test identity leaked"
        train_crops = build_crops(split.train, args.data, args.cache_dir, preprocessor, "train")
        val_crops = build_crops(split.val, args.data, args.cache_dir, preprocessor, "val")
        if args.pack_to:
            pack_crops(train_crops, val_crops, args.pack_to)
            log.info("packed crops to %s", args.pack_to)
            return args.pack_to
    log.info(
        "aligned crops: %d train (%d no face), %d val (%d no face)",
        len(train_crops),
        len(train_crops.failures),
        len(val_crops),
        len(val_crops.failures),
    )
    val_pairs = ValidationPairs.from_crops(val_crops, seed=args.seed)
    teacher, has_teacher = load_teacher(None, train_crops)

    model = SiameseResNet18(
        embedding_dim=args.embedding_dim, imagenet_weights=args.imagenet_weights
    ).to(device)
    model = model.to(memory_format=torch.channels_last)
    if args.init_from is not None:
        initial = load_checkpoint(args.init_from).model
        model.load_state_dict(initial.state_dict())
        log.info("initialised from %s", args.init_from)
    cosface = CosFace(args.embedding_dim, len(train_crops.names)).to(device)
    if args.init_from is not None:
        imprint_class_centres(cosface, model, train_crops, device, preprocessor.config)
    # training-only: maps the embedding to the teacher's 128-D descriptor space
    distill_head = torch.nn.Linear(args.embedding_dim, TEACHER_DIM).to(device)
    params = [*model.parameters(), *cosface.parameters(), *distill_head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    sampler = PKSampler(train_crops.labels, args.p, args.k, args.extra, args.seed)
    steps_per_epoch = (
        len(sampler)
        if not args.max_steps_per_epoch
        else min(len(sampler), args.max_steps_per_epoch)
    )
    if args.time_budget_min > 0:
        args.epochs = 10_000  # the budget ends training
    start_epoch, history, best, elapsed = 0, [], None, 0.0
    last = out / "last.pt"
    if args.resume and last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        cosface.load_state_dict(state["cosface"])
        distill_head.load_state_dict(state["distill_head"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history, best = state["epoch"] + 1, state["history"], state["best"]
        elapsed = float(state.get("elapsed_s", 0.0))
        torch.set_rng_state(state["torch_rng"])
        sampler.rng = np.random.default_rng(args.seed + start_epoch)
        log.info("resumed from %s at epoch %d", last, start_epoch)
    progress = Progress(args.epochs * steps_per_epoch, args.time_budget_min * 60, elapsed)
    # warm-up as a fraction of training: --warmup-epochs of the planned epochs, or ~5% of a budget
    warmup = (
        0.05 if args.time_budget_min > 0 else min(0.5, args.warmup_epochs / max(1, args.epochs))
    )
    preprocess = preprocessor.config
    for epoch in range(start_epoch, args.epochs):
        if args.teacher is not None and args.teacher.is_file():  # it may still be growing
            teacher, has_teacher = load_teacher(args.teacher, train_crops)
        if progress.done:
            break
        stats = train_one_epoch(
            model,
            cosface,
            distill_head,
            optimizer,
            progress,
            warmup,
            train_crops,
            teacher,
            has_teacher,
            sampler,
            args,
            epoch,
            device,
            preprocess,
            epoch * steps_per_epoch,
        )
        metrics = evaluate(model, val_pairs, device, preprocess)
        record = {**asdict(stats), **{f"val_{k}": v for k, v in metrics.items()}}
        history.append(record)
        with open(out / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        log.info(
            "epoch %d: loss %.3f, val balanced accuracy %.4f, val AUC %.4f, %.1f img/s",
            epoch,
            stats.loss,
            metrics["balanced_accuracy"],
            metrics["auc"],
            stats.images_per_s,
        )
        plot_history(history, out / "curves.png")
        is_best = best is None or metrics["auc"] > best["val_auc"]
        if is_best:
            best = record
            save_checkpoint(
                out / "best.pt",
                model.cpu(),
                model_version=f"{args.model_version}-e{epoch}",
                threshold=metrics["threshold"],
                trained=True,
                preprocess=preprocess,
                thresholds={
                    "balanced": metrics["threshold"],
                    "far_1e-3": metrics["threshold_far_1e-3"],
                },
                metrics={
                    "validation": metrics,
                    "epoch": epoch,
                    "train_args": {k: str(v) for k, v in vars(args).items()},
                },
            )
            model.to(device)
        torch.save(
            {
                "model": model.state_dict(),
                "cosface": cosface.state_dict(),
                "distill_head": distill_head.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "history": history,
                "best": best,
                "torch_rng": torch.get_rng_state(),
                "elapsed_s": progress.elapsed_s,
            },
            out / "last.tmp",
        )
        (out / "last.tmp").replace(last)
    return out / "best.pt"


if __name__ == "__main__":
    main(get_args_parser().parse_args())

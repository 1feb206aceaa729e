"""SiameseResNet18 and batched inference: one shared backbone, symmetric scores in [0, 1]."""

from __future__ import annotations

import numpy as np
import torch

from model.checkpoint import untrained_model
from model.inference import PairScorer
from model.preprocess import Preprocessor
from model.siamese import SiameseResNet18
from tests.conftest import photo


def test_both_branches_share_one_backbone() -> None:
    model = SiameseResNet18()
    linear_layers = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    assert len(linear_layers) == 3  # three fully connected layers on the concatenation
    assert linear_layers[0].in_features == 2 * model.embedding_dim
    assert sum(1 for m in model.modules() if isinstance(m, torch.nn.Conv2d)) == 20  # one ResNet18


def test_scores_are_probabilities_and_symmetric() -> None:
    torch.manual_seed(0)
    model = SiameseResNet18().eval()
    a, b = torch.randn(3, 3, 112, 112), torch.randn(3, 3, 112, 112)
    with torch.no_grad():
        ab, ba = model(a, b), model(b, a)
    assert torch.all((ab >= 0) & (ab <= 1))
    torch.testing.assert_close(ab, ba)


def test_batched_scores_equal_one_by_one_scores() -> None:
    """A pair's score must not depend on what else is in its batch (the worker batches)."""
    torch.set_num_threads(1)
    preprocessor = Preprocessor()
    crops = [
        preprocessor.from_bytes(photo(n), n).crop
        for n in ("George_W_Bush_0001.jpg", "George_W_Bush_0002.jpg", "Colin_Powell_0001.jpg")
    ]
    scorer = PairScorer(untrained_model(), device="cpu")
    batched = scorer.score([crops[0], crops[0]], [crops[1], crops[2]])
    single = [scorer.score([crops[0]], [c])[0] for c in (crops[1], crops[2])]
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_the_scorer_folds_batchnorm_without_changing_scores_or_the_callers_model() -> None:
    from model.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint
    from model.preprocess import crops_to_tensor

    loaded = load_checkpoint(SHIPPED_CHECKPOINT)
    preprocessor = Preprocessor()
    crops = [
        preprocessor.from_bytes(photo(name), "selfie").crop
        for name in ("Colin_Powell_0001.jpg", "Colin_Powell_0002.jpg", "Tony_Blair_0001.jpg")
    ]
    scorer = PairScorer(loaded, device="cpu")
    folded = sum(isinstance(m, torch.nn.BatchNorm2d) for m in scorer.model.backbone.modules())
    assert folded == 0
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.model.modules())
    with torch.no_grad():
        batch = crops_to_tensor(crops, loaded.preprocess)
        expected = loaded.model.eval()(batch[[0, 0]], batch[[1, 2]]).numpy()
    np.testing.assert_allclose(scorer.score(crops[:1] * 2, crops[1:]), expected, atol=1e-5)

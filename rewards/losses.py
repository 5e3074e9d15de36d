"""The losses no library has in this shape: Bradley-Terry with margins, Plackett-Luce over
rankings of varying length, token classification with ignored positions, masked regression."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry(
    chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of -log sigmoid(r_chosen - r_rejected - margin) over the pairs."""
    diff = chosen - rejected
    if margin is not None:
        diff = diff - margin
    return -F.logsigmoid(diff).mean()


def plackett_luce(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of rankings under Plackett-Luce.

    `scores` [lists, K] are the rewards in ranked order (best first), `mask` [lists, K] marks
    real entries (lists shorter than K are padded at the end). For one list s_1..s_n:
    -sum_i (s_i - logsumexp(s_i..s_n)); the last term is always 0.
    """
    masked = scores.float().masked_fill(~mask, float("-inf"))
    # logsumexp over each suffix: flip, cumulative logsumexp, flip back.
    suffix = torch.logcumsumexp(masked.flip(-1), dim=-1).flip(-1)
    terms = torch.where(mask, scores.float() - suffix, torch.zeros_like(suffix))
    return -terms.sum(-1).mean()


def token_classification(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over labelled tokens (labels -100 are skipped)."""
    return F.cross_entropy(logits.float().flatten(0, -2), labels.flatten(), ignore_index=-100)


def masked_mse(
    predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean squared error over the (completion, aspect) cells that have a score."""
    errors = (predictions.float() - targets) ** 2
    return (errors * mask).sum() / mask.sum().clamp(min=1)

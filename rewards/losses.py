"""The losses no library has in this shape: Bradley-Terry with margins, Plackett-Luce over
rankings of varying length with tied groups, token classification with ignored positions,
masked regression."""

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


def plackett_luce(
    scores: torch.Tensor, mask: torch.Tensor, group_start: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean negative log-likelihood of rankings under Plackett-Luce, ties as Breslow's.

    `scores` [lists, K] are the rewards in ranked order (best first), `mask` [lists, K] marks
    real entries (lists shorter than K are padded at the end). For a strict list s_1..s_n:
    -sum_i (s_i - logsumexp(s_i..s_n)); the last term is always 0. `group_start` [lists, K]
    gives each entry the position of the first entry of its tied group (None: no ties); each
    member of a group then competes with its whole group and everything below it (Breslow's
    handling of ties in Cox's partial likelihood, which Plackett-Luce is), so no order is
    invented inside a tie, and an all-tied list pulls its scores together.
    """
    masked = scores.float().masked_fill(~mask, float("-inf"))
    # logsumexp over each suffix: flip, cumulative logsumexp, flip back.
    suffix = torch.logcumsumexp(masked.flip(-1), dim=-1).flip(-1)
    if group_start is not None:
        suffix = suffix.gather(-1, group_start)
    terms = torch.where(mask, scores.float() - suffix, torch.zeros_like(suffix))
    return -terms.sum(-1).mean()


def token_classification(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy over labelled tokens (labels -100 are skipped), each class weighted by
    `weights` [classes] when given (the weighted mean, as torch's)."""
    return F.cross_entropy(
        logits.float().flatten(0, -2), labels.flatten(), weight=weights, ignore_index=-100
    )


def masked_mse(
    predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean squared error over the (completion, aspect) cells that have a score."""
    errors = (predictions.float() - targets) ** 2
    return (errors * mask).sum() / mask.sum().clamp(min=1)

"""Score (prompt, response) pairs with a trained pairwise or listwise reward model."""

from __future__ import annotations


def score(
    model_dir: str, prompts: list, responses: list[str], *, batch_size: int = 32
) -> list[float]:
    """One reward per (prompt, response), batched; the model is loaded once per model_dir."""
    raise NotImplementedError

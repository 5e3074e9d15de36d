"""Score (prompt, response) pairs with a trained pairwise or listwise reward model: the one
batched function judges use."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import torch

from annotate.kinds import objective_kind

from .data import Encoder, as_text
from .registry import load_model


@functools.lru_cache(maxsize=4)
def _loaded(model_dir: str):
    model, tokenizer, meta = load_model(model_dir)
    if not objective_kind(meta["objective"]).scores_responses:
        raise ValueError(f"{model_dir}: a {meta['objective']} model gives no scalar reward")
    return model, Encoder(tokenizer, meta["max_length"]), tokenizer.pad_token_id


@torch.no_grad()
def score(
    model_dir: str,
    prompts: list,
    responses: list[str],
    *,
    batch_size: int = 32,
    between: Callable[[], object] | None = None,
) -> list[float]:
    """One reward per (prompt, response); prompts are strings or chat message lists, responses
    strings (or [{"role": "assistant", ...}]). Batched by length; the model is loaded once per
    model_dir (the last 4 stay cached). `between` is called after each batch (a judge run's
    heartbeat: a long call still says it is alive)."""
    if len(prompts) != len(responses):
        raise ValueError("prompts and responses must have the same length")
    if not prompts:
        return []
    model, encoder, pad_id = _loaded(str(Path(model_dir)))
    prompt_texts = [as_text(p) for p in prompts]
    unique = list(dict.fromkeys(prompt_texts))
    prompt_ids = dict(zip(unique, encoder.tokenize(unique), strict=True))
    response_ids = encoder.tokenize([as_text(r) for r in responses])
    sequences = [
        encoder.pair(prompt_ids[p], r) for p, r in zip(prompt_texts, response_ids, strict=True)
    ]
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i][0]))
    device = next(model.parameters()).device
    rewards = [0.0] * len(sequences)
    for at in range(0, len(order), batch_size):
        chunk = order[at : at + batch_size]
        width = max(len(sequences[i][0]) for i in chunk)
        ids = [sequences[i][0] + [pad_id] * (width - len(sequences[i][0])) for i in chunk]
        mask = [[1] * len(sequences[i][0]) + [0] * (width - len(sequences[i][0])) for i in chunk]
        inputs = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
        if encoder.types:
            inputs["token_type_ids"] = torch.tensor(
                [sequences[i][1] + [0] * (width - len(sequences[i][1])) for i in chunk]
            )
        logits = model(**{k: v.to(device) for k, v in inputs.items()}).logits
        for i, value in zip(chunk, logits.float().squeeze(-1).tolist(), strict=True):
            rewards[i] = value
        if between is not None:
            between()
    return rewards

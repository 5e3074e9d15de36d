"""A reward model from the project's registry as a judge: each shown response gets a score
r = RM(prompt, response), and the kind turns the scores into a label (pairwise: P(A better) =
sigmoid(r_A - r_B); listwise: ranked by score). Runs on the training queue, whose worker has
torch; the model is loaded once per worker process (rewards.scoring keeps the last 4).
Local and free: `priced` is False and no budget is reserved.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from annotate.kinds import get_kind

from . import register
from .base import JudgeClient, JudgeError, Pass, Reply


@register
class RewardModelJudge(JudgeClient):
    name = "reward_model"
    title = "Reward model from this project's registry"
    remote = False
    # Passes claimed and scored at once: one window sorted by length, so less padding (512
    # pairs: 13.7 s against 16.0 s in windows of 64, bench/README.md "Judges"); the runner's
    # heartbeat is called between the model's batches, so a long window is no silent worker.
    batch_size = 512
    queue = "training"
    priced = False

    def judge(self, p: Pass) -> Reply:
        (reply,) = self.judge_many([p])
        if isinstance(reply, JudgeError):
            raise reply
        return reply

    def judge_many(
        self, passes: list[Pass], between: Callable[[], object] | None = None
    ) -> list[Reply | JudgeError]:
        from rewards.scoring import score  # torch: only on the training worker

        model_dir = self.settings.options.get("model_dir")
        if not model_dir:
            error = JudgeError("the judge's reward model is not in the registry", permanent=True)
            return [error for _ in passes]
        prompts = [p.prompt for p in passes for _ in p.shown]
        texts = [r["text"] for p in passes for r in p.shown]
        try:
            scores = score(model_dir, prompts, texts, between=between)
        except (OSError, ValueError) as error:
            return [JudgeError(f"the reward model did not load: {error}", permanent=True)] * len(
                passes
            )
        replies: list[Reply | JudgeError] = []
        at = 0
        for p in passes:
            own = scores[at : at + len(p.shown)]
            at += len(p.shown)
            kind = get_kind(p.kind)
            label = kind.label_from_scores(
                own, p.shown, p.config, self.settings.options.get("tie_margin", 0.0)
            )
            replies.append(
                Reply(
                    text=json.dumps(label),
                    model=self.settings.model,
                    extra={"scores": {r["id"]: s for r, s in zip(p.shown, own, strict=True)}},
                )
            )
        return replies

from .base import Decision, Policy


class AllJudge(Policy):
    name, title = "all_judge", "All to judges"

    def decide(self, candidates, params, *, project, seed):
        return [Decision(False, None, "the policy sends every item to judges") for _ in candidates]

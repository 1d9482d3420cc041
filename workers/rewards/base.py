"""The shapes every reward component and readability filter share. No Django here.

A component is a plain function `component(sample, **params) -> Reward`; a
filter is `filter(sample, **params) -> Verdict`. Components never raise on
bad model output: they return a value with a reason in `details`.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    """One completion to score, with what the prompt says a right answer is."""

    completion: str
    reference: str = ""  # the reference answer (math)
    tests: tuple = ()  # test cases (code): dicts, see workers.rewards.code
    prompt: str = ""
    domain: str = "math"
    language: str = "en"  # the language the chain of thought should be in
    finish_reason: str = "stop"  # "length" when generation hit the token cap
    judgement: dict | None = None  # a judge model's verdict, attached before scoring (workers.rewards.judge)


@dataclass
class Reward:
    value: float | None  # None: no score could be given (a judge with no verdict); the reason is in details
    details: dict = field(default_factory=dict)  # JSON-able: what was extracted, why it failed, ...

    @classmethod
    def zero(cls, reason: str, **details) -> "Reward":
        return cls(0.0, {"reason": reason, **details})


@dataclass
class Verdict:
    keep: bool
    reason: str = ""  # why it was dropped; empty when kept

    @classmethod
    def drop(cls, reason: str) -> "Verdict":
        return cls(False, reason)


KEEP = Verdict(True)

"""A generative judge: a model reads the prompt, the reference and a completion and says correct or incorrect.

R1 scored prompts without a rule-checkable answer this way (DeepSeek-V3 judged the prediction against the
reference). The judge's verdicts for a batch are resolved here, before the recipe runs in the scoring pool:
the calls are network waits, so they go out from a thread pool of `concurrency`, and every answer is cached
by (judge, judge prompt version, sha256 of the text sent), so a re-score costs no call. The `llm_judge`
component (`judge_component`) then only reads the verdict attached to its sample.

The judge prompt asks for a final `VERDICT: correct` or `VERDICT: incorrect` line and a `REASON:` line.
Anything else gives the value None with the reason, never an exception: a malformed verdict, a refusal
(empty content, a filtered answer, "I can't help with that"), a timeout, an HTTP error. Answers are
cached, failures to answer (timeouts, HTTP errors) are not: the next score asks again. No Django here.
"""

import hashlib
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Protocol

from workers.generation.base import BackendError, SamplingParams
from workers.generation.factory import make_backend
from workers.rewards.base import Reward, Sample
from workers.rewards.extract import split_completion

COMPONENT = "llm_judge"
MAX_TEXT_CHARS = 20_000  # of a completion, reference or prompt put into the judge prompt: the tail is kept
OUTPUT_EXCERPT_CHARS = 1_000  # of the judge's answer kept in the details and the cache
PLACEHOLDERS = ("{prompt}", "{reference}", "{completion}", "{answer}")

DEFAULT_PROMPT = """You are grading a model's answer to a problem against the reference answer.

Problem:
{prompt}

Reference answer:
{reference}

Model's final answer:
{answer}

Decide whether the model's final answer means the same as the reference answer (equivalent forms count as
the same; an answer that is only partly right is incorrect). Then end with exactly these two lines:
REASON: <one sentence>
VERDICT: correct or incorrect
"""

_VERDICT = re.compile(r"^\W*VERDICT\W*:?\s*\**\s*(correct|incorrect)\b", re.IGNORECASE | re.MULTILINE)
_REASON = re.compile(r"^\W*REASON\W*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_REFUSAL = re.compile(r"\b(I can(?:'|no)t|I(?: am|'m) (?:not able|unable)|I won't|I'm sorry|as an AI)\b",
                      re.IGNORECASE)


def check_prompt_text(text: str) -> str | None:
    """Why `text` cannot be a judge prompt, or None."""
    if not isinstance(text, str) or not text.strip():
        return "a judge prompt needs text"
    if "{completion}" not in text and "{answer}" not in text:
        return "a judge prompt must contain {completion} or {answer} (what is judged)"
    if "VERDICT" not in text:
        return "a judge prompt must ask for a final 'VERDICT: correct|incorrect' line (that is what is parsed)"
    return None


def _tail(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else "…" + text[-MAX_TEXT_CHARS:]


def render(template: str, sample: Sample) -> str:
    """The judge prompt for one sample. Plain replacement, not str.format: model output is full of braces."""
    answer = split_completion(sample.completion)[1] or sample.completion
    values = {"{prompt}": sample.prompt, "{reference}": sample.reference or "(none given)",
              "{completion}": sample.completion, "{answer}": answer}
    return re.sub("|".join(re.escape(p) for p in PLACEHOLDERS), lambda m: _tail(values[m.group()]), template)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class Verdict:
    """What the judge said of one sample. `correct` is None when it gave no usable verdict (see `reason`)."""

    correct: bool | None
    reason: str
    output: str = ""  # an excerpt of the judge's answer
    prompt_tokens: int = 0
    completion_tokens: int = 0
    answered: bool = True  # False: no answer came (timeout, HTTP error), so it is not cached
    cached: bool = False

    def details(self, judge: str, prompt_version: str) -> dict:
        label = {True: "correct", False: "incorrect", None: None}[self.correct]
        return {"verdict": label, "reason": self.reason, "judge": judge, "judge_prompt": prompt_version,
                "cached": self.cached, "judge_output": self.output}


def parse_verdict(text: str, finish_reason: str = "stop") -> tuple[bool | None, str]:
    """(correct, reason) from a judge's answer; the last VERDICT line counts (a reasoning model may say
    the word before it decides)."""
    if finish_reason == "error":
        return None, "the server stopped the judge's answer (a content filter or an abort): no verdict"
    if not text.strip() and finish_reason != "length":
        return None, "the judge answered nothing (a refusal)"
    verdicts = _VERDICT.findall(text)
    if not verdicts:
        if _REFUSAL.search(text):
            return None, "the judge refused: " + _excerpt(text, 200)
        if finish_reason == "length":
            return None, "the judge's answer was cut at max_tokens before a VERDICT line"
        return None, "malformed verdict: no 'VERDICT: correct|incorrect' line in " + _excerpt(text, 200)
    reasons = _REASON.findall(text)
    reason = reasons[-1].strip() if reasons else "(the judge gave no REASON line)"
    return verdicts[-1].lower() == "correct", reason[:500]


def _excerpt(text: str, chars: int) -> str:
    text = " ".join(text.split())
    return repr(text[:chars] + ("…" if len(text) > chars else ""))


class VerdictCache(Protocol):
    """Where answers are kept: the database in the app, a dict in the trainer (`MemoryCache`)."""

    def get_many(self, keys: Sequence[str]) -> dict[str, Verdict]: ...

    def put_many(self, verdicts: dict[str, Verdict]) -> None: ...


class MemoryCache:
    def __init__(self):
        self.verdicts: dict[str, Verdict] = {}

    def get_many(self, keys):
        return {k: self.verdicts[k] for k in keys if k in self.verdicts}

    def put_many(self, verdicts):
        self.verdicts.update(verdicts)


@dataclass
class JudgeCounts:
    """Shown on the job page: calls made, answers served from the cache, tokens spent."""

    calls: int = 0
    cached: int = 0
    failed: int = 0  # no usable verdict (malformed, refused, timed out)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def figures(self) -> dict:
        return {"judge_calls": self.calls, "judge_cached": self.cached, "judge_no_verdict": self.failed,
                "judge_prompt_tokens": self.prompt_tokens, "judge_completion_tokens": self.completion_tokens}


class Judge:
    """Verdicts for samples from one judge model (a generation backend) with one judge prompt.

    `client` is any workers.generation backend; `chat` sends the prompt as one user message (an
    OpenAI-compatible server applies its chat template) rather than as raw text (a local model).
    """

    def __init__(self, client, template: str, *, name: str, prompt_version: str, cache: VerdictCache | None = None,
                 concurrency: int = 8, max_tokens: int = 512, chat: bool = True, domains: tuple[str, ...] = (),
                 key_prefix: str = ""):
        self.client = client
        self.template = template
        self.name, self.prompt_version = name, prompt_version
        self.cache = cache or MemoryCache()
        self.concurrency = concurrency
        self.sampling = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_tokens=max_tokens)
        self.chat = chat
        self.domains = domains
        self.key_prefix = key_prefix  # the judge and prompt version, so one cache can hold several judges
        self.counts = JudgeCounts()
        self._lock = threading.Lock()

    def applies_to(self, sample: Sample) -> bool:
        return not self.domains or sample.domain in self.domains

    def verdicts(self, samples: Sequence[Sample]) -> list[Verdict]:
        """One verdict per sample, in order: cached answers first, the rest asked `concurrency` at a time."""
        texts = [render(self.template, s) for s in samples]
        keys = [self.key_prefix + text_hash(t) for t in texts]
        known = self.cache.get_many(sorted(set(keys)))
        asked: dict[str, Verdict] = {}
        missing = {k: t for k, t in zip(keys, texts) if k not in known}
        if missing:
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="judge") as pool:
                asked = dict(zip(missing, pool.map(self._ask, missing.values())))
            self.cache.put_many({k: v for k, v in asked.items() if v.answered})
        out = [replace(known[k], cached=True) if k in known else asked[k] for k in keys]
        with self._lock:
            self.counts.cached += sum(v.cached for v in out)
            self.counts.failed += sum(v.correct is None for v in out)
        return out

    def _ask(self, text: str) -> Verdict:
        prompt = [{"role": "user", "content": text}] if self.chat else text
        with self._lock:
            self.counts.calls += 1
        try:
            completion = self.client.generate([prompt], self.sampling)[0][0]
        except BackendError as exc:  # after the backend's own retries (429 and 5xx only)
            return Verdict(None, f"the judge did not answer: {str(exc)[:300]}", answered=False)
        with self._lock:
            self.counts.prompt_tokens += completion.prompt_tokens or 0
            self.counts.completion_tokens += completion.completion_tokens or 0
        correct, reason = parse_verdict(completion.text, completion.finish_reason)
        return Verdict(correct, reason, completion.text[-OUTPUT_EXCERPT_CHARS:],
                       completion.prompt_tokens or 0, completion.completion_tokens or 0)

    def attach(self, samples: Sequence[Sample]) -> list[Sample]:
        """`samples` with the judge's verdict details in `judgement` (those of other domains untouched)."""
        judged = [i for i, s in enumerate(samples) if self.applies_to(s)]
        out = list(samples)
        for i, verdict in zip(judged, self.verdicts([samples[i] for i in judged])):
            out[i] = replace(samples[i], judgement=verdict.details(self.name, self.prompt_version))
        return out

    def close(self) -> None:
        self.client.close()


def make_judge(settings: dict, cache: VerdictCache | None = None) -> Judge:
    """A Judge from plain settings, which the app resolves from a recipe (apps/rollouts/judging.py) and the
    GRPO trainer reads from its spec: name, backend, uri, config (a ModelVersion's), prompt_text,
    prompt_version, and the component's concurrency, timeout_s, max_tokens and domains."""
    config = dict(settings.get("config") or {})
    concurrency = settings.get("concurrency", 8)
    chat = settings["backend"] == "openai"
    if chat:  # retried on 429 and 5xx only: a judge that timed out is reported (None, with the reason), not waited for
        config["openai"] = {**config.get("openai", {}), "max_concurrency": concurrency,
                            "timeout_s": settings.get("timeout_s", 60.0), "retry_statuses": [429],
                            "retry_timeouts": False}
    client = make_backend(settings["backend"], settings["uri"], config)
    return Judge(client, settings["prompt_text"], name=settings["name"], prompt_version=settings["prompt_version"],
                 cache=cache, concurrency=concurrency if chat else 1,  # a local model answers one call at a time
                 max_tokens=settings.get("max_tokens", 512), chat=chat, domains=tuple(settings.get("domains", ())))


def judge_component(sample: Sample, *, judge: int | str, prompt: str = "default", prompt_version: int | None = None,
                    concurrency: int = 8, timeout_s: float = 60.0, max_tokens: int = 512) -> Reward:
    """1.0 when the judge says correct, 0.0 incorrect, None (with the reason) when it gave no verdict.

    The parameters name the judge (a model version's id or name), its prompt (a stored judge prompt's name
    and version, the newest when none), how many calls at once, each call's timeout and the judge's token
    cap; the app resolves them and attaches each sample's verdict before the recipe runs."""
    judgement = sample.judgement
    if judgement is None:
        return Reward(None, {"verdict": None, "reason": "no judge verdict was attached to this sample "
                                                        "(the recipe ran without its judge)"})
    value = {"correct": 1.0, "incorrect": 0.0}.get(judgement.get("verdict"))
    return Reward(value, dict(judgement))


def check_params(params: dict) -> str | None:
    """Why a recipe's llm_judge params are wrong, naming the param; None when they are right."""
    judge = params.get("judge")
    if judge is None or isinstance(judge, bool) or not isinstance(judge, int | str) or judge == "":
        return "params.judge: required, a model version's id or name"
    if not isinstance(params.get("prompt", "default"), str) or not params.get("prompt", "default"):
        return "params.prompt: a judge prompt's name"
    bounds = {"prompt_version": (int, 1, None), "concurrency": (int, 1, 64), "timeout_s": (int | float, 1, 600),
              "max_tokens": (int, 16, 32768)}
    for name, (kind, low, high) in bounds.items():
        value = params.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, kind) or value < low or (high and value > high):
            return f"params.{name}: must be a number from {low}" + (f" to {high}" if high else " up")
    return None


"""The generative judge (workers/rewards/judge.py) against an OpenAI-shaped server on loopback
(tests/fake_openai.py) and against the tiny local model: verdicts, the failures that give None with the
reason (malformed, refused, timed out, refused by HTTP), retries on 429 only, the cache, the bound on
calls in flight, and the llm_judge component inside a recipe and the scoring pool."""

import re
import time

import pytest

from tests.fake_openai import MODEL
from workers.generation.openai_backend import OpenAIBackend
from workers.rewards.base import Sample
from workers.rewards.judge import DEFAULT_PROMPT, Judge, MemoryCache, parse_verdict, render
from workers.rewards.pool import ScoringPool
from workers.rewards.recipes import Recipe, RecipeError

TEMPLATE = "Grade it. REF<<{reference}>> ANS<<{answer}>> End with REASON and VERDICT lines."


def grader(message: str) -> str:
    """A judge that compares the answer with the reference in the prompt it was sent."""
    reference, answer = re.search(r"REF<<(.*?)>> ANS<<(.*?)>>", message, re.DOTALL).groups()
    same = reference.strip() == answer.strip()
    reason, verdict = ("they match", "correct") if same else ("they differ", "incorrect")
    return f"Let me look.\nREASON: {reason}\nVERDICT: {verdict}"


def client(server, concurrency=8, timeout_s=5.0):
    return OpenAIBackend(server.url, MODEL, max_concurrency=concurrency, timeout_s=timeout_s, backoff_s=0.01,
                         retry_statuses=[429], retry_timeouts=False)


def judge(server, cache=None, concurrency=8, timeout_s=5.0):
    return Judge(client(server, concurrency, timeout_s), TEMPLATE, name="judge-model", prompt_version="test v1",
                 cache=cache, concurrency=concurrency)


def sample(answer: str, reference: str = "42", prompt: str = "What is 6 x 7?") -> Sample:
    return Sample(completion=f"<think>thinking</think>\n{answer}", reference=reference, prompt=prompt, domain="general")


@pytest.mark.parametrize("text, finish, correct, reason", [
    ("REASON: same number\nVERDICT: correct", "stop", True, "same number"),
    ("REASON: 41 is not 42\nVERDICT: Incorrect", "stop", False, "41 is not 42"),
    ("**VERDICT:** correct", "stop", True, "(the judge gave no REASON line)"),
    ("VERDICT: correct? no wait.\nREASON: off by one\nVERDICT: incorrect", "stop", False, "off by one"),
    ("The answer looks fine to me.", "stop", None, "malformed verdict"),
    ("VERDICT: maybe", "stop", None, "malformed verdict"),
    ("I'm sorry, but I can't help with grading this.", "stop", None, "the judge refused"),
    ("", "stop", None, "answered nothing"),
    ("REASON: the answer", "length", None, "cut at max_tokens"),
    ("VERDICT: correct", "error", None, "content filter"),
])
def test_verdicts_are_parsed_and_anything_else_is_none_with_the_reason(text, finish, correct, reason):
    got, why = parse_verdict(text, finish)
    assert got is correct
    assert reason in why


def test_the_prompt_gets_the_final_answer_and_keeps_braces_in_model_output():
    text = render(DEFAULT_PROMPT, Sample(completion="<think>{x}</think>\n\\boxed{42}", reference="42",
                                         prompt="Find {x}."))
    assert "Find {x}." in text and "\\boxed{42}" in text and "<think>" not in text
    assert "{answer}" not in text and "{reference}" not in text


def test_correct_and_incorrect_verdicts_with_calls_and_tokens_counted(server):
    server.reply = grader
    j = judge(server)
    verdicts = j.verdicts([sample("42"), sample("41")])
    assert [v.correct for v in verdicts] == [True, False]
    assert [v.reason for v in verdicts] == ["they match", "they differ"]
    assert j.counts.calls == 2 and j.counts.cached == 0
    assert j.counts.prompt_tokens > 0 and j.counts.completion_tokens > 0
    assert all(p["body"]["temperature"] == 0.0 for p in server.posts())


def test_malformed_verdicts_and_refusals_give_none_with_the_reason(server):
    server.reply = lambda message: "The model did fine, I think."
    assert "malformed verdict" in judge(server).verdicts([sample("42")])[0].reason
    server.reply = lambda message: "I cannot assist with that request."
    assert "refused" in judge(server).verdicts([sample("43")])[0].reason
    server.reply = lambda message: ""
    assert "answered nothing" in judge(server).verdicts([sample("44")])[0].reason
    server.reply, server.finish_reasons = grader, ["content_filter"]
    verdict = judge(server).verdicts([sample("45")])[0]
    assert verdict.correct is None and "content filter" in verdict.reason


def test_a_timeout_is_none_with_the_reason_not_retried_and_not_cached(server):
    server.reply = grader
    server.script = [("hang", 3.0)]
    cache = MemoryCache()
    j = judge(server, cache=cache, timeout_s=0.5)
    t0 = time.monotonic()
    verdict = j.verdicts([sample("42")])[0]
    assert time.monotonic() - t0 < 2.5
    assert verdict.correct is None and "no answer within 0.5s" in verdict.reason
    assert len(server.posts()) == 1 and cache.verdicts == {}
    assert j.verdicts([sample("42")])[0].correct is True  # asked again next time: a timeout is not an answer


def test_429_is_retried_after_retry_after_and_400_is_not(server):
    server.reply = grader
    server.script = [(429, {"error": {"message": "slow down"}}, {"Retry-After": "0.2"})]
    t0 = time.monotonic()
    assert judge(server).verdicts([sample("42")])[0].correct is True
    assert time.monotonic() - t0 >= 0.2
    assert len(server.posts()) == 2

    server.script = [(400, {"error": {"message": "prompt too long"}}, {})]
    verdict = judge(server).verdicts([sample("41")])[0]
    assert verdict.correct is None and "HTTP 400" in verdict.reason and "prompt too long" in verdict.reason
    assert len(server.posts()) == 3  # one more: no retry

    server.script = [(503, {"error": {"message": "busy"}}, {})]
    assert judge(server).verdicts([sample("40")])[0].correct is False
    assert len(server.posts()) == 5  # a 5xx is retried


def test_a_rescore_is_served_from_the_cache_without_a_call(server):
    server.reply = grader
    cache = MemoryCache()
    samples = [sample(str(40 + i % 4)) for i in range(12)]  # 4 distinct texts
    first = judge(server, cache=cache).verdicts(samples)
    assert len(server.posts()) == 4
    again = judge(server, cache=cache)
    second = again.verdicts(samples)
    assert len(server.posts()) == 4  # nothing new asked
    assert [v.correct for v in second] == [v.correct for v in first]
    assert all(v.cached for v in second) and again.counts.calls == 0 and again.counts.cached == 12


def test_calls_in_flight_never_exceed_the_concurrency(server):
    server.reply, server.delay = grader, 0.1
    t0 = time.monotonic()
    verdicts = judge(server, concurrency=4).verdicts([sample(str(i)) for i in range(16)])
    assert len(verdicts) == 16 and server.max_in_flight == 4
    assert time.monotonic() - t0 >= 0.4  # 16 calls of 0.1 s, 4 at a time


def test_the_component_in_a_recipe_through_the_scoring_pool(server):
    server.reply = grader
    spec = {"components": [{"name": "llm_judge", "weight": 2.0, "params": {"judge": 1}, "domains": ["general"]},
                           {"name": "think_format", "weight": 1.0}]}
    j = Judge(client(server), TEMPLATE, name="judge-model", prompt_version="test v1", domains=("general",))
    samples = [sample("42"), sample("41"), Sample(completion="<think>x</think>\n7", reference="7", domain="math")]
    server.script = [(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hmm"},
                                         "finish_reason": "stop"}]}, {})]
    with ScoringPool(spec, processes=1, judge=j) as pool:
        scored = list(pool.map(samples))
    judged = [s["components"]["llm_judge"] for s in scored[:2]]
    # The scripted malformed answer went to whichever call came first; the other got a real verdict.
    assert sorted(str(c["value"]) for c in judged) in (["0.0", "None"], ["1.0", "None"])
    for component in judged:
        details = component["details"]
        assert details["judge"] == "judge-model" and details["judge_prompt"] == "test v1"
        assert details["reason"] and (details["verdict"] is None) == (component["value"] is None)
    assert "llm_judge" not in scored[2]["components"]  # another domain: not judged, no call
    assert len(server.posts()) == 2
    none_scored = next(s for s in scored[:2] if s["components"]["llm_judge"]["value"] is None)
    assert none_scored["total"] == none_scored["components"]["think_format"]["value"]  # None adds nothing


def test_without_its_judge_the_component_says_so():
    reward = Recipe.from_spec({"components": [{"name": "llm_judge", "params": {"judge": "gpt"}}]}).score(sample("1"))
    assert reward["components"]["llm_judge"]["value"] is None
    assert "no judge verdict" in reward["components"]["llm_judge"]["details"]["reason"]
    assert reward["total"] == 0.0


@pytest.mark.parametrize("params, field", [
    ({}, "params.judge"),
    ({"judge": ""}, "params.judge"),
    ({"judge": True}, "params.judge"),
    ({"judge": 3, "concurrency": 0}, "params.concurrency"),
    ({"judge": 3, "concurrency": 1000}, "params.concurrency"),
    ({"judge": 3, "timeout_s": "soon"}, "params.timeout_s"),
    ({"judge": 3, "prompt": 5}, "params.prompt"),
    ({"judge": 3, "prompt_version": 0}, "params.prompt_version"),
    ({"judge": 3, "temperature": 1}, "unknown param(s) temperature"),
])
def test_bad_judge_params_are_refused_naming_the_field(params, field):
    with pytest.raises(RecipeError, match=re.escape(field)):
        Recipe.from_spec({"components": [{"name": "llm_judge", "params": params}]})


def test_one_judge_per_recipe():
    with pytest.raises(RecipeError, match=r"components\[1\]: a recipe may have one llm_judge"):
        Recipe.from_spec({"components": [{"name": "llm_judge", "params": {"judge": 1}},
                                         {"name": "llm_judge", "params": {"judge": 2}}]})


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    from workers.generation.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def test_a_local_model_that_answers_nonsense_gives_none_with_the_reason(tiny_path):
    from workers.generation.transformers_backend import TransformersBackend

    local = TransformersBackend(str(tiny_path), device="cpu")
    j = Judge(local, DEFAULT_PROMPT, name="tiny", prompt_version="default v1", chat=False, concurrency=1, max_tokens=16)
    verdicts = j.verdicts([sample("42"), sample("41")])
    assert [v.correct for v in verdicts] == [None, None]
    assert all(re.search("malformed verdict|cut at max_tokens|answered nothing", v.reason) for v in verdicts)
    assert j.counts.calls == 2 and j.counts.completion_tokens > 0


def test_the_grpo_trainer_path_judges_from_its_spec_with_a_run_cache(server):
    from workers.rewards.judge import make_judge
    from workers.training.rewards import RecipeRewards
    from workers.training.spec import GRPOSpec, TrainSpec

    server.reply = grader
    recipe = {"components": [{"name": "llm_judge", "params": {"judge": "judge-model", "concurrency": 2}}]}
    settings = {"name": "judge-model", "backend": "openai", "uri": MODEL, "config": {"base_url": server.url},
                "prompt_text": TEMPLATE, "prompt_version": "test v1", "concurrency": 2, "timeout_s": 5}
    spec = TrainSpec(kind="grpo", model_path="m", data_path="d", run_dir="r", checkpoint_dir="c", final_dir="f",
                     max_steps=1, learning_rate=1e-6, per_device_batch_size=2,
                     grpo=GRPOSpec(recipe=recipe, judge=settings, num_generations=2))
    assert TrainSpec.from_json(spec.to_json()).grpo.judge == settings  # what the trainer reads back

    with ScoringPool(recipe, processes=1, judge=make_judge(settings, MemoryCache())) as pool:
        rewards = RecipeRewards(recipe, pool, eos_token_ids=[0], max_completion_length=64)
        columns = {"reference": ["42", "42"], "tests": ["[]", "[]"], "question": ["q", "q"],
                   "domain": ["general", "general"], "language": ["en", "en"]}
        completions = ["<think>a</think>\n42", "<think>b</think>\n41"]
        values = rewards.functions()[0](["p", "p"], completions, [[1, 0], [1, 0]], **columns)
        assert values == [1.0, 0.0]
        rewards.functions()[0](["p", "p"], list(completions), [[1, 0], [1, 0]], **columns)  # the next step
    assert len(server.posts()) == 2  # the same completions again: from the run's cache

"""The token lens: per-token traces captured by the generation backends, stored beside rollouts
(RolloutTokens) in the same idempotent write, read back exactly, ingested from our JSONL, filtered and
sorted in the browser, deleted with their job, and drawn safely."""

import math

import numpy as np
import pytest
import torch

from apps.core.bulk import bulk_insert
from apps.datasets.models import ModelVersion, Prompt
from apps.jobs import launching
from apps.jobs.models import Job
from apps.jobs.runner import JobContext, execute
from apps.rollouts.browse import RolloutFilterForm
from apps.rollouts.ingest import ingest_file
from apps.rollouts.models import Rollout, RolloutTokens
from apps.rollouts.rows import rollout_row
from apps.rollouts.tokens import draw, first_divergence, lens, piece_label, shown_piece, write_rollouts
from tests.conftest import write_jsonl
from tests.fake_openai import MODEL, token_logprob
from tests.rollout_factory import add_prompt, add_rollouts, solved
from workers.generation.tiny import build_tiny_model
from workers.tokens import TokenTrace

# float16 keeps 11 significant bits: what a stored value may differ from the float32 one by.
F16 = {"rtol": 2**-11, "atol": 1e-4}


def close(stored, expected) -> bool:
    return np.allclose(np.asarray(stored, np.float64), np.asarray(expected, np.float64), **F16, equal_nan=False)


@pytest.fixture
def prompts(dataset):
    bulk_insert(Prompt, [{"dataset_id": dataset.pk, "question": f"What is {i} + 1?", "reference_answer": str(i + 1),
                          "content_hash": f"h{i}"} for i in range(3)])
    return list(Prompt.objects.order_by("pk"))


def run(kind_params: dict) -> Job:
    job = launching.launch("generate", kind_params, enqueue=False)
    execute(job.pk, worker="test")
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    return job


# ---- capture: the tiny transformers model ------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.mark.django_db(transaction=True)
def test_a_transformers_generation_job_stores_the_sampling_distributions_log_probs(dataset, prompts, tiny_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, TopPLogitsWarper

    model_version = ModelVersion.objects.create(name="tiny", uri=str(tiny_path))
    temperature, top_p = 0.7, 0.9
    job = run({"dataset": dataset.pk, "model_version": model_version.pk, "n": 2, "max_tokens": 16, "seed": 3,
               "temperature": temperature, "top_p": top_p, "capture_tokens": True})
    rollouts = list(Rollout.objects.filter(job=job).select_related("tokens"))
    assert len(rollouts) == 6
    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_path).eval()
    for rollout in rollouts:
        stored = rollout.tokens
        trace = stored.trace()
        assert len(trace) == stored.n_tokens == rollout.completion_tokens
        assert (trace.vocab_ids, trace.top_k, trace.entropy_kind) == (True, 5, "sampling")
        assert tokenizer.decode(trace.ids.tolist(), skip_special_tokens=True) == rollout.completion
        # The distribution sampled from, recomputed here: logits / T, then top-p, then log-softmax.
        prompt_ids = tokenizer(rollout.prompt_text, add_special_tokens=False, return_tensors="pt").input_ids
        full = torch.cat([prompt_ids, torch.tensor([trace.ids.tolist()])], dim=1)
        with torch.no_grad():
            logits = model(full).logits[0, prompt_ids.shape[1] - 1:-1].float() / temperature
        logp = torch.log_softmax(TopPLogitsWarper(top_p)(None, logits), dim=-1)
        chosen = logp.gather(1, torch.from_numpy(trace.ids).long()[:, None]).squeeze(1)
        assert close(trace.logprobs, chosen)
        assert close(trace.entropy, torch.special.entr(logp.exp()).sum(-1))
        assert close(trace.top_logprobs, logp.topk(5).values)
        assert close(trace.top_logprobs, logp.gather(1, torch.from_numpy(trace.top_ids).long()))
        # The summary columns the browser filters on are the trace's own.
        assert math.isclose(stored.max_entropy, float(trace.entropy.max()), rel_tol=2**-10)
        assert math.isclose(stored.min_logprob, float(trace.logprobs.min()), rel_tol=2**-10, abs_tol=1e-4)
        # Every token named (chosen and alternatives) has its bytes: the page needs no tokenizer.
        assert set(trace.ids.tolist()) | set(trace.top_ids.reshape(-1).tolist()) <= set(trace.pieces)
        assert b"".join(trace.pieces[i] for i in trace.ids.tolist()).decode("utf-8", "replace") == \
            tokenizer.decode(trace.ids.tolist(), skip_special_tokens=False)


@pytest.mark.django_db(transaction=True)
def test_capture_is_off_by_default_for_generation_and_samples_the_same_tokens_when_on(dataset, prompts, tiny_path):
    model_version = ModelVersion.objects.create(name="tiny", uri=str(tiny_path))
    params = {"dataset": dataset.pk, "model_version": model_version.pk, "n": 2, "max_tokens": 12, "seed": 9,
              "temperature": 0.8, "top_p": 0.95}
    plain = run(params)
    captured = run(params | {"capture_tokens": True})
    assert plain.params["capture_tokens"] is False
    assert not RolloutTokens.objects.filter(rollout__job=plain).exists()
    assert RolloutTokens.objects.filter(rollout__job=captured).count() == 6
    texts = [list(Rollout.objects.filter(job=j).order_by("prompt_id", "sample_index")
                  .values_list("completion", flat=True)) for j in (plain, captured)]
    assert texts[0] == texts[1]  # capture hands generate() the same warpers: the same seed samples the same tokens


# ---- capture: an OpenAI-compatible server --------------------------------------------------------

def expected_top_k_entropy(k: int) -> float:
    """The fake server's alternatives sit 1.5 nats apart: renormalised, their entropy is the same at every token."""
    weights = [math.exp(-1.5 * a) for a in range(k)]
    q = [w / sum(weights) for w in weights]
    return -sum(p * math.log(p) for p in q)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("template, stream", [("r1-zero", False), ("chat", True)], ids=["completions", "chat-stream"])
def test_an_openai_compatible_job_stores_the_servers_log_probs(server, dataset, prompts, template, stream):
    model_version = ModelVersion.objects.create(name="api", uri=MODEL, backend="openai", config={
        "base_url": server.url, "openai": {"max_retries": 0, "timeout_s": 5, "stream": stream}})
    job = run({"dataset": dataset.pk, "model_version": model_version.pk, "n": 2, "template": template,
               "capture_tokens": True})
    asked = server.posts()[0]["body"]
    assert asked["logprobs"] == (True if template == "chat" else 5)
    assert asked.get("top_logprobs") == (5 if template == "chat" else None)
    rollouts = list(Rollout.objects.filter(job=job).select_related("tokens"))
    assert len(rollouts) == 6
    for rollout in rollouts:
        trace = rollout.tokens.trace()
        tokens = server.split(rollout.completion)
        assert [trace.pieces[i].decode() for i in trace.ids.tolist()] == tokens
        assert trace.vocab_ids is False and trace.entropy_kind == "top_k" and trace.top_k == 5
        assert close(trace.logprobs, [token_logprob(j) for j in range(len(tokens))])
        assert close(trace.entropy, [expected_top_k_entropy(5)] * len(tokens))
        alternatives = [[trace.pieces[i].decode() for i in row] for row in trace.top_ids.tolist()]
        assert alternatives == [[token, "alt1", "alt2", "alt3", "alt4"] for token in tokens]
        assert close(trace.top_logprobs[:, 1], [token_logprob(j) - 1.5 for j in range(len(tokens))])


@pytest.mark.django_db(transaction=True)
def test_a_server_that_refuses_logprobs_still_generates_without_tokens(server, dataset, prompts):
    server.refuses = {"logprobs": {"message": "logprobs is not supported with this model",
                                   "type": "invalid_request_error", "param": "logprobs", "code": "invalid_parameter"}}
    model_version = ModelVersion.objects.create(name="api", uri=MODEL, backend="openai", config={
        "base_url": server.url, "openai": {"max_retries": 0, "timeout_s": 5}})
    job = run({"dataset": dataset.pk, "model_version": model_version.pk, "n": 1, "capture_tokens": True})
    assert Rollout.objects.filter(job=job).count() == 3
    assert not RolloutTokens.objects.filter(rollout__job=job).exists()
    assert "does not support the parameter 'logprobs'" in job.log


# ---- storage: idempotent, compact, deleted with the job ---------------------------------------------

def trace(entropy, logprobs=None, pieces=None) -> TokenTrace:
    n = len(entropy)
    logprobs = logprobs if logprobs is not None else [-0.5] * n
    return TokenTrace(ids=list(range(n)), logprobs=logprobs, entropy=entropy,
                      pieces=pieces or {i: f"w{i} ".encode() for i in range(n)}, entropy_kind="sampling")


@pytest.mark.django_db
def test_a_retried_write_lands_neither_rollouts_nor_traces_twice(dataset):
    job = Job.objects.create(kind="generate")
    prompt = add_prompt(dataset, "What is 2 + 2?", "4")
    rows = [rollout_row(job_id=job.pk, prompt_id=prompt.pk, completion=f"c{i}", sample_index=i)
            | {"tokens": trace([0.1 * i, 2.0])} for i in range(3)]
    assert write_rollouts(rows) == 3
    assert write_rollouts(rows) == 0
    assert RolloutTokens.objects.filter(job=job).count() == 3
    stored = RolloutTokens.objects.get(rollout__sample_index=2)
    assert stored.job_id == job.pk and stored.n_tokens == 2
    assert close(stored.trace().entropy, [0.2, 2.0]) and math.isclose(stored.max_entropy, 2.0)
    # 8 bytes a token for ids, log-probs and entropies (the pieces table is per distinct token).
    assert len(stored.token_ids) + len(stored.logprobs) + len(stored.entropy) == 8 * 2


@pytest.mark.django_db
def test_deleting_the_job_deletes_its_token_rows(dataset):
    job, other = Job.objects.create(kind="generate"), Job.objects.create(kind="generate")
    prompt = add_prompt(dataset, "What is 2 + 2?", "4")
    add_rollouts(job, prompt, ["a", "b"], tokens=[trace([0.5]), trace([1.5])])
    add_rollouts(other, prompt, ["c"], tokens=[trace([0.5])])
    assert RolloutTokens.objects.count() == 3
    job.delete()
    assert list(RolloutTokens.objects.values_list("job_id", flat=True)) == [other.pk]
    assert not Rollout.objects.filter(job_id=job.pk).exists()


# ---- ingest ---------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_our_jsonl_lands_its_token_traces_and_names_a_bad_one(dataset, tmp_path):
    good = {"prompt": "What is 1 + 1?", "completion": solved("2"),
            "tokens": {"ids": [5, 9, 6], "logprobs": [-0.25, -3.5, -0.01], "entropy": [0.5, 2.25, 0.0],
                       "text": ["<think>", "2", "</think>"]}}
    path = write_jsonl(tmp_path / "run.jsonl", [good, {"prompt": "What is 2 + 2?", "completion": solved("4")}])
    job = Job.objects.create(kind="ingest_rollouts", status=Job.Status.RUNNING, params={})
    result = ingest_file(path, "jsonl", dataset=dataset, ctx=JobContext(job))
    assert result.landed == 2
    stored = RolloutTokens.objects.get(rollout__job=job)
    traced = stored.trace()
    assert traced.ids.tolist() == [5, 9, 6] and traced.entropy_kind == "source"
    assert close(traced.logprobs, [-0.25, -3.5, -0.01]) and close(traced.entropy, [0.5, 2.25, 0.0])
    assert traced.pieces == {5: b"<think>", 9: b"2", 6: b"</think>"}
    assert stored.rollout.metadata == {}  # a field of ours, not metadata

    bad = {**good, "tokens": {"ids": [1, 2], "logprobs": [-0.1, 0.7]}}
    path = write_jsonl(tmp_path / "bad.jsonl", [bad])
    job = Job.objects.create(kind="ingest_rollouts", status=Job.Status.RUNNING, params={})
    from apps.rollouts.ingest import IngestValidationError

    with pytest.raises(IngestValidationError) as refused:
        ingest_file(path, "jsonl", dataset=dataset, ctx=JobContext(job), force=True)
    assert "field 'tokens.logprobs[1]': expected a number ≤ 0" in str(refused.value.errors)


# ---- the browser's filters and sorts ---------------------------------------------------------------

@pytest.fixture
def traced_run(dataset):
    job = Job.objects.create(kind="generate", status="succeeded")
    prompt = add_prompt(dataset, "What is 2 + 2?", "4")
    traces = [trace([0.1, 0.2]), trace([0.3, 3.0], logprobs=[-0.1, -7.0]), trace([1.5, 0.4], logprobs=[-2.0, -2.0])]
    rollouts = add_rollouts(job, prompt, ["calm", "garbled", "unsure"], tokens=traces)
    add_rollouts(job, prompt, ["no trace"])
    return job, {r.completion: r.pk for r in rollouts}


def browse(**params):
    form = RolloutFilterForm(params)
    assert form.is_valid(), form.errors
    return [r.completion for r in form.page(None).items]


@pytest.mark.django_db
def test_the_browser_filters_and_sorts_by_the_token_summaries(traced_run):
    job, _ = traced_run
    assert browse(job=job.pk, entropy_min=1.0) == ["unsure", "garbled"]
    assert browse(job=job.pk, entropy_min=1.0, entropy_max=2.0) == ["unsure"]
    assert browse(entropy_min=2.5) == ["garbled"]  # without a job too
    assert browse(job=job.pk, min_logprob_max=-5) == ["garbled"]
    assert browse(job=job.pk, mean_logprob_max=-1.5) == ["unsure", "garbled"]  # newest first
    assert browse(job=job.pk, sort="max_entropy") == ["garbled", "unsure", "calm"]  # no trace: not in the order
    assert browse(job=job.pk, sort="min_logprob_asc") == ["garbled", "unsure", "calm"]
    assert browse(job=job.pk, sort="mean_logprob_asc") == ["garbled", "unsure", "calm"]
    assert len(browse(job=job.pk)) == 4  # no token filter: every rollout, traced or not
    form = RolloutFilterForm({"entropy_min": "3", "entropy_max": "1"})
    assert not form.is_valid() and "entropy_max" in form.errors


@pytest.mark.django_db
def test_keyset_pages_follow_the_entropy_sort(dataset):
    job = Job.objects.create(kind="generate")
    prompt = add_prompt(dataset, "What is 2 + 2?", "4")
    entropies = [0.5, 2.0, 0.5, 1.0, 2.0]
    add_rollouts(job, prompt, [f"r{i}" for i in range(5)], tokens=[trace([e]) for e in entropies])
    form = RolloutFilterForm({"job": job.pk, "sort": "max_entropy"})
    assert form.is_valid()
    seen, after = [], None
    while True:
        page = form.page(after, per_page=2)
        seen += [r.completion for r in page.items]
        if not page.next_after:
            break
        after = page.next_after
    assert seen == ["r4", "r1", "r3", "r2", "r0"]


@pytest.mark.django_db
def test_the_api_lists_rollouts_by_max_entropy(traced_run, client, users):
    from apps.api.tokens import issue_token

    job, _ = traced_run
    _, secret = issue_token(users["viewer"], "lens")
    response = client.get(f"/api/rollouts?job={job.pk}&entropy_min=1&sort=max_entropy",
                          headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200, response.content
    assert [item["completion"] for item in response.json()["items"]] == ["garbled", "unsure"]


# ---- drawing ------------------------------------------------------------------------------------------

def test_tokens_are_escaped_and_whitespace_and_broken_bytes_shown_readably():
    from django.utils.html import json_script

    pieces = {0: b"<script>", 1: b"alert(1)", 2: b"</script>", 3: b"\n", 4: b" x", 5: b"\xe4", 6: b"\t\x00",
              7: '"é"'.encode()}
    trace = TokenTrace(ids=list(range(8)), logprobs=[-0.1] * 8, entropy=[0.0, 0.3, 0.6, 1.2, 2.0, 3.0, 0.0, 0.0],
                       top_ids=[[i, 7] for i in range(8)], top_logprobs=[[-0.1, -np.inf]] * 8, pieces=pieces)
    drawing = draw(trace, 0, 8)
    html = str(drawing.html)
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;/script&gt;" in html
    assert "↵\n" in html and "\\xe4" in html and "⇥\t␀" in html and "&quot;é&quot;" in html
    assert html.count('<span class="t ') == 8
    assert 'class="t p1 e0"' in html and 'class="t p1 e9"' in html  # p 0.905; entropy 3.0: the darkest bucket
    assert shown_piece(b" x") == " x" and piece_label(b" x") == "␣x" and piece_label(b"\n") == "↵"
    # The hover's data: labels as text, -inf (no such alternative) as null; in the page, no tag survives.
    assert drawing.data["labels"][0] == "<script>" and drawing.data["tlp"][0] == [-0.1, None]
    embedded = json_script(drawing.data, "token-data")
    assert "<script>alert" not in embedded and "\\u003Cscript\\u003E" in embedded


@pytest.mark.django_db
def test_the_lens_lists_the_highest_entropy_tokens_with_context(dataset):
    job = Job.objects.create(kind="generate")
    prompt = add_prompt(dataset, "What is 2 + 2?", "4")
    words = ["So", " the", " answer", " is", " 4"]
    entropies = [0.1, 0.2, 0.3, 2.5, 0.4]
    [rollout] = add_rollouts(job, prompt, ["".join(words)], tokens=[TokenTrace(
        ids=list(range(5)), logprobs=[-0.1] * 5, entropy=entropies,
        pieces={i: w.encode() for i, w in enumerate(words)}, entropy_kind="sampling")])
    shown = lens(rollout.tokens)
    assert (shown.n_tokens, shown.drawn, shown.has_entropy) == (5, 5, True)
    first = shown.unsure[0]
    assert (first.index, first.label, first.before, first.after) == (3, "␣is", "So the answer", " 4")
    assert 'id="t3"' in str(shown.drawing.html)  # the list links to the token in the drawing


def test_first_divergence_compares_ids_or_the_bytes_of_server_named_tokens():
    a = TokenTrace(ids=[1, 2, 3], logprobs=[0, 0, 0], pieces={1: b"a", 2: b"b", 3: b"c"})
    b = TokenTrace(ids=[1, 2, 4], logprobs=[0, 0, 0], pieces={1: b"a", 2: b"b", 4: b"d"})
    assert first_divergence([a, b]) == 2 and first_divergence([a, a]) == 3
    # Two server traces number their tokens on their own: the bytes decide.
    c = TokenTrace(ids=[0, 1], logprobs=[0, 0], pieces={0: b"x", 1: b"y"}, vocab_ids=False)
    d = TokenTrace(ids=[1, 0], logprobs=[0, 0], pieces={1: b"x", 0: b"z"}, vocab_ids=False)
    assert first_divergence([c, d]) == 1


@pytest.mark.django_db
def test_entropy_by_step_gives_each_steps_distribution_over_its_rollouts(dataset):
    from apps.rollouts.tokens import entropy_by_step

    job = Job.objects.create(kind="grpo")
    prompt = add_prompt(dataset, "What is 2 + 2?", "4")
    per_step = {1: [[0.1, 0.3], [0.5, 0.5], [1.0, 2.0], [0.0, 0.2]], 3: [[2.0, 2.0], [0.25, 0.75]]}
    for step, entropies in per_step.items():
        add_rollouts(job, prompt, [f"s{step}r{i}" for i in range(len(entropies))], step=step,
                     tokens=[trace(e) for e in entropies])
    add_rollouts(job, prompt, ["untraced"], step=2)
    shown = entropy_by_step(job.pk)
    assert shown["steps"] == [1, 3] and shown["rollouts"] == [4, 2]
    for k, entropies in enumerate(per_step.values()):
        stored = [np.asarray(e, np.float16).astype(np.float32) for e in entropies]  # as the summary reads them
        means, maxes = [float(np.mean(e)) for e in stored], [float(np.max(e)) for e in stored]
        for name, q in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9)):
            assert math.isclose(shown["mean_entropy"][name][k], float(np.quantile(means, q)), rel_tol=1e-6)
            assert math.isclose(shown["max_entropy"][name][k], float(np.quantile(maxes, q)), rel_tol=1e-6)
    assert entropy_by_step(Job.objects.create(kind="grpo").pk)["steps"] == []

    from apps.training.dashboard import dashboard_data  # drawn on the run's dashboard, by step

    drawn = dashboard_data(job)
    median = {s["key"]: s["values"] for s in drawn["series"]}["token_entropy/p50"]
    assert dict(zip(drawn["x"]["values"], median, strict=True)) == {
        1: round(shown["mean_entropy"]["p50"][0], 6), 2: None, 3: round(shown["mean_entropy"]["p50"][1], 6)}
    assert "token_entropy" in {chart["id"] for chart in drawn["charts"]}

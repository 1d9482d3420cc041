"""Rollout ingest: our JSONL, TRL's completions parquet and verl's rollout dumps mapped field by field;
bad records named by line and field with nothing landed (or, with partial, the good ones landed);
a retried job that writes nothing twice; the upload page through a real worker; the command line."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.urls import reverse

from apps.core.models import AuditEvent
from apps.datasets.models import Dataset, ModelVersion, Prompt
from apps.jobs import launching
from apps.jobs.models import Job
from apps.jobs.runner import JobContext, execute
from apps.rollouts.ingest import (
    IngestFileError,
    IngestValidationError,
    detect_ingest_format,
    extract_question,
    ingest_file,
    template_affixes,
)
from apps.rollouts.models import Rollout
from tests.conftest import wait_for_job, write_jsonl
from tests.rollout_factory import add_prompt, solved
from workers.generation.templates import R1_ZERO

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


def ingest(path, fmt, dataset, user=None, **options):
    """The ingest_rollouts job's body on a job of its own, run here without a worker (the runner's claim,
    heartbeat and finish are tested through the worker below and in tests/jobs)."""
    job = Job.objects.create(kind="ingest_rollouts", created_by=user, status=Job.Status.RUNNING,
                             params={"dataset": dataset.pk, "path": str(path), "format": fmt, **options})
    return ingest_file(path, fmt, dataset=dataset, ctx=JobContext(job), **options)

def ours(i=0, **fields):
    return {"prompt": f"What is {i} + 1?", "completion": solved(str(i + 1), f"{i} plus one is {i + 1}."), **fields}


# ---- each format maps its real fields ---------------------------------------------------


def test_our_jsonl_maps_every_field(dataset, tmp_path, users):
    existing = add_prompt(dataset, "What is 6 * 7?", "42")
    full = {
        "prompt": "What is 6 * 7?", "reference_answer": "42",
        "completion": "<think>6 * 7 = 42. Wait, let me re-check: 7 * 6 = 42.</think> <answer>42</answer>",
        "rewards": {"accuracy": 1, "format": {"value": 0.5, "weight": 0.2, "details": {"tags": "ok"}}},
        "step": 3, "group": 2, "sample_index": 5, "advantage": 0.75, "finish_reason": "length",
        "prompt_text": "User: What is 6 * 7? Assistant: <think>", "completion_tokens": 31, "prompt_tokens": 12,
        "model": "qwen-7b-grpo", "language_consistency": 0.98,
    }
    explicit = {"prompt": "Name a prime.", "completion": "2", "reasoning": "The smallest prime.",
                "rewards": {"accuracy": 0.0}, "total_reward": 9.5, "is_correct": True, "format_ok": False}
    path = write_jsonl(tmp_path / "rollouts.jsonl", [full, explicit, {"prompt": "Name a prime.", "completion": "3"}])

    result = ingest(path, "jsonl", dataset, user=users["admin"], model_name="fallback-model")

    assert (result.landed, result.records, result.duplicates, result.rejected_count) == (3, 3, 0, 0)
    assert result.prompts_created == 1  # "What is 6 * 7?" with answer 42 was matched by its content hash
    a = Rollout.objects.get(prompt=existing)
    assert (a.step, a.group, a.sample_index, a.finish_reason) == (3, 2, 5, "length")
    assert (a.advantage, a.completion_tokens, a.prompt_tokens, a.language_consistency) == (0.75, 31, 12, 0.98)
    assert a.prompt_text == "User: What is 6 * 7? Assistant: <think>"
    assert a.rewards == {"accuracy": {"value": 1.0, "weight": 1.0, "details": {}},
                         "format": {"value": 0.5, "weight": 0.2, "details": {"tags": "ok"}}}
    assert a.total_reward == pytest.approx(1.1)  # the weighted sum when no total is given
    assert (a.is_correct, a.format_ok) == (True, True)  # from the rewards named accuracy and format
    assert (a.answer, a.has_reflection, a.length_chars) == ("42", True, len(full["completion"]))
    assert a.reasoning.startswith("6 * 7 = 42.")
    assert a.model_version.name == "qwen-7b-grpo"

    b, c = Rollout.objects.filter(prompt__question="Name a prime.").order_by("sample_index")
    assert (b.reasoning, b.total_reward, b.is_correct, b.format_ok) == ("The smallest prime.", 9.5, True, False)
    assert (b.step, b.group, b.sample_index, c.sample_index) == (0, 0, 0, 1)  # indexes given in file order
    assert (c.is_correct, c.total_reward, c.finish_reason, c.prompt_text) == (None, None, "stop", "Name a prime.")
    assert b.model_version.name == "fallback-model"
    assert b.prompt.reference_answer == "" and b.prompt.metadata == {"source": "ingest:jsonl"}

    job = Job.objects.get(pk=result.job_id)
    assert (job.kind, job.created_by, job.params["format"]) == ("ingest_rollouts", users["admin"], "jsonl")
    assert set(Rollout.objects.values_list("job", flat=True)) == {job.pk}
    event = AuditEvent.objects.get(action="rollouts.ingest")
    assert (event.actor, event.via, event.target_id) == (users["admin"], "job", str(job.pk))
    assert event.details == {"landed": 3, "rejected_count": 0, "duplicates": 0, "format": "jsonl",
                                  "file": "rollouts.jsonl", "dataset": dataset.name}


def write_trl_log(path: Path, step: int, prompts, completions, rewards: dict, extra: dict, advantages):
    """The parquet file exactly as TRL 1.16's GRPOTrainer.log writes it (log_completions=True)."""
    table = {
        "step": [step] * len(prompts),
        "prompt": prompts,
        "completion": completions,
        **rewards,
        **extra,
        "advantage": advantages,
    }
    pd.DataFrame(table).to_parquet(path)
    return path


def test_a_trl_log_with_chat_prompts_maps_its_columns(dataset, tmp_path):
    known = add_prompt(dataset, "What is 2 + 2?", "4")  # imported earlier, with its answer
    chat = [{"role": "system", "content": "Think step by step."}, {"role": "user", "content": "What is 2 + 2?"}]
    other = [{"role": "user", "content": "What is 3 + 3?"}]
    prompts = [chat, chat, other, other]
    texts = [solved("4", "two and two"), solved("5", "two and three"), solved("6", "three and three"), "six"]
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    path = write_trl_log(
        tmp_path / "completions_00012.parquet", 12, prompts, completions,
        rewards={"accuracy_reward": [1.0, 0.0, 1.0, 0.0], "format_reward": [1.0, 1.0, 1.0, float("nan")]},
        extra={"judge_note": ["fine", "off by one", "fine", "no tags"]},
        advantages=[0.7, -0.7, 0.9, -0.9],
    )
    assert detect_ingest_format(path) == "trl"

    result = ingest(path, "trl", dataset, model_name="qwen-0.5b", reward_columns="accuracy_reward, format_reward")

    assert (result.landed, result.prompts_created) == (4, 1)
    assert result.reward_columns == {"accuracy_reward": 1.0, "format_reward": 1.0}
    first, second = Rollout.objects.filter(prompt=known).order_by("sample_index")
    assert (first.step, first.group, first.sample_index, second.sample_index) == (12, 0, 0, 1)
    assert first.rewards == {"accuracy_reward": {"value": 1.0, "weight": 1.0, "details": {}},
                             "format_reward": {"value": 1.0, "weight": 1.0, "details": {}}}
    assert (first.total_reward, first.advantage, first.is_correct, first.format_ok) == (2.0, 0.7, True, True)
    assert (second.is_correct, first.answer) == (False, "4")
    assert first.prompt_text == "system: Think step by step.\n\nuser: What is 2 + 2?"
    assert (first.metadata, second.metadata) == ({"judge_note": "fine"}, {"judge_note": "off by one"})
    six = Rollout.objects.get(prompt__question="What is 3 + 3?", completion="six")
    # NaN: the format reward did not apply to this sample; it is left out, not stored as a number
    assert (six.group, six.rewards, six.total_reward, six.format_ok) == (
        1, {"accuracy_reward": {"value": 0.0, "weight": 1.0, "details": {}}}, 0.0, None)
    assert six.model_version.name == "qwen-0.5b"


def test_a_trl_log_with_string_prompts_finds_the_question_in_the_template(dataset, tmp_path):
    rendered = R1_ZERO.format(question="What is 9 - 4?")
    path = write_trl_log(tmp_path / "completions_00001.parquet", 1, [rendered], [solved("5")],
                         rewards={"accuracy": [1.0]}, extra={}, advantages=[0.0])
    ingest(path, "trl", dataset, reward_columns="accuracy")
    rollout = Rollout.objects.get()
    assert (rollout.prompt.question, rollout.prompt_text, rollout.completion) == ("What is 9 - 4?", rendered,
                                                                                  solved("5"))


def verl_record(question, output, step, score, acc, gts="4"):
    """One line as verl's _dump_generations writes it: the input decoded with skip_special_tokens=True
    (Qwen's ChatML markers are special tokens, so only the role names stay), then the reward's extra info."""
    return {
        "input": f"system\nYou are a helpful assistant.\nuser\n{question}\nassistant\n",
        "output": output, "gts": gts, "score": score, "step": step,
        "acc": acc, "pred": output[-1:],
    }


def test_a_verl_dump_folder_maps_its_fields(dataset, tmp_path):
    folder = tmp_path / "rollout_data"
    folder.mkdir()
    q = "Tom has 2 apples and buys 2 more. How many now?"
    write_jsonl(folder / "1.jsonl", [verl_record(q, "2 + 2 = 4", 1, 1.0, True),
                                     verl_record(q, "2 + 2 = 5", 1, -1.0, False)])
    write_jsonl(folder / "10.jsonl", [verl_record(q, "4", 10, 1.0, True),
                                      verl_record("What is 1 + 1?", "2", 10, 1.0, True, gts="2")])
    write_jsonl(folder / "2.jsonl", [verl_record(q, "it is 4", 2, 1.0, True)])
    assert detect_ingest_format(folder) == "verl" and detect_ingest_format(folder / "1.jsonl") == "verl"

    result = ingest(folder, "verl", dataset)

    assert (result.landed, result.prompts_created) == (5, 2)
    apples = Prompt.objects.get(dataset=dataset, question=q)
    assert apples.reference_answer == "4"
    right, wrong = Rollout.objects.filter(prompt=apples, step=1).order_by("sample_index")
    assert right.prompt_text == f"system\nYou are a helpful assistant.\nuser\n{q}\nassistant\n"
    assert (right.completion, right.total_reward, right.is_correct) == ("2 + 2 = 4", 1.0, True)
    assert (wrong.sample_index, wrong.total_reward, wrong.is_correct) == (1, -1.0, False)
    assert wrong.rewards == {"score": {"value": -1.0, "weight": 1.0, "details": {}}}
    assert wrong.metadata == {"acc": False, "pred": "5"}  # the reward function's extra info, filterable
    assert sorted(Rollout.objects.filter(prompt=apples).values_list("step", flat=True)) == [1, 1, 2, 10]


GSM8K_INSTRUCTION = 'Let\'s think step by step and output the final answer after "####".'


def verl_gsm8k_record(question, output, score, step=1):
    """As verl's stock GSM8K setup dumps a sample: its data preparation appended the instruction to the
    question, and verl.utils.reward_score.gsm8k returned a float (1.0 right, 0.0 wrong) with no extra info."""
    return {"input": f"user\n{question} {GSM8K_INSTRUCTION}\nassistant\n", "output": output, "gts": "72",
            "score": score, "step": step}


def test_verl_gsm8k_rollouts_find_their_prompts_and_are_right_by_score(dataset, tmp_path):
    stored = add_prompt(dataset, "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
                                 "clips in May. How many clips did Natalia sell altogether in April and May?", "72")
    path = write_jsonl(tmp_path / "1.jsonl", [verl_gsm8k_record(stored.question, "48 + 24 = 72\n#### 72", 1.0),
                                               verl_gsm8k_record(stored.question, "#### 96", 0.0)])
    result = ingest(path, "verl", dataset)
    assert (result.landed, result.prompts_created) == (2, 0)  # matched, not a new prompt with the instruction in it
    right, wrong = Rollout.objects.filter(prompt=stored).order_by("sample_index")
    assert (right.is_correct, right.total_reward, wrong.is_correct, wrong.total_reward) == (True, 1.0, False, 0.0)


def test_verl_correctness_rule_and_instruction_are_the_users_to_set(dataset, tmp_path):
    """A scorer of its own (0.5 for a right answer) and a data preparation of its own."""
    stored = add_prompt(dataset, "What is 36 * 2?", "72")
    records = [{"input": f"user\n{stored.question}\nAnswer with a number.\nassistant\n", "output": "72", "gts": "72",
                "score": score, "step": 3} for score in (0.5, 0.1)]
    path = write_jsonl(tmp_path / "3.jsonl", records)
    ingest(path, "verl", dataset, instruction="Answer with a number.", correct_score=0.5)
    assert list(Rollout.objects.filter(prompt=stored).order_by("sample_index").values_list("is_correct", flat=True)) \
        == [True, False]


def test_a_verl_line_with_bad_fields_names_them(dataset, tmp_path):
    path = write_jsonl(tmp_path / "3.jsonl", [{"input": "user\nQ\nassistant\n", "output": 5, "step": -1}])
    with pytest.raises(IngestValidationError) as exc:
        ingest(path, "verl", dataset)
    message = str(exc.value)
    for fragment in ["line 1: field 'score': missing", "line 1: field 'output': expected text, found int",
                     "line 1: field 'step': -1 is out of range"]:
        assert fragment in message


def test_the_question_is_found_in_rendered_prompts():
    affixes = template_affixes()
    q = "What is 2 + 2?"
    for rendered in [
        f"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n",
        f"<|start_header_id|>user<|end_header_id|>\n\n{q}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        f"<｜begin▁of▁sentence｜><｜User｜>{q}<｜Assistant｜><think>\n",
        f"system\nBe brief.\nuser\n{q}\nassistant\n",  # ChatML with its special tokens decoded away
        f"user\n\n{q}assistant\n\n",  # Llama 3 the same way
        R1_ZERO.format(question=q),
        q,
    ]:
        assert extract_question(rendered, affixes) == q, rendered


def test_the_format_is_detected_from_the_name_and_first_record(tmp_path):
    assert detect_ingest_format(write_jsonl(tmp_path / "a.jsonl", [ours()])) == "jsonl"
    assert detect_ingest_format(write_jsonl(tmp_path / "b.jsonl", [verl_record("q", "a", 1, 1.0, True)])) == "verl"
    assert detect_ingest_format(write_jsonl(tmp_path / "c.txt", ["{broken"])) == "jsonl"


# ---- hostile and bad input -------------------------------------------------------------


def test_a_hostile_completion_is_stored_verbatim(dataset, tmp_path):
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)> <think>&lt;b&gt;</think> <answer>1</answer>'
    path = write_jsonl(tmp_path / "h.jsonl", [ours(completion=hostile, prompt="<b>bold</b> question?")])
    ingest(path, "jsonl", dataset)
    rollout = Rollout.objects.get()
    assert (rollout.completion, rollout.prompt.question) == (hostile, "<b>bold</b> question?")


def write_many(path: Path, n: int, bad_at: int | None = None) -> Path:
    """n lines of our JSONL (1,000 prompts, several samples each), written as one string; line bad_at has a bad step."""
    lines = [
        f'{{"prompt": "What is {i % 1000} + 1?", '
        f'"completion": "<think>adding</think> <answer>{i % 1000 + 1}</answer>", '
        f'"rewards": {{"accuracy": 1.0}}, "step": {i // 50_000}}}'
        for i in range(n)
    ]
    if bad_at is not None:
        lines[bad_at - 1] = lines[bad_at - 1].replace('"step": 1', '"step": "one"')
    path.write_text("\n".join(lines) + "\n")
    return path


def test_100k_lines_with_one_bad_line_land_nothing_and_name_it(dataset, tmp_path):
    path = write_many(tmp_path / "big.jsonl", 100_000, bad_at=50_001)
    with pytest.raises(IngestValidationError) as exc:
        ingest(path, "jsonl", dataset)
    assert exc.value.error_count == 1
    assert exc.value.errors == ["line 50001: field 'step': expected a non-negative integer, found str"]
    assert "1 invalid record(s); nothing was ingested" in str(exc.value)
    assert (Rollout.objects.count(), Prompt.objects.count()) == (0, 0)


def test_100k_lines_with_one_bad_line_and_partial_land_the_rest(dataset, tmp_path):
    path = write_many(tmp_path / "big.jsonl", 100_000, bad_at=50_001)
    result = ingest(path, "jsonl", dataset, partial=True)
    assert (result.landed, result.records, result.rejected_count) == (99_999, 100_000, 1)
    assert result.rejected == [{"line": "line 50001",
                                "errors": ["field 'step': expected a non-negative integer, found str"]}]
    assert Rollout.objects.count() == 99_999 and Prompt.objects.filter(dataset=dataset).count() == 1000
    # 100 samples of each prompt, 50 at step 0 and 50 at step 1; prompt 0 lost one at step 1 (the bad line)
    assert Rollout.objects.filter(prompt__question="What is 0 + 1?", step=1).count() == 49
    assert Rollout.objects.filter(prompt__question="What is 1 + 1?", step=1).count() == 50
    assert result.job_summary()["rejected"] == {  # what the job page shows
        "line 50001": "field 'step': expected a non-negative integer, found str"}


def test_bad_lines_are_each_named_with_their_field(dataset, tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [
        ours(0),
        "{broken",
        "[1, 2]",
        ours(1, step=1.5, advantage="high", is_correct="yes"),
        ours(2, finish_reason="timeout"),
        ours(3, rewards={"accuracy": True, "format": {"weight": 1}, "len": float("inf")}),
        ours(4, rewards=[1.0]),
        {"completion": "no prompt"},
        {"prompt": "no completion", "completion": None},
        ours(5, prompt=[{"role": "system", "content": "no user"}]),
        ours(6, sample_index=2**40, model=["x"]),
    ])
    with pytest.raises(IngestValidationError) as exc:
        ingest(path, "jsonl", dataset)
    message = str(exc.value)
    assert "10 invalid record(s); nothing was ingested" in message
    for fragment in [
        "line 2: not valid JSON",
        "line 3: expected a JSON object, found list",
        "line 4: field 'step': expected a non-negative integer, found float",
        "line 4: field 'advantage': expected a number, found str",
        "line 4: field 'is_correct': expected true or false, found str",
        "line 5: field 'finish_reason': 'timeout' is not one of stop, length, error",
        "line 6: field 'rewards.accuracy': expected a number, found bool",
        "line 6: field 'rewards.format': missing 'value'",
        "line 6: field 'rewards.len': inf is not a finite number",
        "line 7: field 'rewards': expected an object of reward components, found list",
        "line 8: field 'prompt': missing or empty",
        "line 9: field 'completion': missing",
        "line 10: field 'prompt': a chat prompt needs a user message with text content",
        f"line 11: field 'sample_index': {2**40} is out of range",
        "line 11: field 'model': expected text, found list",
    ]:
        assert fragment in message, fragment
    assert (Rollout.objects.count(), Prompt.objects.count()) == (0, 0)


def test_a_2m_character_completion_is_refused_clearly(dataset, tmp_path):
    path = write_jsonl(tmp_path / "long.jsonl", [ours(0), ours(1, completion="x" * 2_000_000)])
    with pytest.raises(IngestValidationError) as exc:
        ingest(path, "jsonl", dataset)
    assert "line 2: field 'completion': 2,000,000 characters; the limit is 1,000,000" in str(exc.value)
    assert Rollout.objects.count() == 0


@pytest.mark.parametrize("content, fmt, fragment", [
    (b'{"prompt": "ok", "completion": "1"}\n{"prompt": "caf\xe9", "completion": "2"}\n', "jsonl",
     "line 2: not valid UTF-8 (byte 0xe9"),
    (b"", "jsonl", "holds no records"),
    (b"\n\n  \n", "verl", "holds no records"),
    (b"PAR1 this is not parquet", "trl", "not a readable Parquet file"),
])
def test_unreadable_files_are_refused_clearly(dataset, tmp_path, content, fmt, fragment):
    path = tmp_path / ("file.parquet" if fmt == "trl" else "file.jsonl")
    path.write_bytes(content)
    with pytest.raises(IngestFileError) as exc:
        ingest(path, fmt, dataset, partial=True)
    assert fragment in str(exc.value) and "nothing was ingested" in str(exc.value)
    assert (Rollout.objects.count(), Prompt.objects.count()) == (0, 0)


@pytest.mark.django_db(transaction=True)
def test_the_sources_label_survives_scoring_and_the_browser_finds_where_they_disagree(dataset, tmp_path, client,
                                                                                    users):
    """An author's label kept apart from ours: the fastest way to find a reward bug (theirs or ours)."""
    from apps.rollouts.models import RewardRecipe

    add_prompt(dataset, "What is 2 + 2?", "4")
    records = [{"prompt": "What is 2 + 2?", "completion": solved("4", "two and two"), "is_correct": False,
                "difficulty": "hard"},  # mislabelled by its author
               {"prompt": "What is 2 + 2?", "completion": solved("5", "two and three"), "is_correct": False,
                "difficulty": "easy"}]
    result = ingest(write_jsonl(tmp_path / "labelled.jsonl", records), "jsonl", dataset)
    scoring = launching.launch("score_rollouts", {"recipe": RewardRecipe.latest("r1-zero-math").pk,
                                                  "job": result.job_id, "processes": 1}, enqueue=False)
    assert execute(scoring.pk, worker="test") == "succeeded"

    right, wrong = Rollout.objects.order_by("sample_index")
    assert (right.is_correct, right.source_correct, wrong.is_correct, wrong.source_correct) == (True, False, False,
                                                                                                False)
    assert (right.metadata, wrong.metadata) == ({"difficulty": "hard"}, {"difficulty": "easy"})
    client.force_login(users["viewer"])

    def found(**filters):
        page = client.get(reverse("rollout_list"), filters)
        assert page.status_code == 200, page.content
        return [r.pk for r in page.context["page"].items]

    assert found(verdicts="theirs_wrong") == found(verdicts="disagree") == [right.pk]
    assert found(verdicts="theirs_right") == []
    assert found(meta_key="difficulty", meta_value="hard") == [right.pk]
    assert sorted(found(meta_key="difficulty")) == sorted([right.pk, wrong.pk])
    assert found(meta_key="no_such_key") == []
    assert client.get(reverse("rollout_list"), {"meta_key": "a__contains"}).status_code == 200  # a key, not a lookup
    assert client.get(reverse("rollout_list"), {"meta_value": "hard"}).status_code == 400  # a value needs its key
    assert "disagrees with ours" in client.get(reverse("rollout_detail", args=[right.pk])).content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_same_source_ingested_again_lands_nothing_and_says_so(dataset, tmp_path, capsys):
    path = write_jsonl(tmp_path / "run.jsonl", [ours(i) for i in range(3)])
    call_command("ingest_rollouts", dataset.name, str(path))
    first = json.loads(capsys.readouterr().out)
    renamed = tmp_path / "same-run-renamed.jsonl"
    renamed.write_bytes(path.read_bytes())
    call_command("ingest_rollouts", dataset.name, str(renamed))
    again = json.loads(capsys.readouterr().out)
    assert (first["landed"], again["landed"], again["already_ingested_by"]) == (3, 0, first["job"])
    assert Rollout.objects.count() == 3
    assert "already landed this source" in Job.objects.get(pk=again["job"]).log
    call_command("ingest_rollouts", dataset.name, str(renamed), "--force")
    forced = json.loads(capsys.readouterr().out)
    assert (forced["landed"], forced["already_ingested_by"]) == (3, None) and Rollout.objects.count() == 6


def test_repeated_samples_in_a_file_are_counted_not_doubled(dataset, tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [ours(0, sample_index=0), ours(0, sample_index=0), ours(0), ours(1)])
    result = ingest(path, "jsonl", dataset)
    assert (result.landed, result.duplicates) == (3, 1)
    assert sorted(Rollout.objects.values_list("sample_index", flat=True)) == [0, 0, 1]


# ---- the job: retried after a crash, launched from the upload page ---------------------


@pytest.mark.django_db(transaction=True)  # the job's heartbeat thread has its own connection
def test_a_job_retried_after_its_worker_died_writes_nothing_twice(dataset, tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [ours(i % 7, step=i // 7) for i in range(70)])
    job = launching.launch("ingest_rollouts", {"dataset": dataset.pk, "path": str(path)}, enqueue=False)
    assert job.params["format"] == "jsonl"
    assert execute(job.pk, worker="test") == "succeeded"
    assert Rollout.objects.filter(job=job).count() == 70
    # The worker dies after its transaction committed but before the job was marked done: the reaper
    # fails the job (no heartbeat), and someone retries it.
    Job.objects.filter(pk=job.pk).update(status="running", heartbeat_at="2000-01-01T00:00:00Z", finished_at=None)
    assert Job.fail_stale() == [job.pk]
    job.refresh_from_db()
    assert job.requeue()  # what kinds.retry does, without handing the job to a worker: this test runs it
    assert execute(job.pk, worker="test") == "succeeded"
    job.refresh_from_db()
    assert (job.attempts, job.result["landed"], job.result["already_stored"]) == (2, 0, 70)
    assert Rollout.objects.filter(job=job).count() == 70 and Prompt.objects.count() == 7


@pytest.mark.django_db(transaction=True)
def test_a_cancelled_job_lands_nothing(dataset, tmp_path):
    path = write_many(tmp_path / "big.jsonl", 100_000)
    job = launching.launch("ingest_rollouts", {"dataset": dataset.pk, "path": str(path)}, enqueue=False)
    # Asked before it starts: the heartbeat passes the request on and the ingest stops at its next check.
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    assert execute(job.pk, worker="test") == "cancelled"
    assert (Rollout.objects.count(), Prompt.objects.count()) == (0, 0)


@pytest.mark.django_db(transaction=True)
def test_a_failed_job_says_which_line_and_lands_nothing(dataset, tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [ours(0), ours(1, finish_reason="oops")])
    job = launching.launch("ingest_rollouts", {"dataset": dataset.pk, "path": str(path)}, enqueue=False)
    assert execute(job.pk, worker="test") == "failed"
    job.refresh_from_db()
    assert "line 2: field 'finish_reason': 'oops' is not one of" in job.error
    assert "nothing was ingested" in job.error and Rollout.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_the_upload_page_launches_a_job_that_a_worker_runs(celery_worker, admin_client, dataset, users, tmp_path):
    # Half of them bring a reference answer and no verdict: the job page offers to score those.
    content = "".join(json.dumps(ours(i, **({"reference_answer": str(i + 1)} if i % 2 else {}))) + "\n"
                      for i in range(20)).encode()
    options = {"dataset": dataset.pk, "format": "", "partial": "on", "model_name": "external-model"}
    with override_settings(UPLOAD_DIR=tmp_path):
        preview = admin_client.post(reverse("rollout_ingest"), {"file": SimpleUploadedFile("run.jsonl", content),
                                                                **options})
        assert preview.status_code == 200 and "Ingest 20 records" in preview.content.decode()
        response = admin_client.post(reverse("rollout_ingest"), {"upload": preview.context["upload"],
                                                                 "action": "ingest", **options})
    job = Job.objects.get(kind="ingest_rollouts")
    assert response.status_code == 302 and response.url == reverse("job_detail", args=[job.pk])
    assert (job.params["format"], job.params["partial"], job.created_by) == ("jsonl", True, users["admin"])
    wait_for_job(job)
    assert job.status == "succeeded", job.error
    assert job.result["landed"] == 20 and Rollout.objects.filter(job=job).count() == 20
    assert set(Rollout.objects.values_list("model_version__name", flat=True)) == {"external-model"}
    event = AuditEvent.objects.get(action="rollouts.ingest")
    assert (event.actor, event.via) == (users["admin"], "job")
    assert (job.progress_done, job.progress_total) == (20, 20)  # records, not records × passes
    assert "stage" not in job.result  # a finished job is in no stage
    page = admin_client.get(reverse("job_detail", args=[job.pk])).content.decode()
    assert "landed" in page
    assert "10 of the landed rollouts have a reference answer but no correctness verdict" in page
    assert f'{reverse("job_new", args=["score_rollouts"])}?job={job.pk}' in page


def test_the_upload_page_refuses_viewers_and_reports_bad_uploads(admin_client, users, dataset):
    viewer = Client()
    viewer.force_login(users["viewer"])
    assert viewer.get(reverse("rollout_ingest")).status_code == 403
    assert viewer.post(reverse("rollout_ingest"), {"dataset": dataset.pk}).status_code == 403
    page = admin_client.get(reverse("rollout_ingest"), {"dataset": dataset.name})
    assert page.status_code == 200 and page.context["form"].initial["dataset"] == dataset
    missing = admin_client.post(reverse("rollout_ingest"), {"dataset": dataset.pk})
    assert missing.status_code == 400 and "file" in missing.context["form"].errors
    assert Job.objects.count() == 0


def test_the_job_parameters_are_checked(dataset, tmp_path):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as exc:
        launching.launch("ingest_rollouts", {"dataset": dataset.pk, "path": str(tmp_path / "nope.jsonl")})
    assert "is not a file or folder under an allowed import root" in exc.value.message_dict["path"][0]
    with pytest.raises(ValidationError) as exc:
        launching.launch("ingest_rollouts", {"dataset": dataset.pk, "path": str(tmp_path), "format": "csv"})
    assert "format" in exc.value.message_dict


# ---- the command line ------------------------------------------------------------------


def test_the_command_ingests_and_prints_the_result(dataset, tmp_path, capsys):
    path = write_jsonl(tmp_path / "c.jsonl", [ours(0), ours(1)])
    call_command("ingest_rollouts", dataset.name, str(path), "--model", "cli-model")
    out = json.loads(capsys.readouterr().out)
    assert (out["format"], out["landed"], out["rejected_count"]) == ("jsonl", 2, 0)
    job = Job.objects.get(pk=out["job"])
    assert (job.status, job.worker, job.attempts) == ("succeeded", "cli", 1)  # claimed and finished like any job
    assert AuditEvent.objects.get(action="job.launch", target_id=str(job.pk)).via == "cli"
    assert ModelVersion.objects.filter(name="cli-model").exists()
    bad = write_jsonl(tmp_path / "bad.jsonl", [ours(2), ours(3, step=-5)])
    with pytest.raises(CommandError, match="line 2: field 'step': -5 is out of range"):
        call_command("ingest_rollouts", dataset.name, str(bad))
    call_command("ingest_rollouts", dataset.name, str(bad), "--partial")
    out = json.loads(capsys.readouterr().out)
    assert (out["landed"], list(out["rejected"])) == (1, ["line 2"])
    with pytest.raises(CommandError, match="No dataset 'missing'"):
        call_command("ingest_rollouts", "missing", str(path))
    with pytest.raises(CommandError, match="line 2: field 'step'"):  # --create, then nothing lands
        call_command("ingest_rollouts", "made-for-nothing", str(bad), "--create")
    assert not Dataset.objects.filter(name="made-for-nothing").exists()  # the dataset it made went with it


def test_the_command_exits_1_on_bad_records(live_database_env, tmp_path):
    Dataset.objects.create(name="cli-set")
    bad = write_jsonl(tmp_path / "bad.jsonl", [ours(0), "{nope"])
    run = subprocess.run([sys.executable, "manage.py", "ingest_rollouts", "cli-set", str(bad)], cwd=ROOT, check=False,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "line 2: not valid JSON" in run.stderr and "nothing was ingested" in run.stderr

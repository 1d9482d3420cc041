"""TRL's own GRPOTrainer, run here on the tiny model with log_completions=True, and its output_dir
ingested: each row's total is TRL's weighted sum of its reward functions, and what a reward function
logged with log_extra (a number and a text) is metadata, never a reward."""

import math

import pandas as pd
import pytest

from apps.rollouts.ingest.readers import trl_reward_weights
from apps.rollouts.models import Rollout
from tests.rollouts.test_ingest import ingest
from workers.generation.tiny import build_tiny_model

pytestmark = pytest.mark.django_db

WEIGHTS = {"brevity": 2.0, "has_digit": 0.5}


def _texts(completions):
    return [c if isinstance(c, str) else c[0]["content"] for c in completions]


def brevity(completions, log_extra=None, **kwargs):
    texts = _texts(completions)
    log_extra("n_chars", [len(t) for t in texts])  # a numeric extra: once stored as a reward of weight 1
    log_extra("pred", [t[-3:] for t in texts])  # a text extra: once dropped
    return [-0.01 * len(t) for t in texts]


def has_digit(completions, **kwargs):
    return [1.0 if any(ch.isdigit() for ch in t) else 0.0 for t in _texts(completions)]


@pytest.fixture(scope="module")
def trl_run(tmp_path_factory):
    from datasets import Dataset as HFDataset
    from trl import GRPOConfig, GRPOTrainer

    root = tmp_path_factory.mktemp("trl-run")
    model = build_tiny_model(root / "tiny", sft_steps=0)
    prompts = HFDataset.from_list([{"prompt": f"What is {i} + {i}?"} for i in range(8)])
    args = GRPOConfig(
        output_dir=str(root / "run"), max_steps=3, per_device_train_batch_size=4, num_generations=4,
        max_completion_length=12, logging_steps=1, log_completions=True, save_steps=3, report_to="none",
        use_cpu=True, bf16=False, gradient_checkpointing=False, dataloader_pin_memory=False, disable_tqdm=True,
        reward_weights=list(WEIGHTS.values()), seed=0,
    )
    GRPOTrainer(model=str(model), reward_funcs=[brevity, has_digit], args=args, train_dataset=prompts).train()
    return root / "run"


def test_the_reward_functions_and_their_weights_are_read_from_the_run(trl_run):
    assert trl_reward_weights(trl_run) == WEIGHTS
    assert trl_reward_weights(trl_run / "completions") == WEIGHTS
    assert trl_reward_weights(next((trl_run / "completions").glob("*.parquet"))) == WEIGHTS


def test_trls_output_dir_lands_with_trls_totals_and_the_extras_as_metadata(trl_run, dataset):
    logged = pd.concat(pd.read_parquet(p) for p in sorted((trl_run / "completions").glob("*.parquet")))
    result = ingest(trl_run, "trl", dataset)  # the output_dir, as TRL's users know it

    assert result.landed == len(logged) == Rollout.objects.count()
    assert result.reward_columns == WEIGHTS
    stored = {(r.step, r.completion): r for r in Rollout.objects.all()}
    for row in logged.itertuples():
        rollout = stored[(row.step, row.completion)]
        expected = sum(w * getattr(row, name) for name, w in WEIGHTS.items() if not math.isnan(getattr(row, name)))
        assert rollout.total_reward == pytest.approx(expected, abs=1e-6)
        assert set(rollout.rewards) == set(WEIGHTS)
        assert {name: c["weight"] for name, c in rollout.rewards.items()} == WEIGHTS
        assert rollout.metadata == {"n_chars": row.n_chars, "pred": row.pred}
        assert rollout.advantage == pytest.approx(row.advantage)


def test_a_lone_log_file_without_its_run_needs_the_reward_columns_named(trl_run, dataset, tmp_path):
    from apps.rollouts.ingest import IngestFileError

    lone = tmp_path / "completions_00001.parquet"
    lone.write_bytes((trl_run / "completions" / "completions_00001.parquet").read_bytes())
    with pytest.raises(IngestFileError, match="name the reward columns.*brevity, has_digit, n_chars, pred"):
        ingest(lone, "trl", dataset)
    assert Rollout.objects.count() == 0
    named = ingest(lone, "trl", dataset, reward_columns="brevity=2, has_digit=0.5")
    assert named.landed > 0 and set(Rollout.objects.first().metadata) == {"n_chars", "pred"}


def test_the_preview_of_trls_output_dir_says_what_each_column_becomes(trl_run, tmp_path):
    from apps.rollouts.ingest import preview_source

    preview = preview_source(trl_run, "trl")
    roles = {c.column: c.becomes for c in preview.columns}
    assert roles == {"step": "step", "prompt": "the question (found in the rendered prompt) and prompt text",
                     "completion": "completion (a chat message's reasoning_content: reasoning)",
                     "brevity": "reward component ×2", "has_digit": "reward component ×0.5",
                     "n_chars": "metadata", "pred": "metadata", "advantage": "advantage"}
    assert preview.metadata_columns == ["n_chars", "pred"] and not preview.problems
    first = pd.read_parquet(sorted((trl_run / "completions").glob("*.parquet"))[0]).iloc[0]
    assert preview.samples[0]["total_reward"] == pytest.approx(2.0 * first.brevity + 0.5 * first.has_digit)
    assert preview.records == sum(len(pd.read_parquet(p)) for p in (trl_run / "completions").glob("*.parquet"))
    assert "only the last generation batch" in preview.notes[0]

    lone = tmp_path / "completions_00001.parquet"
    lone.write_bytes((trl_run / "completions" / "completions_00001.parquet").read_bytes())
    unknown = preview_source(lone, "trl")
    assert "name the reward columns" in unknown.problems[0] and not unknown.samples
    assert {c.column for c in unknown.columns} >= {"brevity", "has_digit", "n_chars", "pred"}
    typo = preview_source(lone, "trl", reward_columns="brevity=2, has_digits=0.5")
    assert typo.problems[0] == "reward columns not in the log: has_digits"

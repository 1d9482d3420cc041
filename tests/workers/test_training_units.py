"""The training pieces without a worker: data formats, the event channel, checkpoints, accelerate configs."""

import pytest
from accelerate.commands.config.config_args import load_config_from_file

from apps.training.training import ACCELERATE_CONFIG_DIR
from workers.training.events import EventReader, EventWriter, archive_events, event_file
from workers.training.formats import COLD_START_SEPARATOR, FormatError, sft_row
from workers.training.train import CHECKPOINT_MARKER, latest_checkpoint

CHAT = [{"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": "<think> 2 + 3 = 5 </think> <answer> 5 </answer>"}]


def test_cold_start_rewrites_the_answer_into_reasoning_and_summary():
    row = sft_row(CHAT, "cold_start")
    assert row["messages"][0] == CHAT[0]
    assert row["messages"][1]["content"] == f"{COLD_START_SEPARATOR}2 + 3 = 5{COLD_START_SEPARATOR}5"


def test_a_separate_reasoning_field_is_the_reasoning():
    turn = {"role": "assistant", "content": "The answer is 5.", "reasoning_content": "2 plus 3 is 5"}
    row = sft_row([CHAT[0], turn], "r1_zero", template="Q: {question} A:")
    assert row == {"prompt": "Q: What is 2 + 3? A:",
                   "completion": "<think> 2 plus 3 is 5 </think> <answer> The answer is 5. </answer>"}


def test_chat_keeps_the_conversation_and_bad_examples_are_refused():
    assert sft_row(CHAT, "chat") == {"messages": CHAT}
    with pytest.raises(FormatError, match="no assistant turn"):
        sft_row(CHAT[:1], "chat")
    with pytest.raises(FormatError, match="unknown SFT format"):
        sft_row(CHAT, "yaml")


def test_the_reader_returns_whole_lines_only_and_each_once(tmp_path):
    writer = EventWriter(event_file(tmp_path, 0))
    writer.write("metrics", step=1, metrics={"loss": 1.0})
    with open(event_file(tmp_path, 0), "a") as f:
        f.write('{"type": "metrics", "step": 2')  # a line still being written
    reader = EventReader(tmp_path)
    assert [e["step"] for e in reader.read()] == [1]
    with open(event_file(tmp_path, 0), "a") as f:
        f.write(', "metrics": {}}\n')
    assert [e["step"] for e in reader.read()] == [2]
    assert reader.read() == []
    archive_events(tmp_path, 1)
    assert EventReader(tmp_path).read() == [] and (tmp_path / "attempt-1" / "events.0.jsonl").exists()


def test_only_whole_checkpoints_count(tmp_path):
    for step, whole in ((2, True), (4, True), (6, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if whole:
            (tmp_path / f"checkpoint-{step}" / CHECKPOINT_MARKER).write_text("{}")
    assert latest_checkpoint(tmp_path) == (4, tmp_path / "checkpoint-4")
    assert latest_checkpoint(tmp_path / "none") is None


@pytest.mark.parametrize("name", ["cpu", "single_gpu", "multi_gpu_zero2", "multi_gpu_fsdp", "multi_node"])
def test_every_accelerate_config_loads(name):
    config = load_config_from_file(str(ACCELERATE_CONFIG_DIR / f"{name}.yaml"))
    assert config.num_processes >= 1
    assert (config.distributed_type.value == "NO") == (name in ("cpu", "single_gpu"))


def test_the_job_systems_sft_rows_are_the_stand_alone_sfts_rows():
    """The miniature's format SFT (an Example per problem, written by the job as r1_zero rows) trains on
    exactly the text the stand-alone tiny-model SFT does: the same prompt and the same completion."""
    from workers.generation.tiny import r1_zero_prompt, worked_completion
    from workers.synthetic import arithmetic_dataset

    for problem in arithmetic_dataset(200, seed=30_000):
        messages = [{"role": "user", "content": problem["question"]},
                    {"role": "assistant", "content": worked_completion(problem)}]  # Example.chat
        assert sft_row(messages, "r1_zero") == {"prompt": r1_zero_prompt(problem["question"]),
                                                "completion": worked_completion(problem)}

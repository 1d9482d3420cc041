"""The channel from a training subprocess to the job that supervises it.

Each training process appends JSON lines to its own file in the run folder
(`events.<rank>.jsonl`): metrics, rollouts, progress, saved checkpoints. The
supervising job tails the files and writes what it reads to the database. A
file outlives both processes, so nothing the trainer wrote is lost when the
supervisor dies: the next attempt reads it again (every write it leads to is
idempotent). No Django here: the trainer may run on a node without database
access.
"""

import json
import os
from pathlib import Path
from typing import Literal, NotRequired, TypedDict

EVENT_FILE_GLOB = "events.*.jsonl"


# The events, one JSON object per line with its "type".
class MetricsEvent(TypedDict):
    type: Literal["metrics"]
    step: int
    max_steps: int
    metrics: dict[str, float]  # TRL's logs of the step: loss, reward, kl, entropy, step_time, ...


class SummaryEvent(TypedDict):
    type: Literal["summary"]
    step: int
    metrics: dict[str, float]  # the end-of-training figures: train_runtime, train_loss, ...


class RolloutRow(TypedDict):
    prompt_id: int
    group: int
    sample_index: int
    prompt_text: str
    completion: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    advantage: float
    scored: dict  # the recipe's score: {"total", "components"[, "error"]}
    tokens: NotRequired[dict]  # workers.tokens.TokenTrace.to_json(): per-token ids, log-probs, entropies


class RolloutsEvent(TypedDict):
    type: Literal["rollouts"]
    step: int
    rows: list[RolloutRow]  # this process's share of the step's completions


class CheckpointEvent(TypedDict):
    type: Literal["checkpoint"]
    step: int
    path: str  # written only once the checkpoint is whole on disk


class StoppedEvent(TypedDict):
    type: Literal["stopped"]
    step: int
    reason: str  # the GRPO stop rule acted: training ends here, and the model is saved as usual


class JudgeEvent(TypedDict):
    type: Literal["judge"]
    rank: int
    counts: dict[str, int]  # this process's judge calls, cached answers and tokens so far (JudgeCounts.figures)


Event = MetricsEvent | SummaryEvent | RolloutsEvent | CheckpointEvent | StoppedEvent | JudgeEvent


def event_file(run_dir: Path, rank: int) -> Path:
    return Path(run_dir) / f"events.{rank}.jsonl"


class EventWriter:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, kind: Literal["metrics", "summary", "rollouts", "checkpoint", "final", "stopped", "judge"],
              **fields) -> None:
        # One write of one whole line, then flush: a reader never sees half an event unless
        # the process dies mid-write, and a reader skips a last line without its newline.
        self._file.write(json.dumps({"type": kind, **fields}, ensure_ascii=False, allow_nan=False, default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class EventReader:
    """Reads the complete lines added to a run folder's event files since the last call."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.offsets: dict[Path, int] = {}

    def read(self) -> list[Event]:
        events = []
        for path in sorted(self.run_dir.glob(EVENT_FILE_GLOB)):
            with open(path, "rb") as f:
                f.seek(self.offsets.get(path, 0))
                chunk = f.read()
            end = chunk.rfind(b"\n") + 1  # a last line without its newline is still being written
            self.offsets[path] = self.offsets.get(path, 0) + end
            for line in chunk[:end].splitlines():
                if line.strip():
                    events.append(json.loads(line))
        return events


def archive_events(run_dir: Path, attempt: int) -> None:
    """Move the event files of an earlier attempt aside, so a resumed run starts clean."""
    run_dir = Path(run_dir)
    files = list(run_dir.glob(EVENT_FILE_GLOB))
    if files:
        target = run_dir / f"attempt-{attempt}"
        target.mkdir(exist_ok=True)
        for path in files:
            os.replace(path, target / path.name)

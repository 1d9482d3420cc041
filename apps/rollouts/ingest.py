"""Rollout ingest: rollouts produced by other trainers, validated like the prompt import.

Three source formats, each a mapping from the source's fields to a Rollout:

- ``jsonl`` (ours): one object per line with ``prompt`` and ``completion`` and optional
  ``reasoning``, ``rewards``, ``total_reward``, ``step``, ``group``, ``sample_index``, ``advantage``,
  ``is_correct``, ``format_ok``, ``finish_reason``, ``reference_answer``, ``prompt_text``,
  ``completion_tokens``, ``prompt_tokens``, ``model``, ``language_consistency``.
- ``trl``: TRL's GRPO completion logs (``<output_dir>/completions/completions_<step>.parquet``, a file or
  that folder), written by ``GRPOTrainer.log`` in TRL 1.16.
- ``verl``: verl's rollout dumps (``trainer.rollout_data_dir/<step>.jsonl``, a file or that folder),
  written by ``RayPPOTrainer._dump_generations``.

Like the prompt import (apps.datasets.importing, whose readers this reuses): every record is
validated first and errors name the line (row, for Parquet) and the field; then everything lands in
one transaction or nothing does. With ``partial=True`` the good records land and the bad ones come
back. The file is read twice (validate, then write) so that memory stays bounded by one write chunk,
not by the file: a run's completions are far larger than its prompts.

A retried job writes nothing twice: samples get the same (prompt, step, sample_index) on every run of
the same file, and the rollout unique key (job, prompt, step, sample_index) skips the rows already stored.
"""

import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from django import forms
from django.db import transaction
from django.utils import timezone

from apps.core import audit
from apps.core.bulk import bulk_insert
from apps.datasets.importing import (
    CANCEL_CHECK_EVERY,
    MAX_ERRORS_SHOWN,
    MAX_QUESTION_CHARS,
    ImportFileError,
    ImportValidationError,
    ServerPathForm,
    content_suffix,
    count_records,
    raw_lines,
    read_jsonl,
    read_parquet,
)
from apps.datasets.models import Dataset, ModelVersion, Prompt
from apps.jobs.kinds import job_kind
from apps.jobs.models import Job
from apps.rollouts.models import PromptTemplate, Rollout
from apps.rollouts.rows import rollout_row
from workers.generation.templates import R1_ZERO

FORMATS = ["jsonl", "trl", "verl"]
MAX_COMPLETION_CHARS = 1_000_000
MAX_REJECTED_KEPT = 1000  # IngestResult.rejected; rejected_count counts them all
MAX_IGNORED_FIELDS = 50
MAX_INT = 2**31 - 1  # the rollout table's integer columns
FINISH_REASONS = [choice for choice, _ in Rollout.FinishReason.choices]
# One bulk_insert per chunk: bounded by rows and by text, since a completion may be 1M characters.
WRITE_CHUNK_ROWS = 5000
WRITE_CHUNK_CHARS = 64_000_000
LOOKUP_CHUNK = 2000
# A reward component named like these decides is_correct / format_ok when the record does not say.
ACCURACY_NAME = re.compile(r"acc|correct", re.IGNORECASE)
FORMAT_NAME = re.compile(r"format", re.IGNORECASE)


class IngestFileError(ImportFileError):
    """The file cannot be read at all (not UTF-8, not Parquet, empty, ...); nothing was ingested."""


class IngestValidationError(ImportValidationError):
    verb = "ingested"


@dataclass
class IngestResult:
    job_id: int
    landed: int = 0  # rollouts written by this run
    duplicates: int = 0  # records repeating an earlier record's (prompt, step, sample_index) in the file
    rejected: list[dict] = field(default_factory=list)  # the first MAX_REJECTED_KEPT: {"line": ..., "errors": [...]}
    rejected_count: int = 0
    records: int = 0
    already_stored: int = 0  # rows an earlier attempt of the same job had written (a retry)
    prompts_created: int = 0
    ignored_fields: list[str] = field(default_factory=list)  # source fields with no Rollout column

    def as_dict(self) -> dict:
        return asdict(self)

    def job_summary(self) -> dict:
        """The job's result: figures, and the first rejected records as {line: errors} for the job page."""
        summary = {k: v for k, v in self.as_dict().items() if k not in {"job_id", "rejected", "ignored_fields"}}
        if self.rejected:
            summary["rejected"] = {r["line"]: "; ".join(r["errors"]) for r in self.rejected[:MAX_ERRORS_SHOWN]}
        if self.ignored_fields:
            summary["ignored_fields"] = ", ".join(self.ignored_fields)
        return summary


# ---- finding the question in a rendered prompt -----------------------------------------

# Chat templates whose role markers survived decoding (special tokens kept): the last user turn.
_CHAT_TURNS = [
    re.compile(r"<\|im_start\|>user\s*\n(.*?)<\|im_end\|>", re.DOTALL),  # ChatML (Qwen)
    re.compile(r"<\|start_header_id\|>user<\|end_header_id\|>\s*(.*?)<\|eot_id\|>", re.DOTALL),  # Llama 3
    re.compile(r"<｜User｜>(.*?)<｜Assistant｜>", re.DOTALL),  # DeepSeek-R1
    re.compile(r"<start_of_turn>user\s*\n(.*?)<end_of_turn>", re.DOTALL),  # Gemma
    re.compile(r"\[INST\](.*?)\[/INST\]", re.DOTALL),  # Llama 2, Mistral
]


def template_affixes() -> list[tuple[str, str]]:
    """(prefix, suffix) around {question} in the R1-Zero template and every saved template."""
    texts = [R1_ZERO, *PromptTemplate.objects.values_list("text", flat=True)]
    affixes = []
    for text in texts:
        head, sep, tail = text.partition("{question}")
        if sep:
            affixes.append((head.replace("{{", "{").replace("}}", "}"), tail.replace("{{", "{").replace("}}", "}")))
    return affixes


def extract_question(rendered: str, affixes: list[tuple[str, str]] = ()) -> str:
    """The question inside a rendered prompt (a chat template or a completion template applied).

    Tried in order: a known completion template (R1-Zero, saved templates) around the text; chat
    role markers (ChatML, Llama 3, DeepSeek, Gemma, [INST]), the last user turn; the same chat with
    its special tokens decoded away (verl decodes with skip_special_tokens, so ChatML's
    "<|im_start|>user\\nQ<|im_end|>" becomes "user\\nQ\\nassistant\\n"): the text after the last
    "user" line up to the closing "assistant"; otherwise the whole text.
    """
    text = rendered.strip()
    body = text.removesuffix("<think>").rstrip()
    for prefix, suffix in affixes:
        prefix, suffix = prefix.strip(), suffix.strip()
        if prefix and body.startswith(prefix) and body.endswith(suffix) and len(body) >= len(prefix) + len(suffix):
            inner = body[len(prefix):len(body) - len(suffix)].strip()
            if inner:
                return inner
    for pattern in _CHAT_TURNS:
        turns = pattern.findall(text)
        if turns and turns[-1].strip():
            return turns[-1].strip()
    if body.endswith("assistant"):
        head = "\n" + body[: -len("assistant")]  # so a "user" line at the very start is found the same way
        start = head.rfind("\nuser\n")
        inner = head[start + len("\nuser\n"):].strip() if start != -1 else ""
        if inner:
            return inner
    return text


def _message_text(content) -> str | None:
    """A chat message's text: a string, or the text blocks of a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        return "\n".join(b["text"] for b in content if b.get("type") == "text" and isinstance(b.get("text"), str))
    return None


def render_chat(messages: list[dict]) -> str:
    """A conversation as readable text, one "role: content" block per message."""
    return "\n\n".join(f"{m.get('role')}: {_message_text(m.get('content')) or ''}" for m in messages)


# ---- field checks: each appends "field 'x': ..." to errors ---------------------------


def _type(value) -> str:
    return "null" if value is None else type(value).__name__


class _Fields:
    """Reads typed values out of one source record, collecting an error per bad field."""

    def __init__(self, record: dict):
        self.record, self.errors = record, []

    def error(self, name: str, message: str) -> None:
        self.errors.append(f"field '{name}': {message}")

    def text(self, name: str, required: bool = False, limit: int | None = None, value=...) -> str:
        value = self.record.get(name) if value is ... else value
        if value is None:
            if required:
                self.error(name, "missing")
            return ""
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.error(name, f"expected text, found {_type(value)}")
            return ""
        value = str(value)
        if limit is not None and len(value) > limit:
            self.error(name, f"{len(value):,} characters; the limit is {limit:,}")
            return ""
        return value

    def integer(self, name: str, default: int | None = None, value=...) -> int | None:
        value = self.record.get(name) if value is ... else value
        if value is None:
            return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # pandas writes integers as floats next to a missing value
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(name, f"expected a non-negative integer, found {_type(value)}")
        elif not 0 <= value <= MAX_INT:
            self.error(name, f"{value} is out of range (0 to {MAX_INT})")
        else:
            return value
        return default

    def number(self, name: str, value=..., low: float | None = None, high: float | None = None) -> float | None:
        value = self.record.get(name) if value is ... else value
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.error(name, f"expected a number, found {_type(value)}")
            return None
        if not math.isfinite(value):
            self.error(name, f"{value} is not a finite number")
            return None
        if (low is not None and value < low) or (high is not None and value > high):
            self.error(name, f"{value} is out of range ({low} to {high})")
            return None
        return float(value)

    def boolean(self, name: str) -> bool | None:
        value = self.record.get(name)
        if value is None or isinstance(value, bool):
            return value
        self.error(name, f"expected true or false, found {_type(value)}")
        return None

    def choice(self, name: str, choices: list[str], default: str) -> str:
        value = self.record.get(name)
        if value is None:
            return default
        if value not in choices:
            self.error(name, f"{value!r} is not one of {', '.join(choices)}")
            return default
        return value

    def completion(self, name: str, value=...) -> str:
        value = self.record.get(name) if value is ... else value
        if value is None:
            self.error(name, "missing")
            return ""
        if not isinstance(value, str):
            self.error(name, f"expected text, found {_type(value)}")
            return ""
        if len(value) > MAX_COMPLETION_CHARS:
            self.error(name, f"{len(value):,} characters; the limit is {MAX_COMPLETION_CHARS:,} "
                             "(split or truncate the completion before ingesting)")
            return ""
        return value

    def prompt(self, name: str, affixes, extract: bool = True) -> tuple[str, str]:
        """(question, rendered prompt) from a prompt string (the question found in it with `extract`,
        else the string itself) or a list of chat messages (the last user message)."""
        value = self.record.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            self.error(name, "missing or empty")
            return "", ""
        if isinstance(value, str):
            question, rendered = (extract_question(value, affixes) if extract else value), value
        elif isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
            users = [m for m in value if m.get("role") == "user"]
            question = _message_text(users[-1].get("content")) if users else None
            if question is None or not question.strip():
                self.error(name, "a chat prompt needs a user message with text content")
                return "", ""
            rendered = render_chat(value)
        else:
            self.error(name, f"expected text or a list of chat messages, found {_type(value)}")
            return "", ""
        question = question.strip()
        if len(question) > MAX_QUESTION_CHARS:
            self.error(name, f"the question has {len(question):,} characters; the limit is {MAX_QUESTION_CHARS:,}")
            return "", ""
        return question, rendered

    def rewards(self, name: str) -> dict:
        """{component: {value, weight, details}} from {name: number} or {name: {value, weight?, details?}}."""
        value = self.record.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(name, f"expected an object of reward components, found {_type(value)}")
            return {}
        rewards = {}
        for component, spec in value.items():
            where = f"{name}.{component}"
            if not component or len(component) > 100:
                self.error(where, "a component name must have 1 to 100 characters")
                continue
            details = None
            if isinstance(spec, dict):
                unknown = set(spec) - {"value", "weight", "details"}
                if unknown:
                    self.error(where, f"unknown keys {', '.join(sorted(unknown))} (expected value, weight, details)")
                if "value" not in spec:
                    self.error(where, "missing 'value'")
                    continue
                reward = self.number(f"{where}.value", value=spec["value"])
                weight = self.number(f"{where}.weight", value=spec.get("weight", 1.0))
                details = spec.get("details")
                if details is not None and not isinstance(details, dict):
                    self.error(f"{where}.details", f"expected an object, found {_type(details)}")
            else:
                reward, weight = self.number(where, value=spec), 1.0
                if spec is None:
                    self.error(where, "expected a number, found null")
            if reward is not None and weight is not None:
                rewards[component] = {"value": reward, "weight": weight, "details": details or {}}
        return rewards


def _flag_from_rewards(rewards: dict, name_pattern: re.Pattern) -> bool | None:
    for component, spec in rewards.items():
        if name_pattern.search(component):
            return spec["value"] > 0
    return None


def _weighted_total(rewards: dict) -> float | None:
    if not rewards:
        return None
    return float(sum(spec["value"] * spec["weight"] for spec in rewards.values()))


# ---- the three formats: source record → sample (the Rollout's fields) or errors ---------

# A sample: question, reference_answer, prompt_text, completion, reasoning, rewards, total_reward, step,
# group, sample_index, advantage, is_correct, format_ok, finish_reason, completion_tokens, prompt_tokens,
# model, language_consistency. group and sample_index are None where the source leaves them to us.

OURS_FIELDS = {
    "prompt", "completion", "reasoning", "rewards", "total_reward", "step", "group", "sample_index", "advantage",
    "is_correct", "format_ok", "finish_reason", "reference_answer", "prompt_text", "completion_tokens",
    "prompt_tokens", "model", "language_consistency",
}


def map_ours(record: dict, affixes, ignored: set) -> tuple[dict | None, list[str]]:
    f = _Fields(record)
    question, rendered = f.prompt("prompt", affixes, extract=False)  # our prompt is the question itself
    rewards = f.rewards("rewards")
    total = f.number("total_reward")
    is_correct, format_ok = f.boolean("is_correct"), f.boolean("format_ok")
    sample = {
        "question": question,
        "reference_answer": f.text("reference_answer").strip(),
        "prompt_text": f.text("prompt_text") or rendered,
        "completion": f.completion("completion"),
        "reasoning": f.text("reasoning", limit=MAX_COMPLETION_CHARS) or None,
        "rewards": rewards,
        "total_reward": total if total is not None else _weighted_total(rewards),
        "step": f.integer("step", 0),
        "group": f.integer("group"),
        "sample_index": f.integer("sample_index"),
        "advantage": f.number("advantage"),
        "is_correct": is_correct if is_correct is not None else _flag_from_rewards(rewards, ACCURACY_NAME),
        "format_ok": format_ok if format_ok is not None else _flag_from_rewards(rewards, FORMAT_NAME),
        "finish_reason": f.choice("finish_reason", FINISH_REASONS, Rollout.FinishReason.STOP),
        "completion_tokens": f.integer("completion_tokens"),
        "prompt_tokens": f.integer("prompt_tokens"),
        "model": f.text("model", limit=200).strip(),
        "language_consistency": f.number("language_consistency", low=0.0, high=1.0),
    }
    ignored.update(k for k in record if k not in OURS_FIELDS)
    return (None, f.errors) if f.errors else (sample, [])


# TRL 1.16, GRPOTrainer.log (trl/trainer/grpo_trainer.py) writes completions_{global_step:05d}.parquet
# from a DataFrame of: "step" (the global step, one value per row), "prompt" and "completion" (strings,
# or chat message lists for conversational data: strip_images_from_messages of each), then one float
# column per reward function, named by reward_func_names (the function's name, or a reward model's id)
# holding rewards_per_func (NaN where the function returned None: not applied), then the log_extra
# columns reward functions added, then "advantage". Reward weights are not logged: each counts 1.
TRL_COLUMNS = {"step", "prompt", "completion", "advantage"}
REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")


def _trl_completion(f: _Fields, value) -> tuple[str, str | None]:
    """(text, reasoning) of a TRL completion: a string, or the assistant messages of a chat completion."""
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        texts = [_message_text(m.get("content")) or "" for m in value]
        reasoning = [m[k] for m in value for k in REASONING_KEYS if isinstance(m.get(k), str) and m[k]]
        return f.completion("completion", value="\n".join(texts)), ("\n".join(reasoning) or None)
    return f.completion("completion", value=value), None


# What TRL's and verl's logs do not carry: positions come from the file's order, the rest stays unknown.
NOT_LOGGED = {"group": None, "sample_index": None, "finish_reason": Rollout.FinishReason.STOP,
              "completion_tokens": None, "prompt_tokens": None, "model": "", "language_consistency": None}


def map_trl(record: dict, affixes, ignored: set) -> tuple[dict | None, list[str]]:
    f = _Fields(record)
    question, rendered = f.prompt("prompt", affixes)
    completion, reasoning = _trl_completion(f, record.get("completion"))
    rewards = {}
    for column, value in record.items():
        if column in TRL_COLUMNS:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and math.isnan(value):
                continue  # the reward function did not apply to this sample
            reward = f.number(column, value=value)
            if reward is not None:
                rewards[column] = {"value": reward, "weight": 1.0, "details": {}}
        elif value is not None:
            ignored.add(column)  # a log_extra column that is not a number: no Rollout column holds it
    advantage = record.get("advantage")
    sample = {
        "question": question,
        "reference_answer": "",
        "prompt_text": rendered,
        "completion": completion,
        "reasoning": reasoning,
        "rewards": rewards,
        "total_reward": _weighted_total(rewards),
        "step": f.integer("step", 0),
        "advantage": None if isinstance(advantage, float) and math.isnan(advantage) else f.number("advantage"),
        "is_correct": _flag_from_rewards(rewards, ACCURACY_NAME),
        "format_ok": _flag_from_rewards(rewards, FORMAT_NAME),
        **NOT_LOGGED,
    }
    return (None, f.errors) if f.errors else (sample, [])


# verl, RayPPOTrainer._dump_generations (verl/trainer/ppo/ray_trainer.py; the training loop calls it when
# trainer.rollout_data_dir is set, and _validate with trainer.validation_data_dir) writes
# <dir>/<global_steps>.jsonl, one object per sample: "input" (the prompt ids decoded with
# skip_special_tokens=True: the chat template applied, its special tokens dropped), "output" (the
# response, decoded the same way), "gts" (reward_model.ground_truth of the sample's row, or null),
# "score" (token_level_scores summed: the sample's reward), "step" (global_steps), then every key of
# reward_extra_infos_dict with one value per sample: what the reward function returned besides the score
# (math_dapo: "acc", "pred"), and "request_id" where the rollout had one.
VERL_COLUMNS = {"input", "output", "gts", "score", "step"}


def map_verl(record: dict, affixes, ignored: set) -> tuple[dict | None, list[str]]:
    f = _Fields(record)
    question, rendered = f.prompt("input", affixes)
    score = f.number("score")
    if record.get("score") is None:
        f.error("score", "missing")
    gts = record.get("gts")
    if isinstance(gts, (dict, list)):
        reference = json.dumps(gts, ensure_ascii=False, sort_keys=True)
    else:
        reference = f.text("gts", limit=MAX_QUESTION_CHARS).strip()
    # The score is the total; the reward function's other numbers are kept beside it with weight 0
    # (already inside the score), its other values (pred, request_id, ...) as the score's details.
    rewards, details = {}, {}
    for key, value in record.items():
        if key in VERL_COLUMNS:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = f.number(key, value=value)
            if number is not None:
                rewards[key] = {"value": number, "weight": 0.0, "details": {}}
        else:
            details[key] = value
    if score is not None:
        rewards = {"score": {"value": score, "weight": 1.0, "details": details}, **rewards}
    acc = record.get("acc")
    sample = {
        "question": question,
        "reference_answer": reference,
        "prompt_text": rendered,
        "completion": f.completion("output"),
        "reasoning": None,
        "rewards": rewards,
        "total_reward": score,
        "step": f.integer("step", 0),
        "advantage": None,
        "is_correct": acc if isinstance(acc, bool) else _flag_from_rewards(
            {k: v for k, v in rewards.items() if k != "score"}, ACCURACY_NAME),
        "format_ok": _flag_from_rewards(rewards, FORMAT_NAME),
        **NOT_LOGGED,
    }
    return (None, f.errors) if f.errors else (sample, [])


MAPPERS: dict[str, Callable] = {"jsonl": map_ours, "trl": map_trl, "verl": map_verl}


# ---- reading -----------------------------------------------------------------------


def _step_order(path: Path):
    """verl names its dumps by step (2.jsonl, 10.jsonl): numeric order, then the rest by name."""
    digits = re.sub(r"\D", "", path.stem)
    return (int(digits) if digits else math.inf, path.name)


def source_files(path: Path, fmt: str) -> list[Path]:
    """The file itself, or the dump files of a folder (TRL's completions/, verl's rollout_data_dir)."""
    if not path.exists():
        raise IngestFileError(f"{path} does not exist")
    if not path.is_dir():
        return [path]
    patterns = ["*.parquet"] if fmt == "trl" else ["*.jsonl", "*.jsonl.gz"]
    files = sorted((f for pattern in patterns for f in path.glob(pattern)), key=_step_order)
    if not files:
        raise IngestFileError(f"the folder {path.name} has no {' or '.join(patterns)} files")
    return files


def read_source(path: Path, fmt: str) -> Iterator[tuple[str, dict | str]]:
    """(location, record or error) over the file or the folder's files; locations name the file in a folder."""
    files = source_files(path, fmt)
    reader = read_parquet if fmt == "trl" else read_jsonl
    for file in files:
        try:
            for where, record in reader(file):
                yield (f"{file.name} {where}" if len(files) > 1 else where), record
        except ImportFileError as exc:
            prefix = f"{file.name}: " if len(files) > 1 else ""
            raise IngestFileError(f"{prefix}{exc}; nothing was ingested") from None


def count_source(path: Path, fmt: str) -> int | None:
    try:
        counts = [count_records(f, "parquet" if fmt == "trl" else "jsonl") for f in source_files(path, fmt)]
    except IngestFileError:
        return None
    return None if None in counts else sum(counts)


def detect_ingest_format(path: Path) -> str:
    """trl for Parquet (or a folder of it), verl for JSONL whose first record has input and output, else jsonl."""
    path = Path(path)
    if path.is_dir():
        if any(path.glob("*.parquet")):
            return "trl"
        path = source_files(path, "jsonl")[0]
    if content_suffix(path) in {".parquet", ".pq"}:
        return "trl"
    try:
        for raw in raw_lines(path):
            if raw.strip():
                first = json.loads(raw.decode("utf-8", errors="replace").lstrip("\ufeff"))
                return "verl" if isinstance(first, dict) and {"input", "output"} <= first.keys() else "jsonl"
    except (OSError, ValueError, ImportFileError):
        pass  # unreadable here: the jsonl reader names the problem
    return "jsonl"


# ---- the ingest ----------------------------------------------------------------------


class _Quiet:
    """Stands in for a JobContext where the ingest runs outside a worker (API, command line)."""

    def progress(self, done, total=None):
        pass

    def log(self, message):
        pass

    def check_cancelled(self):
        pass


class _PromptKeys:
    """The distinct prompts of the file: (question, reference answer) → content hash, and back."""

    def __init__(self):
        self.hashes: dict[tuple[str, str], str] = {}

    def key(self, sample: dict) -> str:
        pair = (sample["question"], sample["reference_answer"])
        digest = self.hashes.get(pair)
        if digest is None:
            digest = self.hashes[pair] = Prompt.hash_for(pair[0], pair[1], [])
        return digest


class _Sequencer:
    """Gives each sample its group and sample index, the same way on every run of the same file,
    and spots a repeated (prompt, step, sample_index)."""

    def __init__(self):
        self.next_index: dict[tuple[int, int], int] = defaultdict(int)
        self.group_of: dict[tuple[int, int], int] = {}
        self.groups_in_step: dict[int, int] = defaultdict(int)
        self.seen: set[tuple[int, int, int]] = set()

    def place(self, prompt_id: int, sample: dict) -> bool:
        """Fill in sample_index and group; False if the sample repeats one already placed."""
        slot = (prompt_id, sample["step"])
        if slot not in self.group_of:
            self.group_of[slot] = self.groups_in_step[sample["step"]]
            self.groups_in_step[sample["step"]] += 1
        if sample["group"] is None:
            sample["group"] = self.group_of[slot]
        if sample["sample_index"] is None:
            sample["sample_index"] = self.next_index[slot]
        self.next_index[slot] = max(self.next_index[slot], sample["sample_index"] + 1)
        key = (prompt_id, sample["step"], sample["sample_index"])
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def _resolve_prompts(dataset: Dataset, keys: _PromptKeys, fmt: str) -> tuple[dict[str, int], int]:
    """Content hash → prompt id for every prompt of the file; creates the missing ones. (map, created)."""
    by_hash = {digest: pair for pair, digest in keys.hashes.items()}
    ids: dict[str, int] = {}
    hashes = list(by_hash)
    for start in range(0, len(hashes), LOOKUP_CHUNK):
        chunk = hashes[start:start + LOOKUP_CHUNK]
        ids.update(Prompt.objects.filter(dataset=dataset, content_hash__in=chunk).values_list("content_hash", "id"))
    # A log without reference answers (TRL, verl without gts) belongs to the prompt already in the
    # dataset with that question, answer and all, when there is exactly one.
    unanswered = {by_hash[h][0]: h for h in hashes if h not in ids and not by_hash[h][1]}
    questions = list(unanswered)
    for start in range(0, len(questions), LOOKUP_CHUNK):
        found = defaultdict(list)
        for question, pk in Prompt.objects.filter(
            dataset=dataset, question__in=questions[start:start + LOOKUP_CHUNK]
        ).values_list("question", "id"):
            found[question].append(pk)
        ids.update({unanswered[q]: pks[0] for q, pks in found.items() if len(pks) == 1})
    missing = [h for h in hashes if h not in ids]
    created = bulk_insert(Prompt, [
        {"dataset_id": dataset.pk, "question": by_hash[h][0], "reference_answer": by_hash[h][1], "tests": [],
         "metadata": {"source": f"ingest:{fmt}"}, "content_hash": h}
        for h in missing
    ])
    for start in range(0, len(missing), LOOKUP_CHUNK):
        chunk = missing[start:start + LOOKUP_CHUNK]
        ids.update(Prompt.objects.filter(dataset=dataset, content_hash__in=chunk).values_list("content_hash", "id"))
    return ids, created


def _resolve_models(names: set[str]) -> dict[str, int]:
    """Model name → ModelVersion id; a model R1 Studio has not seen is registered by its name."""
    ids = dict(ModelVersion.objects.filter(name__in=names).values_list("name", "id"))
    for name in sorted(names - ids.keys()):
        ids[name] = ModelVersion.objects.create(
            name=name, uri=name, stage=ModelVersion.Stage.OTHER, config={"source": "ingest"}
        ).pk
    return ids


ROW_FIELDS = ("step", "group", "sample_index", "prompt_text", "prompt_tokens", "completion_tokens", "finish_reason",
              "total_reward", "rewards", "advantage", "is_correct", "format_ok", "language_consistency")


def _row(sample: dict, job_id: int, prompt_id: int, model_id: int | None) -> dict:
    return rollout_row(job_id=job_id, prompt_id=prompt_id, completion=sample["completion"],
                       reasoning=sample["reasoning"], model_version_id=model_id,
                       **{name: sample[name] for name in ROW_FIELDS})


def ingest_file(path, fmt: str, *, dataset: Dataset, user=None, partial: bool = False, model_name: str = "",
                via: str = "web", job: Job | None = None, ctx=None) -> IngestResult:
    """Validate every record of `path` (format `fmt`), then write its rollouts under one job, all or nothing.

    Without `job` (API, command line) a succeeded ingest_rollouts job is created for the rows; a worker
    passes its own job and its JobContext as `ctx` (progress, cancel). Raises IngestFileError for a file
    that cannot be read, IngestValidationError for bad records unless `partial`.
    """
    path, ctx = Path(path), ctx or _Quiet()
    if fmt not in MAPPERS:
        raise IngestFileError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    mapper, affixes = MAPPERS[fmt], template_affixes()
    counted = count_source(path, fmt)
    total = 2 * counted if counted is not None else None  # two passes: validate, then write
    ctx.progress(0, total)
    ctx.log(f"validating {path.name} ({fmt}) for dataset {dataset.name}")

    # Pass 1: validate everything; keep only the distinct prompts and models, not the rows.
    keys, models, ignored = _PromptKeys(), set(), set()
    result = IngestResult(job_id=job.pk if job else 0)
    errors: list[str] = []
    for where, record in read_source(path, fmt):
        result.records += 1
        if isinstance(record, str):  # a line the reader could not parse
            sample, problems = None, [record]
        else:
            sample, problems = mapper(record, affixes, ignored)
        if problems:
            result.rejected_count += 1
            if len(result.rejected) < MAX_REJECTED_KEPT:
                result.rejected.append({"line": where, "errors": problems})
            errors.extend(f"{where}: {p}" for p in problems[: max(0, MAX_ERRORS_SHOWN - len(errors))])
        else:
            keys.key(sample)
            models.add(sample["model"] or model_name)
        if result.records % CANCEL_CHECK_EVERY == 0:
            ctx.progress(result.records)
            ctx.check_cancelled()
    if not result.records:
        raise IngestFileError(f"{path.name} holds no records; nothing was ingested")
    if result.rejected_count and not partial:
        raise IngestValidationError(errors, result.rejected_count)
    result.ignored_fields = sorted(ignored)[:MAX_IGNORED_FIELDS]
    if result.rejected_count:
        ctx.log(f"{result.rejected_count} of {result.records} records rejected; landing the others")
    ctx.progress(result.records, 2 * result.records)
    ctx.check_cancelled()

    # Pass 2: in one transaction, find or create the prompts and models, then write the rows in chunks.
    own_job = job is None
    with transaction.atomic():
        if own_job:
            now = timezone.now()
            job = Job.objects.create(
                kind="ingest_rollouts", label=f"Ingest {path.name} into {dataset.name}", status=Job.Status.SUCCEEDED,
                params={"dataset": dataset.pk, "path": str(path), "format": fmt, "partial": partial,
                        "model_name": model_name, "via": via},
                created_by=user if getattr(user, "is_authenticated", False) else None,
                started_at=now, attempts=1, worker=via,
            )
            result.job_id = job.pk
        prompt_ids, result.prompts_created = _resolve_prompts(dataset, keys, fmt)
        model_ids = _resolve_models(models - {""})
        ctx.log(f"{len(prompt_ids)} prompts ({result.prompts_created} new); writing rollouts")
        sequencer, rows, chars, stored = _Sequencer(), [], 0, 0
        for number, (_, record) in enumerate(read_source(path, fmt), start=1):
            if not isinstance(record, str):
                sample, problems = mapper(record, affixes, set())
                if not problems:
                    prompt_id = prompt_ids[keys.key(sample)]
                    if sequencer.place(prompt_id, sample):
                        rows.append(_row(sample, job.pk, prompt_id, model_ids.get(sample["model"] or model_name)))
                        chars += len(sample["completion"]) + len(sample["prompt_text"])
                    else:
                        result.duplicates += 1
            if len(rows) >= WRITE_CHUNK_ROWS or chars >= WRITE_CHUNK_CHARS:
                result.landed += bulk_insert(Rollout, rows)
                stored, rows, chars = stored + len(rows), [], 0
            if number % CANCEL_CHECK_EVERY == 0:
                ctx.progress(result.records + number)
                ctx.check_cancelled()
        if rows:
            result.landed += bulk_insert(Rollout, rows)
            stored += len(rows)
        result.already_stored = stored - result.landed
        if own_job:
            Job.objects.filter(pk=job.pk).update(
                finished_at=timezone.now(), result=result.job_summary(),
                progress_done=2 * result.records, progress_total=2 * result.records,
            )
        audit.record(user, "rollouts.ingest", job, via=via, landed=result.landed, rejected_count=result.rejected_count,
                     duplicates=result.duplicates, format=fmt, file=path.name, dataset=dataset.name)
    ctx.progress(2 * result.records, 2 * result.records)
    ctx.log(f"landed {result.landed} rollouts; {result.duplicates} duplicates in the file, "
            f"{result.already_stored} already stored, {result.rejected_count} rejected")
    return result


# ---- the job ------------------------------------------------------------------------


class IngestOptionsForm(forms.Form):
    """What an ingest asks besides the file; shared by the upload page and the job."""

    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all(), help_text="Prompts are matched or created here")
    format = forms.ChoiceField(
        choices=[("", "detect from the file"), ("jsonl", "jsonl (R1 Studio)"), ("trl", "trl (completions_*.parquet)"),
                 ("verl", "verl (rollout_data_dir JSONL)")],
        required=False,
    )
    partial = forms.BooleanField(
        required=False, help_text="Land the good records and list the rejected ones, instead of landing nothing"
    )
    model_name = forms.CharField(
        max_length=200, required=False, help_text="The model that produced the rollouts (registered if new)"
    )


class IngestParamsForm(ServerPathForm, IngestOptionsForm):
    """The parameters of an ingest_rollouts job."""

    detect = staticmethod(detect_ingest_format)


class IngestUploadForm(IngestOptionsForm):
    """The browser side of an ingest: the file plus the options."""

    file = forms.FileField(help_text="JSONL (ours or a verl dump) or a TRL completions_*.parquet log")
    field_order = ("file",)


@job_kind("ingest_rollouts", "Ingest rollouts", IngestParamsForm, own_page="rollout_ingest")
def run_ingest(ctx) -> dict:
    params = ctx.params
    job = ctx.job
    result = ingest_file(
        params["path"], params["format"], dataset=Dataset.objects.get(pk=params["dataset"]), user=job.created_by,
        partial=params.get("partial", False), model_name=params.get("model_name", ""), via="job", job=job, ctx=ctx,
    )
    return result.job_summary()

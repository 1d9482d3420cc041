"""The three source formats, each a mapping from one source record to a sample (the Rollout's fields)
or the errors naming its bad fields."""

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from apps.datasets.importing import MAX_QUESTION_CHARS
from apps.datasets.validation import RecordFields, type_name
from apps.rollouts.ingest.questions import extract_question, message_text, render_chat
from apps.rollouts.models import Rollout
from workers.tokens import TokenTrace

# The ingest formats and how forms name them; the API's schema, the command line and the forms use this.
FORMATS = {"jsonl": "jsonl (R1 Studio)", "trl": "trl (completions_*.parquet)", "verl": "verl (rollout_data_dir JSONL)"}
MAX_COMPLETION_CHARS = 1_000_000
MAX_TRACE_TOKENS = 1_000_000
TOKEN_KEYS = {"ids", "logprobs", "entropy", "text"}
FINISH_REASONS = [choice for choice, _ in Rollout.FinishReason.choices]
# A reward component named like these decides is_correct / format_ok when the record does not say.
ACCURACY_NAME = re.compile(r"acc|correct", re.IGNORECASE)
FORMAT_NAME = re.compile(r"format", re.IGNORECASE)


# The instruction verl's own data preparation appends to each question (examples/data_preprocess/gsm8k.py
# and math_dataset.py: the question, a space, then this): removed so rollouts find the prompts stored.
VERL_INSTRUCTIONS = (
    "Let's think step by step and output the final answer after \"####\".",
    "Let's think step by step and output the final answer within \\boxed{}.",
)
# verl's stock GSM8K scorer gives 1.0 for a right answer and its format_score (0.0) otherwise: a float
# score of at least this means right, where the reward function logs no "acc" of its own.
VERL_CORRECT_SCORE = 1.0


@dataclass(frozen=True)
class SourceOptions:
    """How records of a source are read: the templates whose affixes surround a question, instructions
    appended to questions, and the score from which a verl sample without "acc" counts as right."""

    affixes: tuple[tuple[str, str], ...] = ()
    instructions: tuple[str, ...] = VERL_INSTRUCTIONS
    correct_score: float = VERL_CORRECT_SCORE
    reward_weights: dict[str, float] | None = None  # TRL: which columns are reward functions, and their weights
    correct_recipe: str = ""  # a recipe that decides is_correct after landing, instead of the source's score

    def question(self, text: str) -> str:
        for instruction in self.instructions:
            if instruction and text.endswith(instruction) and text != instruction:
                return text[: -len(instruction)].rstrip()
        return text


class SampleFields(RecordFields):
    """A rollout record's fields: the shared readers, and the completion, prompt and rewards."""

    def completion(self, name: str, value=...) -> str:
        value = self.record.get(name) if value is ... else value
        if value is None:
            self.error(name, "missing")
            return ""
        if not isinstance(value, str):
            self.error(name, f"expected text, found {type_name(value)}")
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
            question = message_text(users[-1].get("content")) if users else None
            if question is None or not question.strip():
                self.error(name, "a chat prompt needs a user message with text content")
                return "", ""
            rendered = render_chat(value)
        else:
            self.error(name, f"expected text or a list of chat messages, found {type_name(value)}")
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
            self.error(name, f"expected an object of reward components, found {type_name(value)}")
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
                    self.error(f"{where}.details", f"expected an object, found {type_name(details)}")
            else:
                reward, weight = self.number(where, value=spec), 1.0
                if spec is None:
                    self.error(where, "expected a number, found null")
            if reward is not None and weight is not None:
                rewards[component] = {"value": reward, "weight": weight, "details": details or {}}
        return rewards

    def tokens(self, name: str) -> TokenTrace | None:
        """A per-token trace, {"ids": [int], "logprobs": [number], "entropy"?: [number], "text"?: [str]} (text:
        each token as text, so the page can draw it), or None when the record has none."""
        value = self.record.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.error(name, f"expected an object with ids and logprobs, found {type_name(value)}")
            return None
        if unknown := set(value) - TOKEN_KEYS:
            self.error(name, f"unknown keys {', '.join(sorted(unknown))} (expected ids, logprobs, entropy, text)")
        lists = {}
        for key in ("ids", "logprobs", "entropy", "text"):
            items = value.get(key)
            if items is None:
                if key in ("ids", "logprobs"):
                    self.error(f"{name}.{key}", "missing")
                continue
            if not isinstance(items, list) or len(items) > MAX_TRACE_TOKENS:
                self.error(f"{name}.{key}", f"expected a list of at most {MAX_TRACE_TOKENS:,} items")
                continue
            lists[key] = items
        if self.errors or "ids" not in lists or "logprobs" not in lists:
            return None
        n = len(lists["ids"])
        for key, items in lists.items():
            if len(items) != n:
                self.error(f"{name}.{key}", f"{len(items)} items for {n} token ids")
        checks = {"ids": lambda v: type(v) is int and 0 <= v < 2**31,
                  "logprobs": lambda v: _is_number(v) and (v <= 1e-3 or math.isnan(v)),
                  "entropy": lambda v: _is_number(v) and (v >= 0 or math.isnan(v)),
                  "text": lambda v: isinstance(v, str)}
        expected = {"ids": "an integer from 0 to 2**31 - 1", "logprobs": "a number ≤ 0 (a log-probability)",
                    "entropy": "a number ≥ 0", "text": "text"}
        for key, items in lists.items():
            bad = next((i for i, v in enumerate(items) if not checks[key](v)), None)
            if bad is not None:
                self.error(f"{name}.{key}[{bad}]", f"expected {expected[key]}, found {_short_value(items[bad])}")
        if self.errors:
            return None
        texts = lists.get("text")
        pieces = {} if texts is None else {i: t.encode("utf-8") for i, t in zip(lists["ids"], texts)}
        return TokenTrace(ids=lists["ids"], logprobs=lists["logprobs"], entropy=lists.get("entropy"), pieces=pieces,
                          entropy_kind="source" if "entropy" in lists else "")


def _short_value(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:39] + "…"


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
    "prompt_tokens", "model", "language_consistency", "tokens",
}


def map_ours(record: dict, how: SourceOptions, ignored: set) -> tuple[dict | None, list[str]]:
    f = SampleFields(record)
    question, rendered = f.prompt("prompt", how.affixes, extract=False)  # our prompt is the question itself
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
        "metadata": {k: _json_value(v) for k, v in record.items() if k not in OURS_FIELDS},
        "tokens": f.tokens("tokens"),
    }
    ignored.update(k for k in record if k not in OURS_FIELDS)  # no column of their own: kept as metadata
    return (None, f.errors) if f.errors else (sample, [])


# TRL 1.16, GRPOTrainer.log (trl/trainer/grpo_trainer.py) writes completions_{global_step:05d}.parquet
# from a DataFrame of: "step" (the global step, one value per row), "prompt" and "completion" (strings,
# or chat message lists for conversational data: strip_images_from_messages of each), then one float
# column per reward function, named by reward_func_names (the function's name, or a reward model's id)
# holding rewards_per_func (NaN where the function returned None: not applied), then the log_extra
# columns reward functions added, then "advantage". Reward weights are not logged: each counts 1.
TRL_COLUMNS = {"step", "prompt", "completion", "advantage"}
REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")


def _trl_completion(f: SampleFields, value) -> tuple[str, str | None]:
    """(text, reasoning) of a TRL completion: a string, or the assistant messages of a chat completion."""
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        texts = [message_text(m.get("content")) or "" for m in value]
        reasoning = [m[k] for m in value for k in REASONING_KEYS if isinstance(m.get(k), str) and m[k]]
        return f.completion("completion", value="\n".join(texts)), ("\n".join(reasoning) or None)
    return f.completion("completion", value=value), None


# What TRL's and verl's logs do not carry: positions come from the file's order, the rest stays unknown.
NOT_LOGGED = {"group": None, "sample_index": None, "finish_reason": Rollout.FinishReason.STOP,
              "completion_tokens": None, "prompt_tokens": None, "model": "", "language_consistency": None}


def map_trl(record: dict, how: SourceOptions, ignored: set) -> tuple[dict | None, list[str]]:
    """TRL's table has no mark telling a reward function's column from a log_extra column: `how.reward_weights`
    names the reward functions (the user, or the run's trainer_state.json); every other column is metadata."""
    f = SampleFields(record)
    question, rendered = f.prompt("prompt", how.affixes)
    completion, reasoning = _trl_completion(f, record.get("completion"))
    rewards, metadata = {}, {}
    for column, value in record.items():
        if column in TRL_COLUMNS:
            continue
        if column not in how.reward_weights:
            metadata[column] = _json_value(value)
        elif isinstance(value, float) and math.isnan(value):
            continue  # the reward function did not apply to this sample (TRL logs None as NaN)
        elif (reward := f.number(column, value=value)) is not None:
            rewards[column] = {"value": reward, "weight": how.reward_weights[column], "details": {}}
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
        "metadata": metadata,
    }
    return (None, f.errors) if f.errors else (sample, [])


def _json_value(value):
    """A metadata value as JSON can hold it: NaN (pandas' missing value) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# verl, RayPPOTrainer._dump_generations (verl/trainer/ppo/ray_trainer.py; the training loop calls it when
# trainer.rollout_data_dir is set, and _validate with trainer.validation_data_dir) writes
# <dir>/<global_steps>.jsonl, one object per sample: "input" (the prompt ids decoded with
# skip_special_tokens=True: the chat template applied, its special tokens dropped), "output" (the
# response, decoded the same way), "gts" (reward_model.ground_truth of the sample's row, or null),
# "score" (token_level_scores summed: the sample's reward), "step" (global_steps), then every key of
# reward_extra_infos_dict with one value per sample: what the reward function returned besides the score
# (math_dapo: "acc", "pred"), and "request_id" where the rollout had one.
VERL_COLUMNS = {"input", "output", "gts", "score", "step"}


def map_verl(record: dict, how: SourceOptions, ignored: set) -> tuple[dict | None, list[str]]:
    f = SampleFields(record)
    question, rendered = f.prompt("input", how.affixes)
    question = how.question(question)
    score = f.number("score")
    if record.get("score") is None:
        f.error("score", "missing")
    gts = record.get("gts")
    if isinstance(gts, (dict, list)):
        reference = json.dumps(gts, ensure_ascii=False, sort_keys=True)
    else:
        reference = f.text("gts", limit=MAX_QUESTION_CHARS).strip()
    # The score is the total; the reward function's other numbers are kept beside it with weight 0
    # (already inside the score), its other values (acc, pred, request_id, ...) as metadata.
    rewards, metadata = {}, {}
    for key, value in record.items():
        if key in VERL_COLUMNS:
            continue
        if _is_number(value):
            number = f.number(key, value=value)
            if number is not None:
                rewards[key] = {"value": number, "weight": 0.0, "details": {}}
        else:
            metadata[key] = _json_value(value)
    if score is not None:
        rewards = {"score": {"value": score, "weight": 1.0, "details": {}}, **rewards}
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
        "is_correct": _verl_correct(acc, rewards, score, how),
        "format_ok": _flag_from_rewards(rewards, FORMAT_NAME),
        **NOT_LOGGED,
        "metadata": metadata,
    }
    return (None, f.errors) if f.errors else (sample, [])


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _verl_correct(acc, rewards: dict, score: float | None, how: SourceOptions) -> bool | None:
    """The reward function's own verdict where it logs one (math_dapo's "acc"), else what the score means."""
    if isinstance(acc, bool):
        return acc
    logged = _flag_from_rewards({k: v for k, v in rewards.items() if k != "score"}, ACCURACY_NAME)
    if logged is not None:
        return logged
    return None if score is None else score >= how.correct_score


MAPPERS: dict[str, Callable] = {"jsonl": map_ours, "trl": map_trl, "verl": map_verl}


# ---- what each source column becomes, for the preview shown before anything lands ------------

OURS_ROLES = {"prompt": "the question (matched in the dataset, or a new prompt)",
              "tokens": "per-token trace (ids, log-probabilities, entropy, text): the token lens",
              "rewards": "reward components (value × weight)",
              "total_reward": "total reward (else the weighted sum of the components)"}


def column_role(fmt: str, column: str, example, how: SourceOptions) -> str:
    """What a source column becomes in R1 Studio, in words; `example` is a value of it (its type matters
    for verl's extras)."""
    if fmt == "jsonl":
        if column in OURS_FIELDS:
            return OURS_ROLES.get(column, column)
    elif fmt == "trl":
        roles = {"step": "step", "prompt": "the question (found in the rendered prompt) and prompt text",
                 "completion": "completion (a chat message's reasoning_content: reasoning)", "advantage": "advantage"}
        if column in roles:
            return roles[column]
        if how.reward_weights is None:
            return "reward function or metadata? name the reward columns"
        if column in how.reward_weights:
            return f"reward component ×{how.reward_weights[column]:g}"
    elif fmt == "verl":
        if column == "score":
            verdict = "is_correct from the recipe chosen" if how.correct_recipe else \
                f"is_correct when ≥ {how.correct_score:g} (unless an acc is logged)"
            return f"total reward; {verdict}"
        roles = {"input": "the question (chat roles and instruction removed) and prompt text",
                 "output": "completion", "gts": "reference answer", "step": "step (groups: same step and prompt)"}
        if column in roles:
            return roles[column]
        inside = "reward component ×0 (already inside the score)"
        if column == "acc":
            return "is_correct (the reward function's verdict); " + (inside if _is_number(example) else "metadata")
        if _is_number(example):
            return inside
    return "metadata"

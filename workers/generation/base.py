"""One interface for every generation backend: prompts and sampling parameters in,
completions with token counts and finish reasons out. No Django here.

A prompt is either a rendered string (completion style; what transformers and
vLLM take) or a list of chat messages (what an OpenAI-compatible chat endpoint
takes; the server applies the chat template).
"""

from dataclasses import dataclass
from typing import Protocol

from workers.tokens import TokenTrace

Prompt = str | list[dict]


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1  # completions per prompt
    temperature: float = 0.6  # the R1 report's evaluation defaults
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # Capture each generated token's id, log-probability and entropy, with this many top alternatives
    # (0-5; workers/tokens.py); None captures nothing.
    logprobs: int | None = None


@dataclass
class Completion:
    text: str  # everything generated; a separately returned reasoning is put first, inside <think></think>
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str  # "stop", "length" or "error"
    reasoning: str | None = None  # reasoning_content, when the server returns it apart from content
    reasoning_tokens: int | None = None  # usage.completion_tokens_details.reasoning_tokens, where a server counts them
    tokens: TokenTrace | None = None  # per-token trace: SamplingParams.logprobs asked, and the backend had it


class BackendError(Exception):
    """A batch failed (out of memory, HTTP 5xx, a timeout): the caller may retry it."""

    retryable = True


class BackendUnavailable(BackendError):
    """The backend cannot be reached or refuses every request: retrying the batch will not help."""

    retryable = False


class BackendRefused(BackendError):
    """The server refused this request as malformed or too long (a 4xx): the same batch will be refused again."""

    retryable = False


class Backend(Protocol):
    name: str

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """For each prompt, `params.n` completions, in order."""
        ...

    def render(self, prompt: Prompt) -> str:
        """The exact text the model is given for `prompt` (stored with each rollout)."""
        ...

    def context_length(self) -> int | None:
        """Most tokens (prompt + completion) the model takes; None if unknown."""
        ...

    def count_tokens(self, prompt: Prompt) -> int | None:
        """Tokens in a prompt; None if the backend cannot tell before sending it."""
        ...

    def close(self) -> None: ...


def join_reasoning(reasoning: str | None, content: str) -> str:
    """The stored completion text when a server returns the reasoning apart (DeepSeek's reasoning_content)."""
    if not reasoning:
        return content
    return f"<think>\n{reasoning}\n</think>\n{content}"

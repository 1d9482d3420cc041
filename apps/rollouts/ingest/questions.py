"""Finding the question in a rendered prompt: a completion template, or a chat template applied
(with its special tokens kept or decoded away)."""

import re

from apps.rollouts.models import PromptTemplate
from workers.generation.templates import R1_ZERO

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


def message_text(content) -> str | None:
    """A chat message's text: a string, or the text blocks of a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        return "\n".join(b["text"] for b in content if b.get("type") == "text" and isinstance(b.get("text"), str))
    return None


def render_chat(messages: list[dict]) -> str:
    """A conversation as readable text, one "role: content" block per message."""
    return "\n\n".join(f"{m.get('role')}: {message_text(m.get('content')) or ''}" for m in messages)

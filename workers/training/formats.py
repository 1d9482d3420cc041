"""Training rows from curated examples and prompts. No Django here.

SFT formats (an example is a chat: [{"role", "content"}, ...]):
- chat: the conversation as it is; the loss falls on the assistant turns only.
- cold_start: the R1 report's readable format, the assistant turn rewritten as
  `|special_token|<reasoning process>|special_token|<summary>`.
- r1_zero: a prompt/completion pair in the R1-Zero template, completion
  `<think> reasoning </think> <answer> answer </answer>`; loss on the completion.
"""

from workers.generation.templates import R1_ZERO
from workers.rewards.extract import answer_text, think_text

SFT_FORMATS = {
    "chat": "Chat messages (loss on the assistant turns)",
    "cold_start": "Cold start: |special_token|reasoning|special_token|summary",
    "r1_zero": "R1-Zero template: <think> … </think> <answer> … </answer>",
}
COLD_START_SEPARATOR = "|special_token|"


class FormatError(ValueError):
    pass


def reasoning_and_summary(message: dict) -> tuple[str, str]:
    """An assistant turn's reasoning and final part, from a `reasoning_content` field or its tags."""
    content = message.get("content") or ""
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if reasoning:
        return reasoning.strip(), content.strip()
    if COLD_START_SEPARATOR in content:
        _, reasoning, summary = (content.split(COLD_START_SEPARATOR, 2) + ["", ""])[:3]
        return reasoning.strip(), summary.strip()
    if "</think>" in content:
        summary = answer_text(content) or content.rsplit("</think>", 1)[1]
        return think_text(content).strip(), summary.strip()
    return "", content.strip()


def sft_row(messages: list[dict], fmt: str, template: str = R1_ZERO) -> dict:
    if fmt not in SFT_FORMATS:
        raise FormatError(f"unknown SFT format {fmt!r}; known: {', '.join(SFT_FORMATS)}")
    assistant_turns = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    if not assistant_turns:
        raise FormatError("the example has no assistant turn to learn from")
    last = assistant_turns[-1]
    if fmt == "chat":
        return {"messages": [_plain(m) for m in messages]}
    reasoning, summary = reasoning_and_summary(messages[last])
    if fmt == "cold_start":
        content = f"{COLD_START_SEPARATOR}{reasoning}{COLD_START_SEPARATOR}{summary}"
        rewritten = {"role": "assistant", "content": content}
        return {"messages": [_plain(m) for m in messages[:last]] + [rewritten]}
    questions = [m for m in messages[:last] if m.get("role") == "user"]
    if not questions:
        raise FormatError("the r1_zero format needs a user turn before the assistant's")
    return {
        "prompt": template.format(question=questions[-1]["content"]),
        "completion": f"<think> {reasoning} </think> <answer> {summary} </answer>",
    }


def _plain(message: dict) -> dict:
    return {"role": message["role"], "content": message.get("content") or ""}

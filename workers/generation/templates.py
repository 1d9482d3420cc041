"""Prompt templates: the R1-Zero template from the report, the model's own chat template,
and custom ones stored in the database (a text with a {question} placeholder)."""

# The template of the DeepSeek-R1 report (Table 1); {question} is replaced by the prompt.
R1_ZERO = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the "
    "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, "
    "respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. "
    "User: {question}. Assistant:"
)

BUILT_IN = {"r1-zero": R1_ZERO, "chat": None}  # None: the model's chat template


class TemplateError(ValueError):
    pass


def check_template(text: str) -> None:
    if "{question}" not in text:
        raise TemplateError("a template needs the placeholder {question}")
    try:
        text.format(question="")
    except (KeyError, IndexError, ValueError) as exc:
        raise TemplateError(f"only {{question}} may appear in braces (double other braces): {exc}") from None


def render(template: str | None, question: str):
    """A string for completion-style templates, chat messages for the chat template (template None)."""
    if template is None:
        return [{"role": "user", "content": question}]
    return template.format(question=question)


# Non-reasoning prompts (writing, factual QA, translation, self-cognition, greetings). The R1 report asked
# DeepSeek-V3 for a potential chain of thought before answering some of these, and gave none for simple queries;
# its wording is not public, this is ours. A version in the name: a changed text gets a new name, so the rendered
# prompts stored on rollouts always say which text asked them.
NON_REASONING_MODES = {
    "cot": "a short chain of thought in <think> </think>, then the answer",
    "plain": "the answer only (stored with empty reasoning)",
}
NON_REASONING_TEMPLATES = {
    "cot": ("non-reasoning-cot-v1",
            "Answer the request below. First think briefly, in a few sentences at most, inside <think> </think> "
            "tags; then write the answer itself after the closing tag, as plain text.\n\n{question}"),
    "plain": ("non-reasoning-plain-v1",
              "Answer the request below directly. Write only the answer: no reasoning, no tags.\n\n{question}"),
}


def render_non_reasoning(mode: str, question: str, chat: bool, template: str | None = None):
    """The input for a non-reasoning prompt. A saved `template` (a text with {question}) is used as the job's
    own template would be; the mode's built-in text is an instruction, so a completion-style model gets it
    inside a conversation to continue. With the chat template (`chat`), either is the user's message."""
    text = (template or NON_REASONING_TEMPLATES[mode][1]).format(question=question)
    if chat:
        return [{"role": "user", "content": text}]
    return text if template else f"A conversation between User and Assistant. User: {text}\nAssistant:"


def plain_answer(completion: str) -> str:
    """The answer of a completion asked for no reasoning: all of it, or what follows a </think> the model
    wrote anyway (a reasoning model's API puts its reasoning first, in <think> tags)."""
    close = completion.rfind("</think>")
    return (completion if close == -1 else completion[close + len("</think>"):]).strip()

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

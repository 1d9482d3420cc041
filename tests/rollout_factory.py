"""Rollouts with chosen values, written through the real bulk path (token traces too: `tokens=`)."""

from apps.datasets.models import Prompt
from apps.jobs.models import Job
from apps.rollouts.models import Rollout
from apps.rollouts.rows import rollout_row
from apps.rollouts.tokens import write_rollouts


def add_prompt(dataset, question, answer="72"):
    return Prompt.objects.create(dataset=dataset, question=question, reference_answer=answer,
                                 content_hash=Prompt.hash_for(question, answer, []))


def add_rollouts(job: Job, prompt: Prompt, completions, **columns) -> list[Rollout]:
    """One rollout per completion (sample_index in order); `columns` apply to all, a list value is per rollout."""
    start = Rollout.objects.filter(job=job, prompt=prompt, step=columns.get("step", 0)).count()
    rows = []
    for index, completion in enumerate(completions):
        row = rollout_row(job_id=job.pk, prompt_id=prompt.pk, completion=completion, sample_index=start + index,
                          prompt_text=f"User: {prompt.question}\nAssistant: <think>")
        for name, value in columns.items():
            row[name] = value[index] if isinstance(value, list) else value
        rows.append(row)
    write_rollouts(rows)
    return list(Rollout.objects.filter(job=job, prompt=prompt).order_by("pk"))[-len(rows):]


def solved(answer="72", reasoning="48 clips in April and half as many in May: 48 + 24 = 72."):
    return f"<think>{reasoning}</think> <answer>{answer}</answer>"

import random

import pytest

from apps.datasets.models import Example
from apps.datasets.versions import freeze_version
from apps.jobs import launching

VOCABULARY = [f"word{i}" for i in range(3000)]


def random_text(seed: int, n: int = 200) -> str:
    return " ".join(random.Random(seed).choices(VOCABULARY, k=n))


def with_changes(text: str, every: int) -> str:
    """One word in `every` replaced: 100 gives a word 5-shingle Jaccard of about 0.9, 10 about 0.3."""
    tokens = text.split()
    for i in range(every // 2, len(tokens), every):
        tokens[i] = f"changed{i}"
    return " ".join(tokens)


def add_examples(dataset, answers, question="Solve it."):
    """One example per answer (an answer already in the dataset is that example again)."""
    made = []
    for answer in answers:
        messages = Example.chat(question, answer)
        example = Example.objects.filter(dataset=dataset, content_hash=Example.hash_for(messages)).first()
        made.append(example or Example.objects.create(dataset=dataset, messages=messages, source="manual"))
    return made


def make_version(dataset, answers, **kwargs):
    return freeze_version(dataset, add_examples(dataset, answers), **kwargs)


def run_dedup(version, **params):
    """The deduplicate job, run in this process through the real runner; its run."""
    job = launching.run_here("deduplicate", {"version": version.pk, **params})
    return job.dedup_run


@pytest.fixture
def texts():
    base, other, third = random_text(1), random_text(2), random_text(3)
    return {"base": base, "other": other, "third": third, "close": with_changes(base, 100),
            "far": with_changes(base, 10)}

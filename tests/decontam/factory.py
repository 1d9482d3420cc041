"""A version to check and benchmark datasets to check it against, shared by the decontamination tests."""

from apps.datasets.models import Dataset, Example, Prompt
from apps.datasets.versions import freeze_version
from apps.jobs import launching

GSM = ("Natalia sold clips to forty eight of her friends in April and then she sold half as many clips "
       "in May. How many clips did Natalia sell altogether in April and May?")
MATH = ("Find the number of ordered pairs of positive integers whose product is three hundred and sixty "
        "and whose greatest common divisor is exactly six.")
OTHER = "A benchmark question about trains leaving two cities at different speeds and meeting somewhere."

# (user prompt, assistant answer) of each example, in version order.
EXAMPLES = [
    ("What is 2 + 2?", "<think>Two and two make four.</think> 4"),
    # The GSM question word for word, re-cased and re-punctuated: a true contamination.
    ("NATALIA sold clips to forty-eight of her friends in April, and then she sold half as many clips "
     "in May... how many clips did Natalia sell altogether in April and May?", "72"),
    ("Tell me a story.", "<think>Once upon a time.</think> The end."),
    # Quoted in the answer only, with <script> to prove the page escapes it.
    ("Summarise the task.", "<script>alert(1)</script> The task: find the number of ordered pairs of positive "
     "integers whose product is three hundred and sixty and whose greatest common divisor is exactly six."),
    ("Unrelated question about cooking rice?", "Rinse it, then simmer for eighteen minutes."),
]


def make_benchmarks() -> list[Dataset]:
    gsm = Dataset.objects.create(name="gsm8k-test")
    math = Dataset.objects.create(name="math500")
    for dataset, questions in ((gsm, [GSM, OTHER]), (math, [MATH])):
        for question in questions:
            Prompt.objects.create(dataset=dataset, question=question,
                                  content_hash=Prompt.hash_for(question, "", []))
    return [gsm, math]


def make_version(name="sft-mix", examples=EXAMPLES, user=None):
    dataset = Dataset.objects.create(name=name)
    rows = [Example.objects.create(dataset=dataset, messages=Example.chat(q, a)) for q, a in examples]
    return freeze_version(dataset, rows, user=user, note="to check")


def run_check(version, benchmarks, **params):
    """The decontaminate job, run here through the real claim and finish (as the command line does)."""
    return launching.run_here("decontaminate", {"version": version.pk, "benchmarks": [b.pk for b in benchmarks],
                                                **params})

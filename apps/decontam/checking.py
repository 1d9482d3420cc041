"""Decontamination: the `decontaminate` job, reviewers' decisions on its matches, and the clean version.

The job reads the version's examples by position range (their messages only, no model instances),
takes each example's prompt (user turns) and answer (assistant turns) as texts, and hands them to
`workers.hygiene.overlap.OverlapIndex`, built from the benchmark datasets' prompts. Every
(example part, benchmark prompt) pair sharing at least `min_shared` n-grams becomes a pending
`Match` with the overlapping spans on both sides. Reviewers confirm or dismiss matches; writing
the clean version freezes the version's examples in order, minus every example with a confirmed
match, and records which examples went and why in the version's provenance, its note, the check
and the audit log.
"""

import time
from typing import NamedTuple

from django import forms
from django.db import transaction
from django.db.models import Count, Exists, OuterRef
from django.utils import timezone

from apps.core import audit
from apps.core.bulk import bulk_insert
from apps.datasets.models import Dataset, DatasetVersion, DatasetVersionExample, Prompt
from apps.datasets.versions import freeze_version
from apps.decontam.models import DecontamCheck, Match
from apps.jobs.kinds import job_kind
from workers.hygiene.overlap import OverlapIndex

CHUNK = 5000  # examples read per query (by position range) and scanned together
REMOVED_LISTED = 10_000  # removed examples named one by one in the clean version's provenance
ROLE_OF_PART = {Match.Part.PROMPT: "user", Match.Part.ANSWER: "assistant"}
PARTS_CHOICES = [("both", "prompt and answer"), ("prompt", "prompt only (user turns)"),
                 ("answer", "answer only (assistant turns)")]


def part_text(messages, part: str) -> str:
    """The text of an example's `part`: its user turns (prompt) or assistant turns (answer), joined by a
    blank line. Match spans are offsets into exactly this string."""
    role = ROLE_OF_PART[part]
    if not isinstance(messages, list):
        return ""
    return "\n\n".join(m["content"] for m in messages
                       if isinstance(m, dict) and m.get("role") == role and isinstance(m.get("content"), str))


def parts_of(choice: str) -> list[str]:
    return [Match.Part.PROMPT, Match.Part.ANSWER] if choice == "both" else [choice]


# -- launching -----------------------------------------------------------------------------------


class DecontamParamsForm(forms.Form):
    """The `decontaminate` job's parameters (the same from the check page, the API and the command line)."""

    version = forms.ModelChoiceField(DatasetVersion.objects.select_related("dataset"),
                                     help_text="The dataset version whose examples are checked")
    benchmarks = forms.ModelMultipleChoiceField(
        Dataset.objects.all(), help_text="Prompt datasets holding the benchmarks (import a benchmark as prompts)")
    n = forms.IntegerField(initial=10, min_value=5, max_value=50,
                           help_text="Words per n-gram (8–13 is usual; the R1 report's summaries cite 10-grams)")
    min_shared = forms.IntegerField(initial=1, min_value=1, max_value=10_000,
                                    help_text="Distinct n-grams an example must share with a benchmark prompt")
    parts = forms.ChoiceField(choices=PARTS_CHOICES, initial="both", help_text="Which turns of each example to check")

    def clean_version(self):
        version = self.cleaned_data["version"]
        if version.example_count == 0:
            raise forms.ValidationError(f"{version} has no examples; there is nothing to check")
        return version

    def clean_benchmarks(self):
        benchmarks = self.cleaned_data["benchmarks"]
        with_prompts = set(Prompt.objects.filter(dataset__in=benchmarks).values_list("dataset_id", flat=True)
                           .distinct())
        empty = [b.name for b in benchmarks if b.pk not in with_prompts]
        if empty:
            raise forms.ValidationError(f"{', '.join(empty)} {'has' if len(empty) == 1 else 'have'} no prompts: "
                                        "import the benchmark's prompts first")
        return benchmarks


@job_kind("decontaminate", "Check a version against benchmarks", DecontamParamsForm, own_page="decontam_new",
          own_page_hint="Choose the version and the benchmark datasets on the decontamination page.")
def run_decontaminate(ctx) -> dict:
    params = ctx.params
    version = DatasetVersion.objects.select_related("dataset").get(pk=params["version"])
    benchmarks = list(Dataset.objects.filter(pk__in=params["benchmarks"]).order_by("name"))
    if version.example_count == 0:
        raise ValueError(f"{version} has no examples; there is nothing to check")
    started = time.monotonic()
    prompts = list(Prompt.objects.filter(dataset__in=benchmarks).order_by("pk").values_list("pk", "question"))
    index = OverlapIndex([question for _, question in prompts], params["n"])
    ctx.log(f"indexed {index.ngram_count:,} distinct {params['n']}-grams of {len(prompts):,} benchmark prompts "
            f"({', '.join(b.name for b in benchmarks)})")
    with transaction.atomic():
        check, _ = DecontamCheck.objects.update_or_create(job=ctx.job, defaults={
            "version": version, "n": params["n"], "min_shared": params["min_shared"], "parts": params["parts"],
            "benchmark_prompts": len(prompts), "benchmark_ngrams": index.ngram_count})
        check.benchmarks.set(benchmarks)
        Match.objects.filter(decontam_check=check).delete()  # a retried job starts over

    parts = parts_of(params["parts"])
    entries = DatasetVersionExample.objects.filter(version=version).order_by("position")
    checked = matches = 0
    matched_examples: set[int] = set()
    for low in range(0, version.example_count, CHUNK):
        ctx.check_cancelled()
        rows = entries.filter(position__gte=low, position__lt=low + CHUNK).values_list(
            "position", "example_id", "example__messages")
        texts, where = [], []
        for position, example_id, messages in rows:
            for part in parts:
                texts.append(part_text(messages, part))
                where.append((position, example_id, part))
        found = []
        for overlap in index.scan(texts, min_shared=params["min_shared"]):
            position, example_id, part = where[overlap.text]
            matched_examples.add(example_id)
            found.append({"decontam_check_id": check.pk, "example_id": example_id, "position": position, "part": part,
                          "benchmark_prompt_id": prompts[overlap.prompt][0], "shared_ngrams": overlap.shared,
                          "example_spans": [list(s) for s in overlap.text_spans],
                          "benchmark_spans": [list(s) for s in overlap.prompt_spans],
                          "decision": Match.Decision.PENDING})
        matches += bulk_insert(Match, found)
        checked += len(texts) // len(parts)
        ctx.progress(checked, version.example_count)
        ctx.report(matches=matches, matched_examples=len(matched_examples))
    seconds = round(time.monotonic() - started, 2)
    DecontamCheck.objects.filter(pk=check.pk).update(examples_checked=checked, matched_examples=len(matched_examples),
                                                     match_count=matches, seconds=seconds)
    ctx.log(f"checked {checked:,} examples in {seconds} s: {matches:,} matches in {len(matched_examples):,} examples")
    return {"check": check.pk, "examples_checked": checked, "matches": matches,
            "matched_examples": len(matched_examples), "seconds": seconds}


# -- decisions -----------------------------------------------------------------------------------

DECISIONS = {Match.Decision.CONFIRMED, Match.Decision.DISMISSED, Match.Decision.PENDING}


def decide(check: DecontamCheck, match_ids: list[int], decision: str, user, via: str = "web") -> int:
    """Set `decision` on the check's matches with these ids; how many changed. Ids of other checks'
    matches are ignored (the caller names those it refuses)."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(sorted(DECISIONS))}, not {decision!r}")
    changed = _set_decision(check.matches.filter(pk__in=match_ids), decision, user)
    audit.record(user, "decontam.decide", check, via=via, decision=decision, matches=changed,
                 match_ids=sorted(match_ids)[:100])
    return changed


def decide_at_least(check: DecontamCheck, min_shared: int, decision: str, user, via: str = "web") -> int:
    """Set `decision` on every pending match sharing at least `min_shared` n-grams (a reviewer's
    earlier decisions stay); how many changed."""
    if decision not in (Match.Decision.CONFIRMED, Match.Decision.DISMISSED):
        raise ValueError(f"decision must be confirmed or dismissed, not {decision!r}")
    pending = check.matches.filter(decision=Match.Decision.PENDING, shared_ngrams__gte=min_shared)
    changed = _set_decision(pending, decision, user)
    audit.record(user, "decontam.decide", check, via=via, decision=decision, matches=changed,
                 pending_with_at_least=min_shared)
    return changed


def _set_decision(matches, decision: str, user) -> int:
    pending = decision == Match.Decision.PENDING
    by = user if getattr(user, "is_authenticated", False) else None
    return matches.update(decision=decision, decided_by=None if pending else by,
                          decided_at=None if pending else timezone.now())


def counts(check: DecontamCheck) -> dict[str, int]:
    """Matches by decision, and the examples a clean version would leave out now."""
    by_decision = dict.fromkeys(Match.Decision.values, 0)
    for decision, number in _grouped(check.matches.all(), "decision"):
        by_decision[decision] = number
    confirmed_examples = check.matches.filter(decision=Match.Decision.CONFIRMED).values("example_id").distinct()
    return by_decision | {"confirmed_examples": confirmed_examples.count()}


def _grouped(queryset, field):
    return queryset.order_by().values_list(field).annotate(n=Count("pk"))


# -- the clean version ---------------------------------------------------------------------------


class _Entry(NamedTuple):  # what freeze_version reads of an example
    pk: int
    content_hash: str


def write_clean_version(check: DecontamCheck, user, note: str = "", via: str = "web") -> DatasetVersion:
    """Freeze the checked version's examples, in order, without those with a confirmed match.

    The new version's provenance names the check, the benchmarks, n and every removed example with
    its confirmed matches (the first REMOVED_LISTED examples; the Match rows keep them all); the
    note says it in a sentence; the check points at the version. ValueError when the job has not
    finished or nothing would be left.
    """
    if check.job.status != check.job.Status.SUCCEEDED:
        raise ValueError(f"The check's job is {check.job.status}; write a clean version once it has succeeded")
    source = check.version
    confirmed = check.matches.filter(decision=Match.Decision.CONFIRMED)
    removed: dict[int, dict] = {}
    rows = confirmed.order_by("position", "id").values_list(
        "example_id", "position", "part", "benchmark_prompt_id", "benchmark_prompt__dataset__name", "shared_ngrams",
        "decided_by__username")
    for example_id, position, part, prompt_id, benchmark, shared, by in rows.iterator(chunk_size=CHUNK):
        entry = removed.setdefault(example_id, {"example": example_id, "position": position, "matches": []})
        entry["matches"].append({"benchmark": benchmark, "benchmark_prompt": prompt_id, "part": part,
                                 "shared_ngrams": shared, "confirmed_by": by})
    if len(removed) >= source.example_count:
        raise ValueError(f"Every example of {source} has a confirmed match; a clean version would be empty")
    pending = check.matches.filter(decision=Match.Decision.PENDING).count()
    benchmarks = sorted(check.benchmarks.values_list("name", flat=True))
    reason = (f"shares {check.n}-grams with a benchmark prompt of {', '.join(benchmarks)}; "
              "a reviewer confirmed the match")
    provenance = {
        "from": "decontamination", "decontam_check": check.pk, "job": check.job_id, "source_version": source.pk,
        "benchmarks": benchmarks, "n": check.n, "min_shared": check.min_shared, "reason": reason,
        "removed_count": len(removed), "pending_matches_kept": pending,
        "removed": list(removed.values())[:REMOVED_LISTED],
    }
    written_note = (f"{source} without {len(removed):,} example(s) with confirmed {check.n}-gram matches against "
                    f"{', '.join(benchmarks)} (decontamination check #{check.pk})."
                    + (f" {pending:,} match(es) were still pending and their examples stay." if pending else ""))
    if note:
        written_note = f"{note}\n\n{written_note}"
    confirmed_here = confirmed.filter(example_id=OuterRef("example_id"))
    kept = (DatasetVersionExample.objects.filter(version=source).exclude(Exists(confirmed_here)).order_by("position")
            .values_list("example_id", "example__content_hash"))
    with transaction.atomic():
        version = freeze_version(source.dataset, (_Entry(*row) for row in kept.iterator(chunk_size=CHUNK)),
                                 user=user, note=written_note, provenance=provenance, via=via)
        DecontamCheck.objects.filter(pk=check.pk).update(
            output_version=version, removed_count=len(removed), written_at=timezone.now(),
            written_by=user if getattr(user, "is_authenticated", False) else None)
        audit.record(user, "decontam.write", check, via=via, version=version.pk, source_version=source.pk,
                     removed=len(removed), pending_matches_kept=pending, benchmarks=benchmarks, n=check.n,
                     removed_examples=sorted(removed)[:100])
    check.refresh_from_db()
    return version

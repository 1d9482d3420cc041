"""Review queues: building from a filter or an import, assignment with overlap, annotating under an
optimistic lock, agreement and adjudication, examples with provenance, freezing, permissions, escaping."""

import re
from collections import Counter

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from apps.core.models import AuditEvent
from apps.core.roles import ROLES
from apps.curation import queues, resolution, review
from apps.curation.coldstart import cold_start_text, split_for_editing
from apps.curation.models import Annotation, AnnotationRevision, ReviewItem, ReviewQueue
from apps.curation.review import EditConflict, InvalidChange, save_annotation
from apps.datasets.models import Dataset, DatasetVersion, Example
from apps.jobs.models import Job
from apps.rollouts.models import Rollout
from tests.rollout_factory import add_prompt, add_rollouts, solved

pytestmark = pytest.mark.django_db

CORRECT = 6  # of the 10 rollouts in `run`


def person(username, role=None):
    """A user in a role, without a password: hashing one costs a second here and these tests log in directly."""
    user = User.objects.create(username=username)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


def make_annotators(count, role="annotator"):
    return [person(f"ann{i}", role) for i in range(count)]


@pytest.fixture
def users(db):
    """Like conftest's `users` (same names and roles), minus the password hashing."""
    return {role: person(role + "_user", role) for role in ROLES} | {"stranger": person("stranger")}


def make_run(dataset, count=10, correct=CORRECT, kind="generate", completion=None):
    """`count` rollouts of a finished job, one per prompt; the first `correct` are correct."""
    job = Job.objects.create(kind=kind, status="succeeded", label=f"{kind} run")
    for i in range(count):
        prompt = add_prompt(dataset, f"What is {i} + {i}? ({kind} {job.pk})", str(2 * i))
        text = completion or solved(str(2 * i), f"Hmm, {i} and {i}. Wait, let me re-check: {i} + {i} = {2 * i}.")
        add_rollouts(job, prompt, [text], is_correct=i < correct, total_reward=1.0 if i < correct else 0.0)
    return job


@pytest.fixture
def run(dataset):
    return make_run(dataset)


@pytest.fixture
def target(db):
    return Dataset.objects.create(name="cold-start")


def make_queue(annotators, overlap=1, filter_=None, target=None, name="cold start", seed=None, **kwargs):
    """A queue in the filter's own order unless a seed is given, so tests know which item is where."""
    return queues.build_queue(name=name, annotators=annotators, overlap=overlap, source_filter=filter_ or {},
                              target_dataset=target, seed=seed, **kwargs)


def annotation_of(queue, user, position=1) -> Annotation:
    return Annotation.objects.get(item__queue=queue, item__position=position, annotator=user)


def judge(annotation, verdict, **changes):
    return save_annotation(annotation, annotation.annotator, {"verdict": verdict, **changes}, annotation.version)


# ---- cold-start text --------------------------------------------------------------------------


def test_cold_start_text_and_the_editors_starting_point(run):
    assert cold_start_text("a, then b", "So: b.") == "<think>\na, then b\n</think>\n\nSo: b."
    rollout = run.rollouts.order_by("pk").first()
    assert split_for_editing(rollout) == ("Hmm, 0 and 0. Wait, let me re-check: 0 + 0 = 0.", "0")
    rollout.reasoning, rollout.answer = "", "42"
    rollout.completion = "First 6, then 7: 6 × 7.</think> <answer>42</answer>"
    assert split_for_editing(rollout) == ("First 6, then 7: 6 × 7.", "42")


# ---- building queues --------------------------------------------------------------------------


def test_a_queue_from_a_filter_holds_only_the_matching_rollouts_in_order_up_to_the_limit(run, dataset, target, users):
    annotators = make_annotators(2)
    make_run(dataset, kind="other")  # correct rollouts of another job, which the filter leaves out
    queue = make_queue(annotators, filter_={"correct": "yes", "job": str(run.pk), "sort": "oldest", "after": "9"},
                       target=target, limit=4, user=users["reviewer"])
    items = list(queue.items.order_by("position").select_related("rollout"))
    correct_ids = list(run.rollouts.filter(is_correct=True).order_by("pk").values_list("pk", flat=True))
    assert [item.rollout_id for item in items] == correct_ids[:4]
    assert [item.position for item in items] == [1, 2, 3, 4]
    assert all(item.prompt_id == item.rollout.prompt_id for item in items)
    assert queue.source_filter == {"correct": "yes", "job": str(run.pk), "sort": "oldest"}  # not the page cursor
    event = AuditEvent.objects.get(action="queue.create")
    assert event.actor == users["reviewer"] and event.target_id == str(queue.pk) and event.details["items"] == 4

    everything = make_queue(annotators, filter_={"correct": "yes", "job": str(run.pk)}, target=target, name="all")
    assert everything.items.count() == CORRECT
    newest_first = list(everything.items.order_by("position").values_list("rollout_id", flat=True))
    assert newest_first == correct_ids[::-1]  # the filter's default sort: newest first


def test_a_queue_from_an_import_holds_that_import_only(dataset, target):
    imported = make_run(dataset, count=3, kind="ingest_rollouts")
    make_run(dataset, count=4, kind="generate")
    annotators = make_annotators(1)
    queue = make_queue(annotators, source=ReviewQueue.Source.IMPORT, import_job=imported.pk, target=target)
    assert queue.source_filter == {"job": str(imported.pk), "sort": "oldest"}
    assert list(queue.items.order_by("position").values_list("rollout_id", flat=True)) == list(
        imported.rollouts.order_by("pk").values_list("pk", flat=True))
    generation = Job.objects.get(kind="generate")
    with pytest.raises(queues.QueueError, match="no rollout import") as caught:
        make_queue(annotators, source=ReviewQueue.Source.IMPORT, import_job=generation.pk, name="not an import")
    assert caught.value.field == "import_job"


def test_assignment_with_overlap_gives_each_item_k_distinct_annotators_balanced(run, target):
    annotators = make_annotators(3)
    queue = make_queue(annotators, overlap=2, filter_={"job": str(run.pk)}, target=target, limit=7)
    per_item = {}
    for item_id, annotator_id in Annotation.objects.filter(item__queue=queue).values_list("item_id", "annotator_id"):
        per_item.setdefault(item_id, []).append(annotator_id)
    assert len(per_item) == 7
    assert all(len(set(ids)) == len(ids) == 2 for ids in per_item.values())
    loads = Counter(a for ids in per_item.values() for a in ids)
    assert sorted(loads.values()) == [4, 5, 5]  # 14 assignments over 3 people, never more than one apart
    assert set(Annotation.objects.filter(item__queue=queue).values_list("verdict", flat=True)) == {"pending"}
    assert queues.assign(queue) == 0  # running it again doubles nothing

    queue.annotators.add(person("late", "annotator"))
    queue.overlap = 3
    queue.save()
    assert queues.assign(queue) == 7  # fills the gap: a third annotator per item
    assert all(c == 3 for c in Counter(Annotation.objects.filter(item__queue=queue)
                                        .values_list("item_id", flat=True)).values())


@pytest.mark.parametrize(("kwargs", "field", "message"), [
    ({"overlap": 3}, "overlap", "between 1 and the number of annotators (2)"),
    ({"filter_": {"reward_min": "lots"}}, "reward_min", "Enter a number"),
    ({"filter_": {"correct": "yes", "prompt": "999999"}}, "filter", "matches no rollouts"),
    ({"limit": 0}, "limit", "at least 1"),
    ({"name": " "}, "name", "give the queue a name"),
])
def test_bad_queue_inputs_name_the_field_and_create_nothing(run, target, kwargs, field, message):
    with pytest.raises(queues.QueueError) as caught:
        make_queue(make_annotators(2), target=target, **kwargs)
    assert caught.value.field == field and message in str(caught.value)
    assert ReviewQueue.objects.count() == 0 and ReviewItem.objects.count() == 0


def test_a_viewer_cannot_be_an_annotator_and_names_are_unique(run, target, users):
    with pytest.raises(queues.QueueError, match="viewer_user may not annotate"):
        make_queue([users["viewer"]], target=target)
    make_queue([users["annotator"]], target=target)
    with pytest.raises(queues.QueueError, match="exists already"):
        make_queue([users["annotator"]], target=target)
    assert ReviewQueue.objects.count() == 1


def test_too_big_a_filter_needs_a_limit(run, target, monkeypatch):
    monkeypatch.setattr(queues, "MAX_ITEMS", 5)
    annotators = make_annotators(1)
    with pytest.raises(queues.QueueError, match="more than 5 rollouts: set a limit"):
        make_queue(annotators, target=target)
    assert make_queue(annotators, target=target, limit=5).items.count() == 5


def test_progress_per_annotator_and_per_queue(run, target):
    first, second = make_annotators(2)
    queue = make_queue([first, second], overlap=2, target=target, limit=3)
    judge(annotation_of(queue, first, 1), "accept")
    judge(annotation_of(queue, first, 2), "reject")
    judge(annotation_of(queue, second, 1), "accept")
    progress = {p.username: (p.done, p.assigned, p.percent) for p in queues.annotator_progress(queue)}
    assert progress == {"ann0": (2, 3, 67), "ann1": (1, 3, 33)}
    overall = queues.queue_progress(queue)
    assert (overall.items, overall.annotated, overall.decided, overall.done, overall.assigned) == (3, 1, 1, 3, 6)


# ---- saving annotations -----------------------------------------------------------------------


def test_saving_bumps_the_version_and_keeps_every_saved_state(run, target):
    annotator = make_annotators(1)[0]
    queue = make_queue([annotator], target=target, limit=2)
    annotation = annotation_of(queue, annotator)
    saved = save_annotation(annotation, annotator, {"verdict": "edit", "edited_reasoning": "Add 0 to 0.",
                                                    "edited_summary": "0", "readability": "4", "tags": "terse, ok"}, 1)
    assert (saved.version, saved.verdict, saved.readability, saved.tags) == (2, "edit", 4, ["terse", "ok"])
    again = save_annotation(saved, annotator, {"notes": "fine now"}, 2)
    assert again.version == 3 and again.edited_reasoning == "Add 0 to 0." and again.notes == "fine now"
    revisions = list(AnnotationRevision.objects.filter(annotation=annotation).values_list("version", "by__username",
                                                                                            "verdict", "notes"))
    assert revisions == [(2, "ann0", "edit", ""), (3, "ann0", "edit", "fine now")]


def test_a_stale_save_from_a_second_session_gets_a_clear_conflict_and_nothing_is_lost(run, target):
    annotator = make_annotators(1)[0]
    queue = make_queue([annotator], target=target, limit=1)
    tab_one, tab_two = annotation_of(queue, annotator), annotation_of(queue, annotator)  # both at version 1
    save_annotation(tab_one, annotator, {"verdict": "edit", "edited_reasoning": "mine, first tab",
                                         "edited_summary": "0"}, 1)
    with pytest.raises(EditConflict) as caught:
        save_annotation(tab_two, annotator, {"verdict": "edit", "edited_reasoning": "second tab",
                                             "edited_summary": "0"}, 1)
    message = str(caught.value)
    assert re.search(r"Not saved: ann0 saved this annotation at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \w+ \(version 2\) "
                     r"after the version 1 you started from", message), message
    stored = annotation_of(queue, annotator)
    assert stored.edited_reasoning == "mine, first tab" and stored.version == 2  # the first save stands
    assert caught.value.current.edited_reasoning == "mine, first tab"  # theirs, for the client to show
    # The second tab keeps its text and overwrites deliberately, naming the version it has now seen.
    overwritten = save_annotation(tab_two, annotator, {"edited_reasoning": "second tab"}, caught.value.current.version)
    assert overwritten.version == 3 and overwritten.edited_reasoning == "second tab"
    assert AnnotationRevision.objects.filter(annotation=stored).count() == 2  # both saved texts are kept


def test_the_save_endpoint_answers_a_conflict_with_theirs(client, run, target):
    annotator = make_annotators(1)[0]
    queue = make_queue([annotator], target=target, limit=1)
    client.force_login(annotator)
    url = reverse("queue_review_save", args=[queue.pk, 1])
    first = client.post(url, {"version": "1", "verdict": "accept", "notes": "tab one"})
    assert first.status_code == 200 and first.json()["version"] == 2 and first.json()["final_verdict"] == "accept"
    stale = client.post(url, {"version": "1", "verdict": "reject", "notes": "tab two"})
    assert stale.status_code == 409
    body = stale.json()
    assert "ann0 saved this annotation" in body["conflict"]
    assert body["theirs"]["notes"] == "tab one" and body["theirs"]["version"] == 2
    assert annotation_of(queue, annotator).notes == "tab one"
    assert client.post(url, {"version": "2", "verdict": "reject", "notes": "tab two"}).json()["version"] == 3


def test_two_annotators_on_one_item_each_keep_their_own_annotation(run, target):
    first, second = make_annotators(2)
    queue = make_queue([first, second], overlap=2, target=target, limit=1)
    judge(annotation_of(queue, first), "edit", edited_reasoning="first's rewrite", edited_summary="0")
    judge(annotation_of(queue, second), "edit", edited_reasoning="second's rewrite", edited_summary="0")
    assert annotation_of(queue, first).edited_reasoning == "first's rewrite"
    assert annotation_of(queue, second).edited_reasoning == "second's rewrite"
    assert annotation_of(queue, first).version == annotation_of(queue, second).version == 2


def test_only_the_assigned_annotator_may_save_their_annotation(client, run, target, users):
    first, second = make_annotators(2)
    queue = make_queue([first], target=target, limit=2)
    with pytest.raises(PermissionDenied):
        save_annotation(annotation_of(queue, first), second, {"verdict": "accept"}, 1)
    client.force_login(second)
    assert client.get(reverse("queue_review_item", args=[queue.pk, 1])).status_code == 403
    assert client.get(reverse("queue_review_item", args=[queue.pk, 99])).status_code == 404
    assert client.post(reverse("queue_review_save", args=[queue.pk, 1]), {"version": "1", "verdict": "accept"}
                       ).status_code == 403
    assert annotation_of(queue, first).verdict == "pending"


def test_a_viewer_cannot_annotate_even_with_an_assignment(client, run, target, users):
    queue = make_queue([users["annotator"]], target=target, limit=1)
    # Assigned while an annotator, demoted to viewer since: the row exists, the permission does not.
    Annotation.objects.create(item=queue.items.get(), annotator=users["viewer"])
    client.force_login(users["viewer"])
    page = client.get(reverse("queue_review_item", args=[queue.pk, 1]))
    assert page.status_code == 200 and "You may not annotate." in page.content.decode()
    response = client.post(reverse("queue_review_save", args=[queue.pk, 1]), {"version": "1", "verdict": "accept"})
    assert response.status_code == 403
    assert annotation_of(queue, users["viewer"]).verdict == "pending"
    client.force_login(users["stranger"])
    assert client.get(reverse("queue_list")).status_code == 403


@pytest.mark.parametrize(("changes", "field"), [
    ({"verdict": "maybe"}, "verdict"), ({"readability": "7"}, "readability"), ({"readability": "2.5"}, "readability"),
    ({"tags": ["x" * 51]}, "tags"), ({"mood": "good"}, "mood"), ({"verdict": "edit"}, "edited_reasoning"),
])
def test_bad_values_are_refused_naming_the_field_and_nothing_changes(run, target, changes, field):
    annotator = make_annotators(1)[0]
    queue = make_queue([annotator], target=target, limit=1)
    with pytest.raises(InvalidChange) as caught:
        save_annotation(annotation_of(queue, annotator), annotator, changes, 1)
    assert caught.value.field == field
    stored = annotation_of(queue, annotator)
    assert (stored.version, stored.verdict) == (1, "pending") and not stored.revisions.exists()


def test_an_edit_of_the_models_text_unchanged_is_refused_and_a_draft_leaves_the_item_to_do(client, run, target):
    annotator = make_annotators(1)[0]
    queue = make_queue([annotator], target=target, limit=2, seed=None, filter_={"sort": "oldest"})
    annotation = annotation_of(queue, annotator)
    reasoning, summary = split_for_editing(annotation.item.rollout)
    with pytest.raises(InvalidChange, match="the model's text unchanged") as caught:
        # Whitespace at the ends is not a rewrite either.
        save_annotation(annotation, annotator, {"verdict": "edit", "edited_reasoning": f"  {reasoning}\n",
                                                "edited_summary": summary}, 1)
    assert caught.value.field == "edited_reasoning"
    assert (annotation_of(queue, annotator).version, annotation_of(queue, annotator).verdict) == (1, "pending")

    # A draft rewrite saved without a verdict: kept, but the item is still to do and nothing is decided.
    draft = save_annotation(annotation, annotator, {"edited_reasoning": reasoning + " Checked.",
                                                    "edited_summary": summary}, 1)
    assert draft.verdict == "pending" and draft.edited_reasoning.endswith("Checked.")
    assert queues.queue_progress(queue).done == 0 and draft.item.final_verdict == ""
    assert review.next_pending_position(queue, annotator) == 1
    assert not Example.objects.exists()

    client.force_login(annotator)
    url = reverse("queue_review_save", args=[queue.pk, 1])
    refused = client.post(url, {"version": "2", "verdict": "edit", "edited_reasoning": reasoning,
                                "edited_summary": summary})
    assert refused.status_code == 400 and "the model's text unchanged" in refused.json()["error"]
    assert annotation_of(queue, annotator).version == 2
    recorded = client.post(url, {"version": "2", "verdict": "edit", "edited_reasoning": reasoning + " Checked.",
                                 "edited_summary": summary})
    assert recorded.status_code == 200 and recorded.json()["final_verdict"] == "edit"
    assert queues.queue_progress(queue).done == 1 and review.next_pending_position(queue, annotator) == 2


def test_a_reviewers_own_edit_of_the_unchanged_text_is_refused(run, target, users):
    first, second = make_annotators(2)
    queue = make_queue([first, second], overlap=2, target=target, limit=1)
    judge(annotation_of(queue, first), "accept")
    judge(annotation_of(queue, second), "reject")
    item = queue.items.get()
    reasoning, summary = split_for_editing(item.rollout)
    with pytest.raises(resolution.InvalidDecision, match="unchanged: change it, or decide \"accept\""):
        resolution.adjudicate(item, users["reviewer"], "reviewer", 1, reasoning=reasoning, summary=summary)
    item.refresh_from_db()
    assert (item.final_verdict, item.version, item.adjudicated_by) == ("", 1, None)


def test_bad_input_over_http_is_a_400_naming_the_field(client, run, target):
    annotator = make_annotators(1)[0]
    queue = make_queue([annotator], target=target, limit=1)
    client.force_login(annotator)
    url = reverse("queue_review_save", args=[queue.pk, 1])
    response = client.post(url, {"version": "1", "readability": "9"})
    assert response.status_code == 400 and response.json()["field"] == "readability"
    assert client.post(url, {"version": "one", "verdict": "accept"}).json()["field"] == "version"


def test_verdict_changes_are_audited_and_autosaves_are_not(run, target):
    annotator = make_annotators(1)[0]
    queue = make_queue([annotator], target=target, limit=1)
    annotation = judge(annotation_of(queue, annotator), "accept")
    annotation = save_annotation(annotation, annotator, {"notes": "typing"}, annotation.version)
    annotation = save_annotation(annotation, annotator, {"notes": "typing more"}, annotation.version)
    annotation = judge(annotation, "edit", edited_reasoning="rewritten", edited_summary="0")
    annotation = save_annotation(annotation, annotator, {"edited_reasoning": "rewritten again"}, annotation.version)
    judge(annotation, "reject")
    actions = list(AuditEvent.objects.filter(action__startswith="annotation.").order_by("id")
                   .values_list("action", "actor__username"))
    assert actions == [("annotation.accept", "ann0"), ("annotation.edit", "ann0"), ("annotation.reject", "ann0")]


# ---- agreement, adjudication and examples -----------------------------------------------------


def test_agreeing_verdicts_decide_the_item_and_make_an_example_with_provenance(run, target):
    first, second = make_annotators(2)
    queue = make_queue([first, second], overlap=2, target=target, limit=2, filter_={"sort": "oldest"})
    judge(annotation_of(queue, first, 1), "accept")
    item = queue.items.get(position=1)
    assert item.final_verdict == "" and not Example.objects.exists()  # one verdict of two is not agreement
    judge(annotation_of(queue, second, 1), "accept")
    item.refresh_from_db()
    assert item.final_verdict == "accept" and item.example is not None
    example, rollout = item.example, item.rollout
    assert example.dataset == target and example.source == "annotation" and example.source_rollout == rollout
    assert example.messages == [{"role": "user", "content": rollout.prompt.question},
                                {"role": "assistant", "content": rollout.completion}]
    assert example.annotation == annotation_of(queue, first, 1)
    provenance = example.provenance
    assert {k: provenance[k] for k in ("rollout", "job", "model_version", "queue", "adjudicated_by")} == {
        "rollout": rollout.pk, "job": run.pk, "model_version": None, "queue": queue.pk, "adjudicated_by": None}
    assert [(e["by"], e["verdict"], e["version"]) for e in provenance["edits"]] == [
        ("ann0", "accept", 2), ("ann1", "accept", 2)]

    judge(annotation_of(queue, first, 2), "edit", edited_reasoning="Two and two.", edited_summary="4")
    judge(annotation_of(queue, second, 2), "edit", edited_reasoning="Two and two.", edited_summary="4")
    edited = queue.items.get(position=2)
    assert edited.final_verdict == "edit"
    assert edited.example.messages[1]["content"] == cold_start_text("Two and two.", "4")


def test_disagreeing_verdicts_and_differing_edits_wait_for_a_reviewer(run, target):
    first, second = make_annotators(2)
    queue = make_queue([first, second], overlap=2, target=target, limit=3, filter_={"sort": "oldest"})
    judge(annotation_of(queue, first, 1), "accept")
    judge(annotation_of(queue, second, 1), "reject")
    judge(annotation_of(queue, first, 2), "edit", edited_reasoning="one way", edited_summary="2")
    judge(annotation_of(queue, second, 2), "edit", edited_reasoning="another way", edited_summary="2")
    judge(annotation_of(queue, first, 3), "reject")  # the other verdict is still pending
    assert list(resolution.needing_adjudication(queue).values_list("position", flat=True)) == [1, 2]
    assert not Example.objects.exists()


def test_adjudication_takes_one_annotators_edit_and_credits_everyone(client, run, target, users):
    first, second = make_annotators(2)
    queue = make_queue([first, second], overlap=2, target=target, limit=1)
    judge(annotation_of(queue, first), "accept")
    chosen = judge(annotation_of(queue, second), "edit", edited_reasoning="Zero plus zero is zero.",
                   edited_summary="The answer is 0.")
    item = queue.items.get()
    client.force_login(users["reviewer"])
    page = client.get(reverse("queue_adjudicate_item", args=[queue.pk, 1])).content.decode()
    assert "ann0" in page and "ann1" in page and "<ins>" in page  # side by side, with the edit's diff
    response = client.post(reverse("queue_adjudicate_item", args=[queue.pk, 1]),
                           {"decision": f"annotation:{chosen.pk}", "version": "1"})
    assert response.status_code == 302
    item.refresh_from_db()
    assert (item.final_verdict, item.final_source, item.adjudicated_by, item.version) == (
        "edit", f"annotation:{chosen.pk}", users["reviewer"], 2)
    example = item.example
    assert example.messages[1]["content"] == cold_start_text("Zero plus zero is zero.", "The answer is 0.")
    assert example.annotation == chosen and example.provenance["adjudicated_by"] == "reviewer_user"
    assert [(e["by"], e["verdict"]) for e in example.provenance["edits"]] == [
        ("ann0", "accept"), ("ann1", "edit"), ("reviewer_user", "edit")]
    event = AuditEvent.objects.get(action="item.adjudicate")
    assert event.actor == users["reviewer"] and event.details["verdict"] == "edit"
    # A reviewer's decision stands: a later annotation change does not undo it.
    judge(annotation_of(queue, first), "reject")
    item.refresh_from_db()
    assert item.final_verdict == "edit" and item.example == example


def test_two_reviewers_adjudicating_one_item_do_not_silently_overwrite(client, run, target, users):
    first, second = make_annotators(2)
    queue = make_queue([first, second], overlap=2, target=target, limit=1)
    judge(annotation_of(queue, first), "accept")
    judge(annotation_of(queue, second), "reject")
    other_reviewer = person("reviewer_two", "reviewer")
    item = queue.items.get()
    resolution.adjudicate(item, users["reviewer"], "accept", 1)
    with pytest.raises(resolution.AdjudicationConflict, match=r"reviewer_user decided this item \(accept\) at .* "
                                                              r"\(version 2\), after the version 1"):
        resolution.adjudicate(item, other_reviewer, "reject", 1)
    item.refresh_from_db()
    assert item.final_verdict == "accept" and item.adjudicated_by == users["reviewer"]

    client.force_login(other_reviewer)
    url = reverse("queue_adjudicate_item", args=[queue.pk, 1])
    stale = client.post(url, {"decision": "reviewer", "version": "1", "reasoning": "my careful rewrite",
                              "summary": "0"})
    assert stale.status_code == 409
    page = stale.content.decode()
    assert "reviewer_user decided this item" in page and "my careful rewrite" in page  # their text kept
    assert 'name="version" value="2"' in page
    assert client.post(url, {"decision": "reviewer", "version": "2", "reasoning": "my careful rewrite",
                             "summary": "0"}).status_code == 302
    item.refresh_from_db()
    assert (item.final_verdict, item.final_source, item.adjudicated_by) == ("edit", "reviewer", other_reviewer)
    assert item.example.messages[1]["content"] == cold_start_text("my careful rewrite", "0")
    assert not Example.objects.exclude(pk=item.example_id).exists()  # the accepted text, now unused, is gone


def test_only_reviewers_adjudicate(client, run, target, users):
    queue = make_queue([users["annotator"]], target=target, limit=1)
    client.force_login(users["annotator"])
    assert client.get(reverse("queue_adjudicate", args=[queue.pk])).status_code == 403
    assert client.post(reverse("queue_adjudicate_item", args=[queue.pk, 1]),
                       {"decision": "accept", "version": "1"}).status_code == 403
    with pytest.raises(PermissionDenied):
        resolution.adjudicate(queue.items.get(), users["annotator"], "accept", 1)


def test_rejects_never_become_examples_and_a_changed_mind_drops_the_unused_example(run, target):
    annotator = make_annotators(1)[0]
    queue = make_queue([annotator], target=target, limit=2)
    judge(annotation_of(queue, annotator, 1), "reject")
    assert queue.items.get(position=1).final_verdict == "reject" and not Example.objects.exists()
    annotation = judge(annotation_of(queue, annotator, 2), "accept")
    assert Example.objects.count() == 1
    judge(annotation, "reject")
    assert not Example.objects.exists() and queue.items.get(position=2).example is None


# ---- freezing ---------------------------------------------------------------------------------


def decided_queue(target, users):
    annotator = users["annotator"]
    queue = make_queue([annotator], target=target, limit=4, filter_={"sort": "oldest"})
    judge(annotation_of(queue, annotator, 1), "accept")
    judge(annotation_of(queue, annotator, 2), "reject")
    judge(annotation_of(queue, annotator, 3), "edit", edited_reasoning="Three and three.", edited_summary="6")
    return queue


def test_freezing_a_queue_makes_a_version_of_its_accepted_and_edited_examples(client, run, target, users):
    queue = decided_queue(target, users)
    client.force_login(users["reviewer"])
    response = client.post(reverse("queue_freeze", args=[queue.pk]), {"note": "first cut"})
    assert response.status_code == 302
    version = DatasetVersion.objects.get()
    assert version.dataset == target and version.example_count == 2 and version.note == "first cut"
    assert version.provenance == {"queue": queue.pk, "name": "cold start", "accepted": 1, "edited": 1, "rejected": 1,
                                  "items": 2, "merged": 0}
    texts = [example.messages[1]["content"] for example in version.ordered_examples()]
    first_rollout = queue.items.get(position=1).rollout
    assert texts == [first_rollout.completion, cold_start_text("Three and three.", "6")]  # queue order
    event = AuditEvent.objects.get(action="version.freeze")
    assert event.actor == users["reviewer"] and event.target_id == str(version.pk)
    page = client.get(reverse("queue_detail", args=[queue.pk])).content.decode()
    assert "cold-start v1" in page


def test_a_viewer_cannot_freeze_and_an_empty_queue_says_so(client, run, target, users):
    queue = decided_queue(target, users)
    client.force_login(users["viewer"])
    assert client.post(reverse("queue_freeze", args=[queue.pk])).status_code == 403
    client.force_login(users["annotator"])
    assert client.post(reverse("queue_freeze", args=[queue.pk])).status_code == 403
    assert not DatasetVersion.objects.exists()
    empty = make_queue([users["annotator"]], target=target, limit=1, name="untouched")
    client.force_login(users["reviewer"])
    page = client.post(reverse("queue_freeze", args=[empty.pk]), follow=True).content.decode()
    assert "nothing to freeze" in page and not DatasetVersion.objects.exists()


# ---- pages ------------------------------------------------------------------------------------


def test_building_a_queue_from_the_browser_filter_page(client, run, target, users):
    client.force_login(users["annotator"])
    assert client.get(reverse("queue_create")).status_code == 403
    client.force_login(users["reviewer"])
    page = client.get(reverse("queue_create"), {"correct": "yes", "job": run.pk}).content.decode()
    assert f"matches <strong>{CORRECT}</strong> rollouts" in page and "<code>correct=yes</code>" in page
    form = {"name": "poor readability", "source": "filter", "filter_query": f"correct=yes&job={run.pk}",
            "overlap": "1", "annotators": [users["annotator"].pk], "target_dataset": "cold-start", "limit": "",
            "guidelines": "Keep the **math**.", "suggested_tags": "verbose, language mix"}
    bad = client.post(reverse("queue_create"), {**form, "overlap": "2"})
    assert bad.status_code == 400 and "between 1 and the number of annotators (1)" in bad.content.decode()
    assert not ReviewQueue.objects.exists()
    response = client.post(reverse("queue_create"), form)
    queue = ReviewQueue.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("queue_detail", args=[queue.pk])
    assert queue.items.count() == CORRECT and queue.suggested_tags == ["verbose", "language mix"]
    detail = client.get(reverse("queue_detail", args=[queue.pk])).content.decode()
    assert "<strong>Keep the <strong>math</strong>" not in detail and "Keep the <strong>math</strong>" in detail


def test_queue_pages_show_progress_agreement_and_links(client, run, target, users):
    first, second = make_annotators(2)
    queue = make_queue([first, second], overlap=2, target=target, limit=2)
    for position in (1, 2):
        judge(annotation_of(queue, first, position), "accept")
        judge(annotation_of(queue, second, position), "accept")
    client.force_login(users["reviewer"])
    listing = client.get(reverse("queue_list")).content.decode()
    assert "cold start" in listing
    detail = client.get(reverse("queue_detail", args=[queue.pk])).content.decode()
    assert re.search(r'id="fleiss-kappa"><b>n/a</b>', detail)  # every verdict the same: undefined, no crash
    assert "too few" in detail  # two shared items are not enough for a pair's kappa
    assert 'id="adjudicate-link"' in detail and 'id="freeze-form"' in detail
    client.force_login(first)
    mine = client.get(reverse("queue_detail", args=[queue.pk])).content.decode()
    assert 'id="review-link"' in mine and 'id="freeze-form"' not in mine and 'id="adjudicate-link"' not in mine


def test_the_queue_entry_goes_to_the_annotators_next_pending_item(client, run, target):
    annotator = make_annotators(1)[0]
    queue = make_queue([annotator], target=target, limit=3)
    judge(annotation_of(queue, annotator, 1), "accept")
    client.force_login(annotator)
    response = client.get(reverse("queue_review", args=[queue.pk]))
    assert response["Location"] == reverse("queue_review_item", args=[queue.pk, 2])
    for position in (2, 3):
        judge(annotation_of(queue, annotator, position), "reject")
    assert client.get(reverse("queue_review", args=[queue.pk]))["Location"] == reverse("queue_detail",
                                                                                        args=[queue.pk])


HANDLER_IN_A_TAG = re.compile(r"<[^<>]*\bon[a-z]+\s*=", re.IGNORECASE)


def test_hostile_rollout_text_is_escaped_on_the_review_and_adjudication_screens(client, dataset, target, users):
    hostile = ('<script>window.pwned=1</script><think><img src=x onerror="window.pwned=2">'
               '</textarea><script>alert(1)</script></think><answer><b onclick="x()">7</b></answer>')
    make_run(dataset, count=1, completion=hostile)
    queue = make_queue([users["annotator"], users["reviewer"]], overlap=2, target=target)
    client.force_login(users["annotator"])
    html = client.get(reverse("queue_review_item", args=[queue.pk, 1])).content.decode()
    for raw in ("<script>window.pwned", "<script>alert(1)", "<img src=x", "</textarea><script>", "<b onclick"):
        assert raw not in html, raw
    assert not HANDLER_IN_A_TAG.search(html)  # onerror= and onclick= appear only as escaped text
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html  # shown as text in the raw completion
    assert "&lt;/textarea&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html  # inside the editor's textarea
    judge(annotation_of(queue, users["annotator"]), "accept")
    judge(annotation_of(queue, users["reviewer"]), "edit", edited_reasoning=hostile, edited_summary="<b>7</b>")
    client.force_login(users["reviewer"])
    adjudication = client.get(reverse("queue_adjudicate_item", args=[queue.pk, 1])).content.decode()
    for raw in ("<script>window.pwned", "<script>alert(1)", "<img src=x"):
        assert raw not in adjudication, raw
    assert not HANDLER_IN_A_TAG.search(adjudication)


def test_the_review_screen_shows_the_prompt_the_rollout_and_the_editor(client, run, target):
    annotator = make_annotators(1)[0]
    queue = make_queue([annotator], target=target, limit=2, filter_={"sort": "oldest"},
                       guidelines="Rewrite *long* chains.", suggested_tags=["verbose"])
    rollout = Rollout.objects.get(pk=queue.items.get(position=1).rollout_id)
    client.force_login(annotator)
    html = client.get(reverse("queue_review_item", args=[queue.pk, 1])).content.decode()
    assert rollout.prompt.question in html and "Rewrite <em>long</em> chains." in html
    assert 'data-tag="verbose"' in html and 'id="editor" class="editor" hidden' in html
    assert f'data-next-url="/review/{queue.pk}/2/"' in html and 'data-previous-url=""' in html
    assert "<think>\nHmm, 0 and 0." not in html and "&lt;think&gt;\nHmm, 0 and 0." in html  # the preview, escaped


def test_the_new_queue_page_offers_an_import(client, dataset, target, users):
    imported = make_run(dataset, count=2, kind="ingest_rollouts")
    client.force_login(users["reviewer"])
    page = client.get(reverse("queue_create"), {"import_job": imported.pk}).content.decode()
    assert f'<option value="{imported.pk}" selected>' in page
    assert re.search(r'<input type="radio" name="source" value="import"[^>]* checked>', page)
    response = client.post(reverse("queue_create"), {
        "name": "imported", "source": "import", "import_job": imported.pk, "overlap": "1",
        "annotators": [users["annotator"].pk], "target_dataset": "cold-start"})
    assert response.status_code == 302
    assert ReviewQueue.objects.get().items.count() == 2
    missing = client.post(reverse("queue_create"), {"name": "no import", "source": "import", "overlap": "1",
                                                    "annotators": [users["annotator"].pk],
                                                    "target_dataset": "cold-start"})
    assert missing.status_code == 400 and "choose the import to review" in missing.content.decode()


# ---- spreading a queue across prompts ---------------------------------------------------------


@pytest.fixture
def samples(dataset):
    """A run with 4 prompts and 3 samples of each, written prompt by prompt (the filter's order groups them)."""
    job = Job.objects.create(kind="generate", status="succeeded", label="three samples each")
    for i in range(4):
        prompt = add_prompt(dataset, f"What is {i} times 3? (samples)", str(3 * i))
        add_rollouts(job, prompt, [solved(str(3 * i), f"{i} three times: {3 * i}.")] * 3, is_correct=True)
    return job


def items_of(queue) -> list[tuple[int, int]]:
    return list(queue.items.order_by("position").values_list("rollout_id", "prompt_id"))


def test_a_spread_queue_takes_one_rollout_per_prompt_before_a_second(samples, target):
    annotators = make_annotators(1)
    by_filter = make_queue(annotators, filter_={"job": str(samples.pk), "sort": "oldest"}, target=target, limit=4,
                           name="filter order")
    assert len({prompt for _, prompt in items_of(by_filter)}) == 2  # 3 samples of one prompt, 1 of the next

    four = make_queue(annotators, filter_={"job": str(samples.pk)}, target=target, limit=4, seed=0, name="four")
    assert four.seed == 0 and len({prompt for _, prompt in items_of(four)}) == 4
    six = make_queue(annotators, filter_={"job": str(samples.pk)}, target=target, limit=6, seed=0, name="six")
    assert sorted(Counter(prompt for _, prompt in items_of(six)).values()) == [1, 1, 2, 2]
    assert items_of(six)[:4] == items_of(four)  # a bigger limit takes the same first items

    everything = items_of(make_queue(annotators, filter_={"job": str(samples.pk)}, target=target, seed=0,
                                     name="all"))
    assert len(everything) == 12 and len({rollout for rollout, _ in everything}) == 12
    for start in (0, 4, 8):  # three rounds, each with every prompt once
        assert len({prompt for _, prompt in everything[start:start + 4]}) == 4

    # The seed fixes the order: the same seed rebuilds it, another seed gives another.
    again = make_queue(annotators, filter_={"job": str(samples.pk)}, target=target, seed=0, name="all again")
    assert items_of(again) == everything
    orders = {tuple(items_of(make_queue(annotators, filter_={"job": str(samples.pk)}, target=target, seed=seed,
                                        name=f"seed {seed}"))) for seed in (1, 2, 3)}
    assert len(orders | {tuple(everything)}) == 4
    first_rounds = [[prompt for _, prompt in order[:4]] for order in orders]
    assert any(r != sorted(r) for r in first_rounds)  # prompts come in a shuffled order, not by id
    event = AuditEvent.objects.filter(action="queue.create").order_by("-id").first()
    assert event.details["seed"] == 3


def test_the_queue_form_records_the_seed_and_can_create_its_target_dataset(client, samples, target, users):
    client.force_login(users["reviewer"])
    page = client.get(reverse("queue_create"), {"job": samples.pk}).content.decode()
    assert 'name="seed"' in page and 'value="spread"' in page
    assert 'name="new_dataset"' not in page and "it must exist already (an admin creates datasets)" in page
    form = {"name": "spread", "source": "filter", "filter_query": f"job={samples.pk}", "overlap": "1",
            "annotators": [users["annotator"].pk], "limit": "4", "order": "spread", "seed": "7"}
    no_target = client.post(reverse("queue_create"), form)
    assert no_target.status_code == 400 and "choose the dataset accepted items go into" in no_target.content.decode()
    refused = client.post(reverse("queue_create"), {**form, "new_dataset": "made-by-a-reviewer"})
    assert refused.status_code == 400 and not Dataset.objects.filter(name="made-by-a-reviewer").exists()

    client.force_login(users["admin"])
    page = client.get(reverse("queue_create"), {"job": samples.pk}).content.decode()
    assert 'name="new_dataset"' in page
    bad = client.post(reverse("queue_create"), {**form, "new_dataset": "fresh-set", "overlap": "2"})
    assert bad.status_code == 400 and not Dataset.objects.filter(name="fresh-set").exists()  # all or nothing
    both = client.post(reverse("queue_create"), {**form, "new_dataset": "fresh-set", "target_dataset": "cold-start"})
    assert both.status_code == 400 and "not both" in both.content.decode()
    made = client.post(reverse("queue_create"), {**form, "new_dataset": "fresh-set"})
    queue = ReviewQueue.objects.get(name="spread")
    assert made.status_code == 302 and queue.target_dataset.name == "fresh-set" and queue.seed == 7
    assert len({prompt for _, prompt in items_of(queue)}) == 4
    assert "spread across prompts (seed 7)" in client.get(reverse("queue_detail", args=[queue.pk])).content.decode()
    taken = client.post(reverse("queue_create"), {**form, "name": "again", "new_dataset": "fresh-set"})
    assert taken.status_code == 400 and "exists already: choose it as the target" in taken.content.decode()
    in_order = client.post(reverse("queue_create"), {**form, "name": "filter order", "order": "filter",
                                                     "target_dataset": "fresh-set"})
    assert in_order.status_code == 302 and ReviewQueue.objects.get(name="filter order").seed is None


def test_freezing_says_how_many_identical_items_were_merged_and_an_empty_queue_cannot_freeze(client, samples,
                                                                                             target, users):
    annotator = users["annotator"]
    queue = make_queue([annotator], filter_={"job": str(samples.pk), "sort": "oldest"}, target=target, limit=4)
    client.force_login(users["reviewer"])
    detail = client.get(reverse("queue_detail", args=[queue.pk])).content.decode()
    assert re.search(r'<button type="submit" disabled title="No item is accepted or edited yet">Freeze version',
                     detail)
    assert "nothing to freeze yet" in detail

    for position in (1, 2, 3):  # three samples of one prompt with the same text
        judge(annotation_of(queue, annotator, position), "accept")
    judge(annotation_of(queue, annotator, 4), "reject")
    detail = client.get(reverse("queue_detail", args=[queue.pk])).content.decode()
    assert '<button type="submit">Freeze version' in detail
    assert "the 3 accepted and edited items, in queue order, into cold-start: 1 distinct example" in detail
    page = client.post(reverse("queue_freeze", args=[queue.pk]), follow=True).content.decode()
    version = DatasetVersion.objects.get()
    assert version.example_count == 1 and (version.provenance["items"], version.provenance["merged"]) == (3, 2)
    assert (f"Froze cold-start v1 with 1 example (hash {version.content_hash[:12]}): 3 accepted or edited items "
            "→ 1 example; 2 were identical to another item (the same prompt and text) and were merged") in page

"""Two saves of one annotation at the same moment, on two database connections: exactly one lands."""

import threading

import pytest
from django.db import connection

from apps.curation.models import Annotation
from apps.curation.review import EditConflict, save_annotation
from tests.curation.test_review import annotation_of, make_annotators, make_queue, make_run

pytestmark = pytest.mark.django_db(transaction=True)


def test_simultaneous_saves_of_one_version_let_exactly_one_through(dataset):
    make_run(dataset, count=1)
    first, second = make_annotators(2)
    queue = make_queue([first, second], overlap=2)
    start = threading.Barrier(2)
    outcomes = {}

    def tab(name):
        try:
            annotation = annotation_of(queue, first)
            start.wait()
            save_annotation(annotation, first, {"verdict": "edit", "edited_reasoning": name, "edited_summary": "0"}, 1)
            outcomes[name] = "saved"
        except EditConflict as exc:
            outcomes[name] = str(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=tab, args=(name,)) for name in ("tab one", "tab two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(o == "saved" for o in outcomes.values()) == [False, True], outcomes
    winner = next(name for name, outcome in outcomes.items() if outcome == "saved")
    loser_message = next(outcome for outcome in outcomes.values() if outcome != "saved")
    stored = annotation_of(queue, first)
    assert stored.version == 2 and stored.edited_reasoning == winner
    assert "ann0 saved this annotation" in loser_message and "(version 2)" in loser_message


def test_the_last_two_verdicts_saved_together_still_decide_the_item(dataset):
    make_run(dataset, count=1)
    first, second = make_annotators(2)
    queue = make_queue([first, second], overlap=2)
    start = threading.Barrier(2)

    def annotate(user):
        try:
            annotation = annotation_of(queue, user)
            start.wait()
            save_annotation(annotation, user, {"verdict": "reject"}, 1)
        finally:
            connection.close()

    threads = [threading.Thread(target=annotate, args=(user,)) for user in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert set(Annotation.objects.filter(item__queue=queue).values_list("verdict", flat=True)) == {"reject"}
    # Each resolver locks the item, so the second sees the first's verdict: neither leaves it undecided.
    assert queue.items.get().final_verdict == "reject"

"""The review screen's keyboard flow in headless Chromium, checked against the database after each step.

An annotator goes through a queue with the keyboard only: accept (a), next (j), previous (k),
reject (r), edit (e) and type a rewrite while the live diff follows, save (Ctrl+S), let the
autosave fire after a pause, rate readability (1-5), open the shortcuts (?), then meet a save
from another tab: the conflict shows, nothing typed is lost, and "keep mine" overwrites on purpose.
Screenshots go to test-artifacts/.
"""

import re

import pytest
from django.test import Client
from playwright.sync_api import expect, sync_playwright

from apps.curation.models import Annotation, ReviewItem
from apps.datasets.models import Dataset, DatasetVersion
from tests.conftest import wait_for
from tests.curation.test_review import (
    annotation_of,
    judge,
    make_annotators,
    make_queue,
    make_run,
    person,
)
from tests.r1studio.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOSTILE = "<script>window.pwned = 1</script><think>Add them: 2 + 2 = 4.</think> <answer>4</answer>"


@pytest.fixture
def queue(dataset):
    make_run(dataset, count=2)
    make_run(dataset, count=1, completion=HOSTILE)
    annotator = make_annotators(1)[0]
    target = Dataset.objects.create(name="cold-start")
    return make_queue([annotator], target=target, filter_={"sort": "oldest"}, suggested_tags=["verbose"],
                      guidelines="Rewrite into a **readable** chain of thought.")


@pytest.fixture
def annotator(queue):
    return queue.annotators.get()


@pytest.fixture
def open_as(live_server, monkeypatch):
    """open_as(user) -> a browser context logged in as that user."""
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    errors = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

        def open_as(user):
            session = Client()
            session.force_login(user)
            context = browser.new_context(base_url=live_server.url, viewport={"width": 1400, "height": 1000})
            context.add_cookies([{"name": "sessionid", "value": session.cookies["sessionid"].value,
                                  "url": live_server.url}])
            context.on("page", lambda page: page.on("pageerror", lambda error: errors.append(str(error))))
            return context

        yield open_as
        browser.close()
    assert errors == [], errors  # no page threw a JavaScript error


@pytest.fixture
def browser_context(open_as, annotator):
    return open_as(annotator)


def stored(queue, annotator, position) -> Annotation:
    return Annotation.objects.get(item__queue=queue, item__position=position, annotator=annotator)


def wait_stored(queue, annotator, position, message, **expected):
    def matches():
        annotation = stored(queue, annotator, position)
        return all(getattr(annotation, name) == value for name, value in expected.items()) and annotation

    return wait_for(matches, timeout=10, message=message)


def test_an_annotator_reviews_with_the_keyboard_only(browser_context, queue, annotator, artifacts):
    page = browser_context.new_page()
    status = page.locator("#save-status")
    page.goto(f"/review/{queue.pk}/")  # the next pending item
    expect(page).to_have_url(re.compile(rf"/review/{queue.pk}/1/$"))
    expect(page.locator("#verdict-shown")).to_have_text("pending")

    page.keyboard.press("a")
    expect(status).to_contain_text("Saved · version 2")
    wait_stored(queue, annotator, 1, "accept saved", verdict="accept", version=2)
    expect(page.locator("button[data-verdict=accept]")).to_have_attribute("aria-pressed", "true")
    page.screenshot(path=artifacts / "review-accepted.png", full_page=True)

    page.keyboard.press("j")
    expect(page).to_have_url(re.compile(rf"/review/{queue.pk}/2/$"))
    page.keyboard.press("k")
    expect(page).to_have_url(re.compile(rf"/review/{queue.pk}/1/$"))
    expect(page.locator("#verdict-shown")).to_have_text("accept")  # what was saved comes back

    page.keyboard.press("j")
    expect(page).to_have_url(re.compile(rf"/review/{queue.pk}/2/$"))
    page.keyboard.press("r")
    expect(status).to_contain_text("Saved")
    wait_stored(queue, annotator, 2, "reject saved", verdict="reject", version=2)
    assert stored(queue, annotator, 1).verdict == "accept"

    page.keyboard.press("j")  # the hostile rollout: shown as text, never run
    expect(page).to_have_url(re.compile(rf"/review/{queue.pk}/3/$"))
    expect(page.locator("#raw-completion")).to_contain_text("<script>window.pwned = 1</script>")
    assert page.evaluate("window.pwned") is None

    # Edit: the editor opens on the rollout's own reasoning and answer, focused in the reasoning; opening it
    # records nothing (the verdict is still pending until a changed rewrite is saved).
    page.keyboard.press("e")
    editor = page.locator("#editor")
    reasoning, summary = page.locator("#edited_reasoning"), page.locator("#edited_summary")
    expect(editor).to_be_visible()
    expect(reasoning).to_be_focused()
    expect(reasoning).to_have_value("Add them: 2 + 2 = 4.")
    expect(page.locator("#verdict-shown")).to_have_text("pending")
    assert (stored(queue, annotator, 3).verdict, stored(queue, annotator, 3).version) == ("pending", 1)
    page.keyboard.press("Control+End")
    page.keyboard.type(" Check again: a sum of two and two is four.")  # letters that are shortcuts elsewhere
    expect(page.locator("#diff ins").first).to_contain_text("Check again")  # the live diff follows the typing
    expect(page.locator("#preview")).to_contain_text("<think>\nAdd them: 2 + 2 = 4. Check again")
    expect(page.locator("#verdict-shown")).to_have_text("pending")  # typing "a" in a field did not accept
    page.keyboard.press("Control+s")
    wait_stored(queue, annotator, 3, "Ctrl+S saved the rewrite",
                edited_reasoning="Add them: 2 + 2 = 4. Check again: a sum of two and two is four.", verdict="edit")
    expect(status).to_contain_text("Saved")
    expect(page.locator("#verdict-shown")).to_have_text("edit")
    page.screenshot(path=artifacts / "review-editing.png", full_page=True)

    # Autosave: type in the summary and stop; nothing is sent before the pause, then it saves by itself.
    summary.click()
    page.keyboard.press("Control+End")
    page.keyboard.type(" (so the answer is 4)")
    expect(status).to_have_text("Unsaved changes…")
    assert stored(queue, annotator, 3).edited_summary == "4"
    expect(page.locator("#diff ins").last).to_contain_text("so the answer is 4")
    wait_stored(queue, annotator, 3, "autosave after a pause", edited_summary="4 (so the answer is 4)")
    expect(status).to_contain_text("Saved")

    # Escape leaves the field; the shortcuts work again: readability and the help.
    page.keyboard.press("Escape")
    page.keyboard.press("4")
    wait_stored(queue, annotator, 3, "readability 4", readability=4)
    expect(page.locator("input[name=readability][value='4']")).to_be_checked()
    page.keyboard.press("?")
    expect(page.locator("#shortcuts")).to_be_visible()
    page.screenshot(path=artifacts / "review-shortcuts.png")
    page.keyboard.press("Escape")
    expect(page.locator("#shortcuts")).to_be_hidden()

    # Another tab saves the same annotation; this tab's next save is refused, and says by whom.
    other = browser_context.new_page()
    other.goto(f"/review/{queue.pk}/3/")
    other.locator("#notes").fill("from the other tab")
    other.keyboard.press("Control+s")
    wait_stored(queue, annotator, 3, "the other tab's save", notes="from the other tab")
    other_version = stored(queue, annotator, 3).version

    page.locator("#notes").fill("mine, typed in the first tab")
    page.keyboard.press("Control+s")
    conflict = page.locator("#conflict")
    expect(conflict).to_be_visible()
    expect(conflict).to_contain_text(f"Not saved: {annotator.username} saved this annotation")
    expect(conflict).to_contain_text(f"(version {other_version})")
    expect(page.locator("#notes")).to_have_value("mine, typed in the first tab")  # nothing typed is lost
    assert stored(queue, annotator, 3).notes == "from the other tab"  # and theirs stands until I choose
    page.screenshot(path=artifacts / "review-conflict.png", full_page=True)

    page.get_by_role("button", name="Keep mine and overwrite").click()
    expect(conflict).to_be_hidden()
    wait_stored(queue, annotator, 3, "the deliberate overwrite", notes="mine, typed in the first tab",
                version=other_version + 1)
    expect(status).to_contain_text(f"Saved · version {other_version + 1}")
    final = stored(queue, annotator, 3)
    assert final.verdict == "edit" and final.readability == 4
    assert final.edited_summary == "4 (so the answer is 4)"
    assert final.revisions.count() == final.version - 1  # every saved state kept
    assert final.item.final_verdict == "edit" and final.item.example is not None


def test_a_reviewer_adjudicates_a_disagreement_and_freezes_the_queue(open_as, dataset, artifacts):
    make_run(dataset, count=2)
    first, second = make_annotators(2)
    target = Dataset.objects.create(name="cold-start")
    queue = make_queue([first, second], overlap=2, target=target, filter_={"sort": "oldest"})
    for annotator in (first, second):
        judge(annotation_of(queue, annotator, 1), "accept")  # agreed: decided on its own
    judge(annotation_of(queue, first, 2), "accept")
    judge(annotation_of(queue, second, 2), "edit", edited_reasoning="One and one make two.", edited_summary="2")
    reviewer = person("lead", "reviewer")
    page = open_as(reviewer).new_page()

    page.goto(f"/review/{queue.pk}/overview")
    expect(page.locator("#accepted-count")).to_have_text("1")
    expect(page.locator("#fleiss-kappa")).to_contain_text("observed agreement 0.500")
    page.screenshot(path=artifacts / "review-queue.png", full_page=True)
    page.locator("#adjudicate-link").click()
    page.get_by_role("link", name="decide").click()
    expect(page.locator(".opinion")).to_have_count(2)
    expect(page.locator(".opinion.edit ins").first).to_be_visible()  # the edit's diff against the original
    assert "make" in "".join(page.locator(".opinion.edit ins").all_inner_texts())
    page.screenshot(path=artifacts / "review-adjudicate.png", full_page=True)
    page.get_by_label("Use ann1's edit").check()
    page.get_by_role("button", name="Decide").click()
    expect(page.locator("table.to-adjudicate")).to_contain_text("Nothing to adjudicate.")
    item = ReviewItem.objects.get(queue=queue, position=2)
    assert (item.final_verdict, item.adjudicated_by, item.version) == ("edit", reviewer, 2)

    page.goto(f"/review/{queue.pk}/overview")
    page.locator("#freeze-form input[name=note]").fill("first cold-start cut")
    page.get_by_role("button", name="Freeze version").click()
    expect(page.locator(".flash.success")).to_contain_text("Froze cold-start v1 with 2 examples")
    # The accepted rollout keeps R1-Zero's tags, the rewrite is in the chat format: the freeze says they mix.
    expect(page.locator(".flash.warning")).to_contain_text(
        "These examples mix formats (cold-start v1: 1/2 R1-Zero tags")
    version = DatasetVersion.objects.get()
    assert version.example_count == 2 and version.note == "first cold-start cut"
    assert version.provenance == {"queue": queue.pk, "name": queue.name, "accepted": 1, "edited": 1, "rejected": 0,
                                  "items": 2, "merged": 0}
    page.screenshot(path=artifacts / "review-frozen.png", full_page=True)


def test_opening_the_editor_records_nothing_until_a_changed_rewrite_is_saved(browser_context, queue, annotator,
                                                                             artifacts):
    page = browser_context.new_page()
    saves = []
    page.on("request", lambda request: saves.append(request.url) if request.method == "POST" else None)
    status, editor = page.locator("#save-status"), page.locator("#editor")
    reasoning, verdict = page.locator("#edited_reasoning"), page.locator("#verdict-shown")
    overview = browser_context.new_page()  # the queue page in a second tab: what counts as done
    overview_url = f"/review/{queue.pk}/overview"
    page.goto(f"/review/{queue.pk}/1/")
    model_reasoning = reasoning.input_value()

    # e, then Escape twice (leave the field, close the editor): nothing reaches the server, even after the
    # autosave delay, and the item is still to do.
    page.keyboard.press("e")
    expect(editor).to_be_visible()
    expect(reasoning).to_be_focused()
    expect(status).to_contain_text("nothing is recorded until you save a changed rewrite")
    page.keyboard.press("Escape")
    expect(reasoning).not_to_be_focused()
    expect(editor).to_be_visible()
    page.keyboard.press("Escape")
    expect(editor).to_be_hidden()
    expect(status).to_have_text("Editor closed: nothing was recorded.")
    page.wait_for_timeout(2000)  # past the 1.5 s autosave
    assert saves == []
    first = stored(queue, annotator, 1)
    assert (first.verdict, first.version, first.edited_reasoning) == ("pending", 1, "")
    overview.goto(overview_url)
    expect(overview.locator("#review-link")).to_have_text("Review (3 of 3 left)")
    overview.locator("#review-link").click()  # the queue's entry still leads to it
    expect(overview).to_have_url(re.compile(rf"/review/{queue.pk}/1/$"))

    # Saving the unchanged text as an edit is refused, saying why; Cancel closes the editor.
    page.keyboard.press("e")
    page.keyboard.press("Control+s")
    expect(status).to_contain_text("Not saved as an edit: the rewrite is the model's text unchanged")
    expect(verdict).to_have_text("pending")
    page.get_by_role("button", name="Cancel").click()
    expect(editor).to_be_hidden()
    assert saves == [] and stored(queue, annotator, 1).version == 1

    # A real rewrite: autosaved as a draft while the item stays to do, recorded as an edit by Ctrl+S.
    page.keyboard.press("e")
    page.keyboard.press("Control+End")
    page.keyboard.type(" Both are two.")
    wait_stored(queue, annotator, 1, "the draft autosaved", edited_reasoning=model_reasoning + " Both are two.",
                verdict="pending")
    expect(status).to_contain_text("a draft rewrite, not an edit until you save it")
    overview.goto(overview_url)
    expect(overview.locator("#review-link")).to_have_text("Review (3 of 3 left)")
    page.keyboard.press("Control+s")
    wait_stored(queue, annotator, 1, "the edit recorded", verdict="edit")
    expect(verdict).to_have_text("edit")
    page.screenshot(path=artifacts / "review-edit-recorded.png", full_page=True)
    overview.goto(overview_url)
    expect(overview.locator("#review-link")).to_have_text("Review (2 of 3 left)")

    # Accept and reject keys record their verdicts.
    page.keyboard.press("Escape")  # out of the field: shortcuts again
    page.keyboard.press("j")
    expect(page).to_have_url(re.compile(rf"/review/{queue.pk}/2/$"))
    page.keyboard.press("a")
    wait_stored(queue, annotator, 2, "accept", verdict="accept")
    page.keyboard.press("j")
    expect(page).to_have_url(re.compile(rf"/review/{queue.pk}/3/$"))
    page.keyboard.press("r")
    wait_stored(queue, annotator, 3, "reject", verdict="reject")
    overview.goto(overview_url)
    expect(overview.locator("#review-link")).to_have_text("Look through your 3 items")

    # A draft beside a reject, then cancelled (confirming the loss): the draft is dropped, the reject stands.
    page.keyboard.press("e")
    page.keyboard.press("Control+Home")
    page.keyboard.type("A rewrite I will not keep. ")
    wait_stored(queue, annotator, 3, "the draft beside the reject", verdict="reject",
                edited_reasoning="A rewrite I will not keep. Add them: 2 + 2 = 4.")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel").click()
    wait_stored(queue, annotator, 3, "the draft dropped", verdict="reject", edited_reasoning="", edited_summary="")
    expect(editor).to_be_hidden()
    assert [item.final_verdict for item in ReviewItem.objects.filter(queue=queue).order_by("position")] == [
        "edit", "accept", "reject"]

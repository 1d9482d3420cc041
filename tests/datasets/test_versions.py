"""Dataset versions: freeze, compose in proportions, diff, immutability, and their pages."""

import hashlib
import time

import numpy as np
import pytest
from django.urls import reverse

from apps.core.bulk import bulk_insert
from apps.core.models import AuditEvent
from apps.datasets.models import (
    Dataset,
    DatasetVersion,
    DatasetVersionExample,
    Example,
    ImmutableError,
)
from apps.datasets.versions import (
    ComposeParamsForm,
    _copy_into,
    _entries_at,
    compose_version,
    diff_versions,
    example_format,
    freeze_all_examples,
    freeze_version,
    run_compose,
)
from apps.jobs.models import Job
from apps.jobs.runner import JobContext

pytestmark = pytest.mark.django_db


def messages_for(text: str) -> list[dict]:
    return [{"role": "user", "content": f"question {text}"}, {"role": "assistant", "content": f"answer {text}"}]


def add_examples(dataset, names, **provenance) -> list[Example]:
    """One example per name (its content is the name), in order, through the real bulk path."""
    names = [str(n) for n in names]
    bulk_insert(Example, [{"dataset_id": dataset.pk, "messages": messages_for(n), "source": "manual",
                           "content_hash": Example.hash_for(messages_for(n)), "provenance": provenance}
                          for n in names])
    by_hash = {e.content_hash: e for e in Example.objects.filter(dataset=dataset)}
    return [by_hash[Example.hash_for(messages_for(n))] for n in names]


def names_in(version) -> list[str]:
    return [e.messages[1]["content"].removeprefix("answer ") for e in version.ordered_examples()]


def expected_hash(examples) -> str:
    return hashlib.sha256("".join(e.content_hash for e in examples).encode()).hexdigest()


@pytest.fixture
def reasoning(dataset):
    """A version of 300 'reasoning' examples and one of 100 'chat' examples, in the same dataset."""
    long = freeze_version(dataset, add_examples(dataset, [f"r{i}" for i in range(300)], job=1), note="reasoning")
    chat = freeze_version(dataset, add_examples(dataset, [f"c{i}" for i in range(100)], job=2), note="chat")
    return long, chat


# -- freezing ------------------------------------------------------------------------------------


def test_a_freeze_keeps_order_and_hashes_the_content(dataset):
    examples = add_examples(dataset, range(10))
    version = freeze_version(dataset, examples[::-1], note="reversed", provenance={"from": "test"})
    assert (version.number, version.example_count, version.note) == (1, 10, "reversed")
    assert version.content_hash == expected_hash(examples[::-1])
    assert names_in(version) == [str(i) for i in range(9, -1, -1)]
    assert list(DatasetVersionExample.objects.filter(version=version).order_by("position")
                .values_list("position", flat=True)) == list(range(10))
    # A queryset is streamed, and the same content in the same order gives the same hash.
    again = freeze_version(dataset, dataset.examples.order_by("-pk"))
    assert (again.number, again.content_hash) == (2, version.content_hash)


def test_a_freeze_refuses_foreign_or_repeated_examples_and_writes_nothing(dataset):
    mine = add_examples(dataset, ["a", "b"])
    other = add_examples(Dataset.objects.create(name="other"), ["c"])
    with pytest.raises(ValueError, match="not in dataset 'gsm-mini'"):
        freeze_version(dataset, mine + other)
    with pytest.raises(ValueError, match="more than once"):
        freeze_version(dataset, [mine[0], mine[1], mine[0]])
    assert not DatasetVersion.objects.exists() and not DatasetVersionExample.objects.exists()


def test_freeze_all_examples_takes_every_example_by_id(dataset):
    examples = add_examples(dataset, ["z", "y", "x"])
    version = freeze_all_examples(dataset, note="all")
    assert version.provenance == {"from": "all examples"}
    assert names_in(version) == ["z", "y", "x"]
    assert version.content_hash == expected_hash(examples)
    with pytest.raises(ValueError, match="no examples"):
        freeze_all_examples(Dataset.objects.create(name="empty"))


def test_a_version_is_immutable(dataset):
    version = freeze_version(dataset, add_examples(dataset, ["a"]))
    version.note = "changed"
    with pytest.raises(ImmutableError):
        version.save()
    assert DatasetVersion.objects.get(pk=version.pk).note == ""


# -- composing -----------------------------------------------------------------------------------


def test_compose_takes_exact_counts_mixed_and_reuses_the_rows(dataset, reasoning, users):
    long, chat = reasoning
    version = compose_version(dataset, [(long, 60), (chat, 20)], seed=0, user=users["reviewer"], note="mix")
    names = names_in(version)
    assert len(names) == version.example_count == 80 and len(set(names)) == 80
    assert sum(n.startswith("r") for n in names) == 60 and sum(n.startswith("c") for n in names) == 20
    # Mixed, not one source after the other.
    chat_at = [i for i, n in enumerate(names) if n.startswith("c")]
    assert chat_at[0] < 40 < chat_at[-1]
    # The same dataset: the version holds the sources' own rows, no copies.
    assert Example.objects.filter(dataset=dataset).count() == 400
    assert version.created_by == users["reviewer"] and version.note == "mix"
    assert version.provenance == {
        "composed_from": [
            {"version": long.pk, "dataset": "gsm-mini", "dataset_id": dataset.pk, "number": 1,
             "content_hash": long.content_hash, "count": 60},
            {"version": chat.pk, "dataset": "gsm-mini", "dataset_id": dataset.pk, "number": 2,
             "content_hash": chat.content_hash, "count": 20},
        ],
        "seed": 0, "sampled": 80, "duplicates_dropped": 0, "copied_examples": 0,
    }


def test_compose_is_deterministic_for_a_seed_and_differs_for_another(dataset, reasoning):
    long, chat = reasoning
    first = compose_version(dataset, [(long, 50), (chat, 10)], seed=7)
    second = compose_version(dataset, [(long, 50), (chat, 10)], seed=7)
    other = compose_version(dataset, [(long, 50), (chat, 10)], seed=8)
    assert names_in(first) == names_in(second) and first.content_hash == second.content_hash
    assert set(names_in(first)) != set(names_in(other))
    # Taking everything from a source still shuffles it, by the seed.
    whole = compose_version(dataset, [(chat, 100)], seed=1)
    assert sorted(names_in(whole)) == sorted(names_in(chat)) and names_in(whole) != names_in(chat)


def test_compose_copies_examples_of_other_datasets_keeping_provenance(reasoning, users):
    long, chat = reasoning
    target = Dataset.objects.create(name="stage3")
    already = add_examples(target, ["c5"])[0]  # the target has this content already: it is reused, not doubled
    version = compose_version(target, [(long, 30), (chat, 100)], seed=3, user=users["admin"])
    held = list(version.ordered_examples())
    assert len(held) == 130 and all(e.dataset_id == target.pk for e in held)
    assert version.provenance["copied_examples"] == 129
    assert Example.objects.filter(dataset=target).count() == 130
    by_name = {e.messages[1]["content"]: e for e in held}
    assert by_name["answer c5"].pk == already.pk
    copy = by_name["answer c7"]
    source = Example.objects.get(dataset=long.dataset, content_hash=copy.content_hash)
    assert copy.provenance == {"copied_from": source.pk, "job": 2}
    assert (copy.messages, copy.source, copy.created_by) == (source.messages, "manual", users["admin"])
    assert Example.objects.filter(dataset=long.dataset).count() == 400  # the sources are untouched


def test_the_database_copy_and_the_python_copy_make_the_same_rows(reasoning, users):
    """Postgres copies rows with INSERT ... SELECT; other databases through bulk_insert. Same result."""
    _, chat = reasoning
    made = {}
    for in_database in (True, False):
        target = Dataset.objects.create(name=f"copies-{in_database}".lower())
        add_examples(target, ["c3"])
        ids, hashes = _entries_at(chat, np.arange(100))
        count = _copy_into(target, ids, hashes, np.ones(100, dtype=bool), users["admin"], in_database=in_database)
        by_id = Example.objects.in_bulk(ids.tolist())  # each id now names the copy with that content
        assert [(by_id[i].dataset_id, by_id[i].content_hash.encode()) for i in ids.tolist()] == [
            (target.pk, h) for h in hashes.tolist()]
        made[in_database] = (count, list(target.examples.order_by("content_hash").values(
            "messages", "provenance", "source", "content_hash", "prompt_id", "created_by")))
    assert made[True] == made[False]
    assert made[True][0] == 99


def test_compose_drops_repeated_content_and_says_how_many(dataset):
    examples = add_examples(dataset, range(150))
    early = freeze_version(dataset, examples[:100])
    late = freeze_version(dataset, examples[50:])
    version = compose_version(dataset, [(early, 100), (late, 100)], seed=0)
    assert version.example_count == 150 and sorted(map(int, names_in(version))) == list(range(150))
    assert version.provenance["duplicates_dropped"] == 50
    # Across datasets the same content is a duplicate too.
    twin = Dataset.objects.create(name="twin")
    twin_version = freeze_version(twin, add_examples(twin, range(10)))
    mixed = compose_version(Dataset.objects.create(name="mixed"), [(twin_version, 10), (early, 10)], seed=0)
    assert mixed.provenance["duplicates_dropped"] + mixed.example_count == 20
    assert len(set(names_in(mixed))) == mixed.example_count


def test_compose_refuses_a_count_larger_than_its_source_and_writes_nothing(dataset, reasoning):
    long, chat = reasoning
    target = Dataset.objects.create(name="target")
    with pytest.raises(ValueError, match=r"gsm-mini v2 has 100 examples; cannot take 101"):
        compose_version(target, [(long, 10), (chat, 101)])
    with pytest.raises(ValueError, match="at least 1"):
        compose_version(target, [(long, -1)])
    with pytest.raises(ValueError, match="at least one source"):
        compose_version(target, [])
    assert not target.versions.exists() and not target.examples.exists()


def test_compose_of_50k_examples_runs_in_seconds_without_a_query_per_example(
        dataset, django_assert_max_num_queries):
    big = Dataset.objects.create(name="reasoning-50k")
    bulk_insert(Example, ({"dataset_id": big.pk, "messages": messages_for(f"big {i} " + "step " * 40),
                           "content_hash": Example.hash_for(messages_for(f"big {i} " + "step " * 40))}
                          for i in range(40_000)))
    bulk_insert(Example, ({"dataset_id": dataset.pk, "messages": messages_for(f"chat {i}"),
                           "content_hash": Example.hash_for(messages_for(f"chat {i}"))} for i in range(10_000)))
    long = freeze_all_examples(big)
    chat = freeze_all_examples(dataset)
    target = Dataset.objects.create(name="stage3")
    started = time.monotonic()
    with django_assert_max_num_queries(600):
        version = compose_version(target, [(long, 36_000), (chat, 9_000)], seed=0)
    seconds = time.monotonic() - started
    print(f"compose of 45,000 examples (all copied across datasets): {seconds:.1f} s")
    assert version.example_count == 45_000 and version.provenance["copied_examples"] == 45_000
    assert seconds < 60
    started = time.monotonic()
    with django_assert_max_num_queries(10):
        diff = diff_versions(long, version)
    print(f"diff of 40,000 against 45,000 examples: {time.monotonic() - started:.2f} s")
    assert (diff.added, diff.removed, diff.kept) == (9_000, 4_000, 36_000)


# -- diffing -------------------------------------------------------------------------------------


def test_diff_counts_added_removed_and_kept_by_content(dataset):
    examples = add_examples(dataset, range(150))
    a = freeze_version(dataset, examples[:100])
    b = freeze_version(dataset, examples[50:])
    diff = diff_versions(a, b, samples=5)
    assert (diff.added, diff.removed, diff.kept) == (50, 50, 50)
    # A few samples (those with the smallest content hashes), shown in the version's order.
    smallest = [e.pk for e in sorted(examples[100:], key=lambda e: e.content_hash)[:5]]
    assert [e.pk for e in diff.added_examples] == sorted(smallest)
    smallest = [e.pk for e in sorted(examples[:50], key=lambda e: e.content_hash)[:5]]
    assert [e.pk for e in diff.removed_examples] == sorted(smallest)
    same = diff_versions(a, a)
    assert (same.added, same.removed, same.kept, same.added_examples) == (0, 0, 100, [])
    # A copy in another dataset has the same content: kept, not added.
    copy = compose_version(Dataset.objects.create(name="copy"), [(a, 100)], seed=0)
    across = diff_versions(a, copy)
    assert (across.added, across.removed, across.kept) == (0, 0, 100)


# -- pages ---------------------------------------------------------------------------------------


def test_the_version_list_and_detail_pages(admin_client, dataset, reasoning):
    long, chat = reasoning
    page = admin_client.get(reverse("version_list", args=[dataset.name]))
    html = page.content.decode()
    assert page.status_code == 200
    assert long.content_hash[:12] in html and "reasoning" in html and "Freeze current examples (400)" in html
    assert f"?a={long.pk}&amp;b={chat.pk}" in html

    page = admin_client.get(reverse("version_detail", args=[long.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    for fmt in ("messages", "raw", "parquet"):
        assert f"{reverse('version_export', args=[long.pk])}?format={fmt}" in html
    assert "question r0" in html and "question r49" in html and "question r50" not in html
    assert long.content_hash in html
    next_page = page.context["page"].next_after
    rows = admin_client.get(reverse("version_detail", args=[long.pk]), {"after": next_page}, HTTP_HX_REQUEST="true")
    assert "question r50" in rows.content.decode() and "question r0<" not in rows.content.decode()
    assert admin_client.get(reverse("version_detail", args=[long.pk]), {"after": "x"}).status_code == 400

    second = admin_client.get(reverse("version_detail", args=[chat.pk])).content.decode()
    assert f"?a={long.pk}&amp;b={chat.pk}" in second  # the diff against the previous version


def test_the_diff_page_and_its_bad_input(admin_client, dataset):
    examples = add_examples(dataset, range(15))
    a, b = freeze_version(dataset, examples[:10]), freeze_version(dataset, examples[5:])
    page = admin_client.get(reverse("version_diff"), {"a": a.pk, "b": b.pk})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="diff-added">5<' in html and 'id="diff-removed">5<' in html and 'id="diff-kept">5<' in html
    assert "question 10" in html and "question 0" in html
    assert admin_client.get(reverse("version_diff")).status_code == 200  # the picker
    for params, field in [({"a": "x", "b": b.pk}, "a:"), ({"a": a.pk, "b": 999999}, "b:"), ({"a": a.pk}, "b:"),
                          ({"a": "-1", "b": a.pk}, "a:")]:
        response = admin_client.get(reverse("version_diff"), params)
        assert response.status_code == 400, params
        assert field in response.content.decode()


def test_compose_page_shows_sizes_and_composes(admin_client, dataset, reasoning, users):
    long, chat = reasoning
    url = reverse("version_compose", args=[dataset.name])
    page = admin_client.get(url, {"source_1": long.pk})
    assert page.status_code == 200
    html = page.content.decode()
    assert "gsm-mini v1 · 300 examples" in html and "gsm-mini v2 · 100 examples" in html
    assert f'<option value="{long.pk}" selected>' in html

    response = admin_client.post(url, {"source_1": long.pk, "count_1": 30, "source_2": chat.pk, "count_2": 10,
                                       "seed": 4, "note": "stage 3 in miniature"})
    version = dataset.versions.get(number=3)
    assert response.status_code == 302 and response.url == reverse("version_detail", args=[version.pk])
    assert version.example_count == 40 and version.provenance["seed"] == 4
    event = AuditEvent.objects.get(action="version.compose")
    assert event.actor == users["admin"] and event.target_id == str(version.pk)
    assert event.details["examples"] == 40 and event.details["sources"][1]["count"] == 10


@pytest.mark.parametrize("post, field, says", [
    ({"source_1": "999999", "count_1": "5"}, "source_1", "no dataset version #999999"),
    ({"source_1": "abc", "count_1": "5"}, "source_1", "whole number"),
    ({"source_1": "{long}", "count_1": "ten"}, "count_1", "whole number"),
    ({"source_1": "{long}", "count_1": "-3"}, "count_1", "greater than or equal to 1"),
    ({"source_1": "{long}", "count_1": "301"}, "count_1", "has 300 examples; cannot take 301"),
    ({"source_1": "{long}"}, "count_1", "how many examples"),
    ({}, "source_1", "at least one source"),
    ({"source_1": "{long}", "count_1": "5", "seed": "-1"}, "seed", "greater than or equal to 0"),
])
def test_compose_bad_input_is_a_400_naming_the_field(admin_client, dataset, reasoning, post, field, says):
    long, _ = reasoning
    data = {"seed": "0"} | {k: v.format(long=long.pk) for k, v in post.items()}
    response = admin_client.post(reverse("version_compose", args=[dataset.name]), data)
    assert response.status_code == 400
    html = response.content.decode()
    assert f"({field})" in html and says in html
    assert dataset.versions.count() == 2


def test_freeze_action_freezes_every_example_and_notes_same_content(admin_client, dataset, users):
    add_examples(dataset, ["b", "a"])
    url = reverse("dataset_freeze", args=[dataset.name])
    response = admin_client.post(url, {"note": "first cut"}, follow=True)
    first = dataset.versions.get()
    assert response.redirect_chain[-1][0] == reverse("version_detail", args=[first.pk])
    assert (first.example_count, first.note, first.provenance) == (2, "first cut", {"from": "all examples"})
    assert "same content" not in response.content.decode()
    event = AuditEvent.objects.get(action="version.freeze")
    assert (event.actor, event.target_id, event.details["examples"]) == (users["admin"], str(first.pk), 2)

    response = admin_client.post(url, follow=True)  # nothing changed since v1: allowed, but said
    html = response.content.decode()
    assert "same content as gsm-mini v1" in html.lower() or "Same content as" in html
    assert dataset.versions.get(number=2).content_hash == first.content_hash
    listing = admin_client.get(reverse("version_list", args=[dataset.name])).content.decode()
    assert "same content as v1" in listing

    empty = Dataset.objects.create(name="empty")
    response = admin_client.post(reverse("dataset_freeze", args=[empty.name]))
    assert response.status_code == 400 and "nothing to freeze" in response.content.decode()
    assert admin_client.get(url).status_code == 405


def test_a_viewer_cannot_freeze_or_compose(client, dataset, users, reasoning):
    long, _ = reasoning
    client.force_login(users["viewer"])
    assert client.post(reverse("dataset_freeze", args=[dataset.name])).status_code == 403
    assert client.post(reverse("version_compose", args=[dataset.name]),
                       {"source_1": long.pk, "count_1": 5, "seed": 0}).status_code == 403
    assert client.get(reverse("version_compose", args=[dataset.name])).status_code == 403
    assert dataset.versions.count() == 2
    # Reading is for everyone signed in.
    assert client.get(reverse("version_list", args=[dataset.name])).status_code == 200
    assert client.get(reverse("version_detail", args=[long.pk])).status_code == 200
    client.force_login(users["reviewer"])
    assert client.post(reverse("dataset_freeze", args=[dataset.name])).status_code == 302


def test_every_version_and_bulk_page_needs_a_login(client, dataset):
    urls = [reverse("version_list", args=[dataset.name]), reverse("version_detail", args=[1]),
            reverse("version_diff"), reverse("version_compose", args=[dataset.name]),
            reverse("dataset_freeze", args=[dataset.name]), reverse("rollout_bulk"), reverse("bulk_list"),
            reverse("bulk_detail", args=[1]), reverse("bulk_undo", args=[1])]
    for url in urls:
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code == 302 and response.url.startswith(reverse("login")), url


def test_the_compose_job_composes_and_records_it(dataset, reasoning, users):
    long, chat = reasoning
    form = ComposeParamsForm(data={"dataset": "stage3", "parts": [[long.pk, 30], [chat.pk, 10]], "seed": 2,
                                   "note": "large"})
    assert form.is_valid(), form.errors
    job = Job.objects.create(kind="compose_version", params=form.cleaned_data, created_by=users["admin"])
    result = run_compose(JobContext(job))
    version = DatasetVersion.objects.get(pk=result["dataset_version"])
    assert (version.dataset.name, version.example_count, version.note, version.created_by) == (
        "stage3", 40, "large", users["admin"])
    assert result["copied_examples"] == 40 and version.provenance["seed"] == 2
    event = AuditEvent.objects.get(action="version.compose")
    assert (event.via, event.actor, event.target_id) == ("job", users["admin"], str(version.pk))
    bad = ComposeParamsForm(data={"dataset": "x", "parts": [[long.pk, 301], [999999, 1]], "seed": 0})
    assert not bad.is_valid()
    assert bad.errors["parts"] == ["part 1: gsm-mini v1 has 300 examples; cannot take 301",
                                   "part 2: there is no dataset version #999999"]
    assert not ComposeParamsForm(data={"dataset": "x", "parts": [[1, "2"]], "seed": 0}).is_valid()


def test_a_large_composition_from_the_page_runs_as_a_job(admin_client, dataset, reasoning, settings):
    long, _ = reasoning
    settings.COMPOSE_IN_REQUEST_MAX = 20
    response = admin_client.post(reverse("version_compose", args=[dataset.name]),
                                 {"source_1": long.pk, "count_1": 21, "seed": 5})
    job = Job.objects.get(kind="compose_version")
    assert response.status_code == 302 and response.url == reverse("job_detail", args=[job.pk])
    assert job.params == {"dataset": dataset.name, "parts": [[long.pk, 21]], "seed": 5, "note": ""}
    assert dataset.versions.count() == 2  # nothing composed in the request


# -- formats, training links and actions with nothing to act on ----------------------------------


def chat_example(question: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def test_example_format_reads_the_last_assistant_turn():
    cases = {
        "r1_zero": chat_example("1 + 1?", "<think>one and one</think> <answer>2</answer>"),
        "think": chat_example("1 + 1?", "<think>\none and one\n</think>\n\n2"),
        "special_token": chat_example("1 + 1?", "|special_token|one and one|special_token|2"),
        "plain": chat_example("Say <answer> please", "2"),  # the tag in the question does not count
        "no_assistant": [{"role": "user", "content": "1 + 1?"}],
    }
    for expected, messages in cases.items():
        assert example_format(messages) == expected, expected
    reasoning_field = [{"role": "assistant", "content": "2", "reasoning_content": "one and one"}]
    assert example_format(reasoning_field) == "reasoning_field"
    # Chat format when the template opened <think> in the prompt: only the closing tag is in the text.
    assert example_format(chat_example("1 + 1?", "one and one</think>\n\n2")) == "think"


def freeze_texts(dataset, texts) -> DatasetVersion:
    bulk_insert(Example, [{"dataset_id": dataset.pk, "messages": chat_example(f"q {i}", text), "source": "manual",
                           "content_hash": Example.hash_for(chat_example(f"q {i}", text))}
                          for i, text in enumerate(texts)])
    return freeze_all_examples(dataset)


def test_compose_warns_when_its_sources_mix_example_formats(admin_client):
    zero = freeze_texts(Dataset.objects.create(name="zero-format"),
                        [f"<think>step {i}</think> <answer>{i}</answer>" for i in range(30)])
    chat = freeze_texts(Dataset.objects.create(name="chat-format"), [f"<think>\nstep {i}\n</think>\n\n{i}"
                                                                      for i in range(10)])
    target = Dataset.objects.create(name="mixed")
    response = admin_client.post(reverse("version_compose", args=[target.name]),
                                 {"source_1": zero.pk, "count_1": 20, "source_2": chat.pk, "count_2": 10, "seed": 0},
                                 follow=True)
    version = target.versions.get()
    warning = version.provenance["format_warning"]
    assert warning.startswith("These examples mix formats (zero-format v1: 30/30 R1-Zero tags")
    assert "chat-format v1: 10/10 chat format (<think>…</think>, then the answer as plain text)" in warning
    html = response.content.decode()
    assert 'class="flash warning"' in html and 'id="format-warning"' in html  # the message and the version page
    assert "mix formats (zero-format v1: 30/30 R1-Zero tags (&lt;think&gt;…&lt;/think&gt;" in html

    same = admin_client.post(reverse("version_compose", args=[target.name]),
                             {"source_1": zero.pk, "count_1": 5, "seed": 1}, follow=True)
    assert "format_warning" not in target.versions.get(number=2).provenance
    assert "mix formats" not in same.content.decode()


def test_a_version_page_links_to_training_on_it(admin_client, client, dataset, reasoning, users):
    long, _ = reasoning
    html = admin_client.get(reverse("version_detail", args=[long.pk])).content.decode()
    link = f"/jobs/new/sft/?dataset_version={long.pk}&amp;preset=cpu"
    assert f'id="train-link" href="{link}"' in html and ">Train on this</a>" in html
    form = admin_client.get(link.replace("&amp;", "&")).context["form"]
    assert form.initial["dataset_version"] == str(long.pk)
    assert form.initial["learning_rate"] == 3e-3  # the tiny CPU model's preset, not the report's default
    client.force_login(users["reviewer"])  # may not launch jobs: no link to a form it cannot submit
    assert 'id="train-link"' not in client.get(reverse("version_detail", args=[long.pk])).content.decode()


def test_actions_with_nothing_to_act_on_are_disabled(admin_client, dataset):
    listing = admin_client.get(reverse("version_list", args=[dataset.name])).content.decode()
    assert '<button type="submit" disabled title="The dataset has no examples">Freeze current examples (0)' in listing
    assert '<button type="button" disabled title="No dataset has a version to compose from yet' in listing
    compose = admin_client.get(reverse("version_compose", args=[dataset.name])).content.decode()
    assert '<button type="submit" disabled>Compose and freeze</button>' in compose
    add_examples(dataset, ["a"])
    freeze_all_examples(dataset)
    listing = admin_client.get(reverse("version_list", args=[dataset.name])).content.decode()
    assert "Freeze current examples (1)</button>" in listing and "disabled" not in listing
    assert f'href="{reverse("version_compose", args=[dataset.name])}">Compose a version…</a>' in listing
    compose = admin_client.get(reverse("version_compose", args=[dataset.name])).content.decode()
    assert '<button type="submit">Compose and freeze</button>' in compose


def test_cleaned_versions_say_in_their_list_line_what_was_removed():
    from apps.datasets.versions import provenance_summary

    assert provenance_summary({"from": "decontamination", "decontam_check": 7, "job": 7, "removed_count": 1200,
                               "benchmarks": ["aime", "math500"]}) == (
        "decontaminated (check #7): 1,200 removed as matching aime, math500")
    assert provenance_summary({"from": "de-duplication", "dedup_run": 3, "dropped": 42}) == (
        "de-duplicated (run #3): 42 dropped")

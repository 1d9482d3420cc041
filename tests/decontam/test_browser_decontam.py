"""Decontamination in headless Chromium: a reviewer opens a match, reads both sides with the overlap
highlighted, confirms it (htmx), and writes the clean version; the database is checked after each step."""

import re

import pytest
from playwright.sync_api import expect

from apps.datasets.models import DatasetVersionExample
from apps.decontam.models import DecontamCheck
from tests.decontam.factory import EXAMPLES, make_benchmarks, make_version, run_check

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_open_a_match_confirm_it_and_write_the_clean_version(page, artifacts):
    version = make_version()
    check = DecontamCheck.objects.get(pk=run_check(version, make_benchmarks()).pk)
    gsm = check.matches.get(position=1)

    page.goto(f"/decontam/{check.pk}/")
    expect(page.locator("#check-counts")).to_contain_text("2 matches in 2 examples")
    hostile = page.locator(f"#match-{check.matches.get(position=3).pk} .example-text")
    expect(hostile).to_contain_text("<script>alert(1)</script>")  # shown as text, never run
    expect(hostile.locator("mark")).to_contain_text("find the number of ordered pairs")

    page.get_by_role("link", name=f"Match #{gsm.pk}").click()
    expect(page).to_have_url(re.compile(rf"/decontam/matches/{gsm.pk}/$"))
    match = page.locator(f"#match-{gsm.pk}")
    expect(match.locator(".example-text mark")).to_have_text(re.compile(r"^NATALIA sold clips to forty-eight"))
    expect(match.locator(".benchmark-text mark")).to_have_text(re.compile(r"^Natalia sold clips to forty eight"))
    page.screenshot(path=artifacts / "decontam-match.png", full_page=True)

    match.get_by_role("button", name="Confirm").click()
    expect(page.locator(f"#match-{gsm.pk}")).to_have_class(re.compile(r"\bconfirmed\b"))
    expect(page.locator(f"#match-{gsm.pk} .decision")).to_contain_text("confirmed (remove) by admin_user")
    gsm.refresh_from_db()
    assert gsm.decision == "confirmed" and gsm.decided_by.username == "admin_user"

    page.get_by_role("link", name=f"check #{check.pk}").click()
    expect(page.locator("#check-counts")).to_contain_text("1 confirmed (1 example)")
    page.get_by_role("button", name="Write a new version without confirmed matches").click()
    expect(page.locator("h1")).to_have_text(f"{version.dataset.name} v{version.number + 1}")
    expect(page.locator("body")).to_contain_text("1 removed for confirmed benchmark matches")

    check.refresh_from_db()
    clean = check.output_version
    assert clean.example_count == len(EXAMPLES) - 1
    kept = set(DatasetVersionExample.objects.filter(version=clean).values_list("example_id", flat=True))
    assert gsm.example_id not in kept and len(kept) == len(EXAMPLES) - 1
    assert clean.provenance["removed"][0]["example"] == gsm.example_id

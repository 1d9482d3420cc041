"""r1studio score --recipe NAME < in.jsonl > out.jsonl

Each input line: {"completion": ..., "reference": ... or "tests": [...], optional
"domain", "language", "prompt", "finish_reason"}. Each output line: the input plus
"total_reward" and "rewards" (every component's value, weight and details), or
"error" for a line that could not be read. Scoring runs in one process per core.
"""

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from apps.rollouts.cli import recipe_named
from apps.rollouts.judging import judge_for
from workers.rewards.base import Sample
from workers.rewards.pool import ScoringPool


class Command(BaseCommand):
    help = "Score JSONL completions from stdin with a reward recipe; write JSONL to stdout."

    def add_arguments(self, parser):
        parser.add_argument("--recipe", required=True, help="Recipe name (its latest version)")
        parser.add_argument("--processes", type=int, default=None)
        parser.add_argument("--timeout", type=float, default=30.0, help="Seconds per completion")

    def handle(self, *args, **opts):
        recipe = recipe_named(opts["recipe"])
        records = [_read(number, line) for number, line in enumerate(sys.stdin.buffer, start=1)]
        samples = [_sample(r) for r in records if "error" not in r]
        failed = 0
        with ScoringPool(recipe.spec, processes=opts["processes"], timeout_s=opts["timeout"],
                         judge=judge_for(recipe.spec)) as pool:
            scores = pool.map(samples)
            for record in records:
                if "error" in record:
                    failed += 1
                else:
                    scored = next(scores)
                    record |= {"total_reward": scored["total"], "rewards": scored["components"]}
                    if "error" in scored:
                        record["error"] = scored["error"]
                self.stdout.write(json.dumps(record, ensure_ascii=False))
        if failed:
            raise CommandError(f"{failed} line(s) could not be read; see their 'error'")


def _read(number: int, raw: bytes) -> dict:
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return {"line": number, "error": f"line {number}: not valid UTF-8"}
    except json.JSONDecodeError as exc:
        return {"line": number, "error": f"line {number}: not valid JSON ({exc.msg})"}
    if not isinstance(record, dict) or not isinstance(record.get("completion"), str):
        return {"line": number, "error": f"line {number}: needs a string field 'completion'"}
    return record


def _sample(record: dict) -> Sample:
    return Sample(
        completion=record["completion"],
        reference=str(record.get("reference", record.get("answer", "")) or ""),
        tests=tuple(record.get("tests") or ()),
        prompt=str(record.get("prompt", "")),
        domain=str(record.get("domain", "math")),
        language=str(record.get("language", "en")),
        finish_reason=str(record.get("finish_reason", "stop")),
    )

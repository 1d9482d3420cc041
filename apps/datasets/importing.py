"""Prompt import: read JSONL, CSV (either gzipped), Parquet or a `datasets` save_to_disk folder
(or a zip of one), validate every record, then write all prompts in one transaction or none.

Errors name the line (row, for Parquet and datasets folders) and the field. A file is refused before
it is read whole where it would expand past MAX_EXPANDED_BYTES or holds a line over MAX_LINE_BYTES.
"""

import csv
import gzip
import json
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat

from apps.core.bulk import bulk_insert
from apps.core.uploads import private_folder
from apps.datasets.models import Dataset, Prompt
from apps.datasets.validation import RecordFields
from apps.jobs.kinds import job_kind

FORMATS = ["jsonl", "csv", "parquet", "hf"]
MAX_QUESTION_CHARS = 200_000
MAX_ERRORS_SHOWN = 50
CANCEL_CHECK_EVERY = 1000
MAX_ZIP_ENTRIES = 10_000  # a save_to_disk folder holds a handful of files per split
PARQUET_BATCH_ROWS = 512
PROMPT_KINDS = [("reasoning", "reasoning"), ("non_reasoning", "non-reasoning")]  # Prompt.reasoning True / False


class ImportFileError(Exception):
    """The file cannot be read at all (wrong encoding, not a Parquet file, ...)."""


class ImportValidationError(Exception):
    verb = "imported"

    def __init__(self, errors: list[str], error_count: int):
        self.errors, self.error_count = errors, error_count
        shown = "\n".join(errors)
        more = f"\n... and {error_count - len(errors)} more" if error_count > len(errors) else ""
        super().__init__(f"{error_count} invalid record(s); nothing was {self.verb}.\n{shown}{more}")


@dataclass
class FieldMapping:
    """Which source column holds each prompt field."""

    question: str = "question"
    answer: str = "answer"
    tests: str = "tests"
    domain: str = "domain"
    language: str = "language"
    reasoning: str = "reasoning"  # true/false, or the words reasoning/non-reasoning (a "kind" column)
    default_domain: str = "math"
    default_language: str = "en"
    default_reasoning: bool = True  # for rows that leave the reasoning column out or empty
    # Columns copied into metadata; ["*"] means every column not mapped above.
    metadata: list[str] = field(default_factory=lambda: ["*"])

    def mapped(self) -> set[str]:
        return {self.question, self.answer, self.tests, self.domain, self.language, self.reasoning}


def content_suffix(path: Path) -> str:
    """The suffix that names the format, past a gzip one: ".jsonl" for both run.jsonl and run.jsonl.gz."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def detect_format(path: Path) -> str:
    suffix = content_suffix(path)
    if path.is_dir() or suffix == ".zip":
        return "hf"
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    if suffix in {".csv", ".tsv"}:
        return "csv"
    if suffix in {".parquet", ".pq"}:
        return "parquet"
    raise ImportFileError(f"cannot tell the format of {path.name!r}; choose one of {', '.join(FORMATS)}")


# ---- readers: each yields (location, record) -------------------------------------------


def _size(n: int) -> str:
    return filesizeformat(n).replace("\xa0", " ")


def _expanded_too_far(what: str, size: int | None = None) -> ImportFileError:
    held = f" holds {_size(size)} uncompressed;" if size is not None else " expands past"
    return ImportFileError(f"{what}{held} the limit is {_size(settings.MAX_EXPANDED_BYTES)} (R1_MAX_EXPANDED_MB)")


def open_bytes(path: Path):
    """The file's bytes, decompressed on the fly when its name ends in .gz."""
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")


def raw_lines(path: Path) -> Iterator[bytes]:
    """The file's lines as bytes, each read with a bound (MAX_LINE_BYTES) and, for a gzip file, the
    decompressed total bounded too (MAX_EXPANDED_BYTES): a bomb stops at the bound, never in memory."""
    limit, compressed = settings.MAX_LINE_BYTES, path.suffix.lower() == ".gz"
    expanded = 0
    try:
        with open_bytes(path) as f:
            number = 0
            while raw := f.readline(limit + 1):
                number += 1
                if len(raw) > limit and not raw.endswith(b"\n"):
                    raise ImportFileError(f"line {number}: longer than {_size(limit)} (R1_MAX_LINE_MB)")
                expanded += len(raw)
                if compressed and expanded > settings.MAX_EXPANDED_BYTES:
                    raise _expanded_too_far(f"{path.name} (gzip)")
                yield raw
    except (gzip.BadGzipFile, EOFError, zlib.error):
        raise ImportFileError(f"{path.name} is not a readable gzip file") from None


def _utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(raw_lines(path), start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportFileError(
                f"line {number}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                "save the file as UTF-8 and upload it again"
            ) from None


def read_jsonl(path: Path) -> Iterator[tuple[str, dict | str]]:
    """Yields a record, or an error message in place of a record that cannot be parsed."""
    for number, line in _utf8_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield f"line {number}", f"not valid JSON ({exc.msg} at column {exc.colno})"
            continue
        if not isinstance(record, dict):
            yield f"line {number}", f"expected a JSON object, found {type(record).__name__}"
            continue
        yield f"line {number}", record


def read_csv(path: Path) -> Iterator[tuple[str, dict | str]]:
    lines = _utf8_lines(path)
    physical = {"line": 0}

    def text():
        for number, line in lines:
            physical["line"] = number
            yield line

    dialect = "excel-tab" if content_suffix(path) == ".tsv" else "excel"
    try:
        reader = csv.reader(text(), dialect=dialect)
        header = next(reader, None)
        if not header:
            return
        header = [h.strip() for h in header]
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            where = f"line {physical['line']}"
            if len(row) != len(header):
                yield where, f"expected {len(header)} columns (as many as the header line), found {len(row)}"
                continue
            yield where, dict(zip(header, row))
    except csv.Error as exc:
        raise ImportFileError(f"line {physical['line']}: malformed CSV ({exc})") from None


def parquet_file(path: Path):
    """An open Parquet file whose uncompressed column data, as its metadata declares, is within
    MAX_EXPANDED_BYTES: checked before any row is read."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:
        raise ImportFileError(f"not a readable Parquet file: {exc}") from None
    meta = parquet.metadata
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    declared = max(sum(g.total_byte_size for g in groups),
                   sum(g.column(c).total_uncompressed_size for g in groups for c in range(g.num_columns)))
    if declared > settings.MAX_EXPANDED_BYTES:
        raise _expanded_too_far(f"{path.name} (Parquet)", declared)
    return parquet


def read_parquet(path: Path) -> Iterator[tuple[str, dict]]:
    parquet = parquet_file(path)
    # The metadata counts dictionary-encoded values once, however often the rows repeat them: the
    # decoded batches are counted too, so a small file of one huge repeated string stops at the bound.
    row, expanded = 0, 0
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        expanded += batch.nbytes
        if expanded > settings.MAX_EXPANDED_BYTES:
            raise _expanded_too_far(f"{path.name} (Parquet, decoded)")
        for record in batch.to_pylist():
            row += 1
            yield f"row {row}", record


def _unzip(path: Path) -> Path:
    """Extract a zip into a private folder of its own; refused before anything is written when its
    entries declare more than MAX_EXPANDED_BYTES (zipfile never writes more than an entry declares)."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            if len(entries) > MAX_ZIP_ENTRIES:
                raise ImportFileError(f"the zip archive has {len(entries):,} entries; the limit is {MAX_ZIP_ENTRIES:,}")
            declared = sum(entry.file_size for entry in entries)
            if declared > settings.MAX_EXPANDED_BYTES:
                raise _expanded_too_far("the zip archive", declared)
            target = Path(tempfile.mkdtemp(prefix="unzipped-", dir=private_folder(settings.UPLOAD_DIR)))
            try:
                archive.extractall(target)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
    except (zipfile.BadZipFile, zlib.error, EOFError):
        raise ImportFileError("not a readable zip archive") from None
    return target


def _find_saved_dataset(path: Path) -> Path:
    marks = sorted(p.parent for p in path.rglob("*") if p.name in {"state.json", "dataset_dict.json"})
    if not marks:
        raise ImportFileError("no dataset saved with save_to_disk was found (state.json or dataset_dict.json)")
    return min(marks, key=lambda p: len(p.parts))


def read_saved_dataset(path: Path, split: str = "") -> Iterator[tuple[str, dict]]:
    unzipped = _unzip(path) if content_suffix(path) == ".zip" else None
    try:
        yield from _read_saved_dataset(unzipped or path, split)
    finally:
        if unzipped:
            shutil.rmtree(unzipped, ignore_errors=True)


def _read_saved_dataset(path: Path, split: str) -> Iterator[tuple[str, dict]]:
    from datasets import DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(str(_find_saved_dataset(path)))
    except ImportFileError:
        raise
    except Exception as exc:
        raise ImportFileError(f"cannot load the saved dataset ({type(exc).__name__})") from None
    if isinstance(loaded, DatasetDict):
        if not split:
            if len(loaded) != 1:
                raise ImportFileError(f"the dataset has splits {sorted(loaded)}; choose one")
            split = next(iter(loaded))
        if split not in loaded:
            raise ImportFileError(f"no split {split!r}; the dataset has {sorted(loaded)}")
        loaded = loaded[split]
    for row, record in enumerate(loaded, start=1):
        yield f"row {row}", record


def count_records(path: Path, fmt: str) -> int | None:
    """A cheap upper bound for the progress bar."""
    if fmt in {"jsonl", "csv"}:
        if path.suffix.lower() == ".gz":
            return None  # counting would mean decompressing it all once more
        lines, last = 0, b"\n"
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                lines, last = lines + chunk.count(b"\n"), chunk[-1:]
        return lines + (last != b"\n") - (fmt == "csv")  # a last line without newline; the CSV header
    if fmt == "parquet":
        try:
            return parquet_file(path).metadata.num_rows
        except ImportFileError:
            return None  # the reader names the problem
    return None


def read_records(path: Path, fmt: str, split: str = "") -> Iterator[tuple[str, dict | str]]:
    if not path.exists():
        raise ImportFileError(f"{path} does not exist")
    readers = {"jsonl": read_jsonl, "csv": read_csv, "parquet": read_parquet}
    if fmt == "hf":
        return read_saved_dataset(path, split)
    return readers[fmt](path)


# ---- validation: one record → prompt fields, or errors --------------------------------


def _json_safe(value):
    return json.loads(json.dumps(value, default=str))


# How a file may mark a prompt: a boolean, 1/0, or words (case and "-" or "_" do not matter).
REASONING_MARKS = {"true": True, "yes": True, "1": True, "reasoning": True,
                   "false": False, "no": False, "0": False, "non_reasoning": False, "nonreasoning": False}


def reasoning_mark(f: RecordFields, column: str, default: bool) -> bool:
    """Whether a record's prompt needs reasoning, from `column`; `default` when the record leaves it empty."""
    value = f.record.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    if isinstance(value, str) and (mark := REASONING_MARKS.get(value.strip().lower().replace("-", "_"))) is not None:
        return mark
    f.error(column, "expected true or false (or reasoning / non-reasoning)")
    return default


def validate_record(record: dict, mapping: FieldMapping) -> tuple[dict | None, list[str]]:
    f = RecordFields(record)
    question = f.text(mapping.question, required=True, limit=MAX_QUESTION_CHARS)
    answer = f.text(mapping.answer)
    tests = f.tests(mapping.tests)
    domain = f.text(mapping.domain, limit=32).strip() or mapping.default_domain
    language = f.text(mapping.language, limit=16).strip() or mapping.default_language
    reasoning = reasoning_mark(f, mapping.reasoning, mapping.default_reasoning)
    if mapping.metadata == ["*"]:
        keys = [k for k in record if k not in mapping.mapped()]
    else:
        keys = [k for k in mapping.metadata if k in record]
    if f.errors:
        return None, f.errors
    question = question.strip()
    return {
        "question": question,
        "reference_answer": answer.strip(),
        "tests": tests,
        "domain": domain,
        "language": language,
        "reasoning": reasoning,
        "metadata": _json_safe({k: record[k] for k in keys}),
        "content_hash": Prompt.hash_for(question, answer, tests),
    }, []


# ---- the job -------------------------------------------------------------------------


class FieldMappingForm(forms.Form):
    """Where each prompt field comes from; shared by the upload form, the job and the command line."""

    format = forms.ChoiceField(choices=[("", "detect from the file name")] + [(f, f) for f in FORMATS], required=False)
    split = forms.CharField(max_length=100, required=False, help_text="Split of a saved DatasetDict")
    question_field = forms.CharField(max_length=200, initial="question")
    answer_field = forms.CharField(max_length=200, initial="answer", required=False)
    tests_field = forms.CharField(max_length=200, initial="tests", required=False)
    domain_field = forms.CharField(max_length=200, initial="domain", required=False)
    language_field = forms.CharField(max_length=200, initial="language", required=False)
    reasoning_field = forms.CharField(
        max_length=200, initial="reasoning", required=False,
        help_text="Column marking each prompt: true/false, or reasoning/non-reasoning")
    default_domain = forms.CharField(max_length=32, initial="math", required=False)
    default_language = forms.CharField(max_length=16, initial="en", required=False)
    default_kind = forms.ChoiceField(
        choices=PROMPT_KINDS, initial="reasoning", required=False,
        help_text="Kind of the prompts whose row leaves the mark empty (a file of writing prompts: non-reasoning)")
    metadata_fields = forms.CharField(
        max_length=2000, initial="*", required=False, help_text="Comma-separated columns, or * for all others"
    )


def allowed_server_path(path: Path) -> bool:
    """True when `path` exists and resolves (symlinks followed) under an import root or the upload folder."""
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return False
    roots = [settings.UPLOAD_DIR.resolve(), *settings.IMPORT_ROOTS]
    return any(resolved.is_relative_to(root) for root in roots)


class ServerPathForm(forms.Form):
    """A file or folder already on the server (a job's input); an empty `format` is detected from it."""

    path = forms.CharField(max_length=4096, help_text="File or folder on the server, under R1_IMPORT_ROOTS")
    detect = staticmethod(detect_format)
    via = "web"  # kinds.validate_params sets it: "cli" (an operator at the shell) may name any path

    def clean_path(self):
        path = Path(self.cleaned_data["path"])
        if self.via == "cli":
            if not path.exists():
                raise forms.ValidationError(f"{path} does not exist on the server")
            return str(path)
        if not allowed_server_path(path):
            # The same answer whether the path is missing or outside the roots: no probing the disk.
            roots = ", ".join(map(str, settings.IMPORT_ROOTS)) or "none (an operator sets R1_IMPORT_ROOTS)"
            raise forms.ValidationError(
                f"{path} is not a file or folder under an allowed import root. Allowed roots: {roots}")
        return str(path.resolve())

    def clean(self):
        data = super().clean()
        if data.get("path") and not data.get("format"):
            try:
                data["format"] = self.detect(Path(data["path"]))
            except ImportFileError as exc:
                self.add_error("format", str(exc))
        return data


class ImportParamsForm(ServerPathForm, FieldMappingForm):
    """The parameters of an import_prompts job."""

    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all())


def mapping_from_params(params: dict) -> FieldMapping:
    metadata = [c.strip() for c in (params.get("metadata_fields") or "*").split(",") if c.strip()]
    return FieldMapping(
        question=params["question_field"],
        answer=params.get("answer_field") or "answer",
        tests=params.get("tests_field") or "tests",
        domain=params.get("domain_field") or "domain",
        language=params.get("language_field") or "language",
        reasoning=params.get("reasoning_field") or "reasoning",
        default_reasoning=params.get("default_kind") != "non_reasoning",
        default_domain=params.get("default_domain") or "math",
        default_language=params.get("default_language") or "en",
        metadata=metadata,
    )


@job_kind("import_prompts", "Import prompts", ImportParamsForm, own_page="dataset_list",
          own_page_hint="Imports need an uploaded file: open a dataset and use its import page.")
def run_import(ctx) -> dict:
    params = ctx.params
    dataset = Dataset.objects.get(pk=params["dataset"])
    path, fmt = Path(params["path"]), params["format"]
    mapping = mapping_from_params(params)
    ctx.progress(0, count_records(path, fmt))
    ctx.log(f"validating {path.name} ({fmt}) for dataset {dataset.name}")

    rows, errors, error_count, seen, duplicates_in_file = [], [], 0, set(), 0
    for number, (where, record) in enumerate(read_records(path, fmt, params.get("split", "")), start=1):
        problems = [record] if isinstance(record, str) else None
        if problems is None:
            row, problems = validate_record(record, mapping)
        if problems:
            error_count += 1
            errors.extend(f"{where}: {p}" for p in problems[: MAX_ERRORS_SHOWN - len(errors)])
        elif row["content_hash"] in seen:
            duplicates_in_file += 1
        else:
            seen.add(row["content_hash"])
            row["dataset_id"] = dataset.pk
            rows.append(row)
        if number % CANCEL_CHECK_EVERY == 0:
            ctx.progress(number)
            ctx.check_cancelled()
    if error_count:
        raise ImportValidationError(errors, error_count)
    total = len(rows) + duplicates_in_file
    ctx.progress(total, total)
    ctx.check_cancelled()
    ctx.log(f"writing {len(rows)} prompts")
    inserted = bulk_insert(Prompt, rows)
    result = {"records": total, "inserted": inserted, "skipped_duplicates": total - inserted}
    ctx.log(f"imported {inserted} prompts; {total - inserted} duplicates skipped")
    return result

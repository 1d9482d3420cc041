"""Reading a source: the file itself, or the dump files of a folder, record by record; the format
detected from the name and the first record."""

import hashlib
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

from apps.datasets.importing import (
    ImportFileError,
    content_suffix,
    count_records,
    parquet_file,
    raw_lines,
    read_jsonl,
    read_parquet,
)
from apps.rollouts.ingest.errors import IngestFileError


def _step_order(path: Path):
    """verl names its dumps by step (2.jsonl, 10.jsonl): numeric order, then the rest by name."""
    digits = re.sub(r"\D", "", path.stem)
    return (int(digits) if digits else math.inf, path.name)


def source_files(path: Path, fmt: str) -> list[Path]:
    """The file itself, or the dump files of a folder (TRL's completions/, verl's rollout_data_dir)."""
    if not path.exists():
        raise IngestFileError(f"{path} does not exist")
    if not path.is_dir():
        return [path]
    if fmt == "trl" and (path / "completions").is_dir():
        path = path / "completions"  # TRL's output_dir: its completion logs are in completions/
    patterns = ["*.parquet"] if fmt == "trl" else ["*.jsonl", "*.jsonl.gz"]
    files = sorted((f for pattern in patterns for f in path.glob(pattern)), key=_step_order)
    if not files:
        raise IngestFileError(f"the folder {path.name} has no {' or '.join(patterns)} files")
    return files


def read_source(path: Path, fmt: str) -> Iterator[tuple[str, dict | str]]:
    """(location, record or error) over the file or the folder's files; locations name the file in a folder."""
    files = source_files(path, fmt)
    reader = read_parquet if fmt == "trl" else read_jsonl
    for file in files:
        try:
            for where, record in reader(file):
                yield (f"{file.name} {where}" if len(files) > 1 else where), record
        except ImportFileError as exc:
            prefix = f"{file.name}: " if len(files) > 1 else ""
            raise IngestFileError(f"{prefix}{exc}; nothing was ingested") from None


def count_source(path: Path, fmt: str) -> int | None:
    try:
        counts = [count_records(f, "parquet" if fmt == "trl" else "jsonl") for f in source_files(path, fmt)]
    except IngestFileError:
        return None
    return None if None in counts else sum(counts)


def detect_ingest_format(path: Path) -> str:
    """trl for Parquet (or a folder of it), verl for JSONL whose first record has input and output, else jsonl."""
    path = Path(path)
    if path.is_dir():
        if any(path.glob("*.parquet")):
            return "trl"
        path = source_files(path, "jsonl")[0]
    if content_suffix(path) in {".parquet", ".pq"}:
        return "trl"
    try:
        for raw in raw_lines(path):
            if raw.strip():
                first = json.loads(raw.decode("utf-8", errors="replace").lstrip("\ufeff"))
                return "verl" if isinstance(first, dict) and {"input", "output"} <= first.keys() else "jsonl"
    except (OSError, ValueError, ImportFileError):
        pass  # unreadable here: the jsonl reader names the problem
    return "jsonl"


def source_digest(path: Path, fmt: str) -> str:
    """sha256 of the source's bytes (a folder's files by name and content): the same run's logs, ingested
    again, are recognised whatever the file is called now."""
    digest = hashlib.sha256()
    for file in source_files(Path(path), fmt):
        digest.update(f"{file.name if Path(path).is_dir() else ''}\0".encode())
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def trl_reward_weights(path: Path) -> dict[str, float] | None:
    """The reward functions of the TRL run whose logs are at `path` (the output_dir, its completions/ folder
    or one file in it), read from the newest trainer_state.json TRL saved there; None if there is none.

    TRL logs "rewards/<function>/mean" for each reward function and "reward", their weighted sum, at each
    step; the weights are solved from those when the logged steps determine them exactly, else 1.0 each
    (TRL's default when GRPOConfig.reward_weights is not set)."""
    run = Path(path) if Path(path).is_dir() else Path(path).parent
    if run.name == "completions":
        run = run.parent
    states = sorted(run.glob("checkpoint-*/trainer_state.json"), key=lambda p: _step_order(p.parent))
    states += [run / "trainer_state.json"] if (run / "trainer_state.json").is_file() else []
    if not states:
        return None
    try:
        history = json.loads(states[-1].read_text())["log_history"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    names = sorted({key.split("/")[1] for entry in history for key in entry
                    if key.startswith("rewards/") and key.endswith("/mean") and key.count("/") == 2})
    if not names:
        return None
    return dict(zip(names, _solved_weights(history, names), strict=True))


def _solved_weights(history: list[dict], names: list[str]) -> list[float]:
    import numpy as np

    rows = [entry for entry in history
            if "reward" in entry and all(isinstance(entry.get(f"rewards/{n}/mean"), (int, float)) for n in names)]
    if len(rows) >= len(names):
        means = np.array([[entry[f"rewards/{n}/mean"] for n in names] for entry in rows], dtype=float)
        totals = np.array([entry["reward"] for entry in rows], dtype=float)
        weights, _, rank, _ = np.linalg.lstsq(means, totals, rcond=None)
        if rank == len(names) and np.allclose(means @ weights, totals, atol=1e-4):
            return [round(float(w), 6) for w in weights]
    return [1.0] * len(names)


def first_columns(path: Path) -> list[str]:
    """The column names of a TRL log's first file (for an error that asks the user to choose among them);
    a file that cannot be read (or is a bomb) says so instead."""
    return parquet_file(source_files(Path(path), "trl")[0]).schema_arrow.names

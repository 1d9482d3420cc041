"""Rollout ingest: rollouts produced by other trainers, validated like the prompt import.

Three source formats, each a mapping from the source's fields to a Rollout:

- ``jsonl`` (ours): one object per line with ``prompt`` and ``completion`` and optional
  ``reasoning``, ``rewards``, ``total_reward``, ``step``, ``group``, ``sample_index``, ``advantage``,
  ``is_correct``, ``format_ok``, ``finish_reason``, ``reference_answer``, ``prompt_text``,
  ``completion_tokens``, ``prompt_tokens``, ``model``, ``language_consistency``; any other field is kept
  in the rollout's metadata.
- ``trl``: TRL's GRPO completion logs (``<output_dir>/completions/completions_<step>.parquet``: a file,
  that folder or the output_dir), written by ``GRPOTrainer.log`` in TRL 1.16. Which columns are reward
  functions comes from the user or the run's trainer_state.json; the others (log_extra) are metadata.
- ``verl``: verl's rollout dumps (``trainer.rollout_data_dir/<step>.jsonl``, a file or that folder),
  written by ``RayPPOTrainer._dump_generations``.

The source's own verdict lands in ``source_correct`` as well as ``is_correct``; scoring rewrites only
the latter. The same source landed twice in a dataset lands nothing the second time, unless forced.
Modules: ``readers`` (files, folders, formats), ``mappers`` (one per source), ``questions`` (the
question inside a rendered prompt), ``writer`` (the two passes), ``preview`` (the column mapping shown
before anything lands), ``forms`` (the options and the job).

Like the prompt import (apps.datasets.importing, whose readers this reuses): every record is
validated first and errors name the line (row, for Parquet) and the field; then everything lands in
one transaction or nothing does. With ``partial=True`` the good records land and the bad ones come
back. The file is read twice (validate, then write) so that memory stays bounded by one write chunk,
not by the file: a run's completions are far larger than its prompts.

A retried job writes nothing twice: samples get the same (prompt, step, sample_index) on every run of
the same file, and the rollout unique key (job, prompt, step, sample_index) skips the rows already stored.
"""

from apps.rollouts.ingest.errors import IngestFileError, IngestValidationError
from apps.rollouts.ingest.forms import IngestOptionsForm, IngestParamsForm, IngestUploadForm, run_ingest
from apps.rollouts.ingest.mappers import FORMATS, MAPPERS
from apps.rollouts.ingest.preview import IngestPreview, preview_source
from apps.rollouts.ingest.questions import extract_question, render_chat, template_affixes
from apps.rollouts.ingest.readers import count_source, detect_ingest_format, read_source, source_files
from apps.rollouts.ingest.writer import IngestResult, ingest_file

__all__ = [
    "FORMATS", "MAPPERS", "IngestFileError", "IngestOptionsForm", "IngestParamsForm", "IngestPreview",
    "IngestResult", "IngestUploadForm", "IngestValidationError", "count_source", "detect_ingest_format",
    "extract_question", "ingest_file", "preview_source", "read_source", "render_chat", "run_ingest", "source_files",
    "template_affixes",
]

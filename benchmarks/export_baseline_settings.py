"""The project's settings with the export benchmark's baseline route added (benchmarks/export.py only)."""

from r1studio.settings import *

ROOT_URLCONF = "export_baseline_urls"

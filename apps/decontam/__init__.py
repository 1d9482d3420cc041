"""Decontamination: a dataset version checked against imported benchmarks by n-gram overlap, every
match shown to a reviewer, and a new version without the confirmed ones."""

"""Data hygiene without Django: the words texts are compared by, n-gram overlap and near-duplicates."""

import hashlib
import json


def content_hash(value) -> str:
    """Stable sha256 of a JSON-able value: key order and float formatting do not matter."""
    canonical = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

"""One stable digest of JSON-able settings, shared by every "was this made the same way?" check."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hex digest of ``obj`` as sorted-key JSON (non-JSON values by ``str``): equal settings, equal hash."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]

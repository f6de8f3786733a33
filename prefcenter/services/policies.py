"""Reading the active policy file (the parsing and validation are pure, in prefcenter.domain.policy)."""

from __future__ import annotations

from pathlib import Path

from prefcenter.config import Settings
from prefcenter.domain.policy import LoadedPolicy, load_policy


def load_policy_file(path: Path) -> LoadedPolicy:
    """Raises PolicyError (file, field, reason) for a bad policy, OSError for a missing file."""
    return load_policy(path.read_bytes(), str(path))


def load_active_policy(settings: Settings) -> LoadedPolicy:
    return load_policy_file(settings.policy_path)

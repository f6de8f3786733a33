"""Reading the active policy file (the parsing and validation are pure, in prefcenter.domain.policy)."""

from __future__ import annotations

from pathlib import Path

from prefcenter.config import PREFIX, ConfigError, Settings, check_policy_name
from prefcenter.domain.policy import LoadedPolicy, load_policy


def load_policy_file(path: Path) -> LoadedPolicy:
    """Raises PolicyError (file, field, reason) for a bad policy, OSError for a missing file."""
    return load_policy(path.read_bytes(), str(path))


def active_policy_path(settings: Settings) -> Path:
    """``PREFCENTER_POLICY`` inside ``PREFCENTER_POLICY_DIR``, confined to it: a bare ``*.toml`` name
    whose resolved path (symlinks followed) is a file directly in the resolved folder. Anything else is
    a ConfigError naming PREFCENTER_POLICY, so no other file on the host is ever read as the policy.
    With PREFCENTER_POLICY_DIR unset the folder is ``./policies`` if the working directory has one, else
    the policies shipped inside the package (``Settings.policy_folder``)."""
    check_policy_name(settings.policy)
    folder = settings.policy_folder.resolve()
    resolved = (folder / settings.policy).resolve()
    if resolved.parent != folder:
        raise ConfigError(
            f"{PREFIX}POLICY: {settings.policy!r} resolves to a file outside {PREFIX}POLICY_DIR "
            f"({folder}); a policy must be a file directly inside it"
        )
    return settings.policy_path


def load_active_policy(settings: Settings) -> LoadedPolicy:
    """Raises ConfigError for a policy outside its folder, PolicyError for a bad one, OSError for a
    missing one."""
    return load_policy_file(active_policy_path(settings))

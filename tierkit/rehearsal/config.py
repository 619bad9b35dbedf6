"""A stack's config as Pulumi hands it to a program, read without the Pulumi CLI."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from tierkit import providers, safe_yaml, spec as tier_spec
from tierkit.paths import StackPaths
from tierkit.secretfile import read_or_create

# The config key of the API key the rehearsal generates (into StackPaths.api_key, as it has no
# encrypted state to keep it in) when the provider requires one and none is set.
API_KEY_CONFIG = "tierkit:apiKey"


@dataclass
class StackConfig:
    project: str
    config: dict[str, str]
    secret_keys: list[str]
    notes: list[str]


def load_stack_config(root: Path, stack: str, secret_env: dict[str, str], *, generate: bool = False) -> StackConfig:
    """The stack file's `config:` as Pulumi hands it to a program (strings; objects as JSON).

    `secure:` values cannot be decrypted without the Pulumi CLI: each key in `secret_env`
    (config key -> environment variable) is taken from the environment instead, as a secret.
    generate: an API key the provider requires and nobody set is made once and kept in
    StackPaths.api_key (mode 0600), as the program's generated key would be in Pulumi's state
    (the rehearsal's preview runs without it: a refused stack leaves no file)."""
    project_doc = safe_yaml.load_file(root / "Pulumi.yaml")
    project = project_doc.get("name", "project") if isinstance(project_doc, dict) else "project"
    path = tier_spec.stack_path(stack, root)
    spec_data = tier_spec.spec_data_from_stack_file(path)  # the file exists, parses and has the spec key
    raw = (safe_yaml.load_file(path) or {}).get("config") or {}
    config: dict[str, str] = {}
    notes: list[str] = []
    for key, value in raw.items():
        full = key if ":" in key else f"{project}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            notes.append(f"{full}: `secure:` value skipped (the rehearsal cannot decrypt it)")
            continue
        config[full] = value if isinstance(value, str) else json.dumps(value)
    secret_keys = []
    for key, var in secret_env.items():
        if os.environ.get(var):
            config[key] = os.environ[var]
            secret_keys.append(key)
            notes.append(f"{key}: from ${var}, as a secret")
        elif generate and key == API_KEY_CONFIG and providers.get(tier_spec.parse_spec(spec_data)).api_key_required:
            stored = StackPaths(root, stack).api_key
            config[key] = read_or_create(stored, lambda: secrets.token_urlsafe(32))
            secret_keys.append(key)
            notes.append(f"{key}: not set, so generated once into {stored} (mode 0600), as a secret")
        else:
            config.pop(key, None)
            notes.append(f"{key}: not set (export {var} to set it)")
    return StackConfig(project, config, secret_keys, notes)

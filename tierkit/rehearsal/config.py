"""A stack's config as Pulumi hands it to a program, read without the Pulumi CLI."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from tierkit import safe_yaml, spec as tier_spec


@dataclass
class StackConfig:
    project: str
    config: dict[str, str]
    secret_keys: list[str]
    notes: list[str]


def load_stack_config(root: Path, stack: str, secret_env: dict[str, str]) -> StackConfig:
    """The stack file's `config:` as Pulumi hands it to a program (strings; objects as JSON).

    `secure:` values cannot be decrypted without the Pulumi CLI: each key in `secret_env`
    (config key -> environment variable) is taken from the environment instead, as a secret.
    An API key nobody set is the program's to generate (its `api-key` command, whose secret
    output the rehearsal's record keeps sealed)."""
    project_doc = safe_yaml.load_file(root / "Pulumi.yaml")
    project = project_doc.get("name", "project") if isinstance(project_doc, dict) else "project"
    path = tier_spec.stack_path(stack, root)
    tier_spec.spec_data_from_stack_file(path)  # the file exists, parses and has the spec key
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
        else:
            config.pop(key, None)
            notes.append(f"{key}: not set (export {var} to set it)")
    return StackConfig(project, config, secret_keys, notes)

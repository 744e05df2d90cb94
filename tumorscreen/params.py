"""Read ``params.yaml`` once, restricted to what the stage declares in ``dvc.yaml``.

A stage only sees the keys listed under its ``params:`` in ``dvc.yaml``, so a key it reads
but did not declare fails loudly instead of silently escaping DVC's change tracking.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tumorscreen.errors import TumorScreenError


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TumorScreenError(f"{path} not found (run from the project root)")
    with path.open() as handle:
        return yaml.safe_load(handle) or {}


def declared_params(stage: str, dvc_yaml: str | Path = "dvc.yaml") -> list[str]:
    """Dotted keys declared under ``stages.<stage>.params`` of ``dvc.yaml`` (default file only)."""
    stages = _read_yaml(Path(dvc_yaml)).get("stages", {})
    if stage not in stages:
        raise TumorScreenError(f"stage '{stage}' is not defined in {dvc_yaml}")
    keys: list[str] = []
    for entry in stages[stage].get("params", []):
        if isinstance(entry, str):
            keys.append(entry)
        elif isinstance(entry, dict):  # {file: [keys]} form: only params.yaml is used
            for file_name, file_keys in entry.items():
                if file_name != "params.yaml":
                    raise TumorScreenError(f"stage '{stage}' reads {file_name}; only params.yaml")
                keys.extend(file_keys)
    return keys


def get_dotted(tree: dict[str, Any], dotted: str) -> Any:
    """``tree['a']['b']`` for ``dotted='a.b'``; a missing level raises TumorScreenError."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise TumorScreenError(f"param '{dotted}' is declared but missing from params.yaml")
        node = node[part]
    return node


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``tree['a']['b'] = value`` for ``dotted='a.b'``, creating missing levels."""
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def load_params(
    stage: str, params_yaml: str | Path = "params.yaml", dvc_yaml: str | Path = "dvc.yaml"
) -> dict[str, Any]:
    """The nested params a stage declared, and nothing else."""
    everything = _read_yaml(Path(params_yaml))
    visible: dict[str, Any] = {}
    for key in declared_params(stage, dvc_yaml):
        set_dotted(visible, key, get_dotted(everything, key))
    return visible

"""Rendered objects as files: one YAML document per object, under a directory per namespace,
byte-identical for the same objects. The output directory is replaced whole, so objects
the spec no longer names do not linger in it."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel.errors import Invalid

if TYPE_CHECKING:
    import yaml

# PyYAML is imported when manifests are written: only `flywheel fleet render` needs it.

CLUSTER_DIR = "_cluster"   # cluster-scoped objects (namespaces); no namespace starts with "_"


class ManifestError(Invalid):
    """A rendered object that could not be written as a manifest."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Multi-line values (NIX_CONFIG) as literal blocks: readable, and diffable line by line.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


@functools.cache
def _dumper() -> type[yaml.SafeDumper]:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(str, _str)
    return Dumper


def dumps(obj: dict[str, Any]) -> str:
    import yaml

    return yaml.dump(obj, Dumper=_dumper(), sort_keys=False, default_flow_style=False,
                     width=100, allow_unicode=True)


def relative_path(obj: dict[str, Any]) -> Path:
    meta = obj["metadata"]
    return Path(meta.get("namespace") or CLUSTER_DIR) / f"{obj['kind'].lower()}-{meta['name']}.yaml"


def _ours(directory: Path) -> bool:
    """Only a directory render wrote (or an empty one) may be replaced."""
    for entry in directory.iterdir():
        if not entry.is_dir() or any(not f.is_file() or f.suffix != ".yaml"
                                     for f in entry.iterdir()):
            return False
    return True


def write(objects: list[dict[str, Any]], out: Path) -> list[Path]:
    if out.exists() and (not out.is_dir() or not _ours(out)):
        raise ManifestError(f"{out} holds files render did not write; give an empty or new "
                            "directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    written = []
    try:
        for obj in objects:
            path = staging / relative_path(obj)
            path.parent.mkdir(exist_ok=True)
            path.write_text(dumps(obj), encoding="utf-8")
            written.append(out / relative_path(obj))
        os.chmod(staging, 0o755)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            staging.rename(out)
            shutil.rmtree(old)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written

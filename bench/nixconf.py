"""The Nix configuration that benchmarks and tests run the real nix with.

Nothing of the machine's own Nix set-up may change what they do: ``NIX_CONF_DIR`` points
away from /etc/nix, user files are not read, and builds run in-process (no ``nixbld``
build users, which a freshly installed nix-bin does not create)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

NIX_CONF = """\
build-users-group =
experimental-features = nix-command
sandbox = false
substituters =
"""


def isolated_nix_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment for the real nix under the configuration above; with ``home``, also its
    own HOME and narinfo cache, so nothing one run remembered changes the next."""
    conf_dir = (home / "nix-conf") if home is not None else \
        Path(tempfile.gettempdir()) / f"flywheel-nix-conf-{os.getuid()}"
    conf_dir.mkdir(parents=True, exist_ok=True)
    conf = conf_dir / "nix.conf"
    if not conf.exists() or conf.read_text() != NIX_CONF:
        conf.write_text(NIX_CONF)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NIX_", "FLYWHEEL_"))}
    env.update(NIX_CONF_DIR=str(conf_dir), NIX_USER_CONF_FILES=str(conf_dir / "none.conf"))
    if home is not None:
        env.update(HOME=str(home), XDG_CACHE_HOME=str(home / "cache"))
    env.update(extra)
    return env

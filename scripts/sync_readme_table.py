"""Regenerate the README's environment table from start.py's VARIABLES (a test checks they agree)."""

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import start  # noqa: E402

readme = REPO / "README.md"
text = readme.read_text()
updated = re.sub(
    r"(<!-- env-table:start -->\n).*?(<!-- env-table:end -->)",
    lambda match: match.group(1) + start.markdown_table() + match.group(2),
    text,
    flags=re.S,
)
readme.write_text(updated)
print("README.md table", "updated" if updated != text else "already in sync")

"""Regenerate the generated tables of docs/variables.md from start.py's VARIABLES (a test checks they agree).

<!-- env-table:... --> holds every variable; <!-- server-table:... --> what each
one-to-one variable becomes under each server.
"""

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import start  # noqa: E402

TABLES = {"env-table": start.markdown_table, "server-table": start.server_table}

readme = REPO / "docs" / "variables.md"
text = updated = readme.read_text()
for marker, generate in TABLES.items():
    updated = re.sub(
        rf"(<!-- {marker}:start -->\n).*?(<!-- {marker}:end -->)",
        lambda match, generate=generate: match.group(1) + generate() + match.group(2),
        updated,
        flags=re.S,
    )
readme.write_text(updated)
print("docs/variables.md tables", "updated" if updated != text else "already in sync")

"""Print the commands of the README's first ```bash block, one a line (comments dropped,
backslash continuations joined): the commands a new user copies, for .ci/run to run as written."""

import re
import sys
from pathlib import Path

text = Path(sys.argv[1]).read_text(encoding="utf-8")
block = re.search(r"^```bash\n(.*?)^```", text, re.M | re.S)
if block is None:
    sys.exit(f"{sys.argv[1]}: no ```bash block")
for command in block.group(1).replace("\\\n", " ").splitlines():
    if command.strip() and not command.lstrip().startswith("#"):
        print(command.strip())

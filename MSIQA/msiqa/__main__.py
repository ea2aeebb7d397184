"""``python -m msiqa``: the same as the ``msiqa`` command."""

from .cli import main

raise SystemExit(main())

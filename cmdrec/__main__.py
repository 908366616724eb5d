"""`python -m cmdrec ...`, the same as the `cmdrec` command."""

from cmdrec.cli import main

raise SystemExit(main())

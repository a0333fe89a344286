"""``python -m emoreason`` runs the command line."""

from emoreason.cli import main

raise SystemExit(main())

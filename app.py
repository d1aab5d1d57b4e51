"""``python app.py [rag serve options]``: start the web UI (same as ``rag serve``)."""

from __future__ import annotations

import sys

from rag.cli import main

if __name__ == "__main__":
    main(["serve", *sys.argv[1:]], prog_name="app.py")

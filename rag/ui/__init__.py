"""The web UI (Gradio): ``rag serve`` or ``python app.py``.

- :mod:`rag.ui.app`: the page's layout and events
- :mod:`rag.ui.service`: the page's actions as plain methods (a thin layer over
  ``rag.answer``/``rag.ingest``)
- :mod:`rag.ui.assets`: the page's style sheet and start-up script
- :mod:`rag.ui.render`: escaped HTML for answers, sources, refusals, stats
- :mod:`rag.ui.uploads`: safe storage of uploaded files
- :mod:`rag.ui.serve`: bind/auth checks, start-up, logging
"""

from __future__ import annotations

from rag.ui.serve import check_bind, is_loopback, launch

__all__ = ["check_bind", "is_loopback", "launch"]

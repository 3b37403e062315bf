"""Run a module or script as ``python -m``/``python FILE`` would, then write the process's peak RSS.

    python bench/run_measured.py OUT.json -m modelwatch evaluate ...
    python bench/run_measured.py OUT.json bench/evaluation_jobs.py nannyml ...

Standard library only (it also runs in the NannyML and Evidently virtualenvs). The driver times the whole
process from outside; this writes ``{"peak_rss_mb": ..., "exit": ...}`` to ``OUT.json`` as the process ends,
so the figure is the child's own ``VmHWM`` with everything it imported and computed.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

from peak_rss import peak_rss_mb


def main() -> None:
    out, target = Path(sys.argv[1]), sys.argv[2:]
    code: object = 0
    try:
        if target[0] == "-m":
            sys.argv = [target[1], *target[2:]]
            runpy.run_module(target[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = target
            runpy.run_path(target[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    finally:
        out.write_text(json.dumps({"peak_rss_mb": peak_rss_mb(), "exit": code}))
    sys.exit(code)


if __name__ == "__main__":
    main()

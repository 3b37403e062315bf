"""modelwatch Airflow DAGs: one hourly and one daily monitoring DAG per monitor YAML in include/monitors/.

Only wiring lives here; see include/modelwatch/airflow/dag_factory.py. This is the checkout's copy (the demo, the
tests): it puts include/ on the path and marks the checkout's root. An installed package needs only the
last two lines (README, "Install into your Airflow").
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT / "include") not in sys.path:
    sys.path.insert(0, str(_ROOT / "include"))
os.environ.setdefault("MODELWATCH_ROOT", str(_ROOT))

from modelwatch.airflow.dag_factory import build_dags  # noqa: E402

globals().update(build_dags())

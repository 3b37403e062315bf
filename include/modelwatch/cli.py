"""``modelwatch`` command line: ``demo``, ``validate CONFIG...``, ``evaluate --config FILE --start T --end T``,
``db migrate [CONFIG...]``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path

from modelwatch.core.config import Cadence, MonitorConfigError, load_monitor, mask_credentials


def _timestamp(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an ISO timestamp like 2026-11-03T06:00, got {value!r}") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelwatch", description="Batch monitoring for ML models in production.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="seed the embedded DuckDB warehouse and run the monitoring DAGs over it")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the demo data (default 7)")
    demo.add_argument("--days", type=int, default=3, help="days of traffic (default 3; the incident is on day 3)")
    demo.add_argument("--rows-per-hour", type=int, default=5000, help="predictions per hour (default 5000)")
    demo.add_argument("--home", type=Path, default=Path(".modelwatch"), help="state directory (default .modelwatch)")

    validate = sub.add_parser("validate", help="check monitor YAML files")
    validate.add_argument("configs", nargs="+", type=Path)

    evaluate = sub.add_parser("evaluate", help="evaluate one window outside Airflow (the same code a DAG task runs)")
    evaluate.add_argument("--config", required=True, type=Path)
    evaluate.add_argument("--start", required=True, type=_timestamp)
    evaluate.add_argument("--end", required=True, type=_timestamp)
    evaluate.add_argument("--cadence", choices=[c.value for c in Cadence], default="hourly")
    evaluate.add_argument(
        "--as-of", type=_timestamp, default=None, help="ignore labels that arrived later (default: --end)"
    )
    evaluate.add_argument("--url", default=None, help="SQLAlchemy URL of the warehouse (default: the config's url)")
    evaluate.add_argument("--no-diagnosis", action="store_true", help="skip drift, segments and root cause")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")

    db = sub.add_parser("db", help="modelwatch's own tables in the warehouse")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    migrate = db_sub.add_parser(
        "migrate",
        help="create the results schema and tables of every monitor's warehouse, and MLflow's schema of a "
        "database tracking URI (idempotent; run once before workers start)",
    )
    migrate.add_argument("configs", nargs="*", type=Path, help="monitor files (default: the monitors folder)")
    migrate.add_argument("--no-mlflow", action="store_true", help="leave the MLflow tracking store alone")
    return parser


def _validate(paths: list[Path]) -> int:
    bad = 0
    for path in paths:
        try:
            monitor = load_monitor(path)
        except MonitorConfigError as exc:
            bad += 1
            print(f"INVALID {exc}", file=sys.stderr)
            continue
        cadences = ", ".join(c.value for c in monitor.cadences)
        print(
            f"ok      {path}: monitor {monitor.name!r} ({monitor.task.value}; {cadences}; {len(monitor.checks)} checks)"
        )
    return 1 if bad else 0


def _evaluate(args: argparse.Namespace) -> int:
    from modelwatch.app.pipeline import evaluate_window
    from modelwatch.core.windows import Window, to_naive_utc
    from modelwatch.warehouse.engine import UNREACHABLE_ERRORS, make_engine, resolve_url

    monitor = load_monitor(args.config)
    start, end = to_naive_utc(args.start), to_naive_utc(args.end)
    if end <= start:
        print("error: --end must be after --start", file=sys.stderr)
        return 2
    url = args.url or os.environ.get("MODELWATCH_WAREHOUSE_URL") or monitor.warehouse.url
    if not url:
        print(f"error: {args.config}: no warehouse.url; pass --url", file=sys.stderr)
        return 2
    engine = make_engine(resolve_url(url))
    try:
        result = evaluate_window(
            engine,
            monitor,
            window=Window(start, end, args.cadence),
            as_of=args.as_of,
            diagnose=not args.no_diagnosis,
        )
    except UNREACHABLE_ERRORS as exc:
        # A warehouse that cannot be reached (down, wrong host, bad password, file locked): one line.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"error: warehouse {mask_credentials(url)} unreachable: {mask_credentials(reason)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_json_dict(), indent=2, sort_keys=True, default=str))
        return 0
    print(f"{result.monitor} {result.cadence} [{result.window_start} .. {result.window_end}) {result.status}")
    for name, value in result.counts.to_dict().items():
        print(f"  {name:26s} {value}")
    for name, metric in result.metrics.items():
        shown = f"{metric.value:.6g}" if metric.value is not None else f"null ({metric.reason})"
        print(f"  {name:26s} {shown}")
    if result.root_cause:
        print(f"  root cause: {result.root_cause.summary}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from modelwatch.migrate import migrate

    files = list(args.configs)
    if not files:
        from modelwatch.airflow.monitors_folder import monitors_dir
        from modelwatch.core.config import monitor_files

        files = monitor_files(monitors_dir())
        if not files:
            print(f"error: no monitor files in {monitors_dir()}", file=sys.stderr)
            return 2
    for line in migrate([load_monitor(path) for path in files], mlflow=not args.no_mlflow):
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "validate":
            return _validate(args.configs)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "db":
            return _migrate(args)
        from modelwatch.demo.run import run_demo

        return run_demo(seed=args.seed, days=args.days, rows_per_hour=args.rows_per_hour, home=args.home)
    except (MonitorConfigError, LookupError, ValueError) as exc:
        print(f"error: {mask_credentials(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

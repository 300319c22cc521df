"""``mlops``: the project's command line (also ``python -m mlops_pipeline``).

    mlops suite --start 2026-01-01 --days 14 [--out path]   gate + watch suites and a report from a reference window
    mlops summary [--days 14]                                 what the lake holds: validated / quarantined days
    mlops reproduce --version N [--model NAME]                retrain a registered version from its pinned data
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path


def _window(day: date):
    from mlops_pipeline.ingest import Window

    start = datetime.combine(day, time(0), tzinfo=UTC)
    return Window(start, start + timedelta(days=1))


def cmd_suite(args: argparse.Namespace) -> int:
    """Profile a reference window into the gate and watch suites and a report; a message, not a
    traceback, when the dataset file, an existing suite or the window is wrong."""
    from mlops_pipeline.datasets import DatasetSpecError
    from mlops_pipeline.validation.profile import SuiteBootstrapError
    from mlops_pipeline.validation.suites import SuiteError

    try:
        return _bootstrap_suites(args)
    except (DatasetSpecError, SuiteBootstrapError, SuiteError) as exc:
        print(f"mlops suite: {exc}", file=sys.stderr)
        return 2


def _bootstrap_suites(args: argparse.Namespace) -> int:
    import pandas as pd

    from mlops_pipeline.config import get_settings
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.ingest import extract
    from mlops_pipeline.storage import open_lake
    from mlops_pipeline.validation.parsing import normalise_for_validation, read_batch
    from mlops_pipeline.validation.profile import bootstrap
    from mlops_pipeline.validation.suites import read_suite_file

    if args.days < 1:
        raise SystemExit("mlops suite: --days must be at least 1")
    settings = get_settings()
    spec = load_dataset_spec(args.dataset or settings.dataset)
    out = Path(args.out) if args.out else spec.suite_path
    paths = {
        "gate": out,
        "watch": out.with_name(spec.watch_suite_path.name) if args.out else spec.watch_suite_path,
        "report": out.with_name(spec.suite_report_path.name) if args.out else spec.suite_report_path,
    }
    # The suites being replaced are read first: the report lists what changed, and a broken file is
    # reported rather than silently overwritten.
    previous = {paths[role].name: read_suite_file(paths[role]) for role in ("gate", "watch") if paths[role].exists()}
    lake = open_lake(settings)
    frames = {}
    for offset in range(args.days):
        window = _window(args.start + timedelta(days=offset))
        manifest = lake.read_manifest("raw", window.ds) if not args.refresh else None
        if manifest is None:
            manifest = extract(lake, spec, window, settings, scenario="normal" if spec.source.kind == "synthetic" else None)
        parts = [
            normalise_for_validation(read_batch(lake.read_partition_file("raw", window.ds, e), manifest["format"], where=f"ds={window.ds}"), spec.time_column)
            for e in manifest["files"]
        ]
        frames[window.ds] = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
    result = bootstrap(frames, spec, previous=previous)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths["gate"].write_text(json.dumps(result.gate, indent=2) + "\n")
    paths["watch"].write_text(json.dumps(result.watch, indent=2) + "\n")
    paths["report"].write_text(result.report)
    print(
        f"wrote the gate suite ({len(result.gate['expectations'])} expectations, from {spec.spec_path}) to {paths['gate']}, "
        f"the watch suite ({len(result.watch['expectations'])} expectations, profiled from {args.days} day(s)) to "
        f"{paths['watch']} and the report to {paths['report']}; review them before committing"
    )
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.storage import open_lake

    lake = open_lake(get_settings())
    validated = lake.list_partitions("validated")
    quarantined = lake.list_partitions("quarantine")
    if args.days:
        last = sorted(set(validated) | set(quarantined))[-args.days :]
        validated = [d for d in validated if d in last]
        quarantined = [d for d in quarantined if d in last]
    print(f"lake: {lake.uri}")
    print(f"validated partitions:   {len(validated)}" + (f"  ({validated[0]} .. {validated[-1]})" if validated else ""))
    print(f"quarantined partitions: {len(quarantined)}" + (f"  {quarantined}" if quarantined else ""))
    for ds in quarantined:
        manifest = lake.read_manifest("quarantine", ds) or {}
        for failure in manifest.get("failures", [])[:3]:
            print(f"  ds={ds}: {failure}")
    versions = {ds: lake.version_numbers("validated", ds) for ds in validated}
    with_history = [ds for ds, numbers in versions.items() if len(numbers) > 1]
    print(
        f"validated versions:     {sum(len(n) for n in versions.values())} kept, "
        f"{len(with_history)} day(s) with history (keeping {lake.keep_versions} per day)"
    )
    for ds in with_history:
        head = lake.read_manifest("validated", ds) or {}
        print(f"  ds={ds}: {len(versions[ds])} versions {versions[ds]}, head v{head.get('version', '?')}")
    print(f"Data Docs: {lake.uri_of('data_docs', 'index.html')}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from mlops_pipeline.training.data import TrainingDataError
    from mlops_pipeline.training.reproduce import reproduce_version

    try:
        reproduction = reproduce_version(args.version, model_name=args.model)
    except TrainingDataError as exc:  # pinned data gone, no record to reproduce from
        print(f"mlops reproduce: {exc}", file=sys.stderr)
        return 2
    print(reproduction.report())
    return 0 if reproduction.identical else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlops", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    suite = sub.add_parser("suite", help="the gate suite (from the dataset file) and the watch suite (profiled) with a report")
    suite.add_argument("--dataset", help="dataset name or YAML path (default: MLOPS_DATASET)")
    suite.add_argument("--start", type=date.fromisoformat, required=True, help="first day of the reference window")
    suite.add_argument("--days", type=int, default=14)
    suite.add_argument("--out", help="where to write the gate suite, the watch suite and report beside it (default: the dataset's suite path)")
    suite.add_argument("--refresh", action="store_true", help="re-extract days already in raw/")
    suite.set_defaults(func=cmd_suite)
    summary = sub.add_parser("summary", help="validated and quarantined partitions in the lake")
    summary.add_argument("--days", type=int, default=0, help="only the last N days present")
    summary.set_defaults(func=cmd_summary)
    reproduce = sub.add_parser("reproduce", help="retrain a registered version from its pinned data versions; compare the model bytes")
    reproduce.add_argument("--version", required=True, help="the registered model version")
    reproduce.add_argument("--model", help="registered model name (default: MLOPS_MODEL_NAME, else the dataset's name)")
    reproduce.set_defaults(func=cmd_reproduce)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

"""``mlops``: the project's command line (also ``python -m mlops_pipeline``).

    mlops suite --start 2026-01-01 --days 14 [--out path]   profile a reference window into a suite
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
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.ingest import extract
    from mlops_pipeline.storage import open_lake
    from mlops_pipeline.validation.parsing import normalise_for_validation, read_batch
    from mlops_pipeline.validation.profile import profile_suite

    settings = get_settings()
    spec = load_dataset_spec(args.dataset or settings.dataset)
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
        frames[window.ds] = parts[0] if len(parts) == 1 else __import__("pandas").concat(parts, ignore_index=True)
    suite = profile_suite(frames, spec)
    out = Path(args.out) if args.out else spec.suite_path
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(suite, indent=2) + "\n")
    print(f"wrote {len(suite['expectations'])} expectations profiled from {args.days} day(s) to {out}; review it before committing")
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
    suite = sub.add_parser("suite", help="profile a reference window into a reviewable expectation suite")
    suite.add_argument("--dataset", help="dataset name or YAML path (default: MLOPS_DATASET)")
    suite.add_argument("--start", type=date.fromisoformat, required=True, help="first day of the reference window")
    suite.add_argument("--days", type=int, default=14)
    suite.add_argument("--out", help="where to write the suite (default: the dataset's suite path)")
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

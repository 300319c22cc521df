"""The demo traffic replayer: recent validated rows, at a rate, labelled as demo traffic."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from mlops_dev.traffic import DEMO_SOURCE, TRAFFIC_SOURCE_HEADER, batches, recent_records, replay


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.received: list[tuple[str, dict, str]] = []
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # /ready
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with recorder.lock:
                    recorder.received.append((self.path, body, self.headers.get(TRAFFIC_SOURCE_HEADER, "")))
                reply = b'{"predictions": []}'
                self.send_response(200 if body["records"][0].get("n", 1) % 10 else 503)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_batches_cycle_through_the_records() -> None:
    records = [{"n": n} for n in range(5)]
    source = batches(records, 2)

    assert [next(source) for _ in range(3)] == [[{"n": 0}, {"n": 1}], [{"n": 2}, {"n": 3}], [{"n": 4}, {"n": 0}]]


def test_replay_sends_demo_labelled_batches_at_the_rate(recorder: Recorder) -> None:
    records = [{"n": n} for n in range(1, 101)]

    stats = replay(f"http://127.0.0.1:{recorder.server_address[1]}", records, rate=40, seconds=1.0, rows=2)

    assert 30 <= stats.sent <= 42, stats.to_dict()
    assert len(recorder.received) == stats.sent
    assert {path for path, _, _ in recorder.received} == {"/predict"}
    assert {source for _, _, source in recorder.received} == {DEMO_SOURCE}
    assert all(len(body["records"]) == 2 for _, body, _ in recorder.received)
    assert stats.failed == sum(1 for _, body, _ in recorder.received if body["records"][0]["n"] % 10 == 0)
    assert stats.ok + stats.failed == stats.sent and stats.rows == 2 * stats.ok


def test_replay_stops_when_told(recorder: Recorder) -> None:
    stats = replay(
        f"http://127.0.0.1:{recorder.server_address[1]}", [{"n": 1}], rate=20, seconds=30, until=lambda: True
    )

    assert stats.seconds < 3


def test_replay_survives_an_unreachable_router() -> None:
    stats = replay("http://127.0.0.1:9", [{"n": 1}], rate=20, seconds=0.5)

    assert stats.sent > 0 and stats.ok == 0 and stats.failed == stats.sent and stats.errors


def test_recent_records_are_features_with_id_and_time_never_the_label(lake) -> None:
    import pandas as pd

    from mlops_pipeline.data.lake import DataFile, frame_to_parquet_bytes
    from mlops_pipeline.datasets import load_dataset_spec

    spec = load_dataset_spec("churn")
    for ds, rows in (("2026-01-01", 3), ("2026-01-02", 2)):
        frame = pd.DataFrame(
            {
                spec.id_column: [f"c{i}" for i in range(rows)],
                spec.time_column: pd.to_datetime([datetime(2026, 1, 2, 12, tzinfo=UTC)] * rows),
                **{name: [float(i) if i else float("nan") for i in range(rows)] for name in spec.numeric_features},
                **{name: ["a"] * rows for name in spec.categorical_features},
                spec.target: [1] * rows,
            }
        )
        lake.write_partition("validated", ds, [DataFile("part", ".parquet", frame_to_parquet_bytes(frame), rows)], {})

    records = recent_records(days=1)

    assert len(records) == 2  # only the newest day
    assert set(records[0]) == {*spec.feature_columns, spec.id_column, spec.time_column}
    assert records[0][spec.time_column].startswith("2026-01-02T12:00:00")
    assert records[0][spec.numeric_features[0]] is None  # NaN becomes null
    json.dumps(records)


def test_the_client_sends_each_row_once_then_steady_traffic_stamped_now(lake, recorder, tmp_path) -> None:
    from mlops_dev.traffic import run_client

    from mlops_pipeline.config import get_settings
    from mlops_pipeline.data.lake import DataFile, frame_to_parquet_bytes
    from mlops_pipeline.datasets import load_dataset_spec

    spec = load_dataset_spec(get_settings().dataset)
    import pandas as pd

    rows = 120
    frame = pd.DataFrame(
        {
            spec.id_column: [f"c{i}" for i in range(rows)],
            spec.time_column: pd.to_datetime(["2026-01-02T12:00:00Z"] * rows),
            **{name: list(range(1, rows + 1)) for name in spec.numeric_features},
            **{name: ["a"] * rows for name in spec.categorical_features},
            spec.target: [1] * rows,
        }
    )
    lake.write_partition("validated", "2026-01-02", [DataFile("part", ".parquet", frame_to_parquet_bytes(frame), rows)], {})

    stop = threading.Event()
    status, signal = tmp_path / "client.json", tmp_path / "client.replay"
    threading.Timer(1.0, signal.touch).start()  # the days' rows wait for the signal; steady traffic does not
    threading.Timer(3.0, stop.set).start()
    result = run_client(f"http://127.0.0.1:{recorder.server_port}", ["2026-01-02"], rate=20, rows=5, seconds=30,
                        status_file=status, stop=stop, replay_when=signal)

    replayed = [r for r in recorder.received if r[1]["records"][0][spec.time_column].startswith("2026-01-02")]
    assert sum(len(body["records"]) for _, body, _ in replayed) == rows  # each row once, with its own time
    assert result["replayed"]["sent"] == rows // 50 + 1 and result["phase"] == "stopped"
    steady = [r for r in recorder.received if not r[1]["records"][0][spec.time_column].startswith("2026-01-02")]
    assert steady and all(len(body["records"]) == 5 for _, body, _ in steady)
    assert result["steady"]["sent"] == len(steady)
    assert {source for _, _, source in recorder.received} == {DEMO_SOURCE}
    assert json.loads(status.read_text())["phase"] == "stopped" and result["replay"] == "done"
    first_replayed = next(i for i, r in enumerate(recorder.received) if r[1]["records"][0][spec.time_column].startswith("2026-01-02"))
    assert first_replayed > 0  # steady traffic began before the signal


def test_the_steady_stream_draws_on_the_days_before_until_the_days_rows_are_released(lake, recorder, tmp_path) -> None:
    from mlops_dev.traffic import run_client

    from mlops_pipeline.config import get_settings
    from mlops_pipeline.data.lake import DataFile, frame_to_parquet_bytes
    from mlops_pipeline.datasets import load_dataset_spec

    spec = load_dataset_spec(get_settings().dataset)
    import pandas as pd

    def day(ds: str, prefix: str, rows: int = 60) -> None:
        frame = pd.DataFrame(
            {
                spec.id_column: [f"{prefix}{i}" for i in range(rows)],
                spec.time_column: pd.to_datetime([f"{ds}T12:00:00Z"] * rows),
                **{name: list(range(1, rows + 1)) for name in spec.numeric_features},
                **{name: ["a"] * rows for name in spec.categorical_features},
                spec.target: [1] * rows,
            }
        )
        lake.write_partition("validated", ds, [DataFile("part", ".parquet", frame_to_parquet_bytes(frame), rows)], {})

    day("2026-01-01", "before-")
    day("2026-01-02", "after-")
    stop = threading.Event()
    status, signal = tmp_path / "client.json", tmp_path / "client.replay"
    threading.Timer(1.5, signal.touch).start()
    threading.Timer(4.0, stop.set).start()
    run_client(f"http://127.0.0.1:{recorder.server_port}", ["2026-01-02"], rate=20, rows=5, seconds=30,
               status_file=status, stop=stop, replay_when=signal, before_days=["2026-01-01"])  # fmt: skip

    steady = [body["records"] for _, body, _ in recorder.received if not body["records"][0][spec.time_column].startswith("2026-01-0")]
    customers = [records[0][spec.id_column].split("-")[0] for records in steady]
    assert customers[0] == "before" and customers[-1] == "after", customers
    switched = customers.index("after")
    assert set(customers[:switched]) == {"before"} and set(customers[switched:]) == {"after"}


def test_the_steady_stream_keeps_the_rows_own_times_once_their_labels_arrived(tmp_path) -> None:
    from mlops_dev.traffic import restamped_now

    signal = tmp_path / "client.own-times"
    restamp = restamped_now("event_time", signal)
    batch = [{"customer_id": "c1", "event_time": "2026-06-14T10:00:00.000+00:00"}]

    stamped = restamp(batch)
    assert stamped[0]["customer_id"] == "c1" and stamped[0]["event_time"] > "2026-12"  # now, not the row's
    signal.touch()
    assert restamp(batch) == batch  # their own event times: the labels in the lake join them

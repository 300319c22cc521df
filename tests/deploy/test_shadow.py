"""The shadow's own parts: the mirror fed by stable's prediction log (against a small HTTP server),
the pairs both versions answered, their labels, and the paired test that judges them. The release
itself runs on the scheduler in ``tests/e2e/test_release_strategies.py``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.deploy.canary import Thresholds
from mlops_pipeline.deploy.shadow import (
    MirrorState,
    compare,
    complete_lines,
    mirror,
    paired_brier_test,
    paired_rows,
    with_labels,
)

SPEC = SimpleNamespace(
    id_column="customer_id", time_column="event_time", target="churned", numeric_features=("tenure_months",), categorical_features=()
)


def line(version: str, source: str, request_id: str, rows: list[tuple[str, float]]) -> str:
    """A request line as the serving app logs it, answered now."""
    records = [{"customer_id": cid, "event_time": "2024-01-02T12:00:00Z", "tenure_months": 3.0} for cid, _ in rows]
    return json.dumps({
        "request_id": request_id, "ts": datetime.now(UTC).isoformat(), "model_name": "churn", "model_version": version,
        "traffic_source": source, "endpoint": "predict", "input": {"records": records},
        "output": {"predictions": [{"probability": p, "label": int(p >= 0.5)} for _, p in rows]},
    })  # fmt: skip


def today_log(log_dir: Path, name: str = "predictions-host-1-0.requests.jsonl") -> Path:
    folder = log_dir / f"ds={datetime.now(UTC).date().isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


@pytest.fixture
def shadow_server() -> Iterator[tuple[str, dict]]:
    """A shadow that answers 200 (or ``status``) and keeps what it got: (request id, source, body)."""
    behaviour: dict = {"status": 200, "received": []}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            behaviour["received"].append((self.headers.get("X-Request-Id"), self.headers.get("X-Traffic-Source"), body))
            payload = json.dumps({"predictions": [{"probability": 0.5}] * len(body["records"])}).encode()
            self.send_response(behaviour["status"])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", behaviour
    server.shutdown()


def test_the_mirror_sends_each_client_request_stable_answered_since_it_began_once(tmp_path: Path, shadow_server) -> None:
    url, behaviour = shadow_server
    log_dir, state_file = tmp_path / "predictions", tmp_path / "state" / "d.json"
    log = today_log(log_dir)
    log.write_text(line("1", "client", "before", [("c-0", 0.2)]) + "\n")  # answered before the shadow started
    state = MirrorState.begin(log_dir)
    with open(log, "a") as handle:
        handle.write(line("1", "client", "r1", [("c-1", 0.3)]) + "\n")
        handle.write(line("1", "warmup", "w1", [("c-2", 0.3)]) + "\n")  # not traffic
        handle.write(line("2", "client", "other", [("c-3", 0.3)]) + "\n")  # another version's
        handle.write(line("1", "shadow", "copy", [("c-4", 0.3)]) + "\n")  # a copy, not a client's
        handle.write(line("1", "demo", "r2", [("c-5", 0.4), ("c-6", 0.6)]) + "\n")
        handle.write(line("1", "client", "torn", [("c-7", 0.1)])[:40])  # its writer is still at it
    second = today_log(log_dir, "predictions-host-2-0.requests.jsonl")  # a server started after the shadow
    second.write_text(line("1", "client", "r3", [("c-8", 0.9)]) + "\n")

    assert mirror(state, log_dir, "1", url, state_file) == 3
    assert [(rid, source) for rid, source, _ in behaviour["received"]] == [("r1", "shadow"), ("r2", "shadow"), ("r3", "shadow")]
    assert behaviour["received"][1][2]["records"][1]["customer_id"] == "c-6"  # the body as the client sent it
    saved = MirrorState.load(state_file)
    assert saved is not None and (saved.sent, saved.answered, saved.failed) == (3, 3, 0)

    # The next poke sends only what came since, the torn line once it is whole.
    with open(log, "a") as handle:
        handle.write(line("1", "client", "torn", [("c-7", 0.1)])[40:] + "\n")
    assert mirror(saved, log_dir, "1", url, state_file) == 1
    assert behaviour["received"][-1][0] == "torn"
    assert mirror(saved, log_dir, "1", url, state_file) == 0


def test_a_poke_spaces_its_copies_over_the_spread_instead_of_a_burst(tmp_path: Path, shadow_server) -> None:
    import time

    url, behaviour = shadow_server
    log_dir = tmp_path / "predictions"
    state = MirrorState.begin(log_dir)
    today_log(log_dir).write_text("".join(line("1", "client", f"r{i}", [(f"c-{i}", 0.3)]) + "\n" for i in range(5)))

    began = time.monotonic()
    assert mirror(state, log_dir, "1", url, tmp_path / "s.json", spread=1.0) == 5
    # sent at 0, 0.2, ..., 0.8 s: the last one not before 0.8 s, none bunched at the start
    assert time.monotonic() - began >= 0.8
    assert [rid for rid, _, _ in behaviour["received"]] == [f"r{i}" for i in range(5)]


def test_a_shadow_that_fails_or_refuses_is_counted_with_an_example(tmp_path: Path, shadow_server) -> None:
    url, behaviour = shadow_server
    log_dir = tmp_path / "predictions"
    state = MirrorState.begin(log_dir)
    today_log(log_dir).write_text(line("1", "client", "r1", [("c-1", 0.3)]) + "\n" + line("1", "client", "r2", [("c-2", 0.3)]) + "\n")
    behaviour["status"] = 422

    mirror(state, log_dir, "1", url, tmp_path / "s.json")

    assert (state.sent, state.failed, state.rejected) == (2, 2, 2)
    assert state.errors[0].startswith("request r1: HTTP 422")


def test_complete_lines_stop_at_the_limit_and_at_a_torn_end(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a\nbb\nccc\ndd")
    assert complete_lines(path, 0, 2) == ([b"a", b"bb"], 5)
    assert complete_lines(path, 5, 10) == ([b"ccc"], 9)
    assert complete_lines(path, 9, 10) == ([], 9)


class FakeLake:
    uri = "memory://lake"

    def __init__(self, frames: dict[str, pd.DataFrame]) -> None:
        self.frames = frames

    def list_partitions(self, zone: str) -> list[str]:
        return list(self.frames)

    def read_frame(self, zone: str, ds: str) -> pd.DataFrame:
        return self.frames[ds]


def test_pairs_are_the_rows_both_answered_joined_to_their_labels(tmp_path: Path) -> None:
    log_dir = tmp_path / "predictions"
    state = MirrorState.begin(log_dir)
    today_log(log_dir).write_text(
        "\n".join([
            line("1", "client", "r1", [("c-1", 0.2), ("c-2", 0.7)]),
            line("2", "shadow", "r1", [("c-1", 0.3), ("c-2", 0.6)]),
            line("2", "shadow", "r1", [("c-1", 0.9), ("c-2", 0.9)]),  # a resent copy: the first answer counts
            line("1", "client", "r2", [("c-3", 0.5)]),  # not mirrored (yet): no pair
            line("2", "shadow", "r9", [("c-9", 0.5)]),  # no stable answer under that id
        ]) + "\n"
    )  # fmt: skip

    pairs = paired_rows(log_dir, state, "1", "2", SPEC)

    assert pairs[["request_id", "row", "id", "stable", "shadow"]].values.tolist() == [["r1", 0, "c-1", 0.2, 0.3], ["r1", 1, "c-2", 0.7, 0.6]]
    labels = pd.DataFrame({"customer_id": ["c-1"], "event_time": ["2024-01-02T12:00:00Z"], "churned": [1]})
    labelled, missing = with_labels(pairs, FakeLake({"2024-01-02": labels}), SPEC)
    assert labelled[["id", "target"]].values.tolist() == [["c-1", 1]] and missing == []
    assert with_labels(pairs, FakeLake({}), SPEC)[1] == ["2024-01-02"]  # its day's labels have not arrived
    # An A/B test's outcome column comes with the labels; one the partitions lack is named.
    paid = labels.assign(revenue=[12.5])
    assert with_labels(pairs, FakeLake({"2024-01-02": paid}), SPEC, ("revenue",))[0]["revenue"].tolist() == [12.5]
    with pytest.raises(ValueError, match=r"validated/ds=2024-01-02 .* lacks column\(s\) \['revenue'\]"):
        with_labels(pairs, FakeLake({"2024-01-02": labels}), SPEC, ("revenue",))


def scores(seed: int, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, n)
    return p, (rng.uniform(size=n) < p).astype(int)


def test_the_paired_test_rejects_a_worse_model_with_the_same_distribution() -> None:
    p, y = scores(1)
    half = len(p) // 2
    swapped = np.concatenate([p[half:], p[:half]])  # two segments' scores swapped: same distribution, wrong rows

    worse = paired_brier_test(p, swapped, y, alpha=0.05)
    same = paired_brier_test(p, p, y, alpha=0.05)
    better = paired_brier_test(swapped, p, y, alpha=0.05)

    assert worse["worse"] and worse["p_value"] < 1e-6 and worse["auc_shadow"] < worse["auc_stable"]
    assert not same["worse"] and same["p_value"] == 1.0
    assert not better["worse"] and better["p_value"] > 0.5
    assert 0 < worse["min_detectable"] < worse["mean_difference"]


def test_the_paired_test_rejects_an_equal_model_about_alpha_of_the_time() -> None:
    """Two equally good models (independent noise around the truth): the false-rejection rate is alpha."""
    rng = np.random.default_rng(7)
    rejected = 0
    for _ in range(400):
        truth = rng.uniform(0.05, 0.95, 300)
        y = (rng.uniform(size=300) < truth).astype(int)
        a = np.clip(truth + rng.normal(0, 0.05, 300), 0, 1)
        b = np.clip(truth + rng.normal(0, 0.05, 300), 0, 1)
        rejected += paired_brier_test(a, b, y, alpha=0.05)["worse"]
    assert 0.02 <= rejected / 400 <= 0.09  # 0.05 within about 3 standard errors of 400 draws


def verdict(pairs: int, labelled: int, failed: int = 0, policy: str = "rollback") -> dict:
    p, y = scores(3, max(pairs, labelled))
    frame = pd.DataFrame({"stable": p, "shadow": p, "target": y})
    state = MirrorState(started_at=0.0, since="2026-12-02", sent=1000, answered=1000 - failed, failed=failed)
    thresholds = Thresholds(insufficient_traffic=policy)  # type: ignore[arg-type]
    return compare(frame.iloc[:pairs], frame.iloc[:labelled], state, thresholds, min_labelled=200, alpha=0.05, label="shadow v2")


def test_the_verdict_needs_evidence_unless_told_to_proceed() -> None:
    assert verdict(1000, 1000)["passed"]
    lacking = verdict(1000, 50)
    assert not lacking["passed"] and "not enough evidence" in lacking["reason"] and "50 labelled row(s)" in lacking["reason"]
    assert verdict(1000, 50, policy="proceed")["passed"]
    errors = verdict(1000, 1000, failed=30)
    assert not errors["passed"] and "errors failed: 30 of 1000 mirrored requests failed" in errors["reason"]


def test_the_window_ends_with_evidence_for_every_check_or_at_its_longest() -> None:
    from mlops_pipeline.deploy.shadow import window_status

    state = MirrorState(started_at=time.time() - 60, since="2026-12-02", sent=49)
    kwargs = {"min_seconds": 30.0, "max_seconds": 600.0, "min_labelled": 200}
    assert not window_status(state, 5000, 5000, Thresholds(), **kwargs)["done"]  # 49 requests: the errors check lacks data
    state.sent = 50
    assert window_status(state, 5000, 5000, Thresholds(), **kwargs)["why"] == "enough evidence"
    assert not window_status(state, 5000, 199, Thresholds(), **kwargs)["done"]
    assert not window_status(state, 5000, 5000, Thresholds(), **{**kwargs, "min_seconds": 120.0})["done"]
    assert window_status(state, 0, 0, Thresholds(), **{**kwargs, "max_seconds": 60.0})["why"] == "longest shadow window reached"


def test_a_canary_s_quality_is_checked_once_labels_of_its_traffic_have_arrived(tmp_path: Path) -> None:
    from mlops_pipeline.deploy.shadow import quality_check, served_rows

    log_dir = tmp_path / "predictions"
    started = time.time() - 1
    today_log(log_dir).write_text(
        "\n".join([
            line("2", "client", "r1", [("c-1", 0.9), ("c-2", 0.1)]),
            line("2", "warmup", "w1", [("c-3", 0.5)]),  # not traffic
            line("1", "client", "r2", [("c-4", 0.5)]),  # stable's
            json.dumps({"request_id": "old", "ts": "2020-01-01T00:00:00Z", "model_version": "2", "traffic_source": "client",
                        "input": {"records": [{"customer_id": "c-5"}]}, "output": {"predictions": [{"probability": 0.5}]}}),
        ]) + "\n"
    )  # fmt: skip
    rows = served_rows(log_dir, started, "2", SPEC)
    assert rows[["id", "probability"]].values.tolist() == [["c-1", 0.9], ["c-2", 0.1]]  # since the canary started only

    p, y = scores(5, 600)
    good = pd.DataFrame({"probability": p, "target": y})
    noisy = pd.DataFrame({"probability": np.clip(p + np.random.default_rng(6).normal(0, 0.3, 600), 0, 1), "target": y})
    assert quality_check(good, good.iloc[:199], min_labelled=200, alpha=0.05) is None  # labels of too few rows yet: no check
    failed = quality_check(noisy, good, min_labelled=200, alpha=0.05)
    assert failed is not None and failed.status == "failed" and "one-sided Welch t-test" in failed.detail
    passed = quality_check(good, noisy, min_labelled=200, alpha=0.05)
    assert passed is not None and passed.status == "passed"

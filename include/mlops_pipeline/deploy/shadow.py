"""A shadow release: the candidate answers a copy of every live request, its answers go nowhere but
the prediction log, and it is judged against stable on the same requests before any client sees it.

**How requests are mirrored, and why this way.** The stable server logs every request it answers,
body and response, off the request path (``serving/mlops_serving/predlog.py``). The shadow's feed
is that log: each poke of the ``mirror`` sensor reads the stable's complete lines written since the
last one (a byte offset per file, kept in ``<run dir>/deploy/<namespace>/shadow/<deployment>.json``
and replaced atomically) and sends each request body to the shadow server with the stable's own
request id (``X-Request-Id``) and ``X-Traffic-Source: shadow``. The shadow's prediction log then has
each of its answers under the id of the stable answer it is compared with, marked ``shadow`` (the
monitor leaves those out: they were never served). Clients pay nothing: no code runs in the
client's path that did not run before (neither HAProxy, which has no request mirroring short of an
SPOE agent that Debian does not ship, nor the serving app's event loop, which would pay for every
copy). A poke spaces its copies over half the poke interval, so the shadow's work is steady rather
than a burst that would take CPU from stable on a shared host (``tests/benchmarks/bench_shadow.py``
measures what clients pay). The cost is delay: a request reaches the shadow up to one and a half
pokes after stable answered it.
A retried poke may send a request twice; the comparison keeps the shadow's first answer.

**The verdict** (:func:`compare`), on the requests both answered:

* errors: the share of mirrored requests the shadow failed (5xx, or no answer) may exceed 0 by at
  most ``max_5xx_rate_increase`` (stable answered every one of them: they are in its log);
* prediction shift: the PSI of the shadow's probabilities against stable's on the same rows, binned
  as the canary bins them, within the canary's limit (``max_psi`` above the shift the training
  gate's holdout predicted between the two versions);
* quality, on the rows whose labels have arrived (the lake's validated partitions, joined on the
  dataset's id and event time): a one-sided paired t-test of the per-row Brier score difference
  (shadow minus stable). The shadow is rejected when it is worse at significance ``quality_alpha``
  (0.05: an equally good model is rejected 5 % of the time). The result states the smallest
  difference the test detects with 80 % power at that many rows, so a pass on few rows is read for
  what it is. With fewer than ``min_labelled`` labelled rows the check lacks evidence, and
  ``insufficient_traffic`` decides (rollback by default).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_pipeline.deploy.canary import Check, CheckStatus, Thresholds, expected_shift

if TYPE_CHECKING:
    import pandas as pd

    from mlops_pipeline.datasets import DatasetSpec

log = logging.getLogger(__name__)

SHADOW_SOURCE = "shadow"
MAX_REQUESTS_PER_POKE = 20_000  # a poke mirrors at most this many; the rest waits for the next one
POWER = 0.8  # the power the minimum detectable difference is stated at
MAX_ERROR_EXAMPLES = 5


def log_files(log_dir: Path, since: date) -> list[Path]:
    """The request logs of the days from ``since`` on (oldest day first)."""
    files: list[Path] = []
    if not log_dir.is_dir():
        return files
    for folder in sorted(log_dir.glob("ds=*")):
        try:
            day = date.fromisoformat(folder.name[3:])
        except ValueError:
            continue
        if day >= since and folder.is_dir():
            files += sorted(folder.glob("*.requests.jsonl"))
    return files


def complete_lines(path: Path, offset: int, limit: int) -> tuple[list[bytes], int]:
    """Up to ``limit`` complete lines of ``path`` after byte ``offset``, and the offset after the last
    one returned (an unterminated last line is left for later: its writer may be in the middle of it)."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    lines = data[: end + 1].split(b"\n")[:-1]
    if len(lines) > limit:
        lines = lines[:limit]
        consumed = sum(len(line) + 1 for line in lines)
    else:
        consumed = end + 1
    return lines, offset + consumed


@dataclass
class MirrorState:
    """Where the mirror is in each of stable's log files, and what the shadow answered so far."""

    started_at: float
    since: str  # the first log day read (the day the shadow started)
    offsets: dict[str, int] = field(default_factory=dict)
    first_offsets: dict[str, int] = field(default_factory=dict)  # where each file stood when mirroring began
    sent: int = 0
    answered: int = 0
    failed: int = 0  # 5xx, no answer, or 4xx (of those:)
    rejected: int = 0  # 4xx: the shadow refused a request stable accepted (a contract difference)
    errors: list[str] = field(default_factory=list)

    @classmethod
    def begin(cls, log_dir: Path) -> MirrorState:
        """Mirroring starts now: what stable logged before is not sent."""
        now = time.time()
        since = datetime.fromtimestamp(now, UTC).date()
        offsets = {str(path): path.stat().st_size for path in log_files(log_dir, since)}
        return cls(started_at=now, since=since.isoformat(), offsets=offsets, first_offsets=dict(offsets))

    @classmethod
    def load(cls, path: Path) -> MirrorState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, path)

    def error(self, message: str) -> None:
        if len(self.errors) < MAX_ERROR_EXAMPLES:
            self.errors.append(message)

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.sent if self.sent else None


def is_client_request(request: Any, version: str) -> bool:
    """A request clients sent to ``version`` (not a warm-up, smoke test or another shadow's copy)."""
    from mlops_pipeline.monitoring.predictions import NOT_TRAFFIC

    return (
        isinstance(request, dict)
        and str(request.get("model_version")) == str(version)
        and request.get("traffic_source") not in NOT_TRAFFIC
        and isinstance(request.get("request_id"), str)
        and isinstance(request.get("input"), dict)
        and isinstance(request["input"].get("records"), list)
    )


def mirror(
    state: MirrorState,
    log_dir: Path,
    stable_version: str,
    shadow_url: str,
    save: Path,
    timeout: float = 10.0,
    spread: float = 0.0,
) -> int:
    """Send the shadow every request stable logged since the last call; returns how many were sent.
    The state is saved after each file, so a retried poke resends at most one file's new lines.

    ``spread``: seconds the copies are spaced over, evenly, instead of sent back to back. A poke's
    copies sent at once would be a burst of the shadow's work, taking CPU from stable's clients on
    a shared host; spread over half the poke interval, the shadow works at about twice the clients'
    rate, steadily."""
    import httpx

    headers = {"Content-Type": "application/json", "X-Traffic-Source": SHADOW_SOURCE}
    if os.environ.get("MLOPS_SERVING_API_KEY"):  # the key the servers were started with
        headers["X-API-Key"] = os.environ["MLOPS_SERVING_API_KEY"]
    budget = MAX_REQUESTS_PER_POKE
    read: list[tuple[Path, int, list[bytes]]] = []
    for path in log_files(log_dir, date.fromisoformat(state.since)):
        if budget <= 0:
            break
        lines, end = complete_lines(path, state.offsets.get(str(path), 0), budget)
        budget -= len(lines)
        read.append((path, end, lines))
    total = sum(len(lines) for _, _, lines in read)
    gap = spread / total if spread > 0 and total else 0.0
    began, sent = time.monotonic(), 0
    with httpx.Client(timeout=timeout) as http:
        for path, end, lines in read:
            for line in lines:
                try:
                    request = json.loads(line)
                except ValueError:
                    continue
                if not is_client_request(request, stable_version):
                    continue
                if gap:
                    wait = began + sent * gap - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                sent += 1
                state.sent += 1
                body = json.dumps({"records": request["input"]["records"]}).encode()
                try:
                    response = http.post(f"{shadow_url}/predict", content=body, headers={**headers, "X-Request-Id": request["request_id"]})
                except httpx.HTTPError as exc:
                    state.failed += 1
                    state.error(f"request {request['request_id']}: no answer ({type(exc).__name__}: {exc})")
                    continue
                if response.status_code >= 500:
                    state.failed += 1
                    state.error(f"request {request['request_id']}: HTTP {response.status_code} {response.text[:200]}")
                elif response.status_code >= 400:
                    state.failed += 1
                    state.rejected += 1
                    state.error(f"request {request['request_id']}: HTTP {response.status_code} {response.text[:200]}")
                else:
                    state.answered += 1
            state.offsets[str(path)] = end
            state.save(save)
    return sent


# -- the pairs ------------------------------------------------------------------------------------
def _rows(request: Mapping[str, Any], id_column: str, time_column: str) -> Iterator[tuple[int, Any, Any, float]]:
    predictions = (request.get("output") or {}).get("predictions")
    records = request["input"]["records"]
    if not isinstance(predictions, list) or len(predictions) != len(records):
        return
    for position, (record, prediction) in enumerate(zip(records, predictions, strict=True)):
        if isinstance(record, dict) and isinstance(prediction, dict) and isinstance(prediction.get("probability"), int | float):
            yield position, record.get(id_column), record.get(time_column), float(prediction["probability"])


def paired_rows(log_dir: Path, state: MirrorState, stable_version: str, shadow_version: str, spec: DatasetSpec) -> pd.DataFrame:
    """One row per record both answered: ``request_id, row, id, time, stable, shadow`` (probabilities).
    Reads what was logged since mirroring began."""
    import pandas as pd

    stable: dict[tuple[str, int], tuple[Any, Any, float]] = {}
    shadow: dict[tuple[str, int], float] = {}
    for path in log_files(log_dir, date.fromisoformat(state.since)):
        lines, _ = complete_lines(path, state.first_offsets.get(str(path), 0), 1 << 62)
        for line in lines:
            try:
                request = json.loads(line)
            except ValueError:
                continue
            if not isinstance(request, dict) or not isinstance(request.get("input"), dict):
                continue
            version = str(request.get("model_version"))
            if request.get("traffic_source") == SHADOW_SOURCE and version == str(shadow_version):
                for position, _, _, probability in _rows(request, spec.id_column, spec.time_column):
                    shadow.setdefault((request["request_id"], position), probability)  # a resent copy: the first answer
            elif is_client_request(request, stable_version):
                for position, row_id, when, probability in _rows(request, spec.id_column, spec.time_column):
                    stable[(request["request_id"], position)] = (row_id, when, probability)
    keys = [key for key in shadow if key in stable]
    return pd.DataFrame(
        {
            "request_id": [key[0] for key in keys],
            "row": [key[1] for key in keys],
            "id": [stable[key][0] for key in keys],
            "time": [stable[key][1] for key in keys],
            "stable": [stable[key][2] for key in keys],
            "shadow": [shadow[key] for key in keys],
        }
    )


def with_labels(pairs: pd.DataFrame, lake: Any, spec: DatasetSpec, extra: tuple[str, ...] = ()) -> tuple[pd.DataFrame, list[str]]:
    """The pairs whose labels have arrived (their event day's validated partition has them), with
    ``target`` (and the ``extra`` columns of those rows)."""
    from mlops_pipeline.monitoring.labels import TARGET, normalise_times, read_labels

    if pairs.empty:
        return pairs.assign(**{TARGET: []}), []
    known = pairs.dropna(subset=["id", "time"])
    times = normalise_times(known["time"])
    days = sorted({d for d in times.dt.date.dropna()})
    labels, missing = read_labels(lake, spec, days, extra)
    if labels.empty:
        return pairs.iloc[0:0].assign(**{TARGET: []}), missing
    keyed = known.assign(id=known["id"].astype("string"), time=times)
    labels = labels.drop_duplicates(subset=["id", "time"], keep="last")
    joined = keyed.merge(labels, on=["id", "time"], how="inner", validate="many_to_one")
    return joined.drop_duplicates(subset=["id", "time"], keep="last").reset_index(drop=True), missing


# -- the statistics -------------------------------------------------------------------------------
def paired_brier_test(stable: Any, shadow: Any, labels: Any, alpha: float) -> dict[str, Any]:
    """One-sided paired t-test of H0 "the shadow's Brier score is not worse" on the same rows.
    ``worse`` when rejected at ``alpha``; ``min_detectable`` is the mean difference the test finds
    with :data:`POWER` at this many rows (normal approximation)."""
    import numpy as np
    from scipy import stats

    y = np.asarray(labels, dtype=np.float64)
    p_stable, p_shadow = np.asarray(stable, dtype=np.float64), np.asarray(shadow, dtype=np.float64)
    diff = (p_shadow - y) ** 2 - (p_stable - y) ** 2
    n = int(diff.size)
    mean = float(diff.mean()) if n else 0.0
    sd = float(diff.std(ddof=1)) if n > 1 else 0.0
    if n < 2 or sd == 0.0:
        p_value, t = (1.0 if mean <= 0 else 0.0), None  # identical answers on every row: no difference to test
    else:
        t = mean / (sd / math.sqrt(n))
        p_value = float(stats.t.sf(t, df=n - 1))
    z = stats.norm.ppf
    result = {
        "rows": n,
        "brier_stable": round(float(np.mean((p_stable - y) ** 2)), 5) if n else None,
        "brier_shadow": round(float(np.mean((p_shadow - y) ** 2)), 5) if n else None,
        "mean_difference": round(mean, 5),
        "t": None if t is None else round(float(t), 3),
        "p_value": round(p_value, 6),
        "alpha": alpha,
        "min_detectable": round(float((z(1 - alpha) + z(POWER)) * sd / math.sqrt(n)), 5) if n > 1 else None,
        "worse": p_value < alpha,
    }
    result.update(auc_pair(y, p_stable, p_shadow))
    return result


def auc_pair(y: Any, stable: Any, shadow: Any) -> dict[str, float | None]:
    """Both versions' ROC AUC on the rows (None with one class only): for the reader, not the verdict."""
    from sklearn.metrics import roc_auc_score

    if len(set(map(int, y))) < 2:
        return {"auc_stable": None, "auc_shadow": None}
    return {"auc_stable": round(float(roc_auc_score(y, stable)), 4), "auc_shadow": round(float(roc_auc_score(y, shadow)), 4)}


def compare(
    pairs: pd.DataFrame,
    labelled: pd.DataFrame,
    state: MirrorState,
    thresholds: Thresholds,
    *,
    min_labelled: int,
    alpha: float,
    label: str,
) -> dict[str, Any]:
    """The shadow's verdict: errors, prediction shift and quality on the same requests (see the module)."""
    from mlops_pipeline.monitoring.labels import TARGET

    checks: list[Check] = []
    rate = state.failure_rate
    if rate is None or state.sent < thresholds.min_requests:
        checks.append(Check("errors", "insufficient", f"{state.sent} request(s) mirrored, {thresholds.min_requests} needed"))
    else:
        status: CheckStatus = "failed" if rate > thresholds.max_5xx_rate_increase else "passed"
        detail = f"{state.failed} of {state.sent} mirrored requests failed ({rate:.2%}, {state.rejected} refused with a 4xx; stable answered all)"
        if state.errors:
            detail += f", e.g. {state.errors[0]}"
        checks.append(Check("errors", status, detail, round(rate, 5), thresholds.max_5xx_rate_increase))
    if len(pairs) < thresholds.min_rows:
        checks.append(Check("prediction_shift", "insufficient", f"{len(pairs)} rows answered by both, {thresholds.min_rows} needed"))
    else:
        shift = expected_shift(pairs["stable"].to_numpy(), pairs["shadow"].to_numpy(), thresholds.psi_bins)
        limit = thresholds.psi_limit
        checks.append(
            Check(
                "prediction_shift",
                "failed" if shift > limit else "passed",
                f"PSI {shift:.3f} over {len(pairs)} rows (mean probability {pairs['shadow'].mean():.3f} vs stable "
                f"{pairs['stable'].mean():.3f}), limit {limit:.3f}",
                round(shift, 4),
                round(limit, 4),
            )
        )
    quality: dict[str, Any] | None = None
    if len(labelled) < min_labelled:
        checks.append(Check("quality", "insufficient", f"{len(labelled)} labelled row(s) answered by both, {min_labelled} needed"))
    else:
        quality = paired_brier_test(labelled["stable"], labelled["shadow"], labelled[TARGET], alpha)
        detail = (
            f"Brier {quality['brier_shadow']} vs stable {quality['brier_stable']} on {quality['rows']} labelled rows "
            f"(AUC {quality['auc_shadow']} vs {quality['auc_stable']}); paired one-sided t-test {_p(quality['p_value'])}, "
            f"alpha {alpha}; detects a difference of {quality['min_detectable']} with {POWER:.0%} power"
        )
        checks.append(Check("quality", "failed" if quality["worse"] else "passed", detail, quality["p_value"], alpha))
    failed = [check for check in checks if check.status == "failed"]
    lacking = [check for check in checks if check.status == "insufficient"]
    if failed:
        passed, reason = False, f"{label}: " + "; ".join(f"{c.name} failed: {c.detail}" for c in failed)
    elif lacking and thresholds.insufficient_traffic != "proceed":
        passed = False
        reason = f"{label}: not enough evidence (insufficient_traffic={thresholds.insufficient_traffic}): " + "; ".join(
            f"{c.name}: {c.detail}" for c in lacking
        )
    else:
        passed = True
        reason = f"{label}: " + "; ".join(f"{c.name} {c.status}: {c.detail}" for c in checks)
    return {
        "passed": passed,
        "reason": reason,
        "checks": [asdict(check) for check in checks],
        "quality": quality,
        "mirrored": {"sent": state.sent, "answered": state.answered, "failed": state.failed, "rejected": state.rejected},
        "pairs": len(pairs),
        "labelled": len(labelled),
    }


def _p(value: float) -> str:
    return "p<1e-6" if value < 1e-6 else f"p={value:.3g}"


def window_status(
    state: MirrorState, pairs: int, labelled: int, thresholds: Thresholds, *, min_seconds: float, max_seconds: float, min_labelled: int
) -> dict[str, Any]:
    """Is the shadow window over? After ``min_seconds`` with evidence for every check (the requests,
    the paired rows and the labelled rows they need), or at ``max_seconds``."""
    elapsed = time.time() - state.started_at
    enough = state.sent >= thresholds.min_requests and pairs >= thresholds.min_rows and labelled >= min_labelled
    done = (elapsed >= min_seconds and enough) or elapsed >= max_seconds
    why = "enough evidence" if done and enough else "longest shadow window reached" if done else "mirroring"
    return {"done": done, "why": why, "elapsed": round(elapsed, 1), "mirrored": state.sent, "pairs": pairs, "labelled": labelled}


# -- a canary's quality, when labels of its traffic have arrived ------------------------------------
def served_rows(log_dir: Path, since: float, version: str, spec: DatasetSpec) -> pd.DataFrame:
    """``id, time, probability`` of every row clients sent ``version`` from ``since`` (epoch seconds)
    on: the monitor's reader (Arrow, client traffic only), over the files written to since."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    from mlops_pipeline.monitoring.predictions import (
        EVENT_TIME,
        PROBABILITY,
        ROW_ID,
        TS,
        VERSION,
        LogLayout,
        iter_log_tables,
    )

    start = datetime.fromtimestamp(since, UTC)
    files = [path for path in log_files(log_dir, start.date()) if path.stat().st_mtime >= since]
    frames = []
    for table in iter_log_tables(files, LogLayout.for_dataset(spec)):
        mine = pc.and_(pc.equal(table[VERSION], str(version)), pc.greater_equal(table[TS], pa.scalar(start, type=table.schema.field(TS).type)))
        picked = table.filter(mine).select([ROW_ID, EVENT_TIME, PROBABILITY])
        if picked.num_rows:
            frames.append(picked.to_pandas())
    if not frames:
        return pd.DataFrame({"id": pd.Series(dtype="string"), "time": pd.Series(dtype="datetime64[ms, UTC]"), "probability": []})
    rows = pd.concat(frames, ignore_index=True)
    return rows.rename(columns={ROW_ID: "id", EVENT_TIME: "time", PROBABILITY: "probability"})


def quality_check(canary: pd.DataFrame, stable: pd.DataFrame, *, min_labelled: int, alpha: float) -> Check | None:
    """The canary's labelled rows against stable's (each on its own share of the traffic): a
    one-sided Welch t-test of the per-row Brier score, the canary rejected when it is worse at
    ``alpha``. None while either side has fewer than ``min_labelled`` labelled rows: labels usually
    arrive after the rollout, and their absence is not evidence against the canary."""
    import numpy as np
    from scipy import stats

    from mlops_pipeline.monitoring.labels import TARGET

    if len(canary) < min_labelled or len(stable) < min_labelled:
        return None
    brier = {
        name: (frame["probability"].to_numpy(dtype=np.float64) - frame[TARGET].to_numpy(dtype=np.float64)) ** 2
        for name, frame in (("canary", canary), ("stable", stable))
    }
    test = stats.ttest_ind(brier["canary"], brier["stable"], equal_var=False, alternative="greater")
    p_value = float(test.pvalue) if np.isfinite(test.pvalue) else 1.0
    worse = p_value < alpha
    detail = (
        f"quality on labelled rows: Brier {brier['canary'].mean():.4f} ({len(canary)} rows) vs stable "
        f"{brier['stable'].mean():.4f} ({len(stable)} rows); one-sided Welch t-test {_p(p_value)}, alpha {alpha}"
    )
    return Check("quality", "failed" if worse else "passed", detail, round(p_value, 6), alpha)

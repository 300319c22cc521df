"""A synthetic customer-churn source, deterministic per (seed, day).

Scenarios change the generator from a date on (or for one run, forced by the DAG's
``scenario`` Param):

* ``covariate_drift``: the feature distributions move (pricier plans, less engagement, another
  region mix); the churn mechanism P(churn | features) stays the same.
* ``concept_drift``: the features look as before but the churn mechanism changes (support
  tickets stop mattering, payment by check and high charges start to).
* ``bad_batch``: a broken export: nulls in a required column, negative tenures and an unseen plan.

The label mechanism is monotone by construction in two features, which the model tests rely on:
more support tickets never lower the churn probability, longer tenure never raises it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from mlops_pipeline.datasets import ScenarioSchedule


class Scenario(StrEnum):
    NORMAL = "normal"
    COVARIATE_DRIFT = "covariate_drift"
    CONCEPT_DRIFT = "concept_drift"
    BAD_BATCH = "bad_batch"


PLANS = ["basic", "standard", "premium"]
CONTRACTS = ["month-to-month", "one-year", "two-year"]
PAYMENT_METHODS = ["card", "bank_transfer", "paypal", "check"]
REGIONS = ["north", "south", "east", "west"]


def scenarios_for_day(day: date, schedule: ScenarioSchedule, forced: Scenario | None = None) -> set[Scenario]:
    """Which scenarios apply to ``day``: the forced one (if any) or those the schedule puts there."""
    if forced is not None and forced is not Scenario.NORMAL:
        return {forced}
    if forced is Scenario.NORMAL:
        return set()
    active: set[Scenario] = set()
    if schedule.covariate_drift_from and day >= schedule.covariate_drift_from:
        active.add(Scenario.COVARIATE_DRIFT)
    if schedule.concept_drift_from and day >= schedule.concept_drift_from:
        active.add(Scenario.CONCEPT_DRIFT)
    if day in schedule.bad_batch_days:
        active.add(Scenario.BAD_BATCH)
    return active


def churn_logit(frame: pd.DataFrame, concept_drift: bool = False):  # -> np.ndarray
    """The churn mechanism: log-odds of churn given the features (vectorised)."""
    import numpy as np

    month_to_month = (frame["contract"] == "month-to-month").to_numpy(dtype=float)
    two_year = (frame["contract"] == "two-year").to_numpy(dtype=float)
    basic = (frame["plan"] == "basic").to_numpy(dtype=float)
    tenure = frame["tenure_months"].to_numpy(dtype=float)
    charges = frame["monthly_charges"].to_numpy(dtype=float)
    tickets = frame["num_support_tickets"].to_numpy(dtype=float)
    idle_days = frame["days_since_last_login"].to_numpy(dtype=float)
    logins = frame["num_logins_30d"].to_numpy(dtype=float)
    late = frame["late_payments_12m"].to_numpy(dtype=float)
    check = (frame["payment_method"] == "check").to_numpy(dtype=float)

    logit = (
        -1.6
        + 1.3 * month_to_month
        - 0.9 * two_year
        - 1.6 * np.tanh(tenure / 24.0)  # saturating: new customers churn, loyal ones settle
        + 0.9 * np.log1p(idle_days) / np.log(31.0)
        - 0.35 * np.log1p(logins)
        + 0.25 * late
        + 0.9 * basic * (charges > 70)  # an interaction: basic plan customers paying a lot
    )
    if concept_drift:
        logit = logit + 1.4 * check + 0.03 * (charges - 70.0) + 0.0 * tickets
    else:
        logit = logit + 0.45 * np.minimum(tickets, 6.0) + 0.3 * check
    return logit


def generate_day(
    day: date,
    *,
    seed: int,
    rows: int,
    scenarios: set[Scenario] | frozenset[Scenario] = frozenset(),
) -> pd.DataFrame:
    """All events of ``day`` (UTC), identical for the same (seed, day, rows, scenarios)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng([seed, day.toordinal()])
    covariate = Scenario.COVARIATE_DRIFT in scenarios

    plan_p = [0.55, 0.3, 0.15] if covariate else [0.35, 0.4, 0.25]
    contract_p = [0.5, 0.3, 0.2]
    payment_p = [0.4, 0.25, 0.2, 0.15]
    region_p = [0.1, 0.2, 0.3, 0.4] if covariate else [0.3, 0.3, 0.2, 0.2]

    plan = rng.choice(PLANS, size=rows, p=plan_p)
    contract = rng.choice(CONTRACTS, size=rows, p=contract_p)
    payment = rng.choice(PAYMENT_METHODS, size=rows, p=payment_p)
    region = rng.choice(REGIONS, size=rows, p=region_p)

    tenure = np.clip(rng.gamma(2.0, 12.0, rows), 0, 72).round()
    base_charge = np.select([plan == "basic", plan == "standard"], [35.0, 65.0], 95.0)
    charges = np.clip(base_charge + rng.normal(0, 12, rows) + (25.0 if covariate else 0.0), 18, 150).round(2)
    total = (charges * np.maximum(tenure, 1) * rng.uniform(0.9, 1.0, rows)).round(2)
    tickets = rng.poisson(1.8 if covariate else 1.2, rows).astype(float)
    session = np.clip(rng.lognormal(3.0, 0.5, rows) * (0.7 if covariate else 1.0), 0, 600).round(1)
    idle = np.clip(rng.exponential(12.0 if covariate else 6.0, rows), 0, 365).round()
    logins = np.clip(rng.poisson(14 if not covariate else 9, rows), 0, 200).astype(float)
    usage = np.clip(rng.gamma(2.0, 8.0, rows), 0, 500).round(2)
    late = np.clip(rng.poisson(0.4, rows), 0, 12).astype(float)
    age = np.clip(rng.normal(42, 13, rows), 18, 95).round()

    seconds = np.sort(rng.uniform(0, 86400, rows))
    start = pd.Timestamp(datetime.combine(day, time(0), tzinfo=UTC))
    event_time = start + pd.to_timedelta(seconds, unit="s").floor("ms")

    frame = pd.DataFrame(
        {
            "customer_id": [f"C{day:%Y%m%d}-{i:06d}" for i in range(rows)],
            "event_time": event_time,
            "tenure_months": tenure,
            "monthly_charges": charges,
            "total_charges": total,
            "num_support_tickets": tickets,
            "avg_session_minutes": session,
            "days_since_last_login": idle,
            "num_logins_30d": logins,
            "data_usage_gb": usage,
            "late_payments_12m": late,
            "age": age,
            "plan": plan,
            "contract": contract,
            "payment_method": payment,
            "region": region,
        }
    )
    logit = churn_logit(frame, concept_drift=Scenario.CONCEPT_DRIFT in scenarios)
    frame["churned"] = (rng.uniform(size=rows) < 1.0 / (1.0 + np.exp(-logit))).astype("int64")

    if Scenario.BAD_BATCH in scenarios:
        broken = rng.choice(rows, size=max(1, rows // 20), replace=False)
        frame.loc[broken, "monthly_charges"] = np.nan
        frame.loc[broken[: max(1, len(broken) // 2)], "tenure_months"] = -5.0
        frame.loc[broken[:3], "plan"] = "platinum"
    return frame


def generate_window(
    start: datetime,
    end: datetime,
    *,
    seed: int,
    rows_per_day: int,
    schedule: ScenarioSchedule,
    forced: Scenario | None = None,
) -> pd.DataFrame:
    """Events with ``start <= event_time < end``, built from whole generated days."""
    import pandas as pd

    frames = []
    day = start.astimezone(UTC).date()
    while datetime.combine(day, time(0), tzinfo=UTC) < end:
        frames.append(generate_day(day, seed=seed, rows=rows_per_day, scenarios=scenarios_for_day(day, schedule, forced)))
        day += timedelta(days=1)
    frame = pd.concat(frames, ignore_index=True)
    in_window = (frame["event_time"] >= pd.Timestamp(start)) & (frame["event_time"] < pd.Timestamp(end))
    return frame.loc[in_window].reset_index(drop=True)

"""Names of the MLflow tags, aliases and assets the pipeline writes and reads: one place for each."""

from __future__ import annotations

# aliases and the asset the deploy DAG listens to
CHAMPION = "champion"
CHALLENGER = "challenger"
CHALLENGER_ASSET_NAME = "mlops_challenger"

# training runs
TRIGGER_REASON = "trigger_reason"
DAG_RUN_ID = "dag_run_id"
REGISTERED_VERSION = "registered_version"

# model versions: registration (and shown by the Model ops view) and the gate
CANDIDATE = "candidate"
FLAVOR = "flavor"
DATA_WINDOW = "data_window"
DATA_VERSIONS = "data_versions"  # the pinned lake versions: "ds@vN:digest" separated by spaces
GIT_COMMIT = "git_commit"
ARTIFACT_SHA256 = "artifact_sha256"
GATE_STATUS = "gate_status"
GATE_DECISION = "gate_decision"
GATE_REASON = "gate_reason"
# the prediction shift (PSI) between this version and the champion on the gate's holdout, binned as the
# canary check bins: JSON {"psi", "against" (the champion version), "bins", "rows"}
EXPECTED_SHIFT = "expected_prediction_shift"
REJECTED = "rejected"
REJECTION_REASON = "rejection_reason"

# model versions: deployment
DEPLOY_STATUS = "deploy_status"
DEPLOY_REASON = "deploy_reason"
DEPLOYMENT_ID = "deployment_id"
PREVIOUS_CHAMPION = "previous_champion"
# a shadow window's verdict (mlops_pipeline.deploy.shadow): passed, labelled rows, Brier difference, p-value
SHADOW_PASSED = "shadow_passed"
SHADOW_LABELLED_ROWS = "shadow_labelled_rows"
SHADOW_BRIER_DIFFERENCE = "shadow_brier_difference"
SHADOW_P_VALUE = "shadow_p_value"

"""An Airflow DAG: generate a synthetic set, audit it, and stop the pipeline when the gate fails.

The audit runs on the auditor service (``AUDITOR_API_URL``, ``AUDITOR_API_KEY`` from an Airflow
connection or the worker's environment); the task only submits, waits and gates, so it needs the
auditor's client (``pip install synthetic-data-auditor``) and no GPU. ``auditor gate`` exits 1 when the
gate fails and 2 when the audit errs: either fails the task, and the publish task never runs.
"""

from __future__ import annotations

from datetime import datetime

from airflow import DAG
from airflow.operators.bash import BashOperator

# The gate, as the BashOperator runs it (Jinja fills {{ ds_nodash }}); the environment names the data.
GATE_COMMAND = """
set -euo pipefail
ID=$(auditor submit --real "$REAL" --synthetic "$SYNTHETIC" --holdout "$HOLDOUT" \
       --policy "$POLICY" --project "$PROJECT" --tag "run=$RUN_TAG" --idempotency-key "gate-$RUN_TAG")
echo "audit $ID"
auditor gate "$ID" --timeout 3600 --format text
"""

with DAG(
    dag_id="synthetic_data_gate",
    start_date=datetime(2026, 1, 1),
    schedule="@daily",
    catchup=False,
) as dag:
    generate = BashOperator(task_id="generate", bash_command="python -m generator.sample --date {{ ds }}")
    gate = BashOperator(
        task_id="audit_gate",
        bash_command=GATE_COMMAND,
        env={
            "REAL": "s3://datasets/vision/real/embeddings.npy",
            "SYNTHETIC": "s3://datasets/vision/synthetic/{{ ds_nodash }}/embeddings.npy",
            "HOLDOUT": "s3://datasets/vision/holdout/embeddings.npy",
            "POLICY": "/opt/airflow/policies/release-gate.yaml",
            "PROJECT": "vision",
            "RUN_TAG": "{{ ds_nodash }}",
        },
        append_env=True,  # keeps AUDITOR_API_URL / AUDITOR_API_KEY from the worker's environment
    )
    publish = BashOperator(task_id="publish", bash_command="python -m generator.publish --date {{ ds }}")
    generate >> gate >> publish

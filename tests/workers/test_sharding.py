"""Large image/text sides are embedded in shards, one task each on the gpu queue, by several workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.artifacts import ArtifactStore
from auditor.pipeline.evaluate import MetricParams
from auditor.pipeline.run import run_audit
from auditor.pipeline.spec import AuditSpec, DatasetRef

pytestmark = pytest.mark.postgres
TOPICS = {
    "weather": "The forecast says {} rain will move in over the {} hills by the evening.",
    "cooking": "Stir the {} sauce slowly and add the {} herbs just before serving.",
    "football": "The {} striker scored twice as the {} defence fell apart in the second half.",
    "finance": "The {} bank raised its rates while {} markets waited for the inflation report.",
}
WORDS = ["heavy", "light", "northern", "quiet", "bright", "old", "young", "green", "cold", "local"]


def corpus(path: Path, topics: list[str], n: int) -> str:
    lines = [
        TOPICS[topics[i % len(topics)]].format(WORDS[i % 10], WORDS[(i // 10) % 10]) + f" ({i})"
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_sides_are_sharded_across_workers_and_match_a_single_pass(cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    real = corpus(tmp_path / "real.txt", list(TOPICS), 240)
    synthetic = corpus(tmp_path / "synthetic.txt", ["weather", "cooking"], 240)  # lost two topics
    params = {"metrics": ["fid", "precision", "recall", "coverage"], "bootstrap": 0, "spectral_bootstrap": 0}
    cluster.env["AUDITOR_EMBED_SHARD_SIZE"] = "100"  # 240 texts -> 3 shards per side
    cluster.context.settings.embed_shard_size = 100
    cluster.start_worker()
    cluster.start_worker()
    with cluster.client() as client:
        audit = client.submit(
            {
                "real": {"uri": real},
                "synthetic": {"uri": synthetic},
                "extractor": "text-minilm",
                "params": params,
            }
        )
        done = client.wait(audit["id"], timeout=300, poll_s=0.5)
    assert done["state"] == "succeeded", (done, cluster.logs())
    messages = [e["message"] or "" for e in done["events"]]
    with cluster.context.session() as session:
        from auditor.db.models import Audit

        artifacts = session.get(Audit, audit["id"]).artifacts  # type: ignore[union-attr]
    shard_entries = sorted(name for name in artifacts if name.startswith("shard:"))
    assert shard_entries == [f"shard:{side}:{i}" for side in ("real", "synthetic") for i in range(3)], (
        artifacts
    )
    workers = {entry["worker"] for name, entry in artifacts.items() if name.startswith("shard:")}
    assert len(workers) == 2, (workers, messages)  # both workers embedded shards
    assert done["result"]["real"]["n"] == 240 and done["result"]["real"]["from_cache"] is False

    # The same audit in one process, without shards, gives the same numbers (float32 features).
    spec = AuditSpec(
        real=DatasetRef(uri=real),
        synthetic=DatasetRef(uri=synthetic),
        extractor="text-minilm",
        params=MetricParams(**params),
    )
    single = run_audit(spec, store=ArtifactStore(str(tmp_path / "single-pass-store")))
    for name in params["metrics"]:
        assert done["result"]["metrics"][name]["value"] == pytest.approx(
            single.document["metrics"][name]["value"], rel=1e-4, abs=1e-6
        ), name
    assert done["result"]["metrics"]["recall"]["value"] < 0.75  # two of four topics are missing

    # Re-auditing against the same real data embeds only the synthetic side.
    with cluster.client() as client:
        again = client.wait(
            client.submit(
                {
                    "real": {"uri": real},
                    "synthetic": {"uri": real},
                    "extractor": "text-minilm",
                    "params": params,
                }
            )["id"],
            timeout=300,
            poll_s=0.5,
        )
    assert again["state"] == "succeeded", cluster.logs()
    assert again["result"]["real"]["from_cache"] is True
    assert again["result"]["synthetic"]["from_cache"] is True  # the same bytes: the same cache entry

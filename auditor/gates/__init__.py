"""Gates for pipelines: how a verdict reaches a CI system (:mod:`auditor.gates.output`)."""

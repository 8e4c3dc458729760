"""Celery workers (GPU queue for embedding, CPU queue for scoring): built in the service issue.

They will call the same stages as :func:`auditor.pipeline.run.run_audit`; nothing here yet.
"""

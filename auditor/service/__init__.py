"""The service layer: audits submitted over HTTP, executed by workers (Celery) or in-process."""

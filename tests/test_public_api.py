"""``auditor.__all__`` is the curated public API: it holds, and ``import auditor`` stays light
(tests/cli/test_lazy_imports.py checks the import cost)."""

from __future__ import annotations

import pytest

import auditor
import auditor.client
import auditor.errors
import auditor.notebook
import auditor.policy

PUBLIC = {
    "audit": auditor.notebook.audit,
    "AuditOutcome": auditor.notebook.AuditOutcome,
    "MetricEstimate": auditor.notebook.MetricEstimate,
    "AuditorError": auditor.errors.AuditorError,
    "Policy": auditor.policy.Policy,
    "AuditorClient": auditor.client.AuditorClient,
}


def test_all_is_exactly_the_public_names_each_the_object_it_documents() -> None:
    assert sorted(auditor.__all__) == auditor.__all__, "kept sorted, so a diff shows what changed"
    assert set(auditor.__all__) == {*PUBLIC, "__version__"}
    for name, expected in PUBLIC.items():
        assert getattr(auditor, name) is expected, name
        assert name in dir(auditor)
    assert isinstance(auditor.__version__, str)
    assert not [name for name in auditor.__all__ if name.startswith("_") and name != "__version__"]


def test_the_error_base_is_the_one_every_error_derives_from() -> None:
    assert issubclass(auditor.errors.ExtractorRequiredError, auditor.AuditorError)
    assert issubclass(auditor.errors.BadInputError, auditor.AuditorError)


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="module 'auditor' has no attribute 'audits'"):
        auditor.audits  # noqa: B018
    assert not hasattr(auditor, "_LAZY_missing")


def test_star_import_gives_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from auditor import *", namespace)
    assert {name for name in namespace if name != "__builtins__"} == set(auditor.__all__)

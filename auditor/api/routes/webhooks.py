"""A project's webhooks: subscribe, list, remove, and read each subscription's deliveries.

The same access rule as the project's other routes (a project key manages its own project's). The
URL is checked when subscribing (scheme, DNS, SSRF: :mod:`auditor.webhooks`) and again at every
delivery. The secret is answered once, by the POST.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response

from auditor.api.deps import ContextDep, PrincipalDep, SessionDep, require_project_access
from auditor.api.routes.projects import ProjectPath
from auditor.api.schemas import (
    V1_ERRORS,
    WEBHOOK_ID_PATTERN,
    WebhookAttemptPublic,
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryPublic,
    WebhookPublic,
    error_responses,
)
from auditor.db import queries
from auditor.db import webhooks as rows
from auditor.db.models import DELIVERY_STATES, Webhook
from auditor.webhooks import check_url, host_policy, new_secret, resolve_url

router = APIRouter(prefix="/v1/projects", tags=["webhooks"])
WebhookIdPath = Annotated[str, Path(pattern=WEBHOOK_ID_PATTERN, description="A webhook's id.")]
DeliveryState = Literal["pending", "delivered", "failed"]
assert DeliveryState.__args__ == DELIVERY_STATES  # type: ignore[attr-defined]
_WEBHOOK_LINKS = {
    name: {
        "operationId": operation,
        "parameters": {"project": "$request.path.project", "webhook_id": "$response.body#/id"},
    }
    for name, operation in (
        ("GetWebhook", "get_webhook"),
        ("ListWebhookDeliveries", "list_webhook_deliveries"),
        ("DeleteWebhook", "delete_webhook"),
    )
}


def _public(project: str, webhook: Webhook) -> WebhookPublic:
    return WebhookPublic(
        id=webhook.id, project=project, url=webhook.url, events=webhook.events, created_at=webhook.created_at
    )


@router.post(
    "/{project}/webhooks",
    status_code=201,
    response_model=WebhookCreated,
    responses={**error_responses(*V1_ERRORS, 403, 404, 409, 413), 201: {"links": _WEBHOOK_LINKS}},
)
def create_webhook(
    project: ProjectPath,
    body: WebhookCreate,
    session: SessionDep,
    principal: PrincipalDep,
    context: ContextDep,
) -> WebhookCreated:
    """Subscribe a URL to the project's audit events. 403 ``host_not_allowed`` for a host that is or
    resolves to an internal address, ``scheme_not_allowed`` for http where only https is allowed; 404
    ``host_not_found``; 409 ``too_many_webhooks`` (AUDITOR_MAX_WEBHOOKS_PER_PROJECT)."""
    require_project_access(principal, project)
    settings = context.settings
    target = check_url(body.url, settings.webhook_scheme_set())
    resolve_url(target, host_policy(settings.webhook_allow_host_list()))
    secret = body.secret or new_secret()
    webhook = rows.create_webhook(
        session,
        project=queries.get_or_create_project(session, project),
        url=body.url,
        events=list(body.events),
        secret=secret,
        limit=settings.max_webhooks_per_project,
    )
    created = WebhookCreated(**_public(project, webhook).model_dump(), secret=secret)
    # Before answering: SessionDep commits after the response is sent, and a client reading its new
    # webhook at once (or a commit failing then) must not see a 201 for a subscription that is not there.
    session.commit()
    return created


@router.get(
    "/{project}/webhooks", response_model=list[WebhookPublic], responses=error_responses(*V1_ERRORS, 403, 404)
)
def list_webhooks(project: ProjectPath, session: SessionDep, principal: PrincipalDep) -> list[WebhookPublic]:
    """The project's subscriptions (without their secrets), oldest first."""
    require_project_access(principal, project)
    return [
        _public(project, webhook)
        for webhook in rows.list_webhooks(session, queries.get_project(session, project))
    ]


@router.get(
    "/{project}/webhooks/{webhook_id}",
    response_model=WebhookPublic,
    responses=error_responses(*V1_ERRORS, 403, 404),
)
def get_webhook(
    project: ProjectPath, webhook_id: WebhookIdPath, session: SessionDep, principal: PrincipalDep
) -> WebhookPublic:
    require_project_access(principal, project)
    return _public(project, rows.get_webhook(session, queries.get_project(session, project), webhook_id))


@router.delete(
    "/{project}/webhooks/{webhook_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(*V1_ERRORS, 403, 404),
)
def delete_webhook(
    project: ProjectPath, webhook_id: WebhookIdPath, session: SessionDep, principal: PrincipalDep
) -> Response:
    """Unsubscribe: nothing more is sent, pending deliveries included; its delivery log goes with it."""
    require_project_access(principal, project)
    rows.delete_webhook(session, queries.get_project(session, project), webhook_id)
    session.commit()  # gone before the 204 (see create_webhook)
    return Response(status_code=204)


@router.get(
    "/{project}/webhooks/{webhook_id}/deliveries",
    response_model=list[WebhookDeliveryPublic],
    responses=error_responses(*V1_ERRORS, 403, 404),
)
def list_webhook_deliveries(
    project: ProjectPath,
    webhook_id: WebhookIdPath,
    session: SessionDep,
    principal: PrincipalDep,
    state: Annotated[DeliveryState | None, Query(description="Only deliveries in this state.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[WebhookDeliveryPublic]:
    """The subscription's deliveries, newest first, each with every attempt (status, error, duration)."""
    require_project_access(principal, project)
    webhook = rows.get_webhook(session, queries.get_project(session, project), webhook_id)
    return [
        WebhookDeliveryPublic(
            id=delivery.id,
            webhook_id=delivery.webhook_id,
            audit_id=delivery.audit_id,
            event=delivery.event,
            state=delivery.state,
            attempt_count=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            created_at=delivery.created_at,
            finished_at=delivery.finished_at,
            attempts=[WebhookAttemptPublic(**vars(attempt)) for attempt in delivery.attempt_log],
        )
        for delivery in rows.list_deliveries(session, webhook, limit=limit, state=state)
    ]

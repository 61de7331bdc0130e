from typing import Any

from fastapi import APIRouter, Response

from partnerpay.dependencies import SessionDep, SettingsDep, UnitOfWorkRoute
from partnerpay.events.models import Webhook
from partnerpay.partners.dependencies import PartnerDep
from partnerpay.problems import problem_responses
from partnerpay.webhooks import service
from partnerpay.webhooks.schemas import (
    AuthenticationOut,
    WebhookCreatedOut,
    WebhookCreatedResponse,
    WebhookIn,
    WebhookList,
    WebhookOut,
    WebhookResponse,
    WebhookUpdate,
)
from partnerpay.wire import ModelResponse

webhooks_router = APIRouter(prefix="/webhooks", tags=["Webhooks"], route_class=UnitOfWorkRoute)

PROBLEMS = problem_responses(400, 404, 409)
SECRET_CREDENTIALS = frozenset({"password", "token"})


def _authentication_out(webhook: Webhook) -> AuthenticationOut | None:
    auth = webhook.authentication
    if not auth:
        return None
    visible = {k: v for k, v in auth["data"].items() if k not in SECRET_CREDENTIALS}
    return AuthenticationOut(type=auth["type"], add_position=auth["add_position"], data=visible)


def _webhook_fields(webhook: Webhook) -> dict[str, Any]:
    return {
        "webhook_id": webhook.id,
        "party_id": webhook.partner_id,
        "name": webhook.name,
        "description": webhook.description,
        "url": webhook.url,
        "status": webhook.status,
        "events": webhook.events,
        "authentication": _authentication_out(webhook),
        "created_at": webhook.created_at,
        "updated_at": webhook.updated_at,
    }


@webhooks_router.post(
    "", summary="Register a webhook", responses=PROBLEMS, response_model=WebhookCreatedResponse
)
def create_webhook(
    session: SessionDep, settings: SettingsDep, partner: PartnerDep, body: WebhookIn
) -> ModelResponse:
    """Subscribe a URL to topics. The response carries the signing `secret`, shown once:
    verify each delivery's `webhook-signature` with it (Standard Webhooks)."""
    webhook = service.create_webhook(session, partner.id, body, settings.env)
    return ModelResponse(
        WebhookCreatedResponse(
            webhook=WebhookCreatedOut(**_webhook_fields(webhook), secret=webhook.secret)
        )
    )


@webhooks_router.get("", summary="List webhooks", response_model=WebhookList)
def list_webhooks(session: SessionDep, partner: PartnerDep) -> ModelResponse:
    webhooks = service.list_webhooks(session, partner.id)
    return ModelResponse(WebhookList(webhooks=[WebhookOut(**_webhook_fields(w)) for w in webhooks]))


@webhooks_router.put(
    "", summary="Change a webhook", responses=PROBLEMS, response_model=WebhookResponse
)
def update_webhook(
    session: SessionDep, settings: SettingsDep, partner: PartnerDep, body: WebhookUpdate
) -> ModelResponse:
    """Change the webhook named by `webhook_id`; fields not sent stay as they are."""
    webhook = service.update_webhook(session, partner.id, body, settings.env)
    return ModelResponse(WebhookResponse(webhook=WebhookOut(**_webhook_fields(webhook))))


@webhooks_router.delete(
    "/{webhook_id}", status_code=204, summary="Delete a webhook", responses=PROBLEMS
)
def delete_webhook(session: SessionDep, partner: PartnerDep, webhook_id: str) -> Response:
    service.delete_webhook(session, partner.id, webhook_id)
    return Response(status_code=204)

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from partnerpay.dependencies import SessionDep, SettingsDep
from partnerpay.partners.dependencies import PartnerDep
from partnerpay.problems import problem_responses
from partnerpay.webhooks import service
from partnerpay.webhooks.models import DeliveryStatus, Topic, Webhook, WebhookEvent
from partnerpay.webhooks.schemas import (
    AuthenticationOut,
    DeliveryOut,
    EventFilters,
    EventLog,
    EventOut,
    EventResponse,
    TopicList,
    WebhookCreatedOut,
    WebhookCreatedResponse,
    WebhookIn,
    WebhookList,
    WebhookOut,
    WebhookResponse,
    WebhookUpdate,
)
from partnerpay.wire import InputTimestamp, ModelResponse

webhooks_router = APIRouter(prefix="/webhooks", tags=["Webhooks"])
events_router = APIRouter(prefix="/events", tags=["Events"])

PROBLEMS = problem_responses(400, 404, 409)
MAX_EVENTS = 1000
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


def _event_out(event: WebhookEvent) -> EventOut:
    return EventOut(
        webhook_event_id=event.id,
        topic=Topic(event.topic),
        external_id=event.external_id,
        status=service.event_status(event),
        created_at=event.created_at,
        payload=service.envelope_of(event),
        deliveries=[
            DeliveryOut(
                webhook_id=d.webhook_id,
                status=DeliveryStatus(d.status),
                attempts=d.attempts,
                last_status_code=d.last_status_code,
                last_error=d.last_error,
                last_attempt_at=d.last_attempt_at,
                next_attempt_at=d.next_attempt_at,
            )
            for d in event.deliveries
        ],
    )


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


@events_router.get("/topics", summary="List event topics", response_model=TopicList)
def list_topics(_partner: PartnerDep) -> ModelResponse:
    return ModelResponse(TopicList(event_topics=list(Topic)))


@events_router.get("", summary="The event log", responses=PROBLEMS, response_model=EventLog)
def list_events(
    session: SessionDep,
    partner: PartnerDep,
    topic: Topic | None = None,
    since: Annotated[InputTimestamp | None, Query(description="Default: 24 hours ago")] = None,
    since_webhook_event_id: Annotated[
        str | None, Query(description="Events after this one (not with `since`)")
    ] = None,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS)] = 100,
) -> ModelResponse:
    """This partner's events, oldest first, each with its deliveries."""
    events, has_more = service.list_events(
        session,
        partner.id,
        topic=topic,
        since=since,
        since_webhook_event_id=since_webhook_event_id,
        status=status,
        limit=limit,
    )
    return ModelResponse(
        EventLog(
            events=[_event_out(event) for event in events],
            has_more=has_more,
            filters=EventFilters(
                topic=topic,
                since=since,
                since_webhook_event_id=since_webhook_event_id,
                status=status,
                limit=limit,
            ),
        )
    )


@events_router.post(
    "/{webhook_event_id}/redeliver",
    summary="Send an event again",
    responses=PROBLEMS,
    response_model=EventResponse,
)
def redeliver_event(
    session: SessionDep, partner: PartnerDep, webhook_event_id: str
) -> ModelResponse:
    """Queue the event again for every webhook subscribed to its topic now."""
    return ModelResponse(
        EventResponse(
            event=_event_out(service.redeliver_event(session, partner.id, webhook_event_id))
        )
    )

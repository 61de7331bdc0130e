"""The event log's routes: topics, the log, redelivery."""

from typing import Annotated

from fastapi import APIRouter, Query

from partnerpay.dependencies import SessionDep, UnitOfWorkRoute
from partnerpay.events import service
from partnerpay.events.models import DeliveryStatus, Topic, WebhookEvent
from partnerpay.events.schemas import (
    DeliveryOut,
    EventFilters,
    EventLog,
    EventOut,
    EventResponse,
    TopicList,
)
from partnerpay.partners.dependencies import PartnerDep
from partnerpay.problems import problem_responses
from partnerpay.wire import InputTimestamp, ModelResponse

events_router = APIRouter(prefix="/events", tags=["Events"], route_class=UnitOfWorkRoute)

PROBLEMS = problem_responses(400, 404, 409)
MAX_EVENTS = 1000


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

"""The kinds of payable artifact, each registered by its own package.

Payments reach an artifact through its kind: the table it is kept in, how a problem names
it, and its wire form for the event that reports a change. So the payments package needs
no import of invoices (or, later, of charges and trust deposits); a kind's package
registers itself when it is imported (``partnerpay.invoices`` on import).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from partnerpay.artifacts.models import Artifact, ArtifactType
from partnerpay.events.models import Topic


@dataclass(frozen=True)
class ArtifactKind:
    artifact_type: ArtifactType
    model: type[Artifact]
    noun: str  # how a problem names one: "invoice"
    updated_topic: Topic
    # Its wire form as it now is (its payments included), for the event reporting a change:
    # (session, artifact, pay_base_url) -> the resource.
    resource: Callable[[Session, Any, str], dict[str, Any]]


_KINDS: dict[ArtifactType, ArtifactKind] = {}


def register(kind: ArtifactKind) -> None:
    _KINDS[kind.artifact_type] = kind


def kind_of(artifact_type: str) -> ArtifactKind:
    try:
        return _KINDS[ArtifactType(artifact_type)]
    except KeyError:
        raise LookupError(
            f"no artifact kind {artifact_type!r} is registered (is its package imported?)"
        ) from None

"""An artifact's matter and debtor: read with what the artifact is raised from, and
written only when their details change.

Many artifacts name the same debtor and matter; rewriting their row each time would make
those artifacts queue on its lock, so unchanged details are only read.
"""

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import CTE, ColumnElement, RowMapping, Select, Table, and_, bindparam, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from partnerpay.artifacts.models import Debtor, Matter
from partnerpay.db import PerDialect, table_of, utcnow
from partnerpay.firms.models import Firm

PARTY_MODELS: dict[str, type[Matter] | type[Debtor]] = {"matter": Matter, "debtor": Debtor}
StoredParties = dict[str, tuple[uuid.UUID, dict[str, Any]]]
PartyWrites = tuple[bool, bool]  # whether the matter's and the debtor's rows are written

_FIRMS = table_of(Firm)


def stored_under_firm(rows: Table, external_id_bound_as: str) -> ColumnElement[bool]:
    """A row of ``rows`` that is the firm's, under the external id bound by that name."""
    return and_(
        rows.c.firm_id == _FIRMS.c.id, rows.c.external_id == bindparam(external_id_bound_as)
    )


def with_stored_parties(firm_query: Select[Any]) -> Select[Any]:
    """A query of a firm (``firms`` in its FROM) that also reads the matter and debtor
    bound as ``matter_external_id`` and ``debtor_external_id`` as stored now, in columns
    ``matter_id``, ``matter_details``, ``debtor_id`` and ``debtor_details``: each is unique
    per (firm, external id), so its join adds no rows."""
    for kind, model in PARTY_MODELS.items():
        parties = table_of(model)
        firm_query = firm_query.add_columns(
            parties.c.id.label(f"{kind}_id"), parties.c.details.label(f"{kind}_details")
        ).outerjoin(parties, stored_under_firm(parties, f"{kind}_external_id"))
    return firm_query


def stored_parties(row: RowMapping) -> StoredParties:
    """The stored matter and debtor, by kind, from a row of :func:`with_stored_parties`."""
    return {
        kind: (row[f"{kind}_id"], row[f"{kind}_details"])
        for kind in PARTY_MODELS
        if row[f"{kind}_id"] is not None
    }


def latest_details_kept(statement: Any) -> Any:
    """An ``INSERT`` of a matter or debtor that, when its (firm, external id) is stored
    already, gives that row the details sent instead."""
    sent = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["firm_id", "external_id"],
        set_={"details": sent.details, "updated_at": sent.updated_at},
    )


def _upsert_party(model: type[Debtor] | type[Matter]) -> PerDialect[Any]:
    def build(insert: Callable[..., Any]) -> Any:
        statement = insert(table_of(model))
        return latest_details_kept(statement).returning(statement.table.c.id)

    return PerDialect(build)


_UPSERT_PARTY = {Matter: _upsert_party(Matter), Debtor: _upsert_party(Debtor)}


def _save_party(
    session: Session,
    model: type[Debtor] | type[Matter],
    firm_id: uuid.UUID,
    details: dict[str, Any],
) -> uuid.UUID:
    """Insert this (firm, external id)'s row, or give it these details; return its id."""
    values = {
        "id": uuid.uuid4(),
        "firm_id": firm_id,
        "external_id": details["external_id"],
        "details": details,
        "updated_at": utcnow(),
    }
    party_id: uuid.UUID = session.execute(_UPSERT_PARTY[model].of(session), values).scalar_one()
    return party_id


def planned_parties(
    columns: Mapping[str, Any], stored: StoredParties
) -> tuple[dict[str, Any], PartyWrites]:
    """The artifact's matter and debtor ids (a new one for a party not stored yet), and
    whether each one's row must be written to hold the latest details (``columns`` holds
    the details sent, as ``matter`` and ``debtor``)."""
    ids: dict[str, Any] = {}
    writes: list[bool] = []
    for kind in PARTY_MODELS:
        details = columns[kind]
        stored_id, stored_details = stored.get(kind, (None, None))
        ids[f"{kind}_id"] = (stored_id or uuid.uuid4()) if details else None
        writes.append(bool(details) and details != stored_details)
    return ids, (writes[0], writes[1])


def party_ids(
    session: Session, firm_id: uuid.UUID, columns: Mapping[str, Any], stored: StoredParties
) -> dict[str, Any]:
    """The artifact's matter and debtor ids, their rows written as :func:`planned_parties`
    says, by upsert: a concurrent request may have inserted one since it was read."""
    ids, writes = planned_parties(columns, stored)
    for (kind, model), written in zip(PARTY_MODELS.items(), writes, strict=True):
        if written:
            ids[f"{kind}_id"] = _save_party(session, model, firm_id, columns[kind])
    return ids


def party_written(kind: str) -> CTE:
    """PostgreSQL: a matter's or debtor's row with the latest details, under its planned
    id unless it is stored already (perhaps by a concurrent request a moment ago), as a
    data-modifying CTE that returns the id; bound as :func:`party_params` names them.

    An ``INSERT … SELECT``, whose columns are its own: an ``INSERT … VALUES`` or an
    ``UPDATE`` would also take every other parameter named like one of its columns, such
    as the artifact's ``id``, as a value to set."""
    parties = table_of(PARTY_MODELS[kind])
    row = select(
        bindparam(f"{kind}_id", type_=parties.c.id.type),
        bindparam("firm_id", type_=parties.c.firm_id.type),
        bindparam(f"{kind}_external_id", type_=parties.c.external_id.type),
        bindparam(f"{kind}_details", type_=parties.c.details.type),
        bindparam("updated_at", type_=parties.c.updated_at.type),
    )
    columns = ["id", "firm_id", "external_id", "details", "updated_at"]
    written: postgresql.Insert = latest_details_kept(
        postgresql.insert(parties).from_select(columns, row)
    )
    return written.returning(parties.c.id).cte(f"{kind}_written")


def party_params(columns: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters :func:`party_written` is bound with."""
    params: dict[str, Any] = {}
    for kind in PARTY_MODELS:
        if details := columns[kind]:
            params[f"{kind}_details"] = details
            params[f"{kind}_external_id"] = details["external_id"]
    return params

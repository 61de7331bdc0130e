"""Imports run one way: each package imports only what it builds on.

jobs/ is infrastructure and knows no domain; events/ (the outbox) knows none of the
domains that emit events, nor webhooks/, which sends them; artifacts/ is the core of every
payable artifact; payments/ reaches artifacts through it; invoices/ (an artifact kind)
builds on both; paypage/ on all of them. artifacts/ reaches firms/ through its models only:
firms' bank accounts (firms/accounts.py) build on artifacts/. ledger/ (the books) builds on
artifacts/ and knows no payment: payments/ write to it; payouts/ and transactions/ read
them all."""

import ast
from pathlib import Path

import pytest

import partnerpay

SOURCE = Path(partnerpay.__file__).parent
DOMAINS = {
    "artifacts",
    "events",
    "firms",
    "invoices",
    "ledger",
    "payments",
    "paypage",
    "payouts",
    "transactions",
    "webhooks",
}
NOT_IMPORTED_BY = {
    "jobs": DOMAINS,
    "events": DOMAINS - {"events"},
    "artifacts": {"invoices", "ledger", "payments", "paypage", "payouts", "transactions"},
    "ledger": {"invoices", "payments", "paypage", "payouts", "transactions"},
    "payments": {"invoices", "paypage", "payouts", "transactions"},
    "invoices": {"paypage", "payouts", "transactions"},
    "payouts": {"transactions"},
}


def _imported_packages(module: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name.split(".")[1] for name in names if name.startswith("partnerpay.") and "." in name}


@pytest.mark.parametrize("package", sorted(NOT_IMPORTED_BY))
def test_a_package_imports_nothing_that_builds_on_it(package: str) -> None:
    for module in sorted((SOURCE / package).rglob("*.py")):
        wrong = _imported_packages(module) & NOT_IMPORTED_BY[package]
        assert not wrong, f"{module.relative_to(SOURCE)} imports {sorted(wrong)}"


def test_artifacts_reach_firms_through_their_models_only() -> None:
    for module in sorted((SOURCE / "artifacts").rglob("*.py")):
        imported = set()
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
        firms = {name for name in imported if name.startswith("partnerpay.firms")}
        wrong = {name for name in firms if not name.startswith("partnerpay.firms.models")}
        assert not wrong, f"{module.relative_to(SOURCE)} imports {sorted(wrong)}"

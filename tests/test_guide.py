"""The integration guide's examples, run verbatim with curl against the demo server.

``tests/guide/create_invoice.md`` is the guide page partners integrate from; each
``curl`` command in it runs as written, with only the host (and, for the GETs, the
documented invoice id) swapped for this server's.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import Server

GUIDE = Path(__file__).parent / "guide" / "create_invoice.md"
DOCUMENTED_HOST = re.compile(r"https?://papi\.au\.sandbox\.getfeewise\.com")
DOCUMENTED_INVOICE_ID = "2481ee61-283a-4d97-96ad-b2e50f929c96"

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def guide_commands() -> list[str]:
    return re.findall(r"```shell\n(curl .*?)\n```", GUIDE.read_text(), flags=re.DOTALL)


def documented_response() -> dict[str, Any]:
    block = re.search(r"```\n(\{\n.*?\n\})\n```", GUIDE.read_text(), flags=re.DOTALL)
    assert block is not None
    without_comments = re.sub(r"\s+# .*", "", block.group(1))
    invoice: dict[str, Any] = json.loads(without_comments)["invoice"]
    return invoice


def run_curl(command: str, server: Server, invoice_id: str = DOCUMENTED_INVOICE_ID) -> Any:
    command = DOCUMENTED_HOST.sub(server.base_url, command).replace(
        DOCUMENTED_INVOICE_ID, invoice_id
    )
    completed = subprocess.run(
        ["bash", "-c", command + " --silent --show-error --fail-with-body"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return json.loads(completed.stdout)


def test_guide_has_one_post_and_two_gets() -> None:
    commands = guide_commands()
    assert [c.split("--request ")[1].split()[0] for c in commands] == ["POST", "GET", "GET"]


def test_guide_flow_answers_as_documented(server: Server) -> None:
    create, get_by_id, get_by_external_id = guide_commands()
    expected = documented_response()

    created = run_curl(create, server)["invoice"]
    invoice_id = created["invoice_id"]
    assert invoice_id != DOCUMENTED_INVOICE_ID
    assert created["payment_uri"] == f"{server.base_url}/pay/{invoice_id}"
    for field, value in expected.items():
        if field not in ("invoice_id", "payment_uri"):
            assert created[field] == value, field
    assert created["amount_due"] == "123.45"

    assert run_curl(get_by_id, server, invoice_id)["invoice"] == created
    assert run_curl(get_by_external_id, server)["invoice"] == created

    again = run_curl(create, server)["invoice"]
    assert again == created

"""The files an operator uploads to the bank to pay payouts: an Australian direct entry
file (ABA, "Cemtex") for AUD, a CSV for every currency, and a reader for each that checks a
file as strictly as the writer builds it.

Pure functions over plain values: no database and no clock (the processing date is given).
Money is integer minor units (cents) throughout, written from integers and read back into
them, never through a float.

**The ABA file.** The layout is BECS direct entry's, which every Australian bank accepts:
records of exactly 120 characters, each ended by CRLF; one descriptive record (type 0),
one detail record (type 1) per entry, one file total record (type 7). Positions below are
1-based, as the specification writes them.

Descriptive record (type 0):

====== ===== ==========================================================================
1      1     ``0``
2-18   17    blank
19-20  2     reel sequence number, ``01``
21-23  3     the user's financial institution, its abbreviation (``CBA``, ``WBC``, ...)
24-30  7     blank
31-56  26    user preferred specification (the user's name), left-justified
57-62  6     APCA user identification number, numeric
63-74  12    description of the entries (``PAYOUTS``), left-justified
75-80  6     processing date, DDMMYY
81-120 40    blank
====== ===== ==========================================================================

Detail record (type 1):

======= ===== =========================================================================
1       1     ``1``
2-8     7     BSB, ``123-456``
9-17    9     account number, right-justified, blank-filled
18      1     indicator: blank (``N``, ``W``, ``X``, ``Y`` are read, never written)
19-20   2     transaction code: ``50`` a credit, ``13`` a debit (``51``-``57`` are read)
21-30   10    amount in cents, zero-filled
31-62   32    title of the account, left-justified
63-80   18    lodgement reference (the payout's reference: what the payee's statement
              shows), left-justified
81-87   7     trace BSB: the remitter's own account, where returned entries go
88-96   9     trace account number, right-justified
97-112  16    name of the remitter, left-justified
113-120 8     withholding tax in cents, ``00000000``
======= ===== =========================================================================

File total record (type 7):

======= ===== ==========================================================================
1       1     ``7``
2-8     7     ``999-999``
9-20    12    blank
21-30   10    net total in cents: the credit total less the debit total, unsigned
31-40   10    credit total in cents
41-50   10    debit total in cents
51-74   24    blank
75-80   6     count of type 1 records
81-120  40    blank
======= ===== ==========================================================================

**Characters.** Names and the description are written in a conservative part of the BECS
character set that every bank's upload takes: ``A``-``Z``, ``0``-``9``, space and
``& ' ( ) + , - . /``. A name is folded into it: accents come off (``É`` becomes ``E``),
letters are uppercased (``ß`` becomes ``SS``), typographic quotes and dashes become ``'``
and ``-``, every other character becomes a space, and runs of spaces become one. A name
with nothing left is refused; a payee's account title longer than its 32 characters is
cut, since the bank pays on the BSB and account number, never the name. The remitter's
names are the operator's settings and must fit their fields. A lodgement reference is what
reconciliation matches on, so it is never changed: one with any character outside the set
(lowercase included) is refused, as is one that starts with a zero or a hyphen, which some
banks refuse.

**The CSV.** One row per payout under the header :data:`CSV_HEADER`, the amount a decimal
string with two decimals; the csv module's quoting, CRLF rows, and no total row (a bank's
import or a spreadsheet takes every row for a payout): :class:`PayoutCsv` sums each
currency when it is read.
"""

import csv
import io
import re
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import date, datetime
from uuid import UUID

from partnerpay.config import ConfigurationError, Environment, Settings
from partnerpay.money import Currency, format_minor, to_minor

RECORD_LENGTH = 120
RECORD_END = "\r\n"
CREDIT = "50"
DEBIT = "13"
CREDIT_CODES = frozenset({CREDIT, "51", "52", "53", "54", "55", "56", "57"})
INDICATORS = frozenset(" NWXY")
AMOUNT_LIMIT = 10**10
"""Ten digits of cents: every amount and total is below it."""
COUNT_LIMIT = 10**6
REFERENCE_LENGTH = 18
CSV_HEADER = (
    "payout_reference",
    "date",
    "currency",
    "amount",
    "account_name",
    "branch_code",
    "account_number",
    "firm_id",
    "payout_id",
)

ALLOWED = frozenset(string.ascii_uppercase + string.digits + " &'()+,-./")
# Typographic quotes and primes, then hyphens, dashes and the minus sign.
_TYPOGRAPHIC = str.maketrans(
    dict.fromkeys("\u2018\u2019\u201a\u201b\u2032", "'")
    | dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-")
)
# [0-9], not \d: \d is every script's digits.
_BSB = re.compile(r"[0-9]{3}-?[0-9]{3}")
_WRITTEN_BSB = re.compile(r"[0-9]{3}-[0-9]{3}")
_ACCOUNT_NUMBER = re.compile(r"[0-9]{1,9}")
_INSTITUTION = re.compile(r"[A-Z]{3}")
_USER_ID = re.compile(r"[0-9]{6}")
_DIGITS = re.compile(r"[0-9]+")
_CSV_AMOUNT = re.compile(r"[0-9]{1,8}\.[0-9]{2}")
_CSV_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CSV_FORMULA_START = ("=", "+", "-", "@")
_CURRENCIES = frozenset(Currency)


class BankFileError(ValueError):
    """A bank file that cannot be written or read; the message says what and why."""


class PayoutLineError(BankFileError):
    """A payout that cannot go into the file, naming the payout and the field."""

    def __init__(self, payout_id: UUID, field: str, reason: str) -> None:
        super().__init__(f"payout {payout_id}: {field} {reason}")
        self.payout_id = payout_id
        self.field = field
        self.reason = reason


class RemitterError(BankFileError):
    """A remitter the file cannot name, naming the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"remitter: {field} {reason}")
        self.field = field
        self.reason = reason


class BankFileFormatError(BankFileError):
    """A file the reader refuses; ``line`` is the 1-based line (record or row) at fault,
    None where the fault is the whole file's."""

    def __init__(self, line: int | None, reason: str) -> None:
        super().__init__(reason if line is None else f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class PayoutLine:
    """One payout to one of a firm's bank accounts. ``branch_code`` is the BSB for AUD."""

    payout_id: UUID
    firm_id: UUID
    payout_reference: str
    amount_minor: int
    currency: str
    account_name: str
    branch_code: str
    account_number: str


@dataclass(frozen=True)
class Remitter:
    """The platform as the sender of an ABA file, from the ``PARTNERPAY_ABA_*`` settings
    (:func:`remitter_from_settings`): its bank (``institution``), the name and APCA user id
    its bank knows it by, the account payouts are paid from (the trace account, which
    returned payouts go back to), and the name payees' statements show. Refused on
    construction unless every field can be written."""

    institution: str
    user_name: str
    user_id: str
    bsb: str
    account_number: str
    remitter_name: str

    def __post_init__(self) -> None:
        if not _INSTITUTION.fullmatch(self.institution):
            raise RemitterError("institution", "must be three capital letters, such as CBA")
        if not _USER_ID.fullmatch(self.user_id):
            raise RemitterError("user_id", "must be the six-digit APCA user id")
        if _bsb(self.bsb) is None:
            raise RemitterError("bsb", f"{self.bsb!r} is not a BSB (123-456)")
        if _account_number(self.account_number) is None:
            raise RemitterError("account_number", _ACCOUNT_NUMBER_RULE)
        for field, width in (("user_name", 26), ("remitter_name", 16)):
            if not 0 < len(_fold(getattr(self, field))) <= width:
                raise RemitterError(field, f"must be 1 to {width} characters once folded")


@dataclass(frozen=True)
class AbaEntry:
    """One detail record, its fields as written (names folded, numbers normalised)."""

    bsb: str
    account_number: str
    indicator: str
    transaction_code: str
    amount_minor: int
    account_title: str
    lodgement_reference: str
    trace_bsb: str
    trace_account_number: str
    remitter_name: str
    withholding_tax_minor: int


@dataclass(frozen=True)
class AbaFile:
    """An ABA file the reader accepted: its header, its entries and its totals, which
    :func:`read_aba` has checked against the entries."""

    institution: str
    user_name: str
    user_id: str
    description: str
    processing_date: date
    entries: tuple[AbaEntry, ...]
    net_total_minor: int
    credit_total_minor: int
    debit_total_minor: int


@dataclass(frozen=True)
class PayoutCsv:
    """A payouts CSV the reader accepted: one processing date and its payouts."""

    processing_date: date
    lines: tuple[PayoutLine, ...]

    @property
    def totals_minor(self) -> dict[str, int]:
        """Each currency's total, in minor units."""
        totals: dict[str, int] = {}
        for line in self.lines:
            totals[line.currency] = totals.get(line.currency, 0) + line.amount_minor
        return totals


# Writing an ABA file


def build_aba(
    payouts: Iterable[PayoutLine],
    remitter: Remitter,
    processing_date: date,
    *,
    description: str = "PAYOUTS",
    balanced: bool = True,
) -> str:
    """The ABA file that credits each AUD payout to its account from the remitter's.

    ``balanced`` adds one last detail record, a debit (transaction code 13) of the file's
    total from the remitter's own account, so that the file's credits and debits net to
    zero. Banks that process a file as a self-balancing batch (HSBC and Bankwest among
    them) require it; others take the total from the user's account themselves and may
    refuse the extra debit. Which one the platform's bank is, only the bank can say: turn
    it off if the bank asks for unbalanced files.

    The text is ASCII with CRLF after every record: write it as bytes
    (``text.encode("ascii")``) or with ``newline=""`` so that the CRLF survives. Raises
    :class:`PayoutLineError` naming the payout and field for any payout it cannot write, and
    :class:`BankFileError` for a file with no payouts or totals past ten digits of cents.
    The result is always one :func:`read_aba` accepts.
    """
    folded_description = _fold(description)
    if not 0 < len(folded_description) <= 12:
        raise BankFileError("the description must be 1 to 12 characters once folded")
    entries = [_credit(line, remitter) for line in _distinct(payouts)]
    if not entries:
        raise BankFileError("an ABA file needs at least one payout")
    total = sum(entry.amount_minor for entry in entries)
    if total >= AMOUNT_LIMIT:
        raise BankFileError(f"the payouts total {total} cents, past the file's ten digits")
    if balanced:
        entries.append(_balancing_debit(remitter, total, folded_description))
    if len(entries) >= COUNT_LIMIT:
        raise BankFileError(f"{len(entries)} entries, past the file's six-digit count")
    records = [
        _descriptive_record(remitter, folded_description, processing_date),
        *(_detail_record(entry) for entry in entries),
        _total_record(entries),
    ]
    text = "".join(record + RECORD_END for record in records)
    read_aba(text)
    return text


def _credit(line: PayoutLine, remitter: Remitter) -> AbaEntry:
    if line.currency != Currency.AUD:
        raise PayoutLineError(line.payout_id, "currency", f"is {line.currency!r}: ABA is AUD only")
    _check_amount(line)
    _check_aba_reference(line)
    bsb = _bsb(line.branch_code)
    if bsb is None:
        raise PayoutLineError(
            line.payout_id, "branch_code", f"{line.branch_code!r} is not a BSB (123-456)"
        )
    account_number = _account_number(line.account_number)
    if account_number is None:
        raise PayoutLineError(line.payout_id, "account_number", _ACCOUNT_NUMBER_RULE)
    title = _fold(line.account_name)[:32].rstrip()
    if not title:
        raise PayoutLineError(line.payout_id, "account_name", "has no character a bank takes")
    return _entry(
        remitter, bsb, account_number, CREDIT, line.amount_minor, title, line.payout_reference
    )


def _balancing_debit(remitter: Remitter, total: int, description: str) -> AbaEntry:
    return _entry(
        remitter,
        _written_bsb(remitter.bsb),
        _written_account_number(remitter.account_number),
        DEBIT,
        total,
        _fold(remitter.user_name),
        description,
    )


def _entry(
    remitter: Remitter,
    bsb: str,
    account_number: str,
    code: str,
    amount: int,
    title: str,
    reference: str,
) -> AbaEntry:
    return AbaEntry(
        bsb=bsb,
        account_number=account_number,
        indicator=" ",
        transaction_code=code,
        amount_minor=amount,
        account_title=title,
        lodgement_reference=reference,
        trace_bsb=_written_bsb(remitter.bsb),
        trace_account_number=_written_account_number(remitter.account_number),
        remitter_name=_fold(remitter.remitter_name),
        withholding_tax_minor=0,
    )


def _descriptive_record(remitter: Remitter, description: str, processing_date: date) -> str:
    return (
        "0"
        + " " * 17
        + "01"
        + remitter.institution
        + " " * 7
        + f"{_fold(remitter.user_name):<26}"
        + remitter.user_id
        + f"{description:<12}"
        + processing_date.strftime("%d%m%y")
        + " " * 40
    )


def _detail_record(entry: AbaEntry) -> str:
    return (
        "1"
        + entry.bsb
        + f"{entry.account_number:>9}"
        + entry.indicator
        + entry.transaction_code
        + f"{entry.amount_minor:010d}"
        + f"{entry.account_title:<32}"
        + f"{entry.lodgement_reference:<18}"
        + entry.trace_bsb
        + f"{entry.trace_account_number:>9}"
        + f"{entry.remitter_name:<16}"
        + f"{entry.withholding_tax_minor:08d}"
    )


def _total_record(entries: list[AbaEntry]) -> str:
    credits, debits = _totals(entries)
    return (
        "7"
        + "999-999"
        + " " * 12
        + f"{abs(credits - debits):010d}"
        + f"{credits:010d}"
        + f"{debits:010d}"
        + " " * 24
        + f"{len(entries):06d}"
        + " " * 40
    )


def _totals(entries: Iterable[AbaEntry]) -> tuple[int, int]:
    """The credit total and the debit total of some entries, in cents."""
    credits = debits = 0
    for entry in entries:
        if entry.transaction_code == DEBIT:
            debits += entry.amount_minor
        else:
            credits += entry.amount_minor
    return credits, debits


# Reading an ABA file


def read_aba(text: str) -> AbaFile:
    """Check an ABA file and read it: every record 120 printable ASCII characters ended by
    CRLF (the last one's CRLF optional); one descriptive record first, detail records,
    one file total record last; every field in its format (a detail record's BSBs
    ``123-456``, its amounts digits above zero); and the file total record's net, credit
    and debit totals and count equal to those of the detail records. Raises
    :class:`BankFileFormatError` naming the line and the fault."""
    records = _records(text)
    if len(records) < 3:
        raise BankFileFormatError(
            None, "an ABA file is a descriptive record, detail records and a file total record"
        )
    last = len(records)
    for number, record in enumerate(records, 1):
        _check_record(number, record, "0" if number == 1 else "7" if number == last else "1")
    header = _read_descriptive(records[0])
    entries = tuple(_read_detail(number, record) for number, record in enumerate(records[1:-1], 2))
    net, credits, debits = _read_total(last, records[-1], entries)
    return AbaFile(
        *header,
        entries=entries,
        net_total_minor=net,
        credit_total_minor=credits,
        debit_total_minor=debits,
    )


def _records(text: str) -> list[str]:
    body = text.removesuffix(RECORD_END)
    records = body.split(RECORD_END)
    for number, record in enumerate(records, 1):
        if "\r" in record or "\n" in record:
            raise BankFileFormatError(number, "records must be separated by CRLF")
    return records


def _check_record(number: int, record: str, record_type: str) -> None:
    if len(record) != RECORD_LENGTH:
        raise BankFileFormatError(number, f"is {len(record)} characters, not {RECORD_LENGTH}")
    if not (record.isascii() and record.isprintable()):
        raise BankFileFormatError(number, "has a character that is not printable ASCII")
    if record[0] != record_type:
        raise BankFileFormatError(
            number, f"is record type {record[0]!r} where type {record_type!r} belongs"
        )


def _read_descriptive(record: str) -> tuple[str, str, str, str, date]:
    """The institution, user name, user id, description and processing date."""
    _blank(1, record, 2, 18)
    if record[18:20] != "01":
        raise BankFileFormatError(1, f"reel sequence number {record[18:20]!r} is not '01'")
    institution = record[20:23]
    if not _INSTITUTION.fullmatch(institution):
        raise BankFileFormatError(1, f"institution {institution!r} is not three capital letters")
    _blank(1, record, 24, 30)
    user_name = _left_justified(1, record, 31, 56, "user name")
    user_id = record[56:62]
    if not _USER_ID.fullmatch(user_id):
        raise BankFileFormatError(1, f"user id {user_id!r} is not six digits")
    description = _left_justified(1, record, 63, 74, "description")
    try:
        processing_date = datetime.strptime(record[74:80], "%d%m%y").date()
    except ValueError:
        raise BankFileFormatError(1, f"processing date {record[74:80]!r} is not DDMMYY") from None
    _blank(1, record, 81, 120)
    return institution, user_name, user_id, description, processing_date


def _read_detail(number: int, record: str) -> AbaEntry:
    bsb = _written_bsb_at(number, record, 2, "BSB")
    account_number = _right_justified(number, record, 9, 17, "account number")
    indicator = record[17]
    if indicator not in INDICATORS:
        raise BankFileFormatError(number, f"indicator {indicator!r} is not blank, N, W, X or Y")
    code = record[18:20]
    if code not in CREDIT_CODES | {DEBIT}:
        raise BankFileFormatError(number, f"transaction code {code!r} is not 13 or 50 to 57")
    amount = _number(number, record, 21, 30, "amount")
    if amount == 0:
        raise BankFileFormatError(number, "amount is zero")
    return AbaEntry(
        bsb=bsb,
        account_number=account_number,
        indicator=indicator,
        transaction_code=code,
        amount_minor=amount,
        account_title=_left_justified(number, record, 31, 62, "title of account"),
        lodgement_reference=_left_justified(number, record, 63, 80, "lodgement reference"),
        trace_bsb=_written_bsb_at(number, record, 81, "trace BSB"),
        trace_account_number=_right_justified(number, record, 88, 96, "trace account number"),
        remitter_name=_left_justified(number, record, 97, 112, "name of remitter"),
        withholding_tax_minor=_number(number, record, 113, 120, "withholding tax"),
    )


def _read_total(number: int, record: str, entries: tuple[AbaEntry, ...]) -> tuple[int, int, int]:
    if record[1:8] != "999-999":
        raise BankFileFormatError(number, f"BSB filler {record[1:8]!r} is not '999-999'")
    _blank(number, record, 9, 20)
    net = _number(number, record, 21, 30, "net total")
    credits = _number(number, record, 31, 40, "credit total")
    debits = _number(number, record, 41, 50, "debit total")
    _blank(number, record, 51, 74)
    count = _number(number, record, 75, 80, "count")
    _blank(number, record, 81, 120)
    entry_credits, entry_debits = _totals(entries)
    for name, stated, actual in (
        ("credit total", credits, entry_credits),
        ("debit total", debits, entry_debits),
        ("net total", net, abs(entry_credits - entry_debits)),
        ("count", count, len(entries)),
    ):
        if stated != actual:
            raise BankFileFormatError(
                number, f"{name} is {stated} where the detail records make {actual}"
            )
    return net, credits, debits


def _field(record: str, first: int, last: int) -> str:
    """Positions ``first`` to ``last`` of a record, 1-based and inclusive as the
    specification writes them."""
    return record[first - 1 : last]


def _blank(number: int, record: str, first: int, last: int) -> None:
    if _field(record, first, last).strip(" "):
        raise BankFileFormatError(number, f"positions {first}-{last} must be blank")


def _left_justified(number: int, record: str, first: int, last: int, name: str) -> str:
    value = _field(record, first, last)
    if not value.strip(" "):
        raise BankFileFormatError(number, f"{name} is blank")
    if value.startswith(" "):
        raise BankFileFormatError(number, f"{name} {value!r} is not left-justified")
    return value.rstrip(" ")


def _right_justified(number: int, record: str, first: int, last: int, name: str) -> str:
    value = _field(record, first, last).lstrip(" ")
    if not re.fullmatch(r"[0-9][0-9-]*", value) or not value.strip("0-"):
        raise BankFileFormatError(
            number, f"{name} {_field(record, first, last)!r} is not right-justified digits"
        )
    return value


def _number(number: int, record: str, first: int, last: int, name: str) -> int:
    value = _field(record, first, last)
    if not _DIGITS.fullmatch(value):
        raise BankFileFormatError(number, f"{name} {value!r} is not zero-filled digits")
    return int(value)


def _written_bsb_at(number: int, record: str, first: int, name: str) -> str:
    value = _field(record, first, first + 6)
    if not _WRITTEN_BSB.fullmatch(value):
        raise BankFileFormatError(number, f"{name} {value!r} is not 123-456")
    return value


# Writing and reading the CSV


def build_payouts_csv(payouts: Iterable[PayoutLine], processing_date: date) -> str:
    """The CSV of payouts in any currency (:data:`CSV_HEADER`), each row dated
    ``processing_date``. Every field is written as given, so a payout is refused
    (:class:`PayoutLineError`) rather than changed: a reference of more than 18 characters,
    a currency partnerpay does not take, an amount not above zero or of ten digits of
    cents or more, a blank name, branch code or account number, any control character, or
    a field that starts as a spreadsheet formula does (``=``, ``+``, ``-``, ``@``)."""
    lines = list(_distinct(payouts))
    if not lines:
        raise BankFileError("a payouts file needs at least one payout")
    for line in lines:
        _check_csv_line(line)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=RECORD_END)
    writer.writerow(CSV_HEADER)
    writer.writerows(
        (
            line.payout_reference,
            processing_date.isoformat(),
            line.currency,
            format_minor(line.amount_minor),
            line.account_name,
            line.branch_code,
            line.account_number,
            str(line.firm_id),
            str(line.payout_id),
        )
        for line in lines
    )
    return buffer.getvalue()


def read_payouts_csv(text: str) -> PayoutCsv:
    """Check a payouts CSV and read it: the header exactly :data:`CSV_HEADER`; every row
    nine fields, one date for all (``YYYY-MM-DD``), an amount with two decimals above
    zero, canonical UUIDs, no payout twice, and every field as :func:`build_payouts_csv`
    would write it. Raises :class:`BankFileFormatError` naming the line and the fault."""
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or tuple(rows[0]) != CSV_HEADER:
        raise BankFileFormatError(1, f"the header must be {','.join(CSV_HEADER)}")
    if len(rows) == 1:
        raise BankFileFormatError(None, "a payouts file needs at least one payout")
    lines: list[PayoutLine] = []
    dates: set[date] = set()
    seen: set[UUID] = set()
    for number, row in enumerate(rows[1:], 2):
        line, row_date = _read_csv_row(number, row)
        dates.add(row_date)
        if len(dates) > 1:
            raise BankFileFormatError(number, "every row of a payouts file has the same date")
        if line.payout_id in seen:
            raise BankFileFormatError(number, f"payout {line.payout_id} comes twice")
        try:
            _check_csv_line(line)
        except PayoutLineError as error:
            raise BankFileFormatError(number, str(error)) from None
        seen.add(line.payout_id)
        lines.append(line)
    return PayoutCsv(processing_date=dates.pop(), lines=tuple(lines))


def _read_csv_row(number: int, row: list[str]) -> tuple[PayoutLine, date]:
    if len(row) != len(CSV_HEADER):
        raise BankFileFormatError(number, f"has {len(row)} fields, not {len(CSV_HEADER)}")
    reference, row_date, currency, amount, name, branch, account, firm_id, payout_id = row
    if not _CSV_AMOUNT.fullmatch(amount):
        raise BankFileFormatError(number, f"amount {amount!r} is not a decimal with two decimals")
    line = PayoutLine(
        payout_id=_canonical_uuid(number, payout_id, "payout_id"),
        firm_id=_canonical_uuid(number, firm_id, "firm_id"),
        payout_reference=reference,
        amount_minor=to_minor(amount),
        currency=currency,
        account_name=name,
        branch_code=branch,
        account_number=account,
    )
    return line, _csv_date(number, row_date)


def _csv_date(number: int, text: str) -> date:
    try:
        if _CSV_DATE.fullmatch(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise BankFileFormatError(number, f"date {text!r} is not YYYY-MM-DD")


def _canonical_uuid(number: int, text: str, name: str) -> UUID:
    try:
        value = UUID(text)
    except ValueError:
        value = None
    if value is None or str(value) != text:
        raise BankFileFormatError(number, f"{name} {text!r} is not a UUID in its canonical form")
    return value


def _check_csv_line(line: PayoutLine) -> None:
    if line.currency not in _CURRENCIES:
        raise PayoutLineError(line.payout_id, "currency", f"{line.currency!r} is not one we take")
    _check_amount(line)
    for field in ("payout_reference", "account_name", "branch_code", "account_number"):
        value: str = getattr(line, field)
        if not value.strip():
            raise PayoutLineError(line.payout_id, field, "is blank")
        if not value.isprintable():
            raise PayoutLineError(line.payout_id, field, "has a control character")
        if value.startswith(_CSV_FORMULA_START):
            raise PayoutLineError(line.payout_id, field, f"{value!r} starts as a formula does")
    if len(line.payout_reference) > REFERENCE_LENGTH:
        raise PayoutLineError(
            line.payout_id, "payout_reference", f"is longer than {REFERENCE_LENGTH} characters"
        )


# What both formats share


_ACCOUNT_NUMBER_RULE = "must be 1 to 9 digits (spaces and hyphens aside), not all zeros"


def _distinct(payouts: Iterable[PayoutLine]) -> Iterable[PayoutLine]:
    """The payouts, refusing one that comes twice: it would be paid twice."""
    seen: set[UUID] = set()
    for line in payouts:
        if line.payout_id in seen:
            raise PayoutLineError(line.payout_id, "payout_id", "comes twice")
        seen.add(line.payout_id)
        yield line


def _check_amount(line: PayoutLine) -> None:
    amount = line.amount_minor
    if type(amount) is not int or not 0 < amount < AMOUNT_LIMIT:
        raise PayoutLineError(
            line.payout_id,
            "amount_minor",
            f"{amount!r} must be whole minor units above zero and below {AMOUNT_LIMIT}",
        )


def _check_aba_reference(line: PayoutLine) -> None:
    reference = line.payout_reference
    if not 0 < len(reference) <= REFERENCE_LENGTH:
        raise PayoutLineError(
            line.payout_id, "payout_reference", f"must be 1 to {REFERENCE_LENGTH} characters"
        )
    if not set(reference) <= ALLOWED or reference[0] in " 0-" or reference.endswith(" "):
        raise PayoutLineError(
            line.payout_id,
            "payout_reference",
            f"{reference!r} must be A-Z, 0-9, space and & ' ( ) + , - . /, not start with a "
            "space, a zero or a hyphen, and not end with a space",
        )


def _fold(text: str) -> str:
    """A name in the characters an ABA file takes (the module's docstring says how)."""
    bare = "".join(
        char for char in unicodedata.normalize("NFKD", text) if not unicodedata.combining(char)
    )
    upper = bare.upper().translate(_TYPOGRAPHIC)
    return " ".join("".join(char if char in ALLOWED else " " for char in upper).split())


def _bsb(text: str) -> str | None:
    """``123-456`` from a BSB with or without its hyphen; None if it is not one."""
    return f"{text[:3]}-{text[-3:]}" if _BSB.fullmatch(text) else None


def _written_bsb(text: str) -> str:
    bsb = _bsb(text)
    assert bsb is not None, "a Remitter's BSB was checked when it was made"
    return bsb


def _account_number(text: str) -> str | None:
    """The digits of an account number without its spaces and hyphens (leading zeros
    kept: they are part of the number); None if it is not 1 to 9 digits or all zeros."""
    digits = text.replace(" ", "").replace("-", "")
    return digits if _ACCOUNT_NUMBER.fullmatch(digits) and digits.strip("0") else None


def _written_account_number(text: str) -> str:
    account_number = _account_number(text)
    assert account_number is not None, "a Remitter's account number was checked"
    return account_number


# Settings


def remitter_from_settings(settings: Settings) -> Remitter:
    """The platform's :class:`Remitter` from the ``PARTNERPAY_ABA_*`` settings. Raises
    :class:`~partnerpay.config.ConfigurationError` naming the setting that cannot be
    written, and, in production, naming every one still at its sandbox default: a file
    with those would go to no real account."""
    names = [field.name for field in fields(Remitter)]
    if settings.env == Environment.PRODUCTION:
        unset = [
            f"PARTNERPAY_ABA_{name.upper()}"
            for name in names
            if getattr(settings, f"aba_{name}") == Settings.model_fields[f"aba_{name}"].default
        ]
        if unset:
            raise ConfigurationError(
                f"PARTNERPAY_ENV=production needs the platform's own bank details for payout "
                f"files: {', '.join(unset)} still have their sandbox values"
            )
    try:
        return Remitter(
            institution=settings.aba_institution,
            user_name=settings.aba_user_name,
            user_id=settings.aba_user_id,
            bsb=settings.aba_bsb,
            account_number=settings.aba_account_number,
            remitter_name=settings.aba_remitter_name,
        )
    except RemitterError as error:
        raise ConfigurationError(f"PARTNERPAY_ABA_{error.field.upper()} {error.reason}") from None

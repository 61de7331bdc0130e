"""The payout bank files: the ABA (direct entry) file for AUD and the CSV for every
currency, written field by field, read back, and refused whole or in part."""

import random
from dataclasses import replace
from datetime import date
from uuid import UUID

import pytest

from partnerpay.config import ConfigurationError, Environment, Settings
from partnerpay.payouts.bankfiles import (
    CSV_HEADER,
    BankFileError,
    BankFileFormatError,
    PayoutLine,
    PayoutLineError,
    Remitter,
    RemitterError,
    build_aba,
    build_payouts_csv,
    read_aba,
    read_payouts_csv,
    remitter_from_settings,
)
from tests.support import arabic_indic, fullwidth

PROCESSING_DATE = date(2024, 3, 15)
FIRM = UUID("5b1c2a7e-9d3f-4e60-8a1b-2c3d4e5f6a7b")
REMITTER = Remitter(
    institution="CBA",
    user_name="Partnerpay Pty Ltd",
    user_id="301500",
    bsb="062-000",
    account_number="1234 5678",
    remitter_name="Partnerpay",
)
OFFICE = PayoutLine(
    payout_id=UUID("00000000-0000-4000-8000-000000000001"),
    firm_id=FIRM,
    payout_reference="PP-0001",
    amount_minor=125_000,
    currency="AUD",
    account_name="Smith Legal Office",
    branch_code="062-001",
    account_number="12345678",
)
TRUST = PayoutLine(
    payout_id=UUID("00000000-0000-4000-8000-000000000002"),
    firm_id=FIRM,
    payout_reference="PP-0002",
    amount_minor=99,
    currency="AUD",
    # Folded: accents off, a typographic apostrophe and an em dash made ASCII, and cut
    # to the title's 32 characters.
    account_name="Müller & Söhne’s Trust — Account No. 2 (Sydney)",  # noqa: RUF001
    branch_code="062001",
    account_number="00-1234",
)

# The example, computed by hand from the layout, one field a piece.
HEADER = (
    "0"  # record type
    "                 "  # 2-18 blank (17)
    "01"  # 19-20 reel sequence number
    "CBA"  # 21-23 financial institution
    "       "  # 24-30 blank (7)
    "PARTNERPAY PTY LTD        "  # 31-56 user preferred specification (26)
    "301500"  # 57-62 APCA user id
    "PAYOUTS     "  # 63-74 description (12)
    "150324"  # 75-80 processing date, DDMMYY
    "                                        "  # 81-120 blank (40)
)
OFFICE_RECORD = (
    "1"  # record type
    "062-001"  # 2-8 BSB
    " 12345678"  # 9-17 account number, right-justified (9)
    " "  # 18 indicator
    "50"  # 19-20 transaction code: credit
    "0000125000"  # 21-30 amount in cents (10)
    "SMITH LEGAL OFFICE              "  # 31-62 title of account (32)
    "PP-0001           "  # 63-80 lodgement reference (18)
    "062-000"  # 81-87 trace BSB
    " 12345678"  # 88-96 trace account number (9)
    "PARTNERPAY      "  # 97-112 name of remitter (16)
    "00000000"  # 113-120 withholding tax
)
TRUST_RECORD = (
    "1"
    "062-001"  # the hyphen put in
    "   001234"  # the hyphen taken out, the leading zeros kept
    " "
    "50"
    "0000000099"
    "MULLER & SOHNE'S TRUST - ACCOUNT"  # exactly 32
    "PP-0002           "
    "062-000"
    " 12345678"
    "PARTNERPAY      "
    "00000000"
)
BALANCING_RECORD = (
    "1"
    "062-000"  # the remitter's own account
    " 12345678"
    " "
    "13"  # debit
    "0000125099"  # the file's total
    "PARTNERPAY PTY LTD              "
    "PAYOUTS           "  # the description
    "062-000"
    " 12345678"
    "PARTNERPAY      "
    "00000000"
)
BALANCED_TOTAL = (
    "7"  # record type
    "999-999"  # 2-8 BSB format filler
    "            "  # 9-20 blank (12)
    "0000000000"  # 21-30 net total
    "0000125099"  # 31-40 credit total
    "0000125099"  # 41-50 debit total
    "                        "  # 51-74 blank (24)
    "000003"  # 75-80 count of type 1 records
    "                                        "  # 81-120 blank (40)
)
UNBALANCED_TOTAL = (
    "7"
    "999-999"
    "            "
    "0000125099"  # net: the credits, there being no debit
    "0000125099"
    "0000000000"
    "                        "
    "000002"
    "                                        "
)
BALANCED_FILE = "".join(
    record + "\r\n" for record in (HEADER, OFFICE_RECORD, TRUST_RECORD, BALANCING_RECORD)
) + (BALANCED_TOTAL + "\r\n")
UNBALANCED_FILE = "".join(
    record + "\r\n" for record in (HEADER, OFFICE_RECORD, TRUST_RECORD, UNBALANCED_TOTAL)
)


def payout(**changes: object) -> PayoutLine:
    return replace(OFFICE, **changes)  # type: ignore[arg-type]


def records(text: str) -> list[str]:
    return text.removesuffix("\r\n").split("\r\n")


def with_field(record: str, first: int, last: int, value: str) -> str:
    """A record with positions ``first`` to ``last`` (1-based, inclusive) replaced."""
    assert len(value) == last - first + 1
    return record[: first - 1] + value + record[last:]


def joined(lines: list[str]) -> str:
    return "".join(line + "\r\n" for line in lines)


# The ABA file, written


def test_the_example_file_is_written_to_the_character() -> None:
    text = build_aba([OFFICE, TRUST], REMITTER, PROCESSING_DATE)

    assert [len(record) for record in records(BALANCED_FILE)] == [120] * 5
    assert text == BALANCED_FILE


def test_an_unbalanced_file_has_no_debit_and_nets_the_credits() -> None:
    text = build_aba([OFFICE, TRUST], REMITTER, PROCESSING_DATE, balanced=False)

    assert [len(record) for record in records(UNBALANCED_FILE)] == [120] * 4
    assert text == UNBALANCED_FILE


def test_every_record_is_120_ascii_characters_ended_by_crlf() -> None:
    text = build_aba([OFFICE, TRUST], REMITTER, PROCESSING_DATE)

    assert text.isascii()
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")
    assert all(len(record) == 120 for record in records(text))


def test_the_description_is_the_headers_and_the_balancing_debits_reference() -> None:
    text = build_aba([OFFICE], REMITTER, PROCESSING_DATE, description="March payout")

    header, _, debit, _ = records(text)
    assert header[62:74] == "MARCH PAYOUT"
    assert debit[62:80] == "MARCH PAYOUT      "


def test_a_description_past_twelve_characters_or_blank_is_refused() -> None:
    with pytest.raises(BankFileError, match="description"):
        build_aba([OFFICE], REMITTER, PROCESSING_DATE, description="MARCH PAYOUTS")
    with pytest.raises(BankFileError, match="description"):
        build_aba([OFFICE], REMITTER, PROCESSING_DATE, description="☺")


@pytest.mark.parametrize(
    ("name", "title"),
    [
        ("Smith_Legal #1 ☺", "SMITH LEGAL 1"),  # outside the set: a space, runs made one
        ("Straße Partners", "STRASSE PARTNERS"),
        ("ＦＵＬＬＷＩＤＴＨ Ｌａｗ", "FULLWIDTH LAW"),  # noqa: RUF001
        ("  o'brien   & co.  ", "O'BRIEN & CO."),
        ("Çelik, Ñúñez (Trust)/Office", "CELIK, NUNEZ (TRUST)/OFFICE"),
        ("A" * 31 + " B", "A" * 31),  # cut at 32, the trailing blank dropped
    ],
)
def test_an_account_name_is_folded_into_the_characters_banks_take(name: str, title: str) -> None:
    text = build_aba([payout(account_name=name)], REMITTER, PROCESSING_DATE)

    assert read_aba(text).entries[0].account_title == title


def test_the_file_reads_back_as_it_was_written() -> None:
    aba = read_aba(build_aba([OFFICE, TRUST], REMITTER, PROCESSING_DATE))

    assert (aba.institution, aba.user_name, aba.user_id, aba.description) == (
        "CBA",
        "PARTNERPAY PTY LTD",
        "301500",
        "PAYOUTS",
    )
    assert aba.processing_date == PROCESSING_DATE
    credits = aba.entries[:2]
    assert [(e.bsb, e.account_number, e.amount_minor) for e in credits] == [
        ("062-001", "12345678", 125_000),
        ("062-001", "001234", 99),
    ]
    assert [e.lodgement_reference for e in credits] == ["PP-0001", "PP-0002"]
    assert {(e.transaction_code, e.trace_bsb, e.trace_account_number) for e in credits} == {
        ("50", "062-000", "12345678")
    }
    debit = aba.entries[2]
    assert (debit.transaction_code, debit.bsb, debit.amount_minor) == ("13", "062-000", 125_099)
    assert (aba.net_total_minor, aba.credit_total_minor, aba.debit_total_minor) == (
        0,
        125_099,
        125_099,
    )


# The ABA file, refused while it is built


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("branch_code", "12-3456"),
        ("branch_code", "1234567"),
        ("branch_code", "062 001"),
        ("branch_code", "06a-001"),
        ("branch_code", ""),
        ("branch_code", fullwidth("062-001")),
        ("account_number", ""),
        ("account_number", "1234567890"),
        ("account_number", "1234567a"),
        ("account_number", "000-000"),
        ("account_number", arabic_indic("12345")),
        ("amount_minor", 0),
        ("amount_minor", -1),
        ("amount_minor", 10**10),
        ("amount_minor", 1250.0),
        ("amount_minor", True),
        ("payout_reference", ""),
        ("payout_reference", "P" * 19),
        ("payout_reference", "pp-0001"),
        ("payout_reference", "0001"),
        ("payout_reference", "-0001"),
        ("payout_reference", " PP-0001"),
        ("payout_reference", "PP-0001 "),
        ("payout_reference", "PP#0001"),
        ("payout_reference", "PP-000É"),
        ("currency", "NZD"),
        ("currency", "aud"),
        ("account_name", "☺ ☺"),
        ("account_name", ""),
    ],
)
def test_a_payout_the_file_cannot_carry_is_refused_by_payout_and_field(
    field: str, value: object
) -> None:
    bad = payout(**{field: value})

    with pytest.raises(PayoutLineError) as refused:
        build_aba([TRUST, bad], REMITTER, PROCESSING_DATE)

    assert isinstance(refused.value, ValueError)
    assert refused.value.payout_id == OFFICE.payout_id
    assert refused.value.field == field
    assert str(OFFICE.payout_id) in str(refused.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("branch_code", "062001"),
        ("account_number", "1"),
        ("account_number", "123 456-789"),
        ("amount_minor", 1),
        ("amount_minor", 10**10 - 1),
        ("payout_reference", "P" * 18),
        ("payout_reference", "PP 1 & (2)+,-./'"),
    ],
)
def test_the_edges_of_what_a_payout_may_be_are_taken(field: str, value: object) -> None:
    read_aba(build_aba([payout(**{field: value})], REMITTER, PROCESSING_DATE, balanced=False))


def test_a_file_of_no_payouts_is_refused() -> None:
    with pytest.raises(BankFileError, match="at least one payout"):
        build_aba([], REMITTER, PROCESSING_DATE)


def test_a_payout_that_comes_twice_is_refused() -> None:
    again = replace(TRUST, payout_reference="PP-0003")

    with pytest.raises(PayoutLineError, match="comes twice") as refused:
        build_aba([OFFICE, TRUST, again], REMITTER, PROCESSING_DATE)

    assert refused.value.payout_id == TRUST.payout_id


@pytest.mark.parametrize("balanced", [True, False])
def test_a_total_past_ten_digits_of_cents_is_refused(balanced: bool) -> None:
    first = payout(amount_minor=6 * 10**9)
    second = replace(TRUST, amount_minor=4 * 10**9)

    with pytest.raises(BankFileError, match="ten digits"):
        build_aba([first, second], REMITTER, PROCESSING_DATE, balanced=balanced)
    build_aba(
        [first, replace(second, amount_minor=4 * 10**9 - 1)],
        REMITTER,
        PROCESSING_DATE,
        balanced=balanced,
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("institution", "cba"),
        ("institution", "CB"),
        ("institution", "CBAA"),
        ("user_id", "30150"),
        ("user_id", "3015000"),
        ("user_id", "30150a"),
        ("bsb", "062-0000"),
        ("bsb", "062_000"),
        ("account_number", "0000"),
        ("account_number", "1234567890"),
        ("user_name", "A" * 27),
        ("user_name", "☺"),
        ("remitter_name", "A" * 17),
        ("remitter_name", " "),
    ],
)
def test_a_remitter_the_file_cannot_name_is_refused_by_field(field: str, value: str) -> None:
    with pytest.raises(RemitterError) as refused:
        replace(REMITTER, **{field: value})

    assert isinstance(refused.value, ValueError)
    assert refused.value.field == field


# The ABA file, refused when it is read


def test_a_file_without_its_last_crlf_is_read() -> None:
    assert len(read_aba(BALANCED_FILE.removesuffix("\r\n")).entries) == 3


def corrupt(index: int, first: int, last: int, value: str) -> str:
    lines = records(BALANCED_FILE)
    lines[index] = with_field(lines[index], first, last, value)
    return joined(lines)


@pytest.mark.parametrize(
    ("text", "line", "fault"),
    [
        (corrupt(4, 31, 40, "0000125100"), 5, "credit total is 125100 where"),
        (corrupt(4, 41, 50, "0000125098"), 5, "debit total is 125098 where"),
        (corrupt(4, 21, 30, "0000000001"), 5, "net total is 1 where"),
        (corrupt(4, 75, 80, "000002"), 5, "count is 2 where the detail records make 3"),
        (corrupt(4, 75, 80, "000004"), 5, "count is 4 where"),
        (corrupt(3, 21, 30, "0000125098"), 5, "debit total is 125099 where"),
        (corrupt(1, 2, 8, "062 001"), 2, "BSB '062 001' is not 123-456"),
        (corrupt(2, 2, 8, "0620011"), 3, "BSB '0620011' is not 123-456"),
        (corrupt(1, 81, 87, "062-0O0"), 2, "trace BSB '062-0O0'"),
        (corrupt(1, 21, 30, "000012500O"), 2, "amount"),
        (corrupt(1, 21, 30, "0000000000"), 2, "amount is zero"),
        (corrupt(1, 19, 20, "99"), 2, "transaction code '99'"),
        (corrupt(1, 18, 18, "Z"), 2, "indicator 'Z'"),
        (corrupt(1, 9, 17, "1234 5678"), 2, "account number"),
        (corrupt(1, 9, 17, "         "), 2, "account number"),
        (corrupt(1, 31, 32, "  "), 2, "title of account '  ITH LEGAL OFFICE"),
        (corrupt(1, 97, 112, " " * 16), 2, "name of remitter is blank"),
        (corrupt(1, 113, 120, "0000000 "), 2, "withholding tax"),
        (corrupt(0, 19, 20, "02"), 1, "reel sequence number '02'"),
        (corrupt(0, 21, 23, "cba"), 1, "institution 'cba'"),
        (corrupt(0, 57, 62, "30150 "), 1, "user id '30150 '"),
        (corrupt(0, 75, 80, "310224"), 1, "processing date '310224'"),
        (corrupt(0, 10, 10, "X"), 1, "positions 2-18 must be blank"),
        (corrupt(0, 100, 100, "X"), 1, "positions 81-120 must be blank"),
        (corrupt(0, 63, 74, " " * 12), 1, "description is blank"),
        (corrupt(4, 2, 8, "999-998"), 5, "BSB filler '999-998'"),
        (corrupt(4, 60, 60, "0"), 5, "positions 51-74 must be blank"),
        (corrupt(1, 50, 50, "é"), 2, "not printable ASCII"),
        (corrupt(1, 50, 50, "\t"), 2, "not printable ASCII"),
    ],
)
def test_a_corrupted_file_is_refused_naming_the_line(text: str, line: int, fault: str) -> None:
    with pytest.raises(BankFileFormatError) as refused:
        read_aba(text)

    assert refused.value.line == line
    assert fault in str(refused.value)


@pytest.mark.parametrize(("index", "length"), [(1, 119), (1, 121), (0, 119), (4, 0)])
def test_a_record_of_any_other_length_than_120_is_refused(index: int, length: int) -> None:
    lines = records(BALANCED_FILE)
    lines[index] = (lines[index] + " ")[:length]

    with pytest.raises(BankFileFormatError, match=f"is {length} characters, not 120") as refused:
        read_aba(joined(lines))

    assert refused.value.line == index + 1


@pytest.mark.parametrize(
    ("order", "line", "fault"),
    [
        ([1, 0, 2, 3, 4], 1, "type '1' where type '0' belongs"),
        ([0, 1, 2, 4, 3], 4, "type '7' where type '1' belongs"),
        ([0, 1, 0, 3, 4], 3, "type '0' where type '1' belongs"),
        ([0, 1, 2, 3], 4, "type '1' where type '7' belongs"),
        ([1, 2, 3, 4], 1, "type '1' where type '0' belongs"),
    ],
)
def test_records_out_of_order_are_refused(order: list[int], line: int, fault: str) -> None:
    lines = records(BALANCED_FILE)

    with pytest.raises(BankFileFormatError, match=fault) as refused:
        read_aba(joined([lines[index] for index in order]))

    assert refused.value.line == line


@pytest.mark.parametrize(
    "text",
    ["", "\r\n", HEADER + "\r\n", HEADER + "\r\n" + BALANCED_TOTAL + "\r\n"],
)
def test_a_file_without_header_detail_and_total_is_refused(text: str) -> None:
    with pytest.raises(BankFileFormatError):
        read_aba(text)


@pytest.mark.parametrize("separator", ["\n", "\r", "\n\r"])
def test_records_not_separated_by_crlf_are_refused(separator: str) -> None:
    text = separator.join(records(BALANCED_FILE))

    with pytest.raises(BankFileFormatError, match="CRLF"):
        read_aba(text)


# The CSV

CSV_FILE = (
    "payout_reference,date,currency,amount,account_name,branch_code,account_number,firm_id,"
    "payout_id\r\n"
    "PP-0001,2024-03-15,AUD,1250.00,Smith Legal Office,062-001,12345678,"
    "5b1c2a7e-9d3f-4e60-8a1b-2c3d4e5f6a7b,00000000-0000-4000-8000-000000000001\r\n"
    'PP-0003,2024-03-15,NZD,0.05,"Ngā Kaiāwhina, ""Trust""",01-0102,0123456-00,'
    "5b1c2a7e-9d3f-4e60-8a1b-2c3d4e5f6a7b,00000000-0000-4000-8000-000000000003\r\n"
)
NZD = PayoutLine(
    payout_id=UUID("00000000-0000-4000-8000-000000000003"),
    firm_id=FIRM,
    payout_reference="PP-0003",
    amount_minor=5,
    currency="NZD",
    account_name='Ngā Kaiāwhina, "Trust"',
    branch_code="01-0102",
    account_number="0123456-00",
)


def test_the_csv_is_written_to_the_character() -> None:
    assert build_payouts_csv([OFFICE, NZD], PROCESSING_DATE) == CSV_FILE
    assert CSV_FILE.split("\r\n")[0] == ",".join(CSV_HEADER)


def test_the_csv_reads_back_as_it_was_written() -> None:
    read = read_payouts_csv(build_payouts_csv([OFFICE, NZD, TRUST], PROCESSING_DATE))

    assert read.processing_date == PROCESSING_DATE
    assert read.lines == (OFFICE, NZD, TRUST)
    assert read.totals_minor == {"AUD": 125_099, "NZD": 5}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("currency", "XYZ"),
        ("currency", "nzd"),
        ("amount_minor", 0),
        ("amount_minor", 10**10),
        ("amount_minor", 0.5),
        ("payout_reference", "P" * 19),
        ("payout_reference", " "),
        ("account_name", "=HYPERLINK(1)"),
        ("account_name", "@SUM(A1)"),
        ("account_name", "Smith\r\nLegal"),
        ("account_name", ""),
        ("branch_code", "+61"),
        ("account_number", "-1"),
        ("account_number", "123\t456"),
    ],
)
def test_a_payout_the_csv_cannot_carry_as_given_is_refused(field: str, value: object) -> None:
    with pytest.raises(PayoutLineError) as refused:
        build_payouts_csv([NZD, payout(**{field: value})], PROCESSING_DATE)

    assert refused.value.payout_id == OFFICE.payout_id
    assert refused.value.field == field


def test_a_csv_of_no_payouts_or_one_twice_is_refused() -> None:
    with pytest.raises(BankFileError, match="at least one payout"):
        build_payouts_csv([], PROCESSING_DATE)
    with pytest.raises(PayoutLineError, match="comes twice"):
        build_payouts_csv([NZD, OFFICE, NZD], PROCESSING_DATE)


def csv_lines() -> list[str]:
    return CSV_FILE.removesuffix("\r\n").split("\r\n")


def csv_with(line: int, field: int, value: str) -> str:
    lines = csv_lines()
    cells = lines[line - 1].split(",")
    cells[field] = value
    lines[line - 1] = ",".join(cells)
    return joined(lines)


@pytest.mark.parametrize(
    ("text", "line", "fault"),
    [
        (csv_with(1, 3, "amount_aud"), 1, "the header must be"),
        (joined(csv_lines()[1:]), 1, "the header must be"),
        ("", 1, "the header must be"),
        (joined(csv_lines()[:1]), None, "at least one payout"),
        (csv_with(2, 3, "1250.0"), 2, "amount '1250.0'"),
        (csv_with(2, 3, "1250"), 2, "amount '1250'"),
        (csv_with(2, 3, "-1.00"), 2, "amount '-1.00'"),
        (csv_with(2, 3, "1e3"), 2, "amount '1e3'"),
        (csv_with(2, 3, arabic_indic("12.00")), 2, "amount"),
        (csv_with(2, 3, "0.00"), 2, "amount_minor 0"),
        (csv_with(2, 1, "2024-02-30"), 2, "date '2024-02-30'"),
        (csv_with(2, 1, "20240315"), 2, "date '20240315'"),
        (csv_with(2, 1, "2024-03-16"), 3, "the same date"),
        (csv_with(2, 2, "EUR"), 2, "currency 'EUR'"),
        (csv_with(2, 8, "00000000-0000-4000-8000-000000000003"), 3, "comes twice"),
        (csv_with(2, 8, "00000000000040008000000000000001"), 2, "payout_id"),
        (csv_with(2, 7, "5B1C2A7E-9D3F-4E60-8A1B-2C3D4E5F6A7B"), 2, "firm_id"),
        (csv_with(2, 4, "=cmd"), 2, "starts as a formula does"),
        (csv_with(2, 0, "PP-0001,extra"), 2, "has 10 fields, not 9"),
        (CSV_FILE + "\r\n", 4, "has 0 fields, not 9"),
    ],
)
def test_a_corrupted_csv_is_refused_naming_the_line(
    text: str, line: int | None, fault: str
) -> None:
    with pytest.raises(BankFileFormatError) as refused:
        read_payouts_csv(text)

    assert refused.value.line == line
    assert fault in str(refused.value)


# Many payouts


def random_payout(rng: random.Random, number: int, currency: str) -> PayoutLine:
    return PayoutLine(
        payout_id=UUID(int=rng.getrandbits(128)),
        firm_id=UUID(int=rng.getrandbits(128)),
        payout_reference=f"PP-{number:06d}",
        # Mostly everyday amounts, sometimes up to the largest one a record takes.
        amount_minor=rng.choice([rng.randint(1, 10**6), rng.randint(1, 10**10 - 1)]),
        currency=currency,
        account_name=rng.choice(["Smith Legal", "Ōtautahi Law – Trust", "A & B", "X"]),  # noqa: RUF001
        branch_code=f"{rng.randint(0, 999):03d}{rng.choice(['-', ''])}{rng.randint(0, 999):03d}",
        account_number=str(rng.randint(1, 999_999_999)),
    )


@pytest.mark.parametrize("seed", range(20))
def test_the_totals_read_back_are_the_sums_of_the_payouts(seed: int) -> None:
    rng = random.Random(seed)
    count = rng.randint(1, 60)
    lines = [random_payout(rng, number, "AUD") for number in range(count)]
    while sum(line.amount_minor for line in lines) >= 10**10:
        lines.pop()
    total = sum(line.amount_minor for line in lines)
    balanced = rng.random() < 0.5

    aba = read_aba(build_aba(lines, REMITTER, PROCESSING_DATE, balanced=balanced))

    assert aba.credit_total_minor == total
    assert aba.debit_total_minor == (total if balanced else 0)
    assert aba.net_total_minor == (0 if balanced else total)
    assert len(aba.entries) == len(lines) + balanced
    assert [entry.amount_minor for entry in aba.entries[: len(lines)]] == [
        line.amount_minor for line in lines
    ]
    assert [entry.lodgement_reference for entry in aba.entries[: len(lines)]] == [
        line.payout_reference for line in lines
    ]


@pytest.mark.parametrize("seed", range(20))
def test_the_csv_totals_read_back_are_each_currencys_sums(seed: int) -> None:
    rng = random.Random(seed)
    lines = [
        random_payout(rng, number, rng.choice(["AUD", "CAD", "GBP", "NZD", "USD"]))
        for number in range(rng.randint(1, 60))
    ]
    expected: dict[str, int] = {}
    for line in lines:
        expected[line.currency] = expected.get(line.currency, 0) + line.amount_minor

    read = read_payouts_csv(build_payouts_csv(lines, PROCESSING_DATE))

    assert read.lines == tuple(lines)
    assert read.totals_minor == expected


# The remitter from settings


ABA_SETTINGS = {
    "aba_institution": "WBC",
    "aba_user_name": "PARTNERPAY PTY LTD",
    "aba_user_id": "123456",
    "aba_bsb": "032-000",
    "aba_account_number": "987654",
    "aba_remitter_name": "PARTNERPAY",
}


def test_the_sandbox_defaults_make_a_remitter_that_writes_a_file() -> None:
    remitter = remitter_from_settings(Settings())

    assert remitter == Remitter(
        institution="CBA",
        user_name="PARTNERPAY SANDBOX",
        user_id="000000",
        bsb="000-000",
        account_number="123456789",
        remitter_name="PARTNERPAY TEST",
    )
    read_aba(build_aba([OFFICE], remitter, PROCESSING_DATE))


def test_production_refuses_every_setting_left_at_its_sandbox_default() -> None:
    settings = Settings(env=Environment.PRODUCTION, aba_institution="WBC")

    with pytest.raises(ConfigurationError) as refused:
        remitter_from_settings(settings)

    message = str(refused.value)
    assert "PARTNERPAY_ABA_INSTITUTION" not in message
    for name in ("USER_NAME", "USER_ID", "BSB", "ACCOUNT_NUMBER", "REMITTER_NAME"):
        assert f"PARTNERPAY_ABA_{name}" in message


def test_production_takes_its_own_settings() -> None:
    settings = Settings(env=Environment.PRODUCTION, **ABA_SETTINGS)  # type: ignore[arg-type]

    assert remitter_from_settings(settings) == Remitter(
        institution="WBC",
        user_name="PARTNERPAY PTY LTD",
        user_id="123456",
        bsb="032-000",
        account_number="987654",
        remitter_name="PARTNERPAY",
    )


def test_a_setting_that_cannot_be_written_is_named() -> None:
    settings = Settings(**{**ABA_SETTINGS, "aba_bsb": "32-000"})  # type: ignore[arg-type]

    with pytest.raises(ConfigurationError, match="PARTNERPAY_ABA_BSB '32-000' is not a BSB"):
        remitter_from_settings(settings)

"""Reading and checking bulk CSV files: every edge case ends in a clear error or row report.

``check_csv`` touches no database or broker, so these run on files in a temp dir.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dispatcher.bulk import BulkPlan, _spooled, check_csv
from dispatcher.errors import ValidationError
from dispatcher.lanes import Priority
from tests.fixtures.documents import make_pdf

GOOD = "+12025550123"
OTHER = "+14155550123"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "letter.pdf").write_bytes(make_pdf())
    return tmp_path


def write(folder: Path, text: str, name: str = "in.csv") -> Path:
    path = folder / name
    path.write_bytes(text.encode())
    return path


def check(path: Path, **options: Any) -> BulkPlan:
    options.setdefault("document", path.parent / "letter.pdf")
    with check_csv(path, **options) as plan:
        return plan


def errors(plan: BulkPlan) -> dict[int, str]:
    return {r.row: r.error for r in plan.rejected}


def test_a_good_file_is_all_valid_and_numbered_like_a_spreadsheet(folder: Path) -> None:
    # Given a header, two rows, and a blank line between them
    path = write(folder, f"to,provider,meta_account\n{GOOD},faxplus,a-1\n\n{OTHER},,a-2\n")

    with check_csv(path, document=folder / "letter.pdf") as plan:
        rows = [row for part in _spooled(plan, Priority.BULK) for row, _, _ in part]

    # Then both are valid, the blank one is skipped, and the rows are numbered 2 and 4
    assert (plan.rows, plan.valid, plan.blank, plan.rejected) == (2, 2, 1, [])
    assert rows == [2, 4]


def test_a_row_is_keyed_by_its_key_cell_else_by_what_it_asks_for(folder: Path) -> None:
    # Given the same fax asked twice, another one, and two rows with keys
    text = f"to,meta_ref,key\n{GOOD},a,\n{GOOD},a,\n{GOOD},b,\n{GOOD},a,k1\n{GOOD},a,k2\n"

    with check_csv(write(folder, text), document=folder / "letter.pdf") as plan:
        keys = [key for part in _spooled(plan, Priority.BULK) for _, key, _ in part]

    # Then the same fax has the same key (a re-run adds it once), and a key cell wins
    assert keys[0] == keys[1] != keys[2]
    assert keys[3:] == ["bulk:key:k1", "bulk:key:k2"]


def test_bad_rows_are_reported_by_row_number_and_reason(folder: Path) -> None:
    path = write(
        folder,
        f"to,provider,send_at\n{GOOD},,\n12345,,\n+1202,,\n{GOOD},nofax,\n"
        f"{GOOD},,tomorrow\n{GOOD},,2030-01-01T09:00:00\n{GOOD},,2030-01-01T09:00:00Z\n",
    )

    plan = check(path)

    assert plan.valid == 2
    found = errors(plan)
    assert sorted(found) == [3, 4, 5, 6, 7]
    assert found[3].startswith("to: '1****' is not in international format")  # masked
    assert found[4].startswith("to: ")
    assert "unknown provider 'nofax'" in found[5]
    assert "'tomorrow' is not an ISO 8601 time" in found[6]
    assert found[7] == "send_at: must include a time zone"


def test_a_quoted_line_break_stays_one_row(folder: Path) -> None:
    path = write(folder, f'to,meta_note\n{GOOD},"two\nlines"\n12345,x\n')

    plan = check(path)

    assert list(errors(plan)) == [3]


def test_a_file_that_is_not_utf8_is_refused_with_its_line(folder: Path) -> None:
    path = folder / "latin1.csv"
    path.write_bytes(f"to,meta_name\n{GOOD},Jos\xe9\n".encode("latin-1"))

    with pytest.raises(ValidationError, match=r"line 2 is not UTF-8 \(byte 0xe9"):
        check(path)


def test_a_utf8_byte_order_mark_is_accepted(folder: Path) -> None:
    path = write(folder, f"\ufeffto\n{GOOD}\n")

    assert check(path).valid == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("\n\n", "the file is empty"),
        ("to,provider\n", "the file has a header but no data rows"),
        ("to,provider\n\n,\n", "the file has a header but no data rows"),
        ("number,provider\n+12025550123,\n", r"no 'to' column \(found: number, provider\)"),
        ("to,TO\n+12025550123,\n", "the header repeats the columns to"),
    ],
)
def test_a_file_that_cannot_be_used_is_refused(folder: Path, text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        check(write(folder, text))


def test_unknown_columns_are_ignored_and_named_once(folder: Path) -> None:
    path = write(folder, f"To,Notes,colour,meta_x,\n{GOOD},n,red,1,\n")

    plan = check(path)

    assert plan.ignored_columns == ("Notes", "colour", "(unnamed column 5)")
    assert plan.valid == 1


def test_a_row_with_more_values_than_the_header_is_rejected(folder: Path) -> None:
    path = write(folder, f"to\n{GOOD},surplus\n")

    assert errors(check(path)) == {2: "row: 2 values but the header has 1 columns"}


def test_document_paths_are_relative_to_the_csv_and_stay_inside_its_folder(
    folder: Path,
) -> None:
    (folder / "docs").mkdir()
    (folder / "docs" / "a.pdf").write_bytes(make_pdf(2))
    (folder.parent / "secret.pdf").write_bytes(make_pdf())
    (folder / "notes.bin").write_bytes(b"\x00\x01\x02")
    path = write(
        folder,
        "to,document\n"
        f"{GOOD},docs/a.pdf\n"
        f"{GOOD},\n"
        f"{GOOD},../secret.pdf\n"
        f"{GOOD},{folder.parent / 'secret.pdf'}\n"
        f"{GOOD},missing.pdf\n"
        f"{GOOD},notes.bin\n",
    )

    plan = check(path)

    assert plan.valid == 2  # docs/a.pdf, and letter.pdf from the default for the empty cell
    found = errors(plan)
    assert found[4] == "document: '../secret.pdf' is outside the CSV's folder"
    assert "is outside the CSV's folder" in found[5]
    assert found[6] == "document: 'missing.pdf': No such file or directory"
    assert "application/octet-stream is not a type interfax accepts" in found[7]


def test_without_a_document_column_or_default_the_file_is_refused(folder: Path) -> None:
    with pytest.raises(ValidationError, match="no 'document' column and no --document"):
        check(write(folder, f"to\n{GOOD}\n"), document=None)


def test_an_unusable_default_document_fails_the_whole_file(folder: Path) -> None:
    (folder / "empty.pdf").write_bytes(b"")

    with pytest.raises(ValidationError, match="document: the document is empty"):
        check(write(folder, f"to\n{GOOD}\n"), document=folder / "empty.pdf")


def test_an_empty_document_cell_without_a_default_rejects_that_row(folder: Path) -> None:
    path = write(folder, f"to,document\n{GOOD},letter.pdf\n{GOOD},\n")

    found = errors(check(path, document=None))

    assert found == {3: "document: no document in this row and no default document given"}


def test_progress_reports_every_byte_read(folder: Path) -> None:
    text = "to\n" + f"{GOOD}\n" * 2500
    seen: list[int] = []

    check(write(folder, text), progress=seen.append)

    assert seen == sorted(seen) and seen[-1] == len(text)
    assert len(seen) >= 3  # once per spooled chunk, and at the end

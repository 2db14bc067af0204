"""``paht stats`` and the IOC page read one definition of every figure: on the same ledger,
the same numbers, agency by agency and in total (tests/ioc_sample.py, counted by hand).
"""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pytest

from paht_bridge.cli import main as paht
from paht_bridge.demo import STATS_COLUMNS
from tests import ioc_sample as sample
from tests.airflow_api import AirflowApi


@pytest.fixture
def sample_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both read the ledger under PAHT_HOME: a small, known one."""
    from paht_bridge.ledger.db import ledger_url, migrate

    monkeypatch.setenv("PAHT_HOME", str(tmp_path))
    monkeypatch.delenv("PAHT_LEDGER_URL", raising=False)
    migrate(ledger_url())
    sample.build(ledger_url())


def stats_table(out: str) -> dict[str, dict[str, str]]:
    """``paht stats``'s rows by their first cell ("deployment: agency name", or "all"), each cell by its figure."""
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("province / agency"))
    assert lines[header].split()[3:] == [heading for heading, _ in STATS_COLUMNS], lines[header]
    rows = {}
    for line in lines[header + 2:]:  # after the rule under the headings
        words = line.split()
        name, cells = words[:-len(STATS_COLUMNS)], words[-len(STATS_COLUMNS):]
        if not all(re.fullmatch(r"\d+%?|–", cell) for cell in cells):
            break  # the legend under the table
        rows[" ".join(name)] = {field: cell for (_, field), cell in zip(STATS_COLUMNS, cells)}
    return rows


def page_table(html: str) -> dict[str, dict[str, str]]:
    """The page's agencies table, keyed as ``stats_table`` keys it."""
    table = re.search(r'<table data-testid="agencies">(.*?)</table>', html, re.S).group(1)
    rows = {}
    for row in re.findall(r"<tr (data-deployment.*?|class=\"total\".*?)</tr>", table, re.S):
        cells = {field: unescape(value).strip() for field, value in re.findall(r'data-field="(\w+)">([^<]*)</td>', row)}
        if row.startswith("class"):
            rows["all"] = cells
        else:
            deployment = re.match(r'data-deployment="([^"]+)"', row).group(1)
            name = unescape(re.search(r"<td>[^<]*</td><td>([^<]*)</td><td><code>", row).group(1))
            rows[f"{deployment}: {name}"] = cells
    return rows


def test_paht_stats_and_the_ioc_page_show_the_same_figures(airflow_api: AirflowApi, sample_ledger: None,
                                                           capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # one line per row
    assert paht(["stats"]) == 0
    cli = stats_table(capsys.readouterr().out)
    page = airflow_api.client.get("/paht/", headers=airflow_api.headers)
    assert page.status_code == 200
    shown = page_table(page.text)

    sxd, ca, waiting = (f"{sample.DEPLOYMENT}: {name}" for name in (sample.SXD[1], sample.CA[1], "(chờ IOC xem xét)"))
    assert list(cli) == list(shown) == [sxd, ca, waiting, "all"]
    for row, figures in cli.items():
        assert figures == {field: shown[row][field] for field in figures}, row  # every figure the CLI prints is on the page
    # What the two used to disagree on: a dead letter is not a report waiting for review, nor the reverse.
    assert (cli[ca]["dead_lettered"], cli[ca]["needs_review"]) == ("1", "0")
    assert (cli[waiting]["dead_lettered"], cli[waiting]["needs_review"], cli[waiting]["received"]) == ("0", "1", "1")
    assert (cli["all"]["received"], cli["all"]["answered"], cli["all"]["published"], cli["all"]["satisfaction_rate"]) == \
        ("5", "2", "1", "50%")

"""The status table of a huge study is built without tabulate's per-cell inspection; it must
be the very same text tabulate gives."""
import random
import string

from tabulate import tabulate

from maestro_compile import status


def _random_table(rng: random.Random):
    columns = rng.randint(1, 11)
    headers = ["".join(rng.choice(string.ascii_letters + " ") for _ in range(rng.randint(1, 12)))
               for _ in range(columns)]
    data = [["".join(rng.choice(string.ascii_letters + string.digits + " -:_./") for _ in range(rng.randint(0, 24)))
             for _ in range(columns)] for _ in range(rng.randint(1, 40))]
    return data, headers


def test_fast_layout_is_tabulates_simple_layout(monkeypatch):
    monkeypatch.setattr(status, "FAST_TABLE_FROM", 0)
    rng = random.Random(5)
    for _ in range(300):
        data, headers = _random_table(rng)
        expected = tabulate(data, headers=headers, tablefmt="simple", disable_numparse=True)
        assert status._simple_table(data, headers) == expected


def test_big_status_table_matches_tabulate():
    rows = [status.NodeStatus(name=f"simulate_X.{i}", step="simulate", relative_workspace=f"simulate/X.{i}",
                              state="FINISHED" if i % 7 else "FAILED", reason="" if i % 7 else "exit code 1",
                              job_id=f"{1000 + i // 5000}_{i % 5000}", submit=1.7e9, start=1.7e9 + i, end=1.7e9 + 2 * i)
            for i in range(status.FAST_TABLE_FROM + 10)]
    text = status.format_table(rows)
    headers = list(status.COLUMNS) + ["Reason"]
    data = [cells + [row.reason] for cells, row in zip(status.table_rows(rows), rows)]
    table = tabulate(data, headers=headers, tablefmt="simple", disable_numparse=True)
    # the times depend on "now" only for unfinished rows: every row here is finished
    assert text == table + "\n\n" + status.summary(rows)


def test_non_ascii_table_still_goes_through_tabulate(monkeypatch):
    monkeypatch.setattr(status, "FAST_TABLE_FROM", 0)
    data, headers = [["日本語", "x"], ["a", "bb"]], ["Step Name", "Job ID"]
    assert status._simple_table(data, headers) == tabulate(data, headers=headers, tablefmt="simple",
                                                          disable_numparse=True)

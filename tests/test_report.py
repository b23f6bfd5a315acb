"""Report: figures and summary.md from a synthetic sweep table; Pareto front; table reading."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flower_dl.report import FIGURES, TABLE_COLUMNS, final_rows, pareto_front, read_table, write_report

STRATEGIES = ("decentralized", "fedavg")
SHARES = (0.0, 0.2)
DIGITS = (2, 5)
SEEDS = (0, 1)
ROUNDS = (1, 2, 3)
NODES = range(5)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def accuracy(si: int, share: float, k: int, seed: int, rnd: int, node: int) -> float:
    """Deterministic synthetic accuracy in [0, 1]."""
    return 0.3 + 0.1 * si + 0.2 * share + 0.03 * k + 0.02 * seed + 0.05 * rnd + 0.01 * node


def leakage(share: float, k: int, node: int) -> float:
    return share * (1.0 + 0.1 * k) * (node + 1) / 10


def synthetic_rows(strategies=STRATEGIES, shares=SHARES, digits=DIGITS, seeds=SEEDS) -> list[dict]:
    rows = []
    for si, s in enumerate(strategies):
        for share, k, seed in itertools.product(shares, digits, seeds):
            cell = f"{s}-mlp-k{k}-share{share}-seed{seed}"
            for rnd, node in itertools.product(ROUNDS, NODES):
                rows.append(
                    {
                        "cell": cell,
                        "seed": seed,
                        "strategy": s,
                        "model": "mlp",
                        "dataset": "mnist-5k",
                        "partitioner": "digits-per-node",
                        "digits-per-node": k,
                        "share-ratio": share,
                        "exchange-mode": "broadcast",
                        "topology": "edges",
                        "num-nodes": len(NODES),
                        "local-epochs": 1,
                        "num-server-rounds": len(ROUNDS),
                        "round": rnd,
                        "node": node,
                        "accuracy": accuracy(si, share, k, seed, rnd, node),
                        "loss": 1.0 / rnd,
                        "train-loss": 1.1 / rnd,
                        "num-train-examples": 100,
                        "leakage": leakage(share, k, node),
                        "consensus-distance": "",
                        "failed": 0,
                    }
                )
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, list[Path]]:
    tmp = tmp_path_factory.mktemp("report")
    table = write_csv(tmp / "results.csv", synthetic_rows())
    out = tmp / "out"
    return out, write_report(table, out)


def check_png(path: Path) -> None:
    import matplotlib.image as mpimg

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 5_000, path
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100, (path, img.shape)
    colours = np.unique(img.reshape(-1, img.shape[2])[::7], axis=0)
    assert len(colours) > 10, f"{path} looks blank"


def test_every_figure_in_every_format(report) -> None:
    out, written = report
    expected = [out / f"{b}.{f}" for b in FIGURES for f in ("png", "svg")] + [out / "summary.md"]
    assert written == expected
    assert len(FIGURES) == 6
    for path in written:
        assert path.is_file() and path.stat().st_size > 0, path
        if path.suffix == ".png":
            check_png(path)
        elif path.suffix == ".svg":
            root = ET.parse(path).getroot()
            assert root.tag.endswith("svg")
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"


def summary_rows(path: Path) -> list[list[str]]:
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]


def test_summary_has_one_row_per_group_with_the_right_numbers(report) -> None:
    out, _ = report
    rows = summary_rows(out / "summary.md")
    assert len(rows) == len(STRATEGIES) * len(SHARES) * len(DIGITS)
    last = ROUNDS[-1]
    seen = set()
    for row in rows:
        strategy, model, k, share, runs, seeds, acc, min_acc, leak, total = row
        s = strategy.split()[0]
        si, k, share = STRATEGIES.index(s), int(k), float(share)
        seen.add((s, k, share))
        assert strategy == f"{s} ({'DE' if s == 'decentralized' else 'PS'})"
        assert (model, runs, seeds) == ("mlp", "2", "2")
        cell_means = [np.mean([accuracy(si, share, k, seed, last, n) for n in NODES]) for seed in SEEDS]
        mean, std = re.fullmatch(r"([\d.]+)% ± ([\d.]+)%", acc).groups()
        assert float(mean) == pytest.approx(100 * np.mean(cell_means), abs=0.006)
        assert float(std) == pytest.approx(100 * np.std(cell_means, ddof=1), abs=0.006)
        lowest = min(accuracy(si, share, k, seed, last, n) for seed in SEEDS for n in NODES)
        assert float(min_acc.rstrip("%")) == pytest.approx(100 * lowest, abs=0.006)
        assert float(leak) == pytest.approx(np.mean([leakage(share, k, n) for n in NODES]), abs=6e-5)
        assert float(total) == pytest.approx(np.sum([leakage(share, k, n) for n in NODES]), abs=6e-5)
    assert len(seen) == len(rows)
    text = (out / "summary.md").read_text()
    assert all(b in text for b in FIGURES)


def test_pareto_front_hand_made() -> None:
    pts = np.array(
        [
            [0.0, 0.50],  # 0 front: lowest leakage
            [0.0, 0.40],  # 1 dominated by 0 (same leakage, lower accuracy)
            [0.1, 0.50],  # 2 dominated by 0 (same accuracy, more leakage)
            [0.2, 0.70],  # 3 front
            [0.2, 0.70],  # 4 front: exact duplicate of 3
            [0.3, 0.65],  # 5 dominated by 3
            [0.5, 0.90],  # 6 front
            [0.4, np.nan],  # 7 NaN: never on the front
            [0.6, 0.90],  # 8 dominated by 6
        ]
    )
    front = pareto_front(pts)
    assert front.tolist() == [0, 3, 4, 6]
    rev = pareto_front(pts[::-1])  # same points, reversed order: indices map back
    assert sorted((8 - rev).tolist()) == [0, 3, 4, 6]
    assert pareto_front(np.zeros((0, 2))).tolist() == []
    assert pareto_front(np.array([[0.3, 0.2]])).tolist() == [0]
    with pytest.raises(ValueError):
        pareto_front(np.zeros((3, 3)))


def test_final_rows_keep_each_cells_last_round(tmp_path: Path) -> None:
    rows = synthetic_rows(strategies=("decentralized",), shares=(0.0,), digits=(2,), seeds=(0, 1))
    rows = [r for r in rows if not (r["seed"] == 1 and r["round"] == 3)]  # seed 1 stopped at round 2
    df = read_table(write_csv(tmp_path / "t.csv", rows))
    fin = final_rows(df)
    assert fin.groupby("seed")["round"].unique().map(list).to_dict() == {0.0: [3.0], 1.0: [2.0]}
    assert len(fin) == 2 * len(NODES)


def test_read_table_round_trips_xlsx(tmp_path: Path) -> None:
    pytest.importorskip("openpyxl")
    rows = synthetic_rows(strategies=("fedavg",), shares=(0.2,), digits=(5,), seeds=(0,))
    csv_df = read_table(write_csv(tmp_path / "t.csv", rows))
    xlsx = tmp_path / "t.xlsx"
    pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).to_excel(xlsx, index=False)
    xl_df = read_table(xlsx)
    assert list(xl_df.columns) == list(csv_df.columns)
    pd.testing.assert_frame_equal(xl_df, csv_df, check_dtype=False)
    assert xl_df["accuracy"].dtype == float and xl_df["cell"].iloc[0] == rows[0]["cell"]


def test_read_table_rejects_bad_tables(tmp_path: Path) -> None:
    rows = synthetic_rows(strategies=("fedavg",), shares=(0.2,), digits=(5,), seeds=(0,))
    no_acc = tmp_path / "no-acc.csv"
    pd.DataFrame(rows).drop(columns=["accuracy"]).to_csv(no_acc, index=False)
    with pytest.raises(ValueError, match=r"results table '.*no-acc.csv': missing columns accuracy"):
        read_table(no_acc)
    pct = tmp_path / "pct.csv"
    pd.DataFrame(rows).assign(accuracy=85.0).to_csv(pct, index=False)
    with pytest.raises(ValueError, match=r"accuracy must be a fraction in \[0, 1\]"):
        read_table(pct)
    with pytest.raises(ValueError, match="unsupported format"):
        read_table(tmp_path / "t.json")


@pytest.mark.parametrize("case", ["single-cell", "no-leakage"])
def test_thin_tables_still_yield_every_figure(tmp_path: Path, case: str) -> None:
    rows = synthetic_rows(strategies=("decentralized",), shares=(0.1,), digits=(3,), seeds=(0,))
    if case == "no-leakage":  # also: failed node-rounds, a single round
        rows = [dict(r, leakage="", failed=int(r["node"] == 0)) for r in rows if r["round"] == 1]
    table = write_csv(tmp_path / "one.csv", rows)
    written = write_report(table, tmp_path / "out", formats=("png",))
    assert [p.name for p in written] == [f"{b}.png" for b in FIGURES] + ["summary.md"]
    for path in written[:-1]:
        check_png(path)
    summary = summary_rows(tmp_path / "out" / "summary.md")
    assert len(summary) == 1 and summary[0][4:6] == ["1", "1"]
    if case == "no-leakage":
        assert summary[0][-1] == "n/a"
        assert "failed node-round" in (tmp_path / "out" / "summary.md").read_text()

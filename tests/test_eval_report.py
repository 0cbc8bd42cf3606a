"""The eval figures (eval/plots.py) and the self-contained HTML report (eval/report.py): every plot
writes a PNG for normal rows and for rows with NaN or missing intervals, the page embeds its images,
escapes what it is given, notes missing figures and parses with balanced tags; ``pct`` formats cells."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from llamaforge.eval.plots import plot_violations, plot_violations_by, plot_win_tie_loss, plot_winrate_scatter
from llamaforge.eval.report import pct, render_html, write_html

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAN = float("nan")
SCRIPT = "<script>alert('x')</script>"

WTL = [{"label": "Final vs SFT", "win": 0.53, "tie": 0.246, "loss": 0.224,
        "ci95": {"win": [0.491, 0.568], "tie": [0.21, 0.28], "loss": [0.19, 0.26]}},
       {"label": "Final vs RS", "win": 0.359, "tie": 0.315, "loss": 0.326, "ci95": {"win": [0.33, 0.39]}}]
WTL_BAD = [{"label": "no interval", "win": 0.6, "tie": 0.2, "loss": 0.2},
           {"label": "NaN", "win": NAN, "tie": 0.5, "loss": 0.5, "ci95": {"win": [NAN, NAN], "loss": None}},
           {"label": "odd ci", "win": 0.1, "tie": None, "loss": 0.9, "ci95": [0.1, 0.2]}]
SCATTER = [{"label": "vs SFT", "helpfulness": 0.62, "safety": 0.71, "helpfulness_ci": [0.57, 0.67],
            "safety_ci": [0.66, 0.76]},
           {"label": "vs RS", "helpfulness": 0.45, "safety": 0.55, "helpfulness_ci": [0.4, 0.5],
            "safety_ci": [0.5, 0.6]}]
SCATTER_BAD = [{"label": "no ci", "helpfulness": 0.3, "safety": 0.8},
               {"label": "None ci", "helpfulness": 0.6, "safety": 0.4, "helpfulness_ci": None, "safety_ci": None},
               {"label": "NaN ci", "helpfulness": 0.5, "safety": 0.5, "helpfulness_ci": [NAN, NAN]},
               {"label": "NaN point", "helpfulness": NAN, "safety": 0.5}]
VIOL = [{"label": "SFT", "violation": 0.04, "ci95": [0.03, 0.05],
         "by_category": {"illicit": {"violation": 0.05, "ci95": [0.03, 0.08]},
                         "hateful": {"violation": 0.02, "ci95": [0.01, 0.04]}}},
        {"label": "PPO", "violation": 0.021, "ci95": [0.015, 0.03],
         "by_category": {"illicit": {"violation": 0.03, "ci95": [0.02, 0.05]},
                         "hateful": {"violation": 0.01, "ci95": [0.0, 0.02]}}}]
VIOL_BAD = [{"label": "no ci", "violation": 0.1, "by_category": {"illicit": {"violation": 0.2}}},
            {"label": "NaN", "violation": NAN, "ci95": [NAN, NAN],
             "by_category": {"advice": {"violation": NAN, "ci95": None}}},
            {"label": "no split", "violation": 0.0, "ci95": None}]

PLOTS = [(plot_win_tie_loss, WTL, WTL_BAD), (plot_winrate_scatter, SCATTER, SCATTER_BAD),
         (plot_violations, VIOL, VIOL_BAD), (plot_violations_by, VIOL, VIOL_BAD)]
PLOT_IDS = [fn.__name__ for fn, _, _ in PLOTS]


def assert_png(path) -> None:
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 2000  # a drawn figure, not an empty canvas stub


@pytest.mark.parametrize("fn, good, bad", PLOTS, ids=PLOT_IDS)
def test_each_plot_writes_a_png_for_normal_and_degenerate_rows(tmp_path, fn, good, bad):
    out = fn(good, tmp_path / "figs" / "good.png")  # the folder is made on the way
    assert out == tmp_path / "figs" / "good.png"
    assert_png(out)
    assert_png(fn(bad, tmp_path / "bad.png"))  # NaN shares, missing / None / NaN intervals: no crash
    assert_png(fn([], tmp_path / "empty.png"))  # nothing to draw: a "no data" figure


@pytest.mark.parametrize("fn, good, bad", PLOTS, ids=PLOT_IDS)
def test_without_matplotlib_a_plot_returns_none_with_a_notice(tmp_path, monkeypatch, capsys, fn, good, bad):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # a None entry makes the import raise ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert fn(good, tmp_path / "x.png") is None
    assert not (tmp_path / "x.png").exists()
    assert "matplotlib is not installed" in capsys.readouterr().err


def test_violations_by_takes_its_split_from_the_given_key(tmp_path):
    rows = [{"label": "SFT", "by_risk": {"low": {"violation": 0.01, "ci95": [0.0, 0.03]}}}]
    assert_png(plot_violations_by(rows, tmp_path / "risk.png", key="by_risk"))


class TagChecker(HTMLParser):
    """Fails on a closing tag that does not close the innermost open one; records the open stack."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.seen: dict[str, int] = {}
        self.img_src: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.seen[tag] = self.seen.get(tag, 0) + 1
        if tag == "img":
            self.img_src.append(dict(attrs)["src"])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


@pytest.fixture
def page(tmp_path):
    """A report with a real figure, a missing one, a not-drawn one, a table and hostile strings."""
    fig = plot_violations(VIOL, tmp_path / "violations.png")
    sections = [
        {"title": f"Win rates {SCRIPT}", "text": f"First paragraph.\n\nAn answer: {SCRIPT} & more.",
         "table": {"columns": ["model", "win", "n", "mean", "tiny", SCRIPT],
                   "rows": [["SFT", pct(0.53, (0.491, 0.568)), 1200, 2.34567, 1.5e-5, SCRIPT],
                            ["RS", pct(None), 0, NAN, None, True]]},
         "figures": [fig, tmp_path / "nope.png", None], "details": {"answer": SCRIPT, "score": 0.5}},
        {"title": "Raw", "details": f"line 1\n{SCRIPT}"},
        {"title": "Only text", "text": "plain"},
    ]
    path = write_html(tmp_path / "out" / "report.html", f"Eval {SCRIPT}", sections, subtitle="run <7>")
    return tmp_path, path, path.read_text(encoding="utf-8"), fig


def test_html_embeds_figures_as_data_uris_and_references_nothing_outside(page):
    tmp_path, path, text, fig = page
    checker = TagChecker()
    checker.feed(text)
    checker.close()
    assert len(checker.img_src) == 1 and checker.img_src[0].startswith("data:image/png;base64,")
    assert base64.b64decode(checker.img_src[0].split(",", 1)[1]) == Path(fig).read_bytes()
    assert not re.search(r'(src|href)="(?!data:|#)', text)  # only data URIs and in-page anchors
    assert "<link" not in text and "@import" not in text and "url(" not in text
    assert str(tmp_path) not in text  # no file paths leak into the page
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]  # the temporary file is gone


def test_html_escapes_every_caller_string(page):
    _, _, text, _ = page
    assert "<script" not in text.lower()
    # title, heading, nav, section title, paragraph, table header and cell, two details blocks
    assert text.count("&lt;script&gt;") >= 9
    assert "run &lt;7&gt;" in text and "&amp; more" in text


def test_html_notes_missing_figures_and_parses_balanced(page):
    _, _, text, _ = page
    assert "Figure missing: nope.png" in text and "Figure not drawn" in text
    checker = TagChecker()
    checker.feed(text)
    checker.close()
    assert checker.stack == []  # every opened element was closed, in order
    for tag, n in {"html": 1, "head": 1, "body": 1, "section": 3, "table": 1, "details": 2, "figure": 1}.items():
        assert checker.seen.get(tag) == n, tag
    assert checker.seen["p"] >= 4  # two paragraphs, notes, subtitle


def test_table_cells_are_formatted(page):
    _, _, text, _ = page
    for cell in ('<td class="num">53.0% [49.1, 56.8]</td>', '<td class="num">1,200</td>', '<td class="num">2.346</td>',
                 '<td class="num">1.500e-05</td>', '<td class="num">0</td>', "<td>True</td>"):
        assert cell in text, cell
    assert text.count("<td>-</td>") == 3  # pct(None), NaN, None


def test_bad_sections_raise_before_writing(tmp_path):
    target = tmp_path / "r.html"
    with pytest.raises(ValueError, match="unknown keys"):
        write_html(target, "t", [{"title": "a", "figure": "x.png"}])
    with pytest.raises(ValueError, match="has 1 cells for 2 columns"):
        write_html(target, "t", [{"title": "a", "table": {"columns": ["a", "b"], "rows": [[1]]}}])
    with pytest.raises(ValueError, match="title"):
        write_html(target, "t", [{"text": "no title"}])
    assert list(tmp_path.iterdir()) == []


def test_write_html_replaces_an_existing_report(tmp_path):
    target = write_html(tmp_path / "r.html", "first", [])
    write_html(target, "second", [{"title": "s"}])
    assert "<h1>second</h1>" in target.read_text() and "first" not in target.read_text()
    assert render_html("second", [{"title": "s"}]) == target.read_text()


@pytest.mark.parametrize("args, kwargs, want", [
    ((0.53, (0.491, 0.568)), {}, "53.0% [49.1, 56.8]"),
    ((0.53,), {}, "53.0%"),
    ((0.5, None), {}, "50.0%"),
    ((1,), {}, "100.0%"),
    ((0.0, [0.0, 0.012]), {}, "0.0% [0.0, 1.2]"),
    ((0.5, (NAN, 0.6)), {}, "50.0%"),  # an interval with an unknown end is left out
    ((0.5, (None, 0.6)), {}, "50.0%"),
    ((None,), {}, "-"),
    ((NAN, (0.1, 0.2)), {}, "-"),
    ((0.12345, (0.1, 0.15)), {"digits": 2}, "12.35% [10.00, 15.00]"),
])
def test_pct(args, kwargs, want):
    assert pct(*args, **kwargs) == want


def test_the_modules_do_not_import_torch():
    src = Path(__file__).resolve().parents[1] / "src" / "llamaforge" / "eval"
    code = ("import importlib.util, sys\n"
            f"for name in ('plots', 'report'):\n"
            f"    spec = importlib.util.spec_from_file_location(name, {str(src)!r} + '/' + name + '.py')\n"
            "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

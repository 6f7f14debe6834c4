"""`laclip rewrites audit DATASET REWRITE_ID`: counts by source and reason, length and change distributions,
a side-by-side sample, on the terminal and as a self-contained HTML page that a real headless browser
renders with the tables there and user text escaped."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from laclip.data.shards import write_shard
from laclip.rewrite.audit import edit_distance
from laclip.rewrite.config import RewriteConfig
from laclip.rewrite.engines.base import Engine
from laclip.rewrite.worker import run_index
from laclip_cli.main import app

HOSTILE = 'a red star <script>alert("x")</script> & friends'
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


class Fixed(Engine):
    name = "fixed"

    def __init__(self, answers):
        self.answers = answers

    def generate(self, requests):
        return [self.answers.get(r.caption, " a red star shines\n") for r in requests]


def audited_set(store) -> str:
    captions = ["a red star", "a blue circle on the left", "two green squares", HOSTILE]
    answers = {"a red star": " a crimson star\n", "a blue circle on the left": " a blue circle on the right\n",
               "two green squares": " Here's a revised version:\n",
               HOSTILE: ' a red star <img src=x onerror=alert(1)> "&"\n'}
    write_shard(store, "datasets/aud", 0, [{"key": f"k{i}", "caption": c, "jpg": b"\xff\xd8"}
                                            for i, c in enumerate(captions)])
    cfg = RewriteConfig(dataset="aud", engine="null", rewrite_id="aud-1", sources=["chatgpt", "human"],
                        faithfulness="builtin")
    run_index(cfg, store, 0, engine=Fixed(answers))
    return "aud-1"


def test_edit_distance_counts_words_changed():
    assert edit_distance("a red star".split(), "a red star".split()) == 0
    assert edit_distance("a red star".split(), "a crimson star".split()) == 1
    assert edit_distance("a red star".split(), "star".split()) == 2
    assert edit_distance([], "a b c".split()) == 3


class Tables(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.tags, self.text = [], set(), []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "table":
            self.tables.append(dict(attrs).get("id"))

    def handle_data(self, data):
        self.text.append(data)


def test_audit_counts_and_page(demo_copy, tmp_path):
    rid = audited_set(demo_copy)
    page = tmp_path / "audit.html"
    res = CliRunner().invoke(app, ["--root", demo_copy.url, "rewrites", "audit", "aud", rid, "--html", str(page)],
                             env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    row = {line.split()[1]: line for line in res.output.splitlines() if re.match(r"^\W*(chatgpt|human)\b", line)}
    # chatgpt and human got the same answers: 4 rows, kept 2 (the crimson star, the hostile one), rejected 2
    for source in ("chatgpt", "human"):
        cells = [c.strip() for c in row[source].split("│") if c.strip()]
        assert cells[:3] == [source, "4", "2"], cells
    html = page.read_text()
    parsed = Tables()
    parsed.feed(html)
    assert {"verdicts", "objections", "lengths", "changed", "sample"} <= set(parsed.tables)
    assert not {"script", "img"} & parsed.tags  # user text is text, never markup
    assert HOSTILE in "".join(parsed.text) and "&lt;script&gt;" in html and "&amp; friends" in html
    assert "http" not in re.sub(r"<!DOCTYPE[^>]*>", "", html) and "<link" not in html  # self-contained
    text = "".join(parsed.text)
    assert "attribute" in text and "right (1)" in text and "off_topic" in text  # the words objected to


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("CI must have Debian's chromium (.ci/run installs it as root)")
    pytest.skip("no chromium here to render the page: `apt-get install -y chromium` (as root; .ci/run does)")


def test_the_page_renders_in_a_real_headless_browser(demo_copy, tmp_path):
    rid = audited_set(demo_copy)
    page = tmp_path / "audit.html"
    res = CliRunner().invoke(app, ["--root", demo_copy.url, "rewrites", "audit", "aud", rid, "--html", str(page)])
    assert res.exit_code == 0, res.output
    browser = chromium()
    dom = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = Tables()
    rendered.feed(dom.stdout)
    assert {"verdicts", "sample", "lengths", "changed"} <= set(rendered.tables), dom.stdout[:500]
    assert not {"script", "img"} & rendered.tags and HOSTILE in "".join(rendered.text)
    shot = tmp_path / "page.png"
    run = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}",
                          "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


@pytest.mark.slow
def test_audit_of_the_demos_eda_set_writes_its_page(demo_copy, tmp_path):
    laclip = str(Path(sys.executable).parent / "laclip")
    made = subprocess.run([laclip, "--root", demo_copy.url, "submit", "rewrite", "--local", "--dataset", "demo"],
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stdout + made.stderr
    rid = re.search(r"output: .*/rewrites/demo/([^/\s]+)/", made.stdout).group(1)
    audit = subprocess.run([laclip, "--root", demo_copy.url, "rewrites", "audit", "demo", rid, "--sample", "8"],
                           capture_output=True, text=True, timeout=600, cwd=tmp_path, env={**os.environ,
                                                                                          "COLUMNS": "200"})
    assert audit.returncode == 0, audit.stdout + audit.stderr
    page = tmp_path / f"audit-demo-{rid}.html"
    assert f"page: {page.name}" in audit.stdout and page.stat().st_size > 2000
    parsed = Tables()
    parsed.feed(page.read_text())
    assert {"verdicts", "sample"} <= set(parsed.tables) and "eda" in "".join(parsed.text)

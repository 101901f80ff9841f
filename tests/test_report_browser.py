"""The HTML report in a real headless Chromium, built from real runs on ../shared/data.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON
messages on fds 3/4, NUL-separated), so no driver or extra package is needed. The test
records every console message, JavaScript exception, log entry and network request while
the page loads, takes a screenshot, and reads the leaderboard back from the rendered DOM
to compare each number with the metrics.json the row names.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from test_report_fixtures import write_probe_folder

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium chromium-driver)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--disable-default-apps", "--mute-audio", "--window-size=1400,2000", "--remote-debugging-pipe"]


LAUNCHER = ("import os, sys; down, up = int(sys.argv[1]), int(sys.argv[2]); "
            "os.dup2(down, 3); os.dup2(up, 4); os.close(down); os.close(up); "
            "os.execv(sys.argv[3], sys.argv[3:])")


class DevTools:
    """A minimal DevTools-protocol client over --remote-debugging-pipe."""

    def __init__(self, user_data_dir: Path):
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # chromium reads commands on fd 3 and writes answers on fd 4: a tiny Python launcher
        # moves the pipe ends there (any numbers here, even 3 and 4 themselves, stay safe)
        down, up = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_child_r, from_child_w))
        for fd in (to_child_r, from_child_w):
            os.close(fd)
        self.proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(down), str(up), CHROMIUM, *FLAGS,
                                      f"--user-data-dir={user_data_dir}", "about:blank"],
                                     pass_fds=(down, up), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(down)
        os.close(up)
        self._buffer, self._next_id, self.events = b"", 0, []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise TimeoutError("no answer from chromium over the DevTools pipe")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe: "
                                   + self.proc.stderr.read().decode(errors="replace")[-2000:])
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        self._next_id += 1
        payload = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            payload["sessionId"] = session
        os.write(self._to_child, json.dumps(payload).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            message = self._read_message(deadline)
            self.events.append(message)
            if message.get("method") == method:
                return message

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read_message(deadline))
        except TimeoutError:
            pass

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        os.close(self._from_child)


LEADERBOARD_JS = """JSON.stringify(Array.from(document.querySelectorAll('#leaderboard tbody tr')).map(
  tr => ({source: tr.dataset.source, attribute: tr.dataset.attribute,
          cells: Object.fromEntries(Array.from(tr.cells).map(td => [td.dataset.col, td.innerText]))})))"""
PAGE_JS = """JSON.stringify({images: Array.from(document.images).map(i => [i.complete, i.naturalWidth,
  i.src.slice(0, 22)]), manifests: document.querySelectorAll('details.manifest').length,
  height: document.body.scrollHeight})"""


def open_in_chromium(html: Path, tmp: Path) -> dict:
    """Load the page; return console/log/exception events, requests, DOM readings, screenshot."""
    browser = DevTools(tmp / "profile")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 1400, "height": 2000, "deviceScaleFactor": 1, "mobile": False}, session)
        browser.send("Page.navigate", {"url": html.resolve().as_uri()}, session)
        browser.wait_for("Page.loadEventFired")
        browser.drain(0.5)  # late console messages or requests
        evaluate = lambda js: json.loads(browser.send(  # noqa: E731
            "Runtime.evaluate", {"expression": js, "returnByValue": True}, session)["result"]["value"])
        rows, page = evaluate(LEADERBOARD_JS), evaluate(PAGE_JS)
        shot = base64.b64decode(browser.send("Page.captureScreenshot", {"format": "png"}, session)["data"])
        events = browser.events
    finally:
        browser.close()
    by = lambda name: [e["params"] for e in events if e.get("method") == name]  # noqa: E731
    return {"console": by("Runtime.consoleAPICalled"), "exceptions": by("Runtime.exceptionThrown"),
            "log": by("Log.entryAdded"),
            "requests": [p["request"]["url"] for p in by("Network.requestWillBeSent")],
            "rows": rows, "page": page, "screenshot": shot}


# --- the report, built from real runs -------------------------------------------------------


def _synthetic_probe(folder: Path) -> None:
    """A social-perception probe folder: deltas.csv and the probe.json that lists it."""
    rng = np.random.default_rng(0)
    rows = []
    for dimension in ("warmth", "competence"):
        for col, groups in (("race", ("Asian", "Black", "White")), ("gender", ("female", "male"))):
            for group in groups:
                mean = rng.normal(0, 1.5)
                rows.append({"model": "clip-vit-b-32", "dimension": dimension, "term": "", "group_col": col,
                             "group": group, "n": 200, "delta_cos": mean,
                             "ci_lo": mean - 0.4, "ci_hi": mean + 0.4})
    write_probe_folder(folder, pd.DataFrame(rows))


@pytest.fixture(scope="module")
def real_results(tmp_path_factory, utkface_dir, fer_dir) -> Path:
    """Real runs: the baseline on UTKFace, a tiny random CLIP on UTKFace and FER2013, scored by
    the real scorer (fewer bootstrap resamples than the default, to keep the test quick)."""
    import vlmface
    from tiny_models import build_tiny_open_clip
    from vlmface.scoring import score_run

    out = tmp_path_factory.mktemp("results")
    clip = f"clip:local-dir:{build_tiny_open_clip(tmp_path_factory.mktemp('tiny_clip'))}"
    common = {"out": out, "progress": False, "backend_options": {"device": "cpu"}, "score": False}
    runs = [vlmface.evaluate("utkface", "baseline", limit=200, data_dir=utkface_dir,
                             attributes=["gender", "age", "age5"], **common),
            vlmface.evaluate("utkface", clip, limit=120, data_dir=utkface_dir, attributes=["gender", "race5"],
                             batch_size=64, **common),
            vlmface.evaluate("fer2013", clip, limit=70, data_dir=fer_dir, batch_size=64, **common)]
    for run in runs:
        score_run(run.run_dir, n_boot=200)
    _synthetic_probe(out / "probe" / "clip-vit-b-32")
    return out


@pytest.fixture(scope="module")
def browsed(real_results, tmp_path_factory):
    from vlmface.report import build_report

    result = build_report(real_results)
    return result, open_in_chromium(result.html, tmp_path_factory.mktemp("chromium"))


def test_page_loads_without_console_errors_or_requests(browsed):
    result, seen = browsed
    assert seen["exceptions"] == []
    assert [c for c in seen["console"] if c["type"] in ("error", "assert", "warning")] == []
    assert [e for e in seen["log"] if e["entry"]["level"] in ("error", "warning")] == []
    assert [u for u in seen["requests"] if not u.startswith(("file://", "data:"))] == []
    assert [u for u in seen["requests"] if u.startswith("file://")] == [result.html.resolve().as_uri()]
    images = seen["page"]["images"]
    assert images and all(done and width > 0 and src.startswith("data:image/png") for done, width, src in images)
    assert seen["page"]["manifests"] == 3


def test_screenshot_shows_the_report(browsed, tmp_path):
    result, seen = browsed
    shot = seen["screenshot"]
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    (result.out_dir / "screenshot.png").write_bytes(shot)
    from matplotlib.image import imread

    pixels = imread(result.out_dir / "screenshot.png")
    assert pixels.shape[:2] == (2000, 1400)
    assert pixels[..., :3].std() > 0.05  # not a blank page


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", text)]


def _check_group_cells(cells: dict, attribute: dict, score: str, factor: float, tolerance: float) -> bool:
    """Worst group and gap cells against metrics.json; False when no group could be ranked."""
    col = cells["group col"]
    if not col:
        return False
    disparity = attribute["disparity"][col]
    worst = disparity["worst_group"]
    if worst is None:  # every group too small to rank: nothing shown, nothing invented
        assert cells["worst group"] == cells["gap [CI]"] == ""
        return False
    assert cells["worst group"].startswith(f"{worst}: ")
    worst_value = attribute["by_group"][col][worst][score]
    assert float(cells["worst group"].rsplit(": ", 1)[1]) == pytest.approx(factor * worst_value, abs=tolerance)
    gap = [disparity["gap"], *(disparity["gap_ci"] or [])]
    assert _numbers(cells["gap [CI]"]) == pytest.approx([factor * g for g in gap], abs=tolerance)
    return True


def test_leaderboard_numbers_match_metrics_json(browsed, real_results):
    """Every number the browser shows in the leaderboard is the one in the row's metrics.json."""
    result, seen = browsed
    rows, ranked = seen["rows"], 0
    # baseline: gender, age, age5 (it cannot answer race5); CLIP: gender, race5; CLIP: emotion
    assert len(rows) == len(result.leaderboard) == 3 + 2 + 1
    for row in rows:
        metrics = json.loads((real_results / row["source"]).read_text())
        attribute = metrics["attributes"][row["attribute"]]
        overall, cells = attribute["overall"], row["cells"]
        n_shown = [overall["n"]] if overall["n"] == overall["n_total"] else [overall["n"], overall["n_total"]]
        assert _numbers(cells["n"]) == n_shown
        assert float(cells["errors %"]) == pytest.approx(100 * overall["error_rate"], abs=0.05)
        for column, rate in (("invalid %", "invalid_rate"), ("refused %", "refusal_rate")):
            assert float(cells[column]) == pytest.approx(100 * overall[rate], abs=0.05)
        if attribute["kind"] == "numeric":
            expected = [overall["mae"], *overall["mae_ci"]]
            assert _numbers(cells["accuracy % [CI] / MAE"]) == pytest.approx(expected, abs=0.005)
            ranked += _check_group_cells(cells, attribute, "mae", 1.0, 0.005)
            continue
        expected = [100 * overall["accuracy"], *(100 * x for x in overall["accuracy_ci"])]
        assert _numbers(cells["accuracy % [CI] / MAE"]) == pytest.approx(expected, abs=0.05)
        assert float(cells["macro-F1 %"]) == pytest.approx(100 * overall["macro_f1"], abs=0.05)
        ranked += _check_group_cells(cells, attribute, "accuracy", 100.0, 0.05)
    assert ranked >= 3  # the baseline's gender, age and age5 rank race groups of 30+ faces

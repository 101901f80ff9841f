"""The must-show run: 200 real faces through `vlmface eval`'s runner against a misbehaving server."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
from collections import Counter

import pytest

from vlmface.predictions import read_records
from vlmface.runner import EvalConfig, evaluate

from chat_server import ChatServer, fake_key

KEY_ENV = "VLMFACE_TEST_KEY"
PRICES = {"input": 2.5, "output": 10.0}
MISBEHAVIOUR = {3: "429", 4: "429", **{n: "500" for n in range(20, 26)}, 40: "hang", 41: "hang",
                60: "malformed", 61: "malformed", 80: "empty", 100: "content_filter", 120: "policy",
                140: "echo_key", 160: "refuse"}
ATTEMPTS = 3  # max_retries 2


def _image_url(body: dict) -> str:
    return next(p["image_url"]["url"] for p in body["messages"][-1]["content"] if p["type"] == "image_url")


def poisoned(body: dict) -> bool:
    """About one image in 40 makes the server fail every time: those samples must end as errors."""
    return int(hashlib.sha256(_image_url(body).encode()).hexdigest(), 16) % 40 == 0


def plan(number: int, body: dict) -> str | None:
    return MISBEHAVIOUR.get(number) or ("500" if poisoned(body) else None)


@pytest.fixture(scope="module")
def served_run(utkface_dir, tmp_path_factory):
    """One 200-sample run, its server, its captured output and logs, the fake key."""
    key, out = fake_key(), tmp_path_factory.mktemp("api_run")
    logs, printed = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(logs)
    root, chatty = logging.getLogger(), [logging.getLogger(n) for n in ("vlmface", "openai", "httpx2")]
    old_levels = [logger.level for logger in (root, *chatty)]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for logger in chatty:  # everything these say, down to the openai client's request logs
        logger.setLevel(logging.DEBUG)
    with pytest.MonkeyPatch.context() as mp, ChatServer(plan, key=key, hang_seconds=5) as server:
        mp.setenv(KEY_ENV, key)
        config = EvalConfig(task="utkface", model="api:test-model", data_dir=utkface_dir, limit=200, out=out,
                            score=False, progress=False,
                            options={"base_url": server.url, "api_key_env": KEY_ENV, "concurrency": 16,
                                     "timeout": 0.5, "max_retries": ATTEMPTS - 1, "retry_base_delay": 0.01,
                                     "retry_max_delay": 0.05, "prices": PRICES})
        try:
            with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
                result = evaluate(config)
                first_run_requests = server.requests
                manifest = json.loads((result.run_dir / "run.json").read_text())
                rerun = evaluate(config)
                rerun_requests = server.requests
        finally:
            root.removeHandler(handler)
            for logger, level in zip((root, *chatty), old_levels):
                logger.setLevel(level)
        yield {"result": result, "rerun": rerun, "server": server, "key": key, "out": out, "config": config,
               "first": first_run_requests, "manifest": manifest, "after_rerun": rerun_requests,
               "output": printed.getvalue() + logs.getvalue()}


def test_every_sample_answered_or_error_without_duplicates(served_run):
    records = read_records(served_run["result"].predictions_path)
    pairs = [(r["sample_id"], r["attribute"]) for r in records]
    assert len(pairs) == len(set(pairs)) == 200 * 5
    assert len({r["sample_id"] for r in records}) == 200
    statuses = Counter(r["status"] for r in records)
    assert statuses["ok"] > 900 and statuses["error"] > 0 and statuses["refused"] >= 3
    errors = [r for r in records if r["status"] == "error"]
    assert all("HTTP" in r["raw"] for r in errors)
    assert all(r["error_kind"] == "answer" for r in errors)  # an API failure is the system's, not the data's
    gave_up = [r for r in errors if "gave up after 3 attempts" in r["raw"]]
    assert len(gave_up) >= len(errors) - 1  # all but the echo_key 400, which is not retried
    manifest = served_run["manifest"]
    assert manifest["status"] == "complete" and manifest["counts"]["new_predictions"] == 1000


def test_the_server_misbehaved_in_every_way(served_run):
    server = served_run["server"]
    assert set(MISBEHAVIOUR.values()) <= set(server.behaviours)
    summary = served_run["manifest"]["backend_summary"]
    assert {"429", "500", "timeout", "malformed", "no_choices"} <= set(summary["retries"])
    assert summary["http_requests"] >= served_run["first"]  # attempts; a timed-out one may never arrive
    assert summary["api_refusals"] == 2  # content_filter + policy


def test_rerun_sends_zero_requests(served_run):
    assert served_run["after_rerun"] == served_run["first"]
    assert served_run["rerun"].counts == {}


def test_usage_and_cost_reach_run_json(served_run):
    summary = served_run["manifest"]["backend_summary"]
    prompt, completion = served_run["server"].usage
    assert summary["prompt_tokens"] == prompt and summary["completion_tokens"] == completion
    assert summary["cost_usd"] == pytest.approx((prompt * 2.5 + completion * 10.0) / 1e6, abs=1e-6)
    assert "cost_usd=" in served_run["output"]


def test_no_file_log_or_message_holds_the_key(served_run):
    key, out = served_run["key"], served_run["out"]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "run.json" for p in files) and any("api" in p.parts for p in files)
    for path in files:
        assert key.encode() not in path.read_bytes(), path
    assert key not in served_run["output"]
    assert "[redacted]" in (served_run["result"].predictions_path).read_text()  # the echo_key error


def test_a_fresh_run_dir_reuses_the_cache_and_resends_only_errors(served_run):
    server, config = served_run["server"], served_run["config"]
    before = read_records(served_run["result"].predictions_path)
    errors = sum(r["status"] == "error" for r in before)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, served_run["key"])
        sent = server.requests
        config.overwrite = True
        result = evaluate(config)
        config.overwrite = False
    after = read_records(result.predictions_path)
    assert 0 < server.requests - sent <= errors * ATTEMPTS
    key = lambda r: (r["sample_id"], r["attribute"])  # noqa: E731
    kept = {key(r): r["label"] for r in before if r["status"] != "error"}
    assert {key(r): r["label"] for r in after if key(r) in kept} == kept


def test_max_cost_stops_cleanly_and_a_bigger_budget_resumes_without_paying_twice(utkface_dir, tmp_path,
                                                                                   monkeypatch):
    from vlmface.backends.api import BudgetExceeded

    key = fake_key()
    monkeypatch.setenv(KEY_ENV, key)
    # ~0.16 USD reserved per request (image estimate 1500 tokens), ~0.011 USD really spent:
    # about 8 requests fit in 0.25 USD when sent one at a time
    prices = {"input": 100.0, "output": 100.0}
    with ChatServer(key=key) as server:
        def config(max_cost: float) -> EvalConfig:
            return EvalConfig(task="utkface", model="api:test-model", data_dir=utkface_dir, limit=20, out=tmp_path,
                              attributes=["gender"], batch_size=4, score=False, progress=False,
                              options={"base_url": server.url, "api_key_env": KEY_ENV, "concurrency": 1,
                                       "prices": prices, "max_cost": max_cost})

        with pytest.raises(BudgetExceeded, match="rerun with a higher --max-cost"):
            evaluate(config(0.25))
        run_dir = next(tmp_path.glob("utkface/*/*"))
        manifest = json.loads((run_dir / "run.json").read_text())
        spent = (server.usage[0] * 100 + server.usage[1] * 100) / 1e6
        assert manifest["status"] == "interrupted" and manifest["backend_summary"]["budget_stopped"]
        assert manifest["backend_summary"]["cost_usd"] == pytest.approx(spent) and spent <= 0.25
        written = read_records(run_dir / "predictions.jsonl")
        assert 0 < len(written) < 20 and all(r["status"] != "error" for r in written)
        paid = server.requests
        result = evaluate(config(5.0))
    records = read_records(result.predictions_path)
    assert len(records) == len({r["sample_id"] for r in records}) == 20
    assert server.requests == 20  # answers that arrived before the stop came from the cache
    assert paid > len(written)  # the stopped batch's answers were paid for once, and kept

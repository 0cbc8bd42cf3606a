"""Model-as-judge (eval/judge.py): the swapped-order protocol and its counts, verdict parsing, and each
judge: an OpenAI-compatible endpoint (a local test server behind the real `openai` client), a
llamaforge chat model, a reward model, the simulated annotators; the config builder's errors."""

import dataclasses
import json
import math
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from llamaforge import SIZES, ModelArgs, Transformer
from llamaforge.config import load_config
from llamaforge.eval.judge import (DEFAULT_SYSTEM, DEFAULT_TEMPLATE, Judge, JudgeConfig, JudgeResult, annotator_judge,
                                   build_judge, compare, load_model_judge, model_judge, openai_judge, parse_verdict,
                                   render_prompt, reward_judge)
from llamaforge.world.entities import build_world
from llamaforge.world.tasks import helpful_tasks


def _records(n, multi=False):
    turns = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."}] if multi else []
    return [{"id": f"r{i}", "messages": turns + [{"role": "user", "content": f"Question {i}?"},
                                                 {"role": "assistant", "content": "reference"}], "checks": []}
            for i in range(n)]


def _judge(name, decide, seen=None):
    """A judge from a per-item rule decide(first, second) -> verdict; what it is shown goes to ``seen``."""
    def judge_batch(items):
        if seen is not None:
            seen.extend(items)
        return [JudgeResult(v, f"Verdict: {v}") for v in (decide(a, b) for _, a, b in items)]

    return Judge(name, judge_batch)


def test_a_judge_that_always_says_A_gets_half_the_wins_and_shows_its_position_bias():
    records = _records(2000)
    ours, theirs = [f"ours {i}" for i in range(2000)], [f"theirs {i}" for i in range(2000)]
    out = compare(_judge("always-A", lambda a, b: "A"), records, ours, theirs, seed=0)
    # the coin shows ours first about half the time: win ~ Binomial(2000, 0.5), sd ~0.011
    assert 0.45 < out["win_rate"] < 0.55 and out["ci95"][0] < out["win_rate"] < out["ci95"][1]
    assert out["win"] + out["loss"] == 2000 and out["tie"] == out["unparseable"] == out["identical"] == 0
    assert out["picked_first"] == 2000 and out["picked_second"] == 0
    assert out["judge"] == "always-A" and out["n"] == 2000 and len(out["samples"]) == 3
    assert compare(_judge("a", lambda a, b: "A"), records, ours, theirs, seed=0)["win"] == out["win"]  # seeded
    assert compare(_judge("a", lambda a, b: "A"), records, ours, theirs, seed=1)["win"] != out["win"]


def test_a_judge_with_a_real_preference_wins_whatever_the_order():
    records = _records(200)
    short, long = [f"x{i}" for i in range(200)], [f"a longer answer {i}" for i in range(200)]
    longer = _judge("longer", lambda a, b: "A" if len(a) > len(b) else "B")
    out = compare(longer, records, long, short)
    assert out["win_rate"] == 1.0 and out["loss"] == 0 and out["picked_first"] > 0 and out["picked_second"] > 0
    assert {s["swapped"] for s in compare(longer, records, long, short, samples=50)["samples"]} == {True, False}
    assert compare(longer, records, short, long)["win_rate"] == 0.0
    # a marker word: ours has it on 7 of every 10 items, theirs on the other 3; no marker on either: tie
    ours = [f"{'good' if i % 10 < 7 else 'meh'} {i}" for i in range(200)]
    theirs = [f"{'meh' if i % 10 < 7 else 'good'} {i}" for i in range(200)]
    marker = _judge("marker", lambda a, b: "A" if "good" in a else "B" if "good" in b else "tie")
    out = compare(marker, records, ours, theirs, seed=3)
    assert out["win"] == 140 and out["loss"] == 60 and out["win_rate"] == pytest.approx(0.7)
    out = compare(marker, records, [f"meh {i}" for i in range(200)], theirs)
    assert out["tie"] == 140 and out["win"] == 0 and out["loss"] == 60 and out["win_rate"] == 0.0


@pytest.mark.parametrize("text, verdict", [
    ("Verdict: A", "A"), ("verdict: b.", "B"), ("VERDICT - tie!", "tie"), ("Verdict: a tie", "tie"),
    ("Verdict: [[A]]", "A"), ("**Verdict:** Assistant B", "B"), ("Verdict: Answer A is better", "A"),
    ("B is wrong, A is right.\nVerdict: A", "A"), ("My verdict is that A wins.\nVerdict: A", "A"),
    ("[[B]]", "B"), ("A", "A"), (" b. ", "B"), ("**tie**", "tie"), ("Verdict:a", "A"),
    ("Verdict: A, because B is wrong", "A"),
    # unparseable: nothing stated, an unknown label, or both sides claimed
    ("", None), (None, None), ("I cannot decide.", None), ("Both are fine.", None), ("Verdict: C", None),
    ("Verdict: absolutely", None), ("Verdict: a close call, but B", None), ("Verdict: A\nVerdict: B", None),
    ("Verdict: A or B", None), ("Verdict: A/B", None), ("[[A]] ... [[B]]", None),
    ("end with one of:\nVerdict: A\nVerdict: B\nVerdict: tie", None),
])
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


def test_unparseable_verdicts_are_counted_apart_and_identical_answers_never_judged():
    records = _records(100)
    ours = ["same" if i < 10 else f"good {i}" + ("?" if i % 3 == 0 else "") for i in range(100)]
    theirs = ["same" if i < 10 else f"bad {i}" for i in range(100)]
    seen = []
    judge = _judge("picky", lambda a, b: None if "?" in a + b else "A" if "good" in a else "B", seen)
    out = compare(judge, records, ours, theirs)
    confused = sum(1 for i in range(10, 100) if i % 3 == 0)  # 30
    assert out["unparseable"] == confused and out["identical"] == out["tie"] == 10
    assert out["win"] == 90 - confused and out["loss"] == 0 and out["win_rate"] == 1.0
    assert len(seen) == 90 and all("same" not in a for _, a, _ in seen)
    assert out["picked_first"] + out["picked_second"] == out["win"]
    all_same = compare(judge, records, ["same"] * 100, ["same"] * 100)
    assert all_same["tie"] == 100 and math.isnan(all_same["win_rate"]) and all_same["samples"] == []
    with pytest.raises(ValueError, match="compare: 100 records, 100 and 99"):
        compare(judge, records, ours, theirs[:-1])
    with pytest.raises(ValueError, match="judge odd: bad result"):
        compare(_judge("odd", lambda a, b: "a"), records, ours, theirs)


def test_prompts_render_the_dialog_and_both_answers():
    [single], [multi] = _records(1), _records(1, multi=True)
    text = render_prompt(DEFAULT_TEMPLATE, single, "first {answer_b}", "second")
    assert "Question 0?" in text and "first {answer_b}" in text and "second" in text and "reference" not in text
    assert text.index("first") < text.index("second") and text.rstrip().endswith("Verdict: tie")
    text = render_prompt("{{literal}} {question} | {answer_a} | {answer_b}", multi, "x", "y")
    assert text == "{{literal}} User: Hi.\n\nAssistant: Hello.\n\nUser: Question 0? | x | y"
    with pytest.raises(ValueError, match=r"lacks \{answer_b\}"):
        model_judge(None, None, template="{question} {answer_a}")


# ---- an OpenAI-compatible endpoint: a local server behind the real `openai` client ----------------

class _ChatHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if body["model"] == "broken":
            return self._send(500, {"error": {"message": "the judge exploded", "type": "server_error"}})
        prompt = body["messages"][-1]["content"]
        first = prompt.find("GOODMARK") < prompt.find("BADMARK")
        text = "Hmm, hard to say." if "confuse" in prompt else \
            f"The {'first' if first else 'second'} answer is right.\nVerdict: {'A' if first else 'B'}"
        self._send(200, {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                         "model": body["model"], "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                                              "message": {"role": "assistant", "content": text}}],
                         "usage": {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59}})

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture()
def endpoint(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)  # localhost only, never through a proxy
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", server.received
    server.shutdown()
    server.server_close()


def test_openai_judge_against_a_local_endpoint(endpoint):
    url, received = endpoint
    records = _records(20)
    records[7]["messages"][0]["content"] = "Please confuse the judge."
    ours, theirs = [f"GOODMARK answer {i}" for i in range(20)], [f"BADMARK answer {i}" for i in range(20)]
    judge = openai_judge("judge-test-model", base_url=url, api_key="sk-test", concurrency=4, max_retries=0)
    out = compare(judge, records, ours, theirs)
    assert out["judge"] == "openai:judge-test-model"
    assert out["win"] == 19 and out["unparseable"] == 1 and out["loss"] == out["tie"] == 0 and out["win_rate"] == 1.0
    assert out["picked_first"] > 0 and out["picked_second"] > 0  # swapped orders, un-swapped verdicts
    assert "Verdict:" in out["samples"][0]["raw"]
    assert len(received) == 20 and {r["path"] for r in received} == {"/v1/chat/completions"}
    assert {r["auth"] for r in received} == {"Bearer sk-test"}
    bodies = [r["body"] for r in received]
    assert {b["model"] for b in bodies} == {"judge-test-model"} and {b["temperature"] for b in bodies} == {0.0}
    assert all(b["messages"][0] == {"role": "system", "content": DEFAULT_SYSTEM} for b in bodies)
    prompts = {b["messages"][1]["content"] for b in bodies}
    for i in range(20):  # each record's judge prompt, with both answers in one of the two orders
        [shown] = [p for p in prompts if f"GOODMARK answer {i}\n" in p]
        assert shown in (render_prompt(DEFAULT_TEMPLATE, records[i], ours[i], theirs[i]),
                         render_prompt(DEFAULT_TEMPLATE, records[i], theirs[i], ours[i]))


def test_openai_judge_from_config_reads_the_key_from_the_named_variable(endpoint, monkeypatch):
    url, received = endpoint
    monkeypatch.setenv("LF_TEST_JUDGE_KEY", "sk-from-env")
    judge = build_judge(JudgeConfig(kind="openai", model="m", base_url=url, api_key_env="LF_TEST_JUDGE_KEY",
                                    concurrency=1, max_tokens=32))
    assert compare(judge, _records(2), ["GOODMARK", "BADMARK"], ["BADMARK", "GOODMARK"])["win"] == 1
    assert [r["auth"] for r in received] == ["Bearer sk-from-env"] * 2 and received[0]["body"]["max_tokens"] == 32
    build_judge(JudgeConfig(kind="openai", model="m", base_url=url, api_key_env=""))([(_records(1)[0], "a", "b")])
    assert received[-1]["auth"] == "Bearer EMPTY"
    build_judge(JudgeConfig(kind="openai", model="m", base_url=url, api_key="sk-in-config"))([(_records(1)[0], "a", "b")])
    assert received[-1]["auth"] == "Bearer sk-in-config"  # a key in the config comes first
    monkeypatch.delenv("LF_TEST_JUDGE_KEY")
    with pytest.raises(ValueError, match="judge.api_key_env: environment variable LF_TEST_JUDGE_KEY is not set"):
        build_judge(JudgeConfig(kind="openai", model="m", base_url=url, api_key_env="LF_TEST_JUDGE_KEY"))


def test_openai_judge_errors_name_the_endpoint(endpoint, monkeypatch):
    url, received = endpoint
    judge = openai_judge("broken", base_url=url, api_key="k", max_retries=0)
    with pytest.raises(RuntimeError, match=rf"request to {url}/? \(model 'broken', record 'r0'\) failed"):
        compare(judge, _records(1), ["x"], ["y"])
    assert len(received) == 1  # no retries
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    with pytest.raises(RuntimeError, match=f"request to {dead}"):
        openai_judge("m", base_url=dead, api_key="k", max_retries=0, timeout=5)([(_records(1)[0], "x", "y")])
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="openai_judge: no API key"):
        openai_judge("m", base_url=url)
    monkeypatch.setitem(sys.modules, "openai", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install llamaforge\[eval\]"):
        openai_judge("m", base_url=url, api_key="k")


# ---- a chat model, a reward model and the simulated annotators as judges --------------------------

def test_model_judge_asks_in_the_chat_format_and_parses_the_answer(monkeypatch):
    from llamaforge.eval import tasks

    def fake_answer(model, tokenizer, prompts, *, max_new_tokens, batch_size):
        assert all(len(p) == 1 and p[0]["role"] == "user" for p in prompts) and max_new_tokens == 7
        return ["Verdict: A" if p[0]["content"].find("GOODMARK") < p[0]["content"].find("BADMARK") else "[[B]]"
                for p in prompts]

    monkeypatch.setattr(tasks, "answer", fake_answer)
    out = compare(model_judge(object(), None, max_new_tokens=7), _records(30), ["GOODMARK"] * 30, ["BADMARK"] * 30)
    assert out["win_rate"] == 1.0 and out["win"] == 30 and out["picked_first"] > 0 and out["picked_second"] > 0


def test_a_tiny_model_judges_in_memory_and_from_its_dir(tiny_tokenizer, tmp_path):
    from llamaforge.model.checkpoint_io import save_model

    torch.manual_seed(0)
    model = Transformer(ModelArgs(**dict(SIZES["debug"], vocab_size=tiny_tokenizer.vocab_size))).eval()
    template = "Q: {question}\nA: {answer_a}\nB: {answer_b}\nVerdict:"
    items = [(r, f"Alice has {i} apples.", f"Bob has {i + 1} coins.") for i, r in enumerate(_records(3))]
    results = model_judge(model, tiny_tokenizer, template=template, max_new_tokens=4)(items)
    assert len(results) == 3 and all(isinstance(r.raw, str) and r.verdict in ("A", "B", "tie", None) for r in results)
    save_model(model, tmp_path / "judge", tiny_tokenizer)
    (tmp_path / "t.txt").write_text(template)
    loaded = build_judge(JudgeConfig(kind="model", model=str(tmp_path / "judge"), template=str(tmp_path / "t.txt"),
                                     max_tokens=4, device="cpu"))
    assert loaded.name == "model:judge" and [r.raw for r in loaded(items)] == [r.raw for r in results]  # greedy
    assert load_model_judge(tmp_path / "judge", template=template, max_new_tokens=4)(items) == results


class _FakeRewardModels:
    """RewardModels.score's shape: {"helpful", "safety", "combined"} [N]; R_c = the count of '+'."""

    def __init__(self):
        self.calls = []

    def score(self, tokenizer, records, responses):
        self.calls.append((list(records), list(responses)))
        combined = torch.tensor([float(r.count("+")) for r in responses])
        return {"helpful": combined, "safety": None, "combined": combined}


def test_reward_judge_prefers_the_higher_score_within_tie_eps():
    rms, records = _FakeRewardModels(), _records(40)
    out = compare(reward_judge(rms, "tok"), records, ["+++ ours"] * 40, ["+ theirs"] * 40)
    assert out["win_rate"] == 1.0 and out["judge"] == "reward" and "R_c A=" in out["samples"][0]["raw"]
    recs, responses = rms.calls[0]  # one batched call: the 40 first answers, then the 40 second ones
    assert len(recs) == 80 and recs[:40] == recs[40:] and len(responses) == 80
    assert compare(reward_judge(rms, "tok"), records, ["++ a"] * 40, ["++ b"] * 40)["tie"] == 40
    loose = compare(reward_judge(rms, "tok", tie_eps=1.5), records, ["+++ a"] * 40, ["++ b"] * 40)
    assert loose["tie"] == 40 and math.isnan(loose["win_rate"])
    [r] = reward_judge(rms, "tok")([(records[0], "+", "+++")])
    assert r.verdict == "B" and r.scores == (1.0, 3.0)


def test_annotator_judge_prefers_correct_answers_over_wrong_ones():
    records = helpful_tasks(build_world(0), 30, 5, turns=1)
    good = [r["messages"][-1]["content"] for r in records]
    bad = ["The answer is 987654 zebras."] * len(records)
    judge = annotator_judge(seed=0)
    out = compare(judge, records, good, bad)
    # correct 0.8 vs wrong 0.25 latent quality: every rater sees a 0.55 gap whatever the order
    assert out["win_rate"] == 1.0 and out["win"] == 30 and out["judge"] == "annotators:3"
    assert out["picked_first"] > 0 and out["picked_second"] > 0 and "votes" in out["samples"][0]["raw"]
    assert compare(judge, records, bad, good)["win_rate"] == 0.0


def test_build_judge_names_the_bad_field(tmp_path):
    with pytest.raises(ValueError, match="judge.kind: unknown judge 'gpt'"):
        build_judge(JudgeConfig(kind="gpt"))
    with pytest.raises(ValueError, match="judge.model: kind 'openai'"):
        build_judge(JudgeConfig(kind="openai"))
    with pytest.raises(ValueError, match="judge.model: kind 'model'"):
        build_judge(JudgeConfig(kind="model"))
    with pytest.raises(ValueError, match="judge.reward_helpful"):
        build_judge(JudgeConfig(kind="reward"))
    with pytest.raises(ValueError, match="judge.template: no template file"):
        build_judge(JudgeConfig(kind="openai", model="m", template=str(tmp_path / "missing.txt")))
    (tmp_path / "bad.txt").write_text("{question} and {answer_a} only")
    with pytest.raises(ValueError, match=r"judge.template .*lacks \{answer_b\}"):
        build_judge(JudgeConfig(kind="openai", model="m", template=str(tmp_path / "bad.txt")))
    assert build_judge(JudgeConfig(n_raters=5)).name == "annotators:5"

    @dataclasses.dataclass
    class EvalConfig:  # the section embeds in a stage config; flags reach its fields
        judge: JudgeConfig = dataclasses.field(default_factory=JudgeConfig)

    cfg = load_config(EvalConfig, overrides=["--judge.kind=reward", "--judge.tie_eps=0.05"])
    assert cfg.judge.kind == "reward" and cfg.judge.tie_eps == 0.05 and cfg.judge.api_key_env == "OPENAI_API_KEY"

"""Mixed traffic (rerank_tools.benchmark.mix): group specs as ``--mix`` parses them, and one short
mix, alone and mixed, against a loopback stub that answers one key and refuses another for its
quota, the way the service's tenants are answered."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from rerank_tools.benchmark import args as bench_args
from rerank_tools.benchmark import cli
from rerank_tools.benchmark.loadgen import Outcome
from rerank_tools.benchmark.mix import MixGroup, backoff_s
from tests.stubs.stub_service import serve_in_thread

GOOD_KEY = "key-good-7f3a0c"
FLOODED_KEY = "key-flooded-91c2e8"
POLICY = '"bulk";q=100;w=60'
EXHAUSTED = '"bulk";r=0;t=1'
LEFT = '"interactive";r=99;t=60'


def test_group_specs_parse_with_their_defaults() -> None:
    assert bench_args.mix_group("interactive:docs=10,clients=1,key_env=RERANK_KEY_A") == MixGroup(
        "interactive", docs=10, clients=1, key_env="RERANK_KEY_A"
    )
    assert bench_args.mix_group(
        "storm: docs=10, clients=64, key_env=KEY_C, class=bulk, resend=now, start=2.5"
    ) == MixGroup("storm", 10, 64, "KEY_C", "bulk", "now", 2.5)
    anonymous = bench_args.mix_group("anon:docs=100,clients=16")
    assert (anonymous.key_env, anonymous.traffic_class, anonymous.resend) == (None, None, "retry-after")


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("docs=10,clients=1", "NAME:docs"),
        (":docs=10,clients=1", "NAME:docs"),
        ("a:clients=1", "docs is required"),
        ("a:docs=10", "clients is required"),
        ("a:docs=0,clients=1", "docs must be a positive integer"),
        ("a:docs=10,clients=many", "clients must be a positive integer"),
        ("a:docs=10,clients=1,class=batch", "class must be one of interactive, bulk"),
        ("a:docs=10,clients=1,resend=later", "resend must be one of retry-after, now"),
        ("a:docs=10,clients=1,start=-1", "start must be seconds"),
        ("a:docs=10,clients=1,key_env=my-key", "key_env must name an environment variable"),
        ("a:docs=10,clients=1,key_env=", "key_env needs a value"),
        ("a:docs=10,clients=1,docs=5", "docs given twice"),
        ("a:docs=10,clients=1,rate=5", "unknown field 'rate'"),
    ],
)
def test_a_bad_group_spec_is_refused_naming_the_field(spec: str, names: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=names):
        bench_args.mix_group(spec)


def test_the_cli_refuses_a_mix_that_cannot_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MIX_KEY_UNSET", raising=False)
    url = ["--url", "http://127.0.0.1:1"]
    for argv, message in [
        ([*url, "--mix", "a:docs=0,clients=1"], "argument --mix: group 'a': docs must be"),
        ([*url, "--mix", "a:docs=1,clients=1,key_env=MIX_KEY_UNSET"], "MIX_KEY_UNSET is empty or unset"),
        ([*url, "--mix", "a:docs=1,clients=1", "--mix", "a:docs=2,clients=1"], "names must differ"),
        ([*url, "--mix", "a:docs=1,clients=1,start=10", "--duration", "10"], "not before --duration"),
        ([*url, "--mix-alone"], "--mix-alone needs --mix"),
    ]:
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2
        assert message in capsys.readouterr().err


def test_a_client_honouring_retry_after_waits_what_it_says() -> None:
    def refused(status: int, **limits: str) -> Outcome:
        return Outcome(0.0, 0.01, status, None, limits={k.replace("_", "-"): v for k, v in limits.items()})

    assert backoff_s(refused(429, Retry_After="3")) == 3.0
    assert backoff_s(refused(503, Retry_After="2")) == 2.0
    assert backoff_s(refused(429)) == 1.0  # the service's default
    assert backoff_s(refused(429, Retry_After="Wed, 21 Oct 2026 07:28:00 GMT")) == 1.0
    assert backoff_s(refused(401)) == 0.0


def build_tenant_stub(seen: list[tuple[str | None, str | None]]) -> FastAPI:
    """200 for ``GOOD_KEY`` (and, degraded, for no key); 429 ``quota_exceeded`` with the
    ``Retry-After`` and ``RateLimit`` headers for ``FLOODED_KEY``. ``seen`` collects each request's
    ``Authorization`` and ``X-Rerank-Class``."""
    app = FastAPI()

    @app.post("/rerank")
    async def rerank(request: Request) -> JSONResponse:
        auth = request.headers.get("authorization")
        seen.append((auth, request.headers.get("x-rerank-class")))
        body = await request.json()
        if auth == f"Bearer {FLOODED_KEY}":
            error = {"code": "quota_exceeded", "type": "rate_limited", "message": "bulk quota spent"}
            return JSONResponse(
                {"error": error},
                status_code=429,
                headers={"Retry-After": "1", "RateLimit-Policy": POLICY, "RateLimit": EXHAUSTED},
            )
        results = [{"index": i, "score": 0.0} for i in range(len(body["documents"]))]
        return JSONResponse({"results": results, "degraded": auth is None}, headers={"RateLimit": LEFT})

    return app


def test_a_mix_reports_each_group_alone_and_mixed_and_never_its_key(
    candidates: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MIX_KEY_OK", GOOD_KEY)
    monkeypatch.setenv("MIX_KEY_FLOODED", FLOODED_KEY)
    seen: list[tuple[str | None, str | None]] = []
    with serve_in_thread(build_tenant_stub(seen)) as url:
        code = cli.main(
            ["--url", url, "--candidates", str(candidates), "--output-dir", str(tmp_path),
             "--duration", "0.5", "--warmup", "1", "--samples", "4", "--mix-alone",
             "--mix", "ok:docs=3,clients=2,key_env=MIX_KEY_OK,class=interactive",
             "--mix", "polite:docs=2,clients=1,key_env=MIX_KEY_FLOODED,class=bulk",
             "--mix", "storm:docs=2,clients=2,key_env=MIX_KEY_FLOODED,resend=now",
             "--mix", "anon:docs=2,clients=1,start=0.25"]
        )  # fmt: skip
    assert code == 0
    out, err = capsys.readouterr()
    written = (tmp_path / "results.jsonl").read_text()
    assert written == out
    for text in (out, err):
        assert GOOD_KEY not in text and FLOODED_KEY not in text
    records = [json.loads(line) for line in written.splitlines()]
    groups = {(r["phase"], r["group"]): r for r in records if r["kind"] == "mix_group"}
    assert sorted(groups) == sorted(
        (p, g) for p in ("alone", "mixed") for g in ("ok", "polite", "storm", "anon")
    )

    for phase in ("alone", "mixed"):
        ok, polite, storm, anon = (groups[phase, g] for g in ("ok", "polite", "storm", "anon"))
        assert ok["sent"] == ok["answered"] > 0 and ok["refused"] == ok["degraded"] == 0
        assert ok["pairs_per_s"] == pytest.approx(ok["answered"] * 3 / ok["duration_s"])
        assert 0 < ok["p50_ms"] <= ok["p90_ms"] <= ok["p99_ms"]
        assert ok["refused_p99_ms"] is None and ok["rate_limit"] == LEFT
        # Told to come back in 1 s, a polite client sends once in the half second.
        assert polite["sent"] == polite["refused"] == 1 and polite["answered"] == 0
        assert polite["refused_by_status"] == {"429": 1}
        assert polite["refused_by_code"] == {"quota_exceeded": 1}
        assert (polite["rate_limit"], polite["rate_limit_policy"]) == (EXHAUSTED, POLICY)
        assert polite["p99_ms"] is None and polite["refused_p50_ms"] > 0
        # A client in a retry loop resends at once, however often it is refused.
        assert storm["sent"] == storm["refused"] >= 10
        assert storm["refused_by_code"] == {"quota_exceeded": storm["sent"]}
        assert storm["resend"] == "now" and storm["key_env"] == "MIX_KEY_FLOODED"
        assert anon["answered"] == anon["degraded"] > 0
        for group in (ok, polite, storm, anon):
            assert group["client_errors"] == {} and group["client_timeouts"] == 0
    # The late group is measured from its start.
    assert groups["mixed", "anon"]["start_s"] == 0.25
    assert groups["mixed", "anon"]["duration_s"] < groups["mixed", "ok"]["duration_s"]

    assert (f"Bearer {GOOD_KEY}", "interactive") in seen
    assert (f"Bearer {FLOODED_KEY}", "bulk") in seen and (f"Bearer {FLOODED_KEY}", None) in seen
    assert (None, None) in seen

    (summary,) = [r for r in records if r["kind"] == "mix"]
    assert summary["duration_s"] == 0.5
    rows = {row["group"]: row for row in summary["groups"]}
    ok, alone = groups["mixed", "ok"], groups["alone", "ok"]
    assert rows["ok"]["p99_ratio"] == pytest.approx(ok["p99_ms"] / alone["p99_ms"])
    assert rows["ok"]["pairs_per_s_ratio"] == pytest.approx(ok["pairs_per_s"] / alone["pairs_per_s"])
    assert rows["ok"]["meets_target"] == (rows["ok"]["p99_ratio"] <= 2.0)
    # Nothing answered alone: no ratio, and no verdict on the bulk target.
    assert rows["polite"]["pairs_per_s_ratio"] is None and rows["polite"]["meets_target"] is None
    assert rows["storm"]["meets_target"] is None  # no class asked for
    assert summary["targets"] == {"interactive_p99_ratio_max": 2.0, "bulk_pairs_per_s_ratio_min": 0.8}

"""Per-model sampler defaults reach the sampler, failed models are not advertised as retryable, and chains without
proposals stay out of the acceptance histogram."""

from __future__ import annotations

import shutil
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from service.metrics import PrometheusSink
from tests.api.conftest import serve
from tests.api.toy_registry import gauss


async def test_drs_takes_logit_max_from_the_manifest(tmp_path: Path) -> None:
    # 3.25 is far from any pilot estimate on the analytic pair, so the assertion tells the two apart
    gauss(tmp_path / "models", samplers={"drs": {"logit_max": 3.25}})
    async with serve(tmp_path / "models", tmp_path / "data") as (client, services):
        r = await client.post("/v1/samples/drs", json={"model": "gauss", "n": 4, "seed": 1, "steps": 8})
        assert r.status_code == 200, r.text
        algos = [a for key, a in services.hub._algos.items() if key[3] == "drs"]
        assert [a.options.logit_max for a in algos] == [3.25]
        # a request's own option still wins over the manifest
        r = await client.post("/v1/samples/drs", json={"model": "gauss", "n": 4, "seed": 1, "steps": 8,
                                                        "options": {"logit_max": 5.0}})
        assert r.status_code == 200, r.text
        assert sorted(a.options.logit_max for key, a in services.hub._algos.items() if key[3] == "drs") == [3.25, 5.0]


async def test_failed_model_503_has_no_retry_after(tmp_path: Path) -> None:
    root = tmp_path / "models"
    gauss(root)
    bad = gauss(root, name="broken")
    (bad / "generator.safetensors").write_bytes(b"corrupt")
    async with serve(root, tmp_path / "data") as (client, _):
        r = await client.post("/v1/samples/mh", json={"model": "broken", "n": 1})
        assert r.status_code == 503
        assert "retry-after" not in r.headers  # retrying cannot help until an operator fixes the files


async def test_raw_chains_are_not_in_the_acceptance_histogram(tmp_path: Path) -> None:
    gauss(tmp_path / "models")
    sink = PrometheusSink()
    async with serve(tmp_path / "models", tmp_path / "data", sink=sink) as (client, _):
        for sampler in ("raw", "mh"):
            r = await client.post(f"/v1/samples/{sampler}", json={"model": "gauss", "n": 3, "seed": 2, "steps": 5})
            assert r.status_code == 200, r.text
    counts = {}
    for fam in text_string_to_metric_families(sink.render()[0].decode()):
        for s in fam.samples:
            if s.name == "gansampler_chain_acceptance_ratio_count":
                counts[s.labels["sampler"]] = s.value
    assert counts.get("mh") == 3
    assert counts.get("raw", 0) == 0


async def test_load_notes_compare_a_steps_default_with_this_server_s_limits(tmp_path: Path) -> None:
    gauss(tmp_path / "models", samplers={"mh": {"steps": 50}})
    async with serve(tmp_path / "models", tmp_path / "data", max_steps=40, max_job_steps=100) as (client, _):
        notes = (await client.get("/v1/models/gauss")).json()["notes"]
        assert any(n.startswith("samplers.mh.steps: default 50 is above the request limit max_steps = 40")
                   for n in notes), notes
    async with serve(tmp_path / "models", tmp_path / "data2") as (client, _):  # default limits: 50 is fine
        notes = (await client.get("/v1/models/gauss")).json()["notes"]
        assert not any(n.startswith("samplers.mh.steps") for n in notes), notes


async def test_the_model_list_names_what_the_scan_ignored(tmp_path: Path) -> None:
    vdir = gauss(tmp_path / "models")
    shutil.copytree(vdir, vdir.parent / "v4")
    async with serve(tmp_path / "models", tmp_path / "data") as (client, _):
        body = (await client.get("/v1/models")).json()
        assert [m["id"] for m in body["models"]] == ["gauss@1"]
        assert [i["path"] for i in body["ignored"]] == ["gauss/v4"]
        assert "rename it to '4'" in body["ignored"][0]["reason"]

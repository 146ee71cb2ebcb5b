"""A minimal gansampler client in the standard library only (urllib + json; numpy for the npz body).

Shows the raw HTTP contract (docs/api.md) without the SDK: every sampler the model supports, the three output
encodings, and the error body.

    python examples/raw_http_client.py --url http://127.0.0.1:8000 --model my-digits --out samples/
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

TIMEOUT_S = 120.0


def call(url: str, method: str = "GET", body: dict[str, Any] | None = None,
         accept: str = "application/json") -> tuple[int, str, bytes]:
    """(status, content type, body bytes); HTTP errors are returned, not raised (their body is the error JSON)."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    headers = {"accept": accept}
    if data is not None:
        headers["content-type"] = "application/json"  # anything else is 415
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            return resp.status, resp.headers.get("content-type", ""), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("content-type", ""), err.read()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--model", required=True)
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--out", type=Path, default=None, help="write PNGs and npz files here")
    args = p.parse_args()

    status, _, body = call(f"{args.url}/v1/models/{args.model}")
    if status != 200:
        print(f"GET /v1/models/{args.model}: {status} {body.decode()}")
        return 1
    info = json.loads(body)
    print(f"{info['id']}: {info['state']}, output {info['output']}, calibration {info['calibration']}")
    is_image = info["output"]["kind"] == "image"
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    for sampler, support in info["samplers"].items():
        if not support["supported"]:
            status, _, body = call(f"{args.url}/v1/samples/{sampler}", "POST", {"model": args.model, "n": 1})
            print(f"{sampler:5s} unsupported -> {status} {json.loads(body)['error']['message']}")
            continue
        request = {"model": args.model, "n": args.n, "seed": 0, "steps": args.steps}
        # JSON with float arrays
        status, _, body = call(f"{args.url}/v1/samples/{sampler}", "POST", {**request, "output": "array"})
        result = json.loads(body)
        if status != 200:
            print(f"{sampler:5s} {status} {result['error']}")
            return 1
        x = np.asarray(result["samples"], dtype=np.float32)
        d = result["diagnostics"]
        print(f"{sampler:5s} array {x.shape} acceptance {d['acceptance_rate']:.3f} "
              f"logit {d['logit_initial_mean']:+.2f} -> {d['logit_final_mean']:+.2f} "
              f"exact {d['exact']} in {result['timing']['total_s']:.2f} s")
        # the same request as one binary npz body: samples, z, logit_final, meta.json
        status, ctype, body = call(f"{args.url}/v1/samples/{sampler}", "POST", request, accept="application/x-npz")
        npz = np.load(io.BytesIO(body))
        assert status == 200 and ctype == "application/x-npz", (status, ctype)
        assert np.allclose(npz["samples"], x, atol=1e-6)  # same seed, same samples
        if args.out is not None:
            (args.out / f"{sampler}.npz").write_bytes(body)
        if is_image:  # base64 PNG strings
            status, _, body = call(f"{args.url}/v1/samples/{sampler}", "POST", {**request, "output": "png"})
            pngs = json.loads(body)["samples"]
            if args.out is not None:
                for i, png in enumerate(pngs):
                    (args.out / f"{sampler}_{i}.png").write_bytes(base64.b64decode(png))
    status, _, body = call(f"{args.url}/v1/samples/mh", "POST", {"model": args.model, "n": 0})
    print(f"a bad request -> {status} {json.loads(body)['error']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

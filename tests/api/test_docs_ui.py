"""``/docs`` and ``/redoc`` are served from the server's own files, so they work on a host with no internet."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from service.api import docs_ui
from service.api.deps import Services
from service.config import Settings
from service.engine.stats import NullSink
from tests.api.conftest import running_app
from tests.clients.test_cli_server import uvicorn_in_thread

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
BROWSER_TIMEOUT_S = 90
VIRTUAL_TIME_MS = 15_000  # headless chromium runs the page's scripts this long (virtual time) before dumping the DOM

Api = tuple[httpx.AsyncClient, Services]


def asset_links(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html) + re.findall(r"url: '([^']+)'", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_only_this_servers_files(api: Api, page: str) -> None:
    client, _ = api
    response = await client.get(page)
    assert response.status_code == 200, response.text
    links = asset_links(response.text)
    scripts = [u for u in links if u.endswith(".js")]
    assert scripts, response.text
    for url in links:
        assert url.startswith("/"), f"{page} loads {url} from another host"
    for url in [u for u in links if u.startswith(docs_ui.ASSETS_URL)]:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].split(";")[0] == docs_ui.ASSET_TYPES[url.rsplit("/", 1)[1]]
        assert len(asset.content) > 1000, url


async def test_docs_assets_outside_the_allow_list_are_not_found(api: Api) -> None:
    client, _ = api
    for name in ("core.py", "__init__.py", "..%2F__init__.py", "nothing.js"):
        response = await client.get(f"{docs_ui.ASSETS_URL}/{name}")
        assert response.status_code == 404, name
        assert response.json()["error"]["type"] == "not_found"
    message = (await client.get(f"{docs_ui.ASSETS_URL}/core.py")).json()["error"]["message"]
    assert "'core.py'" in message and "swagger-ui-bundle.js" in message


async def test_docs_links_follow_the_proxy_root_path(toy_models: Path, tmp_path: Path) -> None:
    async with running_app(toy_models, tmp_path / "data") as (app, _):
        transport = httpx.ASGITransport(app=app, root_path="/gansampler")
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as proxied:
            html = (await proxied.get("/docs")).text
    assert "/gansampler/openapi.json" in html
    assert f"/gansampler{docs_ui.ASSETS_URL}/swagger-ui-bundle.js" in html


def test_the_bundled_swagger_ui_renders_openapi_3_1() -> None:
    """FastAPI writes OpenAPI 3.1, which Swagger UI renders from version 5 on (4 shows 'unable to render')."""
    static = docs_ui.assets_dir()
    assert static is not None, "fastapi-offline is a dependency: pip install -e ."
    version = re.search(r'PACKAGE_VERSION:"(\d+)\.', (static / "swagger-ui-bundle.js").read_text(errors="replace"))
    assert version is not None and int(version.group(1)) >= 5


def render(url: str) -> str:
    """The DOM of ``url`` after headless chromium ran its scripts (no network beyond loopback is needed)."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         f"--virtual-time-budget={VIRTUAL_TIME_MS}", "--dump-dom", url],
        capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_a_browser_renders_the_docs_with_no_cdn(toy_models: Path, tmp_path: Path) -> None:
    from service.api.app import create_app

    app = create_app(Settings(models_dir=toy_models, data_dir=tmp_path / "data"), sink=NullSink())
    with uvicorn_in_thread(app) as url:
        swagger = render(f"{url}/docs")
        redoc = render(f"{url}/redoc")
    assert 'data-path="/v1/samples/{sampler}"' in swagger, swagger[-3000:]
    assert 'data-path="/v1/jobs"' in swagger
    assert "/v1/samples/{sampler}" in redoc and "redoc-wrap" in redoc, redoc[-3000:]

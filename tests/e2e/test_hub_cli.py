"""The Hub commands as a user runs them: `search`, `files`, `pull`, then `chat` with the pulled model; and a pull
killed at half that a second run finishes."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localai_app.core.downloads import PARTIAL_DIR
from tests.e2e.test_starter_and_cli import run_cli
from tests.fakes.hub_server import FakeHub, FakeRepo

REPO = "tester/Tiny-Chat-GGUF"


def cli(
    *args: str,
    basedir: Path,
    endpoint: str,
    preexec: Callable[[], object] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, basedir=basedir, env={"HF_ENDPOINT": endpoint, **(env or {})}, preexec=preexec)


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP forward proxy (proxy.py) on loopback: its address and its access log."""
    port_file, log = tmp_path / "proxy.port", tmp_path / "proxy.log"
    command = [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0", "--port-file", str(port_file)]
    command += ["--num-workers", "1", "--num-acceptors", "1", "--log-file", str(log), "--log-level", "INFO"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert server.poll() is None and time.monotonic() < deadline, "the proxy did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}", log
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def hub(fake_hub: FakeHub, tiny_chat_model: Path, tiny_model: Path) -> FakeHub:
    fake_hub.add_repo(
        FakeRepo(
            REPO,
            {"Tiny-Chat-Q8_0.gguf": tiny_chat_model, "Tiny-Chat-F16.gguf": tiny_model, "README.md": b"# Tiny chat\n"},
            downloads=10,
            likes=3,
            parameters=500_000,
            base_model="tester/Tiny-Chat",
        )
    )
    fake_hub.add_repo(FakeRepo("other/Popular-GGUF", {"Popular-Q4_K_M.gguf": tiny_model}, downloads=999, licence="mit"))
    return fake_hub


def test_search_sorts_and_filters(tmp_path: Path, hub: FakeHub) -> None:
    result = cli("search", "gguf", "--json", basedir=tmp_path, endpoint=hub.url)
    assert result.returncode == 0, result.stderr
    assert [row["repo_id"] for row in json.loads(result.stdout)] == ["other/Popular-GGUF", REPO]
    result = cli("search", "gguf", "--licence", "apache-2.0", basedir=tmp_path, endpoint=hub.url)
    assert result.returncode == 0, result.stderr
    assert REPO in result.stdout
    assert "Popular" not in result.stdout
    assert "10 downloads" in result.stdout
    assert "based on tester/Tiny-Chat" in result.stdout


def test_files_shows_fit_speed_and_a_recommendation(tmp_path: Path, hub: FakeHub) -> None:
    result = cli("files", REPO, "--json", basedir=tmp_path, endpoint=hub.url)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert listing["commit"] == hub.commit_of(REPO)
    rows = {row["quantization"]: row for row in listing["files"]}
    assert set(rows) == {"Q8_0", "F16"}
    assert rows["Q8_0"]["fit"] == "fits"
    assert rows["Q8_0"]["tokens_per_second"] > 0
    assert sum(row["recommended"] for row in rows.values()) == 1


def test_pull_then_chat_with_the_pulled_model(tmp_path: Path, hub: FakeHub) -> None:
    result = cli("pull", REPO, "--quant", "q8_0", basedir=tmp_path, endpoint=hub.url)
    assert result.returncode == 0, result.stderr
    assert "Downloaded and verified Tiny-Chat-Q8_0.gguf" in result.stdout
    models = json.loads(cli("models", "--json", basedir=tmp_path, endpoint=hub.url).stdout)
    pulled = next(model for model in models if model["name"] == "Tiny-Chat-Q8_0")
    assert pulled["origin"] == f"{REPO}@{hub.commit_of(REPO)}"
    assert pulled["sha256"]
    reply = cli("chat", "Tiny-Chat-Q8_0", "Hello", "--max-tokens", "4", basedir=tmp_path, endpoint=hub.url)
    assert reply.returncode == 0, reply.stderr


def test_search_and_pull_go_through_the_proxy_the_environment_names(
    tmp_path: Path, hub: FakeHub, proxy: tuple[str, Path]
) -> None:
    address, log = proxy
    through_proxy = {"HTTP_PROXY": address, "http_proxy": address, "NO_PROXY": "", "no_proxy": ""}
    result = cli("search", "tiny", basedir=tmp_path, endpoint=hub.url, env=through_proxy)
    assert result.returncode == 0, result.stderr
    assert REPO in result.stdout
    result = cli("pull", REPO, "--quant", "Q8_0", basedir=tmp_path, endpoint=hub.url, env=through_proxy)
    assert result.returncode == 0, result.stderr
    assert "Downloaded and verified Tiny-Chat-Q8_0.gguf" in result.stdout
    proxied = log.read_text()
    host = hub.url.removeprefix("http://")
    assert f"GET {host}/api/models" in proxied  # metadata, through huggingface_hub
    assert f"{host}/{REPO}/resolve/" in proxied  # the file, through the app's own client: the Hub's redirect ...
    assert f"GET {hub.cdn_url.removeprefix('http://')}/" in proxied  # ... and the CDN it points at


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("pull", "nobody/Missing-GGUF"), "nobody/Missing-GGUF is not on 127.0.0.1"),
        (("pull", REPO, "--quant", "Q3_K_S"), "has no Q3_K_S file. Available: F16, Q8_0."),
        (("pull", REPO, "--file", "nope.gguf"), "has no GGUF file named nope.gguf"),
        (("pull", "../escape"), "is not a Hub repository name"),
    ],
)
def test_pull_mistakes_are_one_line_and_exit_2(
    tmp_path: Path, hub: FakeHub, args: tuple[str, ...], message: str
) -> None:
    result = cli(*args, basedir=tmp_path, endpoint=hub.url)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_offline_is_said_in_one_line(tmp_path: Path) -> None:
    result = cli("search", "qwen", basedir=tmp_path, endpoint="http://127.0.0.1:9")
    assert result.returncode == 1
    assert "you seem to be offline" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_pull_killed_at_half_finishes_on_the_next_run_refetching_under_one_percent(
    tmp_path: Path, fake_hub: FakeHub, starter_model: Path
) -> None:
    size = starter_model.stat().st_size
    fake_hub.add_repo(FakeRepo("tester/Starter-GGUF", {starter_model.name: starter_model}))
    fake_hub.faults.cut_at, fake_hub.faults.cuts = size // 2, 1  # the CLI then waits ~1 s to retry: kill it then
    command = [sys.executable, "-m", "localai_app", "--basedir", str(tmp_path), "pull", "tester/Starter-GGUF"]
    process = subprocess.Popen(
        [*command, "--quant", "Q4_K_M"], env={**os.environ, "HF_ENDPOINT": fake_hub.url}, stderr=subprocess.DEVNULL
    )
    partial_folder = tmp_path / "data" / "models" / PARTIAL_DIR
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        parts = list(partial_folder.glob("*.part")) if partial_folder.exists() else []
        if parts and parts[0].stat().st_size >= size // 2:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    (part,) = partial_folder.glob("*.part")
    on_disk = part.stat().st_size
    assert on_disk >= size // 2
    served_before = fake_hub.bytes_served(starter_model.name)

    result = cli("pull", "tester/Starter-GGUF", "--quant", "Q4_K_M", basedir=tmp_path, endpoint=fake_hub.url)
    assert result.returncode == 0, result.stderr
    refetched = fake_hub.bytes_served(starter_model.name) - served_before
    assert refetched <= 1.01 * (size - on_disk)
    pulled = tmp_path / "data" / "models" / "tester" / "Starter-GGUF" / starter_model.name
    assert pulled.read_bytes() == starter_model.read_bytes()


def test_a_disk_that_fills_mid_download_is_a_clear_error_and_frees_the_space(tmp_path: Path, hub: FakeHub) -> None:
    def small_disk() -> None:  # the CLI may write at most 300 kB per file: the 0.5 MB model cannot fit
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then write() fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    result = cli("pull", REPO, "--quant", "Q8_0", basedir=tmp_path, endpoint=hub.url, preexec=small_disk)
    assert result.returncode == 1
    assert "The disk filled up while downloading Tiny-Chat-Q8_0.gguf" in result.stderr
    assert list((tmp_path / "data" / "models" / PARTIAL_DIR).glob("*")) == []
    models = json.loads(cli("models", "--json", basedir=tmp_path, endpoint=hub.url).stdout)
    assert "Tiny-Chat-Q8_0" not in {model["name"] for model in models}

"""The fake Hub answers huggingface_hub and httpx the way the real Hub does, and its faults are observable."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import ExpandModelProperty_T, RepoFile, RepoFolder

from tests.fakes.hub_server import FakeHub, FakeRepo

MODEL = random.Random(7).randbytes(300_000)
OTHER_MODEL = random.Random(8).randbytes(200_000)
README = b"# Tiny\n\nA model card.\n"
TOKEN = "hf_allowed"
HOSTILE = ["../evil.gguf", "/etc/evil.gguf", "C:\\evil.gguf", "\\\\server\\share\\evil.gguf", "sub/../../evil.gguf"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as server:
        server.add_repo(
            FakeRepo(
                "acme/Llama-Small-GGUF",
                {"README.md": README, "llama-small.Q4_K_M.gguf": MODEL, "extra/llama-small.Q8_0.gguf": OTHER_MODEL},
                downloads=500,
                likes=3,
                parameters=1_500_000_000,
                base_model="acme/Llama-Small",
            )
        )
        server.add_repo(
            FakeRepo(
                "acme/Llama-Big-GGUF",
                {"llama-big.gguf": OTHER_MODEL},
                downloads=900,
                gated=True,
                allowed_tokens={TOKEN},
                licence="mit",
                parameters=70_000_000_000,
                last_modified="2025-03-01T10:00:00.000Z",
            )
        )
        server.add_repo(FakeRepo("other/qwen-GGUF", {"qwen.gguf": MODEL}, downloads=10_000, parameters=7_000_000_000))
        yield server


@pytest.fixture
def api(hub: FakeHub) -> HfApi:
    return HfApi(endpoint=hub.url, token=False)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=5) as http:
        yield http


def cdn_url(hub: FakeHub, content: bytes) -> str:
    return f"{hub.cdn_url}/cdn/{sha256(content)}"


def test_list_models_searches_filters_and_sorts_with_expanded_fields(api: HfApi) -> None:
    expand: list[ExpandModelProperty_T] = ["downloads", "gated", "cardData", "gguf", "lastModified", "tags"]
    models = list(api.list_models(search="LLAMA", filter="gguf", sort="downloads", limit=20, expand=expand))

    assert [m.id for m in models] == ["acme/Llama-Big-GGUF", "acme/Llama-Small-GGUF"]
    big, small = models
    assert big.gated == "auto" and small.gated is False
    assert big.card_data is not None and big.card_data.license == "mit"
    assert small.card_data is not None and small.card_data.base_model == "acme/Llama-Small"
    assert small.gguf == {"total": 1_500_000_000, "architecture": "llama", "context_length": 4096}
    assert big.last_modified is not None and big.last_modified.month == 3
    assert small.tags is not None and "base_model:acme/Llama-Small" in small.tags
    assert small.siblings is None


def test_list_models_answers_only_default_fields_without_expand(api: HfApi) -> None:
    (model,) = api.list_models(author="other")

    assert model.id == "other/qwen-GGUF" and model.downloads == 10_000
    assert model.gguf is None and model.card_data is None and model.sha is None


def test_list_models_filters_on_tags_and_parameter_counts(api: HfApi) -> None:
    assert [m.id for m in api.list_models(filter=["gguf", "license:mit"])] == ["acme/Llama-Big-GGUF"]
    in_range = api.list_models(num_parameters="min:1B,max:8B", sort="downloads")
    assert [m.id for m in in_range] == ["other/qwen-GGUF", "acme/Llama-Small-GGUF"]
    assert [m.id for m in api.list_models(num_parameters="min:10B")] == ["acme/Llama-Big-GGUF"]


def test_list_models_rejects_an_unknown_expand(hub: FakeHub, client: httpx.Client) -> None:
    assert client.get(f"{hub.url}/api/models", params={"expand": "card_data"}).status_code == 400


def test_private_repo_is_hidden_without_an_allowed_token(hub: FakeHub, api: HfApi) -> None:
    hub.add_repo(FakeRepo("acme/secret", {"secret.gguf": MODEL}, private=True, allowed_tokens={TOKEN}))

    assert "acme/secret" not in [m.id for m in api.list_models()]
    with pytest.raises(RepositoryNotFoundError) as raised:
        api.model_info("acme/secret")
    assert raised.value.response.status_code == 401
    insider = HfApi(endpoint=hub.url, token=TOKEN)
    assert "acme/secret" in [m.id for m in insider.list_models()]
    assert insider.model_info("acme/secret").private is True


def test_model_info_with_files_metadata(hub: FakeHub, api: HfApi) -> None:
    info = api.model_info("acme/Llama-Small-GGUF", files_metadata=True)

    assert info.sha == hub.commit_of("acme/Llama-Small-GGUF")
    assert len(info.sha) == 40 and int(info.sha, 16) >= 0
    siblings = {s.rfilename: s for s in info.siblings or []}
    model = siblings["llama-small.Q4_K_M.gguf"]
    assert model.size == len(MODEL) and model.lfs is not None
    assert model.lfs.sha256 == sha256(MODEL) and model.lfs.size == len(MODEL)
    readme = siblings["README.md"]
    assert readme.lfs is None and readme.size == len(README)
    assert readme.blob_id == hashlib.sha1(b"blob %d\0" % len(README) + README).hexdigest()
    assert info.gguf is not None and info.gguf["total"] == 1_500_000_000


def test_model_info_siblings_have_only_names_without_blobs(api: HfApi) -> None:
    info = api.model_info("acme/Llama-Small-GGUF")

    assert all(s.size is None and s.lfs is None for s in info.siblings or [])


def test_advance_commit_keeps_the_old_commit_resolvable(hub: FakeHub, api: HfApi) -> None:
    old = hub.commit_of("acme/Llama-Small-GGUF")
    new = hub.advance_commit("acme/Llama-Small-GGUF", {"llama-small.Q4_K_M.gguf": OTHER_MODEL})

    assert new != old and api.model_info("acme/Llama-Small-GGUF").sha == new
    assert api.model_info("acme/Llama-Small-GGUF", revision=old).sha == old
    old_file = get_hf_file_metadata(hf_hub_url("acme/Llama-Small-GGUF", "README.md", revision=old, endpoint=hub.url))
    assert old_file.commit_hash == old
    with pytest.raises(RemoteEntryNotFoundError):
        get_hf_file_metadata(hf_hub_url("acme/Llama-Small-GGUF", "README.md", endpoint=hub.url))


def test_advance_commit_can_forget_the_old_commit(hub: FakeHub, api: HfApi) -> None:
    old = hub.commit_of("acme/Llama-Small-GGUF")
    hub.advance_commit("acme/Llama-Small-GGUF", {"llama-small.Q4_K_M.gguf": MODEL}, forget_old=True)

    with pytest.raises(RevisionNotFoundError):
        api.model_info("acme/Llama-Small-GGUF", revision=old)


def test_list_repo_tree_recursive_with_lfs(api: HfApi) -> None:
    tree = list(api.list_repo_tree("acme/Llama-Small-GGUF", recursive=True, expand=True))

    folders = [e.path for e in tree if isinstance(e, RepoFolder)]
    files = {e.path: e for e in tree if isinstance(e, RepoFile)}
    assert folders == ["extra"]
    assert set(files) == {"README.md", "llama-small.Q4_K_M.gguf", "extra/llama-small.Q8_0.gguf"}
    nested = files["extra/llama-small.Q8_0.gguf"]
    assert nested.lfs is not None and nested.lfs.sha256 == sha256(OTHER_MODEL) and nested.size == len(OTHER_MODEL)
    assert nested.last_commit is not None and files["README.md"].lfs is None


def test_list_repo_tree_of_a_folder_without_recursion(api: HfApi) -> None:
    top = [e.path for e in api.list_repo_tree("acme/Llama-Small-GGUF")]
    inside = [e.path for e in api.list_repo_tree("acme/Llama-Small-GGUF", path_in_repo="extra")]

    assert top == ["extra", "README.md", "llama-small.Q4_K_M.gguf"]
    assert inside == ["extra/llama-small.Q8_0.gguf"]


def test_hostile_file_names_are_listed_as_is(hub: FakeHub, api: HfApi) -> None:
    hub.add_repo(FakeRepo("evil/repo", dict.fromkeys(HOSTILE, b"x")))

    siblings = [s.rfilename for s in api.model_info("evil/repo").siblings or []]
    listed = [e.path for e in api.list_repo_tree("evil/repo", recursive=True) if isinstance(e, RepoFile)]
    assert sorted(siblings) == sorted(HOSTILE) == sorted(listed)


def test_lfs_file_metadata_comes_from_the_redirect(hub: FakeHub) -> None:
    url = hf_hub_url("acme/Llama-Small-GGUF", "llama-small.Q4_K_M.gguf", endpoint=hub.url)
    metadata = get_hf_file_metadata(url)

    assert metadata.commit_hash == hub.commit_of("acme/Llama-Small-GGUF")
    assert metadata.etag == sha256(MODEL) and metadata.size == len(MODEL)
    assert metadata.location.startswith(f"{hub.cdn_url}/cdn/{sha256(MODEL)}?")
    assert [(r.method, r.host, r.status) for r in hub.requests] == [("HEAD", "127.0.0.1", 302)]


def test_git_file_metadata_comes_from_the_answer_itself(hub: FakeHub) -> None:
    metadata = get_hf_file_metadata(hf_hub_url("acme/Llama-Small-GGUF", "README.md", endpoint=hub.url))

    assert metadata.etag == hashlib.sha1(b"blob %d\0" % len(README) + README).hexdigest()
    assert metadata.size == len(README) and metadata.location.startswith(hub.url)


def test_redirect_goes_to_the_cdn_host_without_the_token(hub: FakeHub, client: httpx.Client) -> None:
    url = hf_hub_url("acme/Llama-Big-GGUF", "llama-big.gguf", endpoint=hub.url)
    response = client.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, follow_redirects=True)

    assert response.content == OTHER_MODEL
    resolve, cdn = hub.requests
    assert (resolve.host, resolve.status, resolve.headers["authorization"]) == ("127.0.0.1", 302, f"Bearer {TOKEN}")
    assert (cdn.host, cdn.status, cdn.body_bytes_sent) == ("localhost", 200, len(OTHER_MODEL))
    assert "authorization" not in cdn.headers


def test_hf_hub_download_fetches_through_the_fake(hub: FakeHub, tmp_path: Path) -> None:
    path = hf_hub_download(
        "acme/Llama-Small-GGUF", "llama-small.Q4_K_M.gguf", endpoint=hub.url, cache_dir=tmp_path, token=False
    )

    assert Path(path).read_bytes() == MODEL


def test_ranged_gets_return_the_exact_slice(hub: FakeHub, client: httpx.Client) -> None:
    url = cdn_url(hub, MODEL)
    middle = client.get(url, headers={"Range": "bytes=1000-1999"})
    tail = client.get(url, headers={"Range": "bytes=299000-"})

    assert middle.status_code == 206 and middle.content == MODEL[1000:2000]
    assert middle.headers["content-range"] == f"bytes 1000-1999/{len(MODEL)}"
    assert tail.status_code == 206 and tail.content == MODEL[299_000:]
    assert tail.headers["etag"] == f'"{sha256(MODEL)}"' and tail.headers["accept-ranges"] == "bytes"
    beyond = client.get(url, headers={"Range": f"bytes={len(MODEL)}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(MODEL)}"


def test_git_files_are_served_by_resolve_with_ranges(hub: FakeHub, client: httpx.Client) -> None:
    url = hf_hub_url("acme/Llama-Small-GGUF", "README.md", endpoint=hub.url)
    response = client.get(url, headers={"Range": "bytes=2-"})

    assert response.status_code == 206 and response.content == README[2:]
    assert response.headers["x-repo-commit"] == hub.commit_of("acme/Llama-Small-GGUF")


def test_path_contents_are_streamed_from_disk(hub: FakeHub, client: httpx.Client, tmp_path: Path) -> None:
    big = random.Random(9).randbytes(3 * 1024 * 1024 + 17)
    (tmp_path / "big.gguf").write_bytes(big)
    hub.add_repo(FakeRepo("acme/disk", {"big.gguf": tmp_path / "big.gguf"}))

    url = hf_hub_url("acme/disk", "big.gguf", endpoint=hub.url)
    assert client.get(url, follow_redirects=True).content == big
    assert client.get(cdn_url(hub, big), headers={"Range": "bytes=1048570-1048580"}).content == big[1048570:1048581]


def test_cut_closes_early_the_asked_number_of_times(hub: FakeHub, client: httpx.Client) -> None:
    hub.faults.cut_at, hub.faults.cuts = 100_000, 2
    url = cdn_url(hub, MODEL)

    for _ in range(2):
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.get(url)
    assert client.get(url).content == MODEL
    assert [r.body_bytes_sent for r in hub.requests] == [100_000, 100_000, len(MODEL)]
    assert hub.bytes_served("llama-small.Q4_K_M.gguf") == 200_000 + len(MODEL)


def test_resuming_after_a_cut_gets_the_rest(hub: FakeHub, client: httpx.Client) -> None:
    hub.faults.cut_at = 100_000
    url = cdn_url(hub, MODEL)
    received = bytearray()

    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)), client.stream("GET", url) as response:
        for chunk in response.iter_bytes():
            received += chunk
    rest = client.get(url, headers={"Range": f"bytes={len(received)}-"})
    assert len(received) == 100_000 and bytes(received) + rest.content == MODEL


def test_ignore_range_answers_the_whole_file(hub: FakeHub, client: httpx.Client) -> None:
    hub.faults.ignore_range = True
    response = client.get(cdn_url(hub, MODEL), headers={"Range": "bytes=1000-"})

    assert response.status_code == 200 and response.content == MODEL


def test_flipped_byte_corrupts_every_answer(hub: FakeHub, client: httpx.Client) -> None:
    hub.faults.flip_byte_at = 5
    url = cdn_url(hub, MODEL)

    for _ in range(2):
        content = client.get(url).content
        assert len(content) == len(MODEL) and sha256(content) != sha256(MODEL)
        assert content[5] == MODEL[5] ^ 0xFF and content[6:] == MODEL[6:]


def test_short_by_one_ends_the_body_early(hub: FakeHub, client: httpx.Client) -> None:
    hub.faults.short_by_one = True

    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.get(cdn_url(hub, MODEL))
    assert hub.requests[-1].body_bytes_sent == len(MODEL) - 1
    hub.faults.reset()
    assert client.get(cdn_url(hub, MODEL)).content == MODEL


def test_unavailable_then_served(hub: FakeHub, client: httpx.Client) -> None:
    hub.faults.unavailable = 2
    url = hf_hub_url("acme/Llama-Small-GGUF", "llama-small.Q4_K_M.gguf", endpoint=hub.url)

    assert client.head(url).status_code == 503
    assert client.get(cdn_url(hub, MODEL)).status_code == 503
    assert client.get(url, follow_redirects=True).content == MODEL


def test_rate_limited_with_retry_after(hub: FakeHub, client: httpx.Client) -> None:
    hub.faults.rate_limited, hub.faults.retry_after = 1, 7
    limited = client.get(cdn_url(hub, MODEL))

    assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
    assert client.get(cdn_url(hub, MODEL)).status_code == 200


def test_gated_repo_needs_an_allowed_token(hub: FakeHub) -> None:
    url = hf_hub_url("acme/Llama-Big-GGUF", "llama-big.gguf", endpoint=hub.url)

    with pytest.raises(GatedRepoError) as anonymous:
        get_hf_file_metadata(url, token=False)
    assert anonymous.value.response.status_code == 401
    assert "Please log in" in anonymous.value.response.headers["x-error-message"]
    with pytest.raises(GatedRepoError) as outsider:
        get_hf_file_metadata(url, token="hf_someone_else")
    assert outsider.value.response.status_code == 403
    assert "ask for access" in outsider.value.response.headers["x-error-message"]
    assert get_hf_file_metadata(url, token=TOKEN).size == len(OTHER_MODEL)


def test_missing_things_raise_the_hub_errors(hub: FakeHub, api: HfApi) -> None:
    with pytest.raises(RepositoryNotFoundError) as repo:
        api.model_info("acme/nothing")
    assert repo.value.response.status_code == 404
    with pytest.raises(RemoteEntryNotFoundError) as entry:
        get_hf_file_metadata(hf_hub_url("acme/Llama-Small-GGUF", "nothing.gguf", endpoint=hub.url))
    assert entry.value.response.headers["x-repo-commit"] == hub.commit_of("acme/Llama-Small-GGUF")
    with pytest.raises(RevisionNotFoundError):
        get_hf_file_metadata(hf_hub_url("acme/Llama-Small-GGUF", "README.md", revision="0" * 40, endpoint=hub.url))
    with pytest.raises(RevisionNotFoundError):
        list(api.list_repo_tree("acme/Llama-Small-GGUF", revision="dev"))


def test_errors_are_json_with_content_length(hub: FakeHub, client: httpx.Client) -> None:
    response = client.get(f"{hub.url}/api/models/acme/nothing")

    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-error-code"] == "RepoNotFound" and "error" in response.json()
    assert int(response.headers["content-length"]) == len(response.content)


def test_stop_drops_kept_alive_connections(hub: FakeHub, client: httpx.Client) -> None:
    url = f"{hub.url}/api/models"
    assert client.get(url).status_code == 200
    hub.stop()

    with pytest.raises(httpx.TransportError):
        client.get(url)

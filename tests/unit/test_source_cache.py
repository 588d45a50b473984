"""The source cache: content fetched once by its digest from a loopback HTTP server, checked before it is kept or
used, through the proxy the environment names."""

from __future__ import annotations

import hashlib

import pytest

from helpers import FileServer
from osbuild_oci.errors import BuildError
from osbuild_oci.store.sources import SourceCache

CONTENT = b"the app their CI just built\n" * 1000
DIGEST = "sha256:" + hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture
def server(monkeypatch, tmp_path):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "served").mkdir()
    (tmp_path / "served/app.deb").write_bytes(CONTENT)
    (tmp_path / "served/wrong.deb").write_bytes(b"something else\n")
    served = FileServer(tmp_path / "served")
    yield served
    served.close()


def test_fetched_once_then_served_from_the_cache(server, tmp_path):
    cache = SourceCache(tmp_path / "sources")
    path = cache.fetch(DIGEST, (f"{server.url}/missing.deb", f"{server.url}/app.deb"))
    assert path == tmp_path / "sources/sha256" / DIGEST.removeprefix("sha256:")
    assert path.read_bytes() == CONTENT
    assert (tmp_path / "sources").stat().st_mode & 0o777 == 0o700
    assert server.requests == ["/missing.deb", "/app.deb"], "URLs are tried in turn"
    served = server.served
    assert cache.fetch(DIGEST, (f"{server.url}/app.deb",)) == path
    assert server.served == served, "the second fetch downloads nothing"


def test_a_mismatch_names_the_url_and_keeps_nothing(server, tmp_path):
    cache = SourceCache(tmp_path / "sources")
    with pytest.raises(BuildError) as caught:
        cache.fetch(DIGEST, (f"{server.url}/wrong.deb", f"{server.url}/gone.deb"))
    wrong = hashlib.sha256(b"something else\n").hexdigest()
    assert str(caught.value).startswith(f"source {DIGEST}: {server.url}/wrong.deb gave sha256:{wrong}; "
                                        f"{server.url}/gone.deb: 404 File not found; nothing was kept")
    assert list((tmp_path / "sources/sha256").iterdir()) == []


def test_a_cached_file_that_changed_is_fetched_again(server, tmp_path):
    cache = SourceCache(tmp_path / "sources")
    path = cache.fetch(DIGEST, (f"{server.url}/app.deb",))
    path.write_bytes(b"tampered with\n")
    assert cache.fetch(DIGEST, (f"{server.url}/app.deb",)).read_bytes() == CONTENT
    assert len(server.requests) == 2


def test_a_context_file_is_checked_like_a_download(server, tmp_path):
    (tmp_path / "app.deb").write_bytes(CONTENT)
    cache = SourceCache(tmp_path / "sources")
    assert cache.fetch(DIGEST, (), tmp_path / "app.deb").read_bytes() == CONTENT
    (tmp_path / "other.deb").write_bytes(b"not it\n")
    with pytest.raises(BuildError, match=f"{tmp_path}/other.deb gave sha256:"):
        SourceCache(tmp_path / "elsewhere").fetch(DIGEST, (), tmp_path / "other.deb")


def test_downloads_go_through_the_proxy_the_environment_names(server, tmp_path, monkeypatch):
    proxy = FileServer(tmp_path / "served")
    try:
        monkeypatch.setenv("http_proxy", proxy.url)
        SourceCache(tmp_path / "sources").fetch(DIGEST, ("http://127.0.0.1:9/app.deb",))
    finally:
        proxy.close()
    assert proxy.requests == ["http://127.0.0.1:9/app.deb"], "the proxy was asked for the URL"
    assert server.requests == []


def test_gc_trims_the_least_recently_used_sources(server, tmp_path, monkeypatch):
    import os
    from osbuild_oci.store.sources import budgeted
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = SourceCache(tmp_path / "xdg/osbuild-oci/sources")
    old = cache.fetch(DIGEST, (f"{server.url}/app.deb",))
    other = "sha256:" + hashlib.sha256(b"something else\n").hexdigest()
    new = cache.fetch(other, (f"{server.url}/wrong.deb",))
    os.utime(old, (1, 1))
    assert budgeted().size() == len(CONTENT) + len(b"something else\n")
    budgeted().trim(len(CONTENT))
    assert not old.exists() and new.exists()

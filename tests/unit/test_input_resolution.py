"""Planning a stage's inputs: each one becomes the digest its stage id names, or a one-line refusal, before anything
runs; and the label a tree gets of them is read back only from that very tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from osbuild_oci.build.inputs import LABEL_INPUTS, Resolver, keyed, read_label, tree_label
from osbuild_oci.build.lockfile import Lock
from osbuild_oci.engine.model import ImageInfo
from osbuild_oci.errors import UserError
from osbuild_oci.pipeline.model import Source, Step

DEB = "sha256:" + "12" * 32
KEY = "sha256:" + "34" * 32
IMAGE_ID = "5" * 64


def images(ref: str, where: str) -> ImageInfo:
    if ref != "localhost/ci/tool:latest":
        raise UserError(f"no image {ref} in this store", where)
    return ImageInfo(IMAGE_ID, {}, [], [ref])


@pytest.fixture
def context(tmp_path) -> Path:
    (tmp_path / "ctx/app/etc").mkdir(parents=True)
    (tmp_path / "ctx/app/etc/app.conf").write_text("port = 8080\n")
    (tmp_path / "ctx/keys").mkdir()
    (tmp_path / "ctx/keys/vendor.asc").write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
    return tmp_path / "ctx"


def step(*items: dict) -> Step:
    return Step("org.osbuild-oci.copy", "stages[2]", {"items": [{**item, "destination": "/x"} for item in items]})


def resolver(context, sources=None, lock=None) -> Resolver:
    return Resolver(context, sources or {DEB: Source(("http://127.0.0.1:1/app.deb",)),
                                         KEY: Source(context="./keys//vendor.asc")}, images, lock)


def test_each_kind_becomes_the_digest_of_what_is_read(context):
    found = resolver(context).resolve(step({"from": "context", "source": "app/etc"}, {"from": "source", "source": DEB},
                                           {"from": "image", "image": "localhost/ci/tool:latest",
                                            "source": "/usr/bin/tool"}, {"from": "source", "source": KEY}))
    assert [(item.ref.key, item.digest[:7]) for item in found] == [
        ("context:app/etc", "sha256:"), (f"source:{DEB}", DEB[:7]),
        ("image:localhost/ci/tool:latest:/usr/bin/tool", IMAGE_ID[:7]), (f"source:{KEY}", KEY[:7])]
    assert found[1].digest == DEB, "a source is named by its declared digest: no download to know the id"
    assert found[2].digest == IMAGE_ID, "an image's files by the image's id"
    assert found[3].origin == Source(context="keys/vendor.asc"), "a context source's path, made plain"
    before = keyed(found)
    (context / "app/etc/app.conf").write_text("port = 9090\n")
    assert keyed(resolver(context).resolve(step({"from": "context", "source": "app/etc"})))["context:app/etc"] != \
        before["context:app/etc"]


@pytest.mark.parametrize("item, where, message", [
    ({"from": "context", "source": "app/missing"}, "stages[2].options.items[0].source",
     "the build context CONTEXT has no app/missing"),
    ({"from": "source", "source": "sha256:" + "99" * 32}, "stages[2].options.items[0].source",
     "is not among the pipeline's sources; declare it there"),
    ({"from": "image", "image": "localhost/ci/other:latest", "source": "/x"}, "stages[2].options.items[0].image",
     "no image localhost/ci/other:latest in this store"),
])
def test_what_cannot_be_read_is_refused_naming_its_json_path(context, item, where, message):
    with pytest.raises(UserError) as caught:
        resolver(context).resolve(step(item))
    assert caught.value.where == where
    assert message.replace("CONTEXT", str(context)) in caught.value.message


def test_a_link_in_the_context_is_refused(context, tmp_path):
    (tmp_path / "secret").write_text("the host's\n")
    (context / "app/etc/link.conf").symlink_to(tmp_path / "secret")
    with pytest.raises(UserError, match="link.conf is a symbolic link.*never through a link"):
        resolver(context).resolve(step({"from": "context", "source": "app"}))


def test_the_context_must_be_given_and_be_a_directory(context):
    with pytest.raises(UserError) as caught:
        resolver(None).resolve(step({"from": "context", "source": "app/etc"}))
    assert (caught.value.where, caught.value.message) == (
        "stages[2].options.items[0].from", "this reads from the build context; give its directory with --context DIR")
    with pytest.raises(UserError, match="no such directory"):
        resolver(context / "app/etc/app.conf")


def test_a_context_source_is_one_file(context):
    with pytest.raises(UserError, match="keys is a folder of the build context; a source is one file") as caught:
        resolver(context, {KEY: Source(context="keys")}).resolve(step({"from": "source", "source": KEY}))
    assert caught.value.where == f"sources.{KEY}.context"


def test_a_locked_build_reads_only_the_sources_its_lock_names(context, tmp_path):
    lock = Lock(tmp_path / "p.lock", None, {}, sources={DEB: {"urls": ["http://127.0.0.1:1/app.deb"]}})
    resolver(context, lock=lock).resolve(step({"from": "source", "source": DEB}))
    with pytest.raises(UserError, match=f"the lock file {tmp_path}/p.lock names no source {KEY}"):
        resolver(context, lock=lock).resolve(step({"from": "source", "source": KEY}))


def test_the_inputs_label_is_read_back_only_from_its_own_tree(context):
    found = resolver(context).resolve(step({"from": "context", "source": "app/etc"}))
    label = tree_label("app", 2, "a" * 64, found)[LABEL_INPUTS]
    assert read_label(label, "a" * 64) == {"tree": "a" * 64, "pipeline": "app", "index": 2, "inputs": keyed(found)}
    assert read_label(label, "b" * 64) is None, "a child inherits its parent's labels; they are not its inputs"
    assert read_label("not base64 {", "a" * 64) is None
    assert tree_label("app", 2, "a" * 64, ()) == {}, "a stage without inputs gets no label"

"""The SPDX document of a dpkg database: packages, purls, licenses, relationships; valid to spdx-tools."""

from __future__ import annotations

import json
import os

import pytest

from helpers import depends_closure, sbom_packages, spdx_problems
from osbuild_oci import safefiles
from osbuild_oci.store import sbom

STATUS = """Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u4

Package: mawk
Status: install ok installed
Architecture: amd64
Version: 1.3.4.20200120-3.1
Provides: awk

Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4+deb12u5
Pre-Depends: awk
Depends: libc6 (>= 2.34), missing-pkg | libc6

Package: bsdutils
Status: install ok installed
Architecture: amd64
Source: util-linux (2.38.1-5)
Version: 1:2.38.1-5+b1

Package: removed
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
"""
DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: someone
License: GPL-2+ or Artistic

Files: debian/*
License: Expat

Files: odd/*
License: Odd-License

Files: old/*
License: LGPL-1.1+

License: Odd-License
 Do what you like.
"""


def test_document_lists_installed_packages_with_purl_source_and_license():
    doc = sbom.document(STATUS, {"mawk": DEP5, "libc6": "not machine-readable\n"}, "f" * 64, 1700000000)
    assert spdx_problems(json.dumps(doc)) == []
    assert sbom_packages(doc) == {"libc6=2.36-9+deb12u4:amd64", "mawk=1.3.4.20200120-3.1:amd64",
                                  "base-files=12.4+deb12u5:amd64", "bsdutils=1:2.38.1-5+b1:amd64"}
    packages = {p["name"]: p for p in doc["packages"]}
    assert packages["bsdutils"]["externalRefs"][0]["referenceLocator"] == \
        "pkg:deb/debian/bsdutils@1:2.38.1-5+b1?arch=amd64"
    assert packages["bsdutils"]["sourceInfo"] == "built from Debian source package util-linux 2.38.1-5"
    assert packages["libc6"]["sourceInfo"] == "built from Debian source package glibc 2.36-9+deb12u4"
    assert packages["mawk"]["licenseDeclared"] == \
        "(GPL-2.0-or-later OR Artistic-1.0-Perl) AND MIT AND LicenseRef-Odd-License AND LicenseRef-LGPL-1.1-or-later"
    assert doc["hasExtractedLicensingInfos"] == [
        {"licenseId": "LicenseRef-LGPL-1.1-or-later", "extractedText": "The license Debian calls 'LGPL-1.1+'."},
        {"licenseId": "LicenseRef-Odd-License", "extractedText": "Do what you like."}], "SPDX has no LGPL-1.1"
    assert packages["libc6"]["licenseDeclared"] == "NOASSERTION", "not a machine-readable copyright file"
    assert doc["creationInfo"]["created"] == "2023-11-14T22:13:20Z"


def test_relationships_follow_depends_pre_depends_and_provides():
    doc = sbom.document(STATUS, {}, "f" * 64, 0)
    assert depends_closure(doc, "base-files") == {"libc6", "mawk"}, "awk is provided by mawk"
    described = [r for r in doc["relationships"] if r["relationshipType"] == "DESCRIBES"]
    assert described == [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                          "relatedSpdxElement": "SPDXRef-tree"}]


def test_a_tree_without_dpkg_has_a_valid_document(tmp_path):
    doc = sbom.of_tree(str(tmp_path), "e" * 64, 0)
    assert spdx_problems(sbom.dumps(doc)) == []
    assert sbom_packages(doc) == set()


def _tree(tmp_path, status: str = STATUS):
    tree = tmp_path / "tree"
    (tree / "var/lib/dpkg").mkdir(parents=True)
    (tree / "var/lib/dpkg/status").write_text(status)
    (tree / "usr/share/doc/mawk").mkdir(parents=True)
    (tree / "usr/share/doc/mawk/copyright").write_text(DEP5)
    (tmp_path / "host").mkdir()
    (tmp_path / "host/copyright").write_text(DEP5.replace("Expat", "Host-Secret"))
    return tree


def _licenses(doc: dict) -> dict[str, str]:
    return {p["name"]: p["licenseDeclared"] for p in doc["packages"] if p.get("externalRefs")}


def test_copyright_files_are_read_only_inside_the_tree(tmp_path):
    """A doc directory linked to a sibling's (as Debian does) counts; links out of the tree, FIFOs and
    endless files give NOASSERTION, and nothing of the host's files gets into the document."""
    tree = _tree(tmp_path)
    doc = tree / "usr/share/doc"
    (doc / "libc6").symlink_to("mawk")                                  # Debian's sibling link: followed by name
    (doc / "base-files").symlink_to(tmp_path / "host")                  # out of the tree
    (doc / "bsdutils").mkdir()
    (doc / "bsdutils/copyright").symlink_to(tmp_path / "host/copyright")
    found = _licenses(sbom.of_tree(str(tree), "e" * 64, 0))
    assert found["libc6"] == found["mawk"] != "NOASSERTION"
    assert found["base-files"] == found["bsdutils"] == "NOASSERTION"
    assert "Host-Secret" not in sbom.dumps(sbom.of_tree(str(tree), "e" * 64, 0))

    os.remove(doc / "bsdutils/copyright")
    os.mkfifo(doc / "bsdutils/copyright")
    with open(doc / "mawk/copyright", "r+b") as endless:
        endless.truncate(1 << 40)
    found = _licenses(sbom.of_tree(str(tree), "e" * 64, 0))
    assert found["bsdutils"] == found["mawk"] == "NOASSERTION"


@pytest.mark.parametrize("name", ["/abs/dir", "../..", "Upper", "a/b"])
def test_a_status_naming_no_debian_package_is_refused(tmp_path, name):
    tree = _tree(tmp_path, STATUS + f"\nPackage: {name}\nStatus: install ok installed\nVersion: 1\n")
    with pytest.raises(safefiles.Refused, match="is no Debian package name"):
        sbom.of_tree(str(tree), "e" * 64, 0)


def test_a_status_file_that_is_a_link_or_endless_is_refused(tmp_path):
    tree = _tree(tmp_path)
    status = tree / "var/lib/dpkg/status"
    status.unlink()
    status.symlink_to("/etc/passwd")
    with pytest.raises(safefiles.Refused, match="symbolic link"):
        sbom.of_tree(str(tree), "e" * 64, 0)
    status.unlink()
    with open(status, "wb") as endless:
        endless.truncate(1 << 40)
    with pytest.raises(safefiles.Refused, match="more than the"):
        sbom.of_tree(str(tree), "e" * 64, 0)


def test_a_paragraph_without_a_package_name_is_no_package():
    assert sbom.installed("Status: install ok installed\nVersion: 1\n\n" + STATUS)[0]["Package"] == "base-files"


def test_packages_from_a_local_deb_or_a_third_party_repository_carry_their_origin(tmp_path):
    tree = _tree(tmp_path)
    (tree / "var/lib/osbuild-oci").mkdir(parents=True)
    (tree / "var/lib/osbuild-oci/origins.json").write_text(json.dumps({"packages": {
        "mawk:amd64": {"version": "1.3.4.20200120-3.1", "deb": "sha256:" + "ab" * 32},
        "libc6:amd64": {"version": "2.36-9+deb12u4", "repository": "https://vendor.example/apt/"},
        "base-files:amd64": {"version": "12.4+deb12u5", "repository": "http://10.88.0.2:8080/"},
        "bsdutils:amd64": {"version": "1:2.38.1-5", "repository": "https://vendor.example/apt/"}}}))
    text = sbom.dumps(sbom.of_tree(str(tree), "e" * 64, 0))
    assert spdx_problems(text) == []
    packages = {p["name"]: p for p in json.loads(text)["packages"]}
    assert packages["mawk"]["checksums"] == [{"algorithm": "SHA256", "checksumValue": "ab" * 32}]
    assert packages["mawk"]["comment"] == "installed from a local .deb file, sha256:" + "ab" * 32
    assert packages["mawk"]["supplier"] == "NOASSERTION"
    assert packages["mawk"]["externalRefs"][0]["referenceLocator"] == \
        "pkg:deb/debian/mawk@1.3.4.20200120-3.1?arch=amd64&checksum=sha256:" + "ab" * 32
    assert packages["libc6"]["externalRefs"][0]["referenceLocator"] == \
        "pkg:deb/debian/libc6@2.36-9+deb12u4?arch=amd64&repository_url=https://vendor.example/apt/"
    assert packages["libc6"]["comment"] == "installed from the apt repository https://vendor.example/apt/"
    assert packages["libc6"]["sourceInfo"] == "built from source package glibc 2.36-9+deb12u4"
    assert packages["bsdutils"]["supplier"] == "Organization: Debian", \
        "a recorded origin counts only for the version it was recorded for (a later stage replaced it)"
    assert packages["base-files"]["comment"] == "installed from the apt repository http://10.88.0.2:8080/"
    assert "comment" not in packages["bsdutils"]


@pytest.mark.parametrize("origins", ['{"packages": []}', '{"packages": {"mawk:amd64": {"version": "1"}}}',
                                     '{"packages": {"mawk:amd64": {"version": "1", "repository": "file:/etc"}}}',
                                     "not json"])
def test_an_origins_file_that_is_not_what_the_apt_stage_writes_is_refused(tmp_path, origins):
    tree = _tree(tmp_path)
    (tree / "var/lib/osbuild-oci").mkdir(parents=True)
    (tree / "var/lib/osbuild-oci/origins.json").write_text(origins)
    with pytest.raises(safefiles.Refused, match="origins.json is not what org.osbuild.apt writes"):
        sbom.of_tree(str(tree), "e" * 64, 0)

"""The package cache a stage may ask for (label org.osbuild-oci.package-cache), shared by every build of a user.

apt does not check a .deb already in its archive directory against the package
index, only its size: a same-size corrupted .deb goes straight to dpkg.  And any
stage image that asks for the cache may write into it.  So the cache is
content-addressed (`<sha256>.deb`) and a cached file is used only when its
SHA256 equals the one this build's package lists give for it; those lists apt
has verified against the signed Release file.  Only .debs whose hash the
lists know are added.  A file is used under the name apt expects, copied into
the tree's archive directory (apt runs in a chroot that cannot see the cache),
and the stage removes it from the tree again, so no layer holds it.

`python3 -m osbuild_package_cache fill|keep TREE` does the same for hooks (mmdebstrap).
"""

import glob
import hashlib
import os
import shutil
import sys

CACHE = "/run/osbuild/cache"
LISTS = "var/lib/apt/lists"
ARCHIVES = "var/cache/apt/archives"


def available() -> bool:
    return os.path.isdir(CACHE)


def _index(tree: str) -> dict:
    """{sha256: archive file name as apt writes it} from the tree's (uncompressed) Packages lists."""
    out = {}
    for path in glob.glob(os.path.join(tree, LISTS, "*_Packages")):
        fields = {}
        with open(path, encoding="utf-8", errors="replace") as lists:
            for line in [*lists, "\n"]:
                if line == "\n":
                    if {"Package", "Version", "Architecture", "SHA256"} <= fields.keys():
                        version = fields["Version"].replace(":", "%3a")
                        out[fields["SHA256"]] = f"{fields['Package']}_{version}_{fields['Architecture']}.deb"
                    fields = {}
                elif line[0] != " " and ":" in line:
                    key, value = line.split(":", 1)
                    if key in ("Package", "Version", "Architecture", "SHA256"):
                        fields[key] = value.strip()
    return out


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for chunk in iter(lambda: data.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def wanted(print_uris: str) -> set:
    """The archive file names `apt-get --print-uris install` would download (lines `'URI' FILE SIZE HASH`)."""
    return {parts[1] for parts in map(str.split, print_uris.splitlines())
            if len(parts) == 4 and parts[0].startswith("'")}


def fill(tree: str, names: set | None = None) -> int:
    """Copy the cached .debs the tree's lists name (only those in names, if given) whose hash matches."""
    index = {digest: name for digest, name in _index(tree).items() if names is None or name in names}
    archives = os.path.join(tree, ARCHIVES)
    os.makedirs(archives, exist_ok=True)  # mmdebstrap's setup hooks run before apt made it
    used = 0
    for name in os.listdir(CACHE):
        digest = name[:-len(".deb")]
        if not name.endswith(".deb") or digest not in index:
            continue
        cached = os.path.join(CACHE, name)
        if _sha256(cached) != digest:
            print(f"package cache: {name} does not hold what its name says; not used", file=sys.stderr)
            continue
        shutil.copyfile(cached, os.path.join(archives, index[digest]))
        os.utime(cached)  # recently used: trim removes the oldest first
        used += 1
    print(f"package cache: {used} .debs from the cache", file=sys.stderr)
    return used


def keep(tree: str) -> int:
    """Add the tree's downloaded .debs that the lists know (by hash) and the cache lacks."""
    index = _index(tree)
    added = 0
    for path in glob.glob(os.path.join(tree, ARCHIVES, "*.deb")):
        digest = _sha256(path)
        target = os.path.join(CACHE, f"{digest}.deb")
        if digest not in index or os.path.exists(target):
            continue
        partial = f"{target}.{os.getpid()}.partial"
        shutil.copyfile(path, partial)
        os.replace(partial, target)  # whole or absent, for builds sharing the cache
        added += 1
    print(f"package cache: {added} .debs added", file=sys.stderr)
    return added


if __name__ == "__main__":
    {"fill": fill, "keep": keep}[sys.argv[1]](sys.argv[2])

#!/bin/sh
# pipelines/debian-bookworm-qcow2.json against the plain shell script doing the same work
# (benchmarks/plain-shell-qcow2.sh), every row in one run: cold qcow2 with a warm and with an empty
# package cache against the shell script with and without its .deb cache, the unchanged rebuild, a
# fresh store fed by --cache-from, a fully cached 5-stage no-op pipeline and `--help` (medians of 5),
# and the output sizes.
# Run as root after scripts/setup-host, with the baseline's tools on the host:
#   apt-get install fdisk dosfstools mtools grub-pc-bin grub-efi-amd64-bin
# Usage: benchmarks/qcow2.sh [WORKDIR]   (default: a new directory under /var/tmp)
set -eu
cd "$(dirname "$0")/.."
# As a user runs it: with this set (as in some CI and agent shells) every run compiles osbuild-oci's
# modules again, 65 ms of the no-op row.
unset PYTHONDONTWRITEBYTECODE
work=${1:-$(mktemp -d /var/tmp/bench-qcow2.XXXXXX)}
mkdir -p "$work"
cli=.venv/bin/osbuild-oci
pipeline=pipelines/debian-bookworm-qcow2.json
image=debian-bookworm.qcow2

# millis NAME CMD...: run CMD with its output in $work/NAME.log, print its wall time in milliseconds.
# The sync first: the run before left gigabytes to write back and deleted files to discard (/ is
# mounted with -o discard here), which would otherwise slow whichever run comes next.
millis() {
  log=$work/$1.log; shift; sync; start=$(date +%s%N)
  "$@" > "$log" 2>&1; echo $((($(date +%s%N) - start) / 1000000))
}
ratio() { python3 -c "import sys; print(f'{int(sys.argv[1]) / int(sys.argv[2]):.2f}')" "$@"; }
# median5 NAME CMD...: the median of five runs, in milliseconds.
median5() {
  name=$1; shift
  for i in 1 2 3 4 5; do millis "$name-$i" "$@"; done | sort -n | sed -n 3p
}
same() { [ "$(sha256sum < "$1")" = "$(sha256sum < "$2")" ] && echo identical || echo DIFFERENT; }

$cli stages build > "$work/stages.log" 2>&1
rm -rf "$work"/store* "$work"/out* "$work"/shell* "$work"/packages "$work"/debs
# Both empty, then both warm (the first builds fill the caches).
shell_empty=$(millis shell-empty benchmarks/plain-shell-qcow2.sh "$work/shell-empty")
cold_empty=$(millis cold-empty $cli build "$pipeline" --store "$work/store-empty" -o "$work/out-empty" \
  --package-cache "$work/packages")
benchmarks/plain-shell-qcow2.sh "$work/shell-fill" "$work/debs" > "$work/shell-fill.log" 2>&1
shell_warm=$(millis shell-warm benchmarks/plain-shell-qcow2.sh "$work/shell-warm" "$work/debs")
cold_warm=$(millis cold-warm $cli build "$pipeline" --store "$work/store" -o "$work/out-cold" \
  --package-cache "$work/packages" --json)
unchanged=$(millis unchanged $cli build "$pipeline" --store "$work/store" -o "$work/out-unchanged" \
  --package-cache "$work/packages")

# A fresh store fed by a registry on loopback that --cache-to filled.
mkdir -p "$work/registry"
printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:5015\n' \
  "$work/registry" > "$work/registry.yml"
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
registry=$!
trap 'kill $registry 2>/dev/null || true' EXIT
sleep 1
$cli build "$pipeline" --store "$work/store" -o "$work/out-push" --cache-to 127.0.0.1:5015/b/trees \
  --no-tls-verify > "$work/push.log" 2>&1
fresh=$(millis fresh $cli build "$pipeline" --store "$work/store-fresh" -o "$work/out-fresh" \
  --cache-from 127.0.0.1:5015/b/trees --no-tls-verify --json)
ran=$(grep -c '"cached": false' "$work/fresh.log" || true)

python3 -c 'import json; json.dump({"name": "noop5", "stages": [
  {"name": "org.osbuild.noop", "options": {"n": i}} for i in range(5)]}, open("'"$work"'/noop5.json", "w"))'
$cli build "$work/noop5.json" --store "$work/store-noop" > "$work/noop-fill.log" 2>&1
noop=$(median5 noop $cli build "$work/noop5.json" --store "$work/store-noop")
help=$(median5 help $cli --help)

echo "cold qcow2, warm package cache:  $cold_warm ms; plain shell with .deb cache: $shell_warm ms" \
  "($(ratio "$cold_warm" "$shell_warm")x)"
echo "cold qcow2, both caches empty:   $cold_empty ms; plain shell without cache: $shell_empty ms" \
  "($(ratio "$cold_empty" "$shell_empty")x)"
python3 -c 'import json, sys
phases = [json.loads(line).get("phases") or {} for line in open(sys.argv[1]) if line.startswith("{")]
clamp, sbom, run, commit = (sum(p.get(name, 0) for p in phases) for name in ("clamp", "sbom", "container", "commit"))
print(f"  of which clamping {clamp:.1f} s and SBOMs {sbom:.1f} s; stage containers {run:.1f} s, commits {commit:.1f} s")' "$work/cold-warm.log"
echo "unchanged rebuild:               $unchanged ms, output $(same "$work/out-cold/$image" "$work/out-unchanged/$image")"
echo "fresh store with --cache-from:   $fresh ms, $ran steps ran, output" \
  "$(same "$work/out-cold/$image" "$work/out-fresh/$image")"
echo "cached 5-stage no-op (median 5): $noop ms"
echo "osbuild-oci --help (median 5):   $help ms"
raw=$work/raw.img
qemu-img convert -O raw "$work/out-cold/$image" "$raw"
printf 'qcow2:                  %6d MiB (shell script: %d MiB)\n' \
  $(($(stat -c %s "$work/out-cold/$image") / 1048576)) $(($(stat -c %s "$work/shell-warm/$image") / 1048576))
printf 'raw allocated (2 GiB):  %6d MiB\n' $(($(stat -c %b "$raw") * 512 / 1048576))
printf 'store:                  %6s\n' "$(du -sh "$work/store" | cut -f1)"
rm -f "$raw"

#!/bin/sh
# Cold and warm builds of pipelines/debian-bookworm-qcow2.json against the plain shell script
# doing the same work (benchmarks/plain-shell-qcow2.sh), in the same run, and the output sizes.
# Run as root after scripts/setup-host, with the baseline's tools on the host:
#   apt-get install fdisk dosfstools mtools grub-pc-bin grub-efi-amd64-bin
# Usage: benchmarks/qcow2.sh [WORKDIR]   (default: a new directory under /var/tmp)
set -eu
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d /var/tmp/bench-qcow2.XXXXXX)}
mkdir -p "$work"
cli=.venv/bin/osbuild-oci
pipeline=pipelines/debian-bookworm-qcow2.json
image=debian-bookworm.qcow2

# millis NAME CMD...: run CMD with its output in $work/NAME.log, print its wall time in milliseconds.
millis() { log=$work/$1.log; shift; start=$(date +%s%N); "$@" > "$log" 2>&1; echo $((($(date +%s%N) - start) / 1000000)); }
ratio() { python3 -c "import sys; print(f'{int(sys.argv[1]) / int(sys.argv[2]):.2f}')" "$@"; }

$cli stages build > "$work/stages.log" 2>&1
rm -rf "$work/store" "$work/cold" "$work/warm" "$work/shell"
shell=$(millis shell benchmarks/plain-shell-qcow2.sh "$work/shell")
cold=$(millis cold $cli build "$pipeline" --store "$work/store" -o "$work/cold")
warm=$(millis warm $cli build "$pipeline" --store "$work/store" -o "$work/warm")
raw=$work/raw.img
qemu-img convert -O raw "$work/cold/$image" "$raw"

echo "plain shell script:     $shell ms"
echo "osbuild-oci cold:       $cold ms ($(ratio "$cold" "$shell")x the shell script)"
echo "osbuild-oci warm:       $warm ms (every stage cached, only the assembler runs)"
printf 'qcow2:                  %6d MiB (shell script: %d MiB)\n' \
  $(($(stat -c %s "$work/cold/$image") / 1048576)) $(($(stat -c %s "$work/shell/$image") / 1048576))
printf 'raw allocated (2 GiB):  %6d MiB\n' $(($(stat -c %b "$raw") * 512 / 1048576))
printf 'store:                  %6s\n' "$(du -sh "$work/store" | cut -f1)"
rm -f "$raw"

# shellcheck shell=sh
# Sourced by the qcow2 benchmarks: the work directory, the tools, and how a run is timed.
# Usage (after `cd` to the repository, with WORKDIR as the caller's $1 or none): . benchmarks/common.sh
set -eu
work=${1:-$(mktemp -d /var/tmp/bench-qcow2.XXXXXX)}
mkdir -p "$work"
export cli=.venv/bin/osbuild-oci pipeline=pipelines/debian-bookworm-qcow2.json image=debian-bookworm.qcow2

# millis NAME CMD...: run CMD with its output in $work/NAME.log, print its wall time in milliseconds.
millis() { log=$work/$1.log; shift; start=$(date +%s%N); "$@" > "$log" 2>&1; echo $((($(date +%s%N) - start) / 1000000)); }
ratio() { python3 -c "import sys; print(f'{int(sys.argv[1]) / int(sys.argv[2]):.2f}')" "$@"; }

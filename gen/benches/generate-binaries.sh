#!/usr/bin/env bash
# `fedigen generate` end to end (plan, then write every file atomically) for a specification of N operators,
# with two or more fedigen binaries in the same run: each round runs every binary once, in turn, each on a fresh
# copy of the repository, under /usr/bin/time -v (wall, user + system CPU, peak RSS). Prints one Markdown row per
# binary: medians over the rounds. The specification is the one benches/generate.rs writes (every application,
# Garage, QEMU, DHCP).
#
#   gen/benches/generate-binaries.sh OPERATORS ROUNDS BIN[@REV]...
#   e.g. gen/benches/generate-binaries.sh 1000 3 /tmp/fedigen-before target/release/fedigen
#        gen/benches/generate-binaries.sh 1000 5 /tmp/fedigen-e6986dc@e6986dc target/release/fedigen
#
# Each binary generates into a copy of the repository at REV (`git archive`; HEAD when not given): a binary from
# before a change to the templates runs on its own templates. Binaries on the same REV must write the same tree.
#
# Every copy is made before the first run, and the runs start 40 s later: ext4 looks through recently deleted
# inodes when it allocates one (`recently_deleted`, for 30 s after a deletion), and creating thousands of files
# right after deleting thousands (the previous run's copy) cost up to 7 s of system time that had nothing to do
# with fedigen (issue #18, measured 2026-11-29).
set -euo pipefail
operators=$1 rounds=$2
shift 2
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The benchmark's specification, from the benchmark's own source (one definition).
python3 - "$repo/gen/benches/generate.rs" "$operators" >"$work/spec.toml" <<'PY'
import sys
src = open(sys.argv[1]).read()
head = src.split('let mut spec = String::from(\n        r#"')[1].split('"#,')[0]
body = src.split('spec,\n            r#"')[1].split('"#')[0].replace('{{', '{').replace('}}', '}')
sys.stdout.write(head + ''.join(body.replace('{i}', str(i)) for i in range(int(sys.argv[2]))))
PY
i=0
for binary in "$@"; do
  rev=HEAD
  [[ $binary == *@* ]] && rev=${binary##*@}
  git -C "$repo" archive "$rev" | tar -x -C "$work" --one-top-level="pristine.$i"
  echo "$rev" >"$work/rev.$i"
  for round in $(seq "$rounds"); do cp -r "$work/pristine.$i" "$work/repo.$i.$round"; done
  i=$((i + 1))
done
sync
sleep 40
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq "$rounds"); do
  i=0
  for binary in "$@"; do
    bin=${binary%@*}
    /usr/bin/time -f "%e %U %S %M" -o "$work/t" "$bin" generate --repo "$work/repo.$i.$round" --spec "$work/spec.toml" >/dev/null 2>"$work/err" \
      || { cat "$work/err" >&2; exit 1; }
    echo "$i $(cat "$work/t")" >>"$work/samples"
    (cd "$work/repo.$i.$round" && find modules deployments vm-tests -type f | sort | xargs cat | sha256sum) >>"$work/sums.$(cat "$work/rev.$i")"
    if [ "$round" = 1 ]; then
      (cd "$work/repo.$i.$round" && echo "$binary: $(find modules deployments vm-tests -type f | wc -l) files, $(find modules deployments vm-tests -type f | xargs cat | wc -c) bytes, of them $(find modules deployments vm-tests -type f -name '*.nix' | xargs cat | wc -c) of Nix" >&2)
    fi
    i=$((i + 1))
  done
  echo "round $round done, load $(cut -d' ' -f1 /proc/loadavg)" >&2
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "$work/samples" "$@" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    i, wall, user, sys_, rss = line.split()
    rows.setdefault(int(i), []).append((float(wall), float(user), float(sys_), int(rss) / 1024))
print("| binary | wall (s) | CPU (s) | of it user (s) | of it system (s) | peak RSS (MiB) | wall ÷ first row | CPU ÷ first row |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
first = None
for i, bin in enumerate(sys.argv[2:]):
    w = statistics.median(s[0] for s in rows[i]); c = statistics.median(s[1] + s[2] for s in rows[i])
    u = statistics.median(s[1] for s in rows[i]); k = statistics.median(s[2] for s in rows[i])
    m = max(s[3] for s in rows[i])
    first = first or (w, c)
    print(f"| {bin} | {w:.2f} | {c:.2f} | {u:.2f} | {k:.2f} | {m:.0f} | {w / first[0]:.2f}× | {c / first[1]:.2f}× |")
PY
# Every binary writes the same tree in every round, and binaries on one revision write the same tree.
for f in "$work"/sums.*; do
  [ "$(sort -u "$f" | wc -l)" = 1 ] || { echo "binaries on $(basename "$f" | cut -d. -f2-) wrote different trees" >&2; exit 1; }
done

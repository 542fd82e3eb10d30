#!/usr/bin/env bash
# `fedigen generate` end to end (plan, then write every file atomically) for a specification of N operators,
# with two or more fedigen binaries in the same run: each round runs every binary once, in turn, each on a fresh
# copy of the repository, under /usr/bin/time -v (wall, user + system CPU, peak RSS). Prints one Markdown row per
# binary: medians over the rounds. The specification is the one benches/generate.rs writes (every application,
# Garage, QEMU, DHCP).
#
#   gen/benches/generate-binaries.sh OPERATORS ROUNDS BIN...
#   e.g. gen/benches/generate-binaries.sh 1000 3 /tmp/fedigen-before target/release/fedigen
set -euo pipefail
operators=$1 rounds=$2
shift 2
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The benchmark's specification, from the benchmark's own source (one definition).
python3 - "$repo/gen/benches/generate.rs" "$operators" >"$work/spec.toml" <<'EOF'
import sys
src = open(sys.argv[1]).read()
head = src.split('let mut spec = String::from(\n        r#"')[1].split('"#,')[0]
body = src.split('spec,\n            r#"')[1].split('"#')[0].replace('{{', '{').replace('}}', '}')
sys.stdout.write(head + ''.join(body.replace('{i}', str(i)) for i in range(int(sys.argv[2]))))
EOF
git -C "$repo" archive HEAD | tar -x -C "$work" --one-top-level=pristine
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq "$rounds"); do
  i=0
  for bin in "$@"; do
    rm -rf "$work/repo" && cp -r "$work/pristine" "$work/repo"
    /usr/bin/time -f "%e %U %S %M" -o "$work/t" "$bin" generate --repo "$work/repo" --spec "$work/spec.toml" >/dev/null 2>"$work/err" \
      || { cat "$work/err" >&2; exit 1; }
    echo "$i $(cat "$work/t")" >>"$work/samples"
    # Every binary must write the same tree.
    (cd "$work/repo" && find modules deployments vm-tests -type f | sort | xargs cat | sha256sum) >>"$work/sums.$i"
    i=$((i + 1))
  done
  echo "round $round done, load $(cut -d' ' -f1 /proc/loadavg)" >&2
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "$work/samples" "$@" <<'EOF'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    i, wall, user, sys_, rss = line.split()
    rows.setdefault(int(i), []).append((float(wall), float(user) + float(sys_), int(rss) / 1024))
print("| binary | wall (s) | CPU (s) | peak RSS (MiB) | wall ÷ first row | CPU ÷ first row |")
print("|---|---:|---:|---:|---:|---:|")
first = None
for i, bin in enumerate(sys.argv[2:]):
    w = statistics.median(s[0] for s in rows[i]); c = statistics.median(s[1] for s in rows[i])
    m = max(s[2] for s in rows[i])
    first = first or (w, c)
    print(f"| {bin} | {w:.2f} | {c:.2f} | {m:.0f} | {w / first[0]:.2f}× | {c / first[1]:.2f}× |")
EOF
for f in "$work"/sums.*; do sort -u "$f" | wc -l | grep -qx 1 || { echo "a binary wrote different trees across rounds" >&2; exit 1; }; done
[ "$(cat "$work"/sums.* | sort -u | wc -l)" = 1 ] || { echo "the binaries wrote different trees" >&2; exit 1; }

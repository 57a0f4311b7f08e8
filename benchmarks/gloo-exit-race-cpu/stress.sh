#!/usr/bin/env bash
# Usage: bash stress.sh {normal|exit} N — runs N two-process jobs and counts those with a non-zero exit code.
set -u
how=$1; n=$2; here=$(cd "$(dirname "$0")" && pwd); tmp=$(mktemp -d); fails=0
for i in $(seq 1 "$n"); do
  init="file://$tmp/rendezvous_$i"
  python "$here/worker.py" 0 "$init" "$how" 2>/dev/null & p=$!
  python "$here/worker.py" 1 "$init" "$how" 2>/dev/null; b=$?
  wait $p; a=$?
  if [ $a -ne 0 ] || [ $b -ne 0 ]; then fails=$((fails + 1)); fi
done
rm -rf "$tmp"
echo "$how: $fails of $n two-process runs had a process that did not exit 0"

#!/usr/bin/env python3
"""Keeps the most distinct inputs of a libFuzzer merge, at most CAP of them.

    cap.py CONTROL_FILE OUT_DIR CAP

CONTROL_FILE is what `-merge=1 -merge_control_file=...` leaves: every input
file and the features (FT lines) each one reached. Picks greedily the input
that adds the most edges (COV lines) not yet covered, then the most
features, until none adds any or CAP are picked, and copies them to OUT_DIR named by their SHA-1 (as libFuzzer does).
A corpus that keeps every feature in CAP files or fewer is what the merge
alone gives; past CAP this keeps the inputs that cover the most. (libFuzzer
credits each edge and feature to the first input, smallest first, that
reached it: the counts printed are what the picked inputs were credited
with, a lower bound of what they reach.)"""
import hashlib
import os
import shutil
import sys


def main():
    control, out, cap = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(control) as f:
        lines = f.read().split("\n")
    n = int(lines[0])
    files = lines[2:2 + n]
    features, edges = {}, {}
    for line in lines[2 + n:]:
        parts = line.split()
        if parts[:1] == ["FT"]:
            features[int(parts[1])] = set(map(int, parts[2:]))
        elif parts[:1] == ["COV"]:
            edges[int(parts[1])] = set(map(int, parts[2:]))
    covered, reached, picked = set(), set(), []
    candidates = set(features)
    while candidates and len(picked) < cap:
        # New edges first, then new features; the smaller input on a tie.
        best = max(candidates, key=lambda i: (len(edges.get(i, set()) - reached),
                                              len(features[i] - covered),
                                              -os.path.getsize(files[i])))
        candidates.remove(best)
        if features[best] <= covered and edges.get(best, set()) <= reached:
            break
        covered |= features[best]
        reached |= edges.get(best, set())
        picked.append(best)
    os.makedirs(out, exist_ok=True)
    for i in picked:
        with open(files[i], "rb") as f:
            data = f.read()
        shutil.copyfile(files[i], os.path.join(out, hashlib.sha1(data).hexdigest()))
    all_features = set().union(*features.values()) if features else set()
    all_edges = set().union(*edges.values()) if edges else set()
    print(f"cap: {len(picked)} of {n} inputs keep {len(reached)} of {len(all_edges)} edges, "
          f"{len(covered)} of {len(all_features)} features")


if __name__ == "__main__":
    main()

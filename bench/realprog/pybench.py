"""A pure-Python workload for bench/compare's `python` row (bench/workloads/realprog.cc runs it
with PYTHONMALLOC=malloc, so every object is a malloc/free of the allocator under test).

It does what Python programs spend their allocations on: many small objects (ints, tuples,
strings, dicts, instances) built, grown, sorted and dropped, string building and splitting,
JSON round trips and regular expressions, in phases whose live sets rise and fall. The output is
a few lines of counts and CRCs that depend only on the code: bench/compare requires the same
output under every allocator.
"""

import json
import random
import re
import zlib


class Node:
    __slots__ = ("key", "value", "children")

    def __init__(self, key, value):
        self.key = key
        self.value = value
        self.children = []


def crc(text):
    return zlib.crc32(text.encode())


def build_tree(rng, count):
    """A random tree of `count` nodes; returns the root and a checksum of a depth-first walk."""
    nodes = [Node(0, "root")]
    for i in range(1, count):
        parent = nodes[rng.randrange(len(nodes))]
        node = Node(i, "v%d-%s" % (i, "x" * rng.randrange(1, 40)))
        parent.children.append(node)
        nodes.append(node)
    total, stack = 0, [nodes[0]]
    while stack:
        n = stack.pop()
        total = (total * 31 + n.key + len(n.value)) % (1 << 61)
        stack.extend(n.children)
    return total


def dict_phase(rng, rounds):
    """Dicts of tuples and strings grown, merged and half-deleted, round after round."""
    table, result = {}, 0
    for r in range(rounds):
        for i in range(20000):
            k = (rng.randrange(100000), "k%d" % rng.randrange(5000))
            table[k] = table.get(k, ()) + (i,)
        for k in list(table)[::2]:
            del table[k]
        result = (result + len(table) + sum(len(v) for v in table.values())) % (1 << 61)
    return result


def text_phase(rng, lines):
    """Strings joined, split, formatted and matched."""
    words = ["".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randrange(2, 12))) for _ in range(5000)]
    text = "\n".join(" ".join(rng.choice(words) for _ in range(rng.randrange(3, 15))) for _ in range(lines))
    counts = {}
    for line in text.split("\n"):
        for w in line.split():
            counts[w] = counts.get(w, 0) + 1
    pattern = re.compile(r"\b([a-h]+)([i-p]+)\b")
    matches = sum(1 for _ in pattern.finditer(text))
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:50]
    return crc(repr(top)) ^ matches


def json_phase(rng, records):
    """Nested records serialised and parsed back."""
    data = [{"id": i, "name": "n%d" % rng.randrange(10 ** 6), "tags": [rng.randrange(100) for _ in range(rng.randrange(8))],
             "attrs": {"a%d" % j: rng.random() for j in range(rng.randrange(6))}} for i in range(records)]
    text = json.dumps(data, sort_keys=True)
    back = json.loads(text)
    return crc(text) ^ len(back) ^ sum(len(r["tags"]) for r in back)


def sort_phase(rng, count):
    """Lists of tuples sorted several ways, then sliced and dropped."""
    rows = [(rng.randrange(1000), "s%d" % rng.randrange(10 ** 5), rng.random()) for _ in range(count)]
    a = sorted(rows)
    b = sorted(rows, key=lambda t: (t[1], -t[0]))
    c = sorted(rows, key=lambda t: t[2], reverse=True)
    return crc(repr(a[:20] + b[:20] + c[:20]))


def main():
    rng = random.Random(2026)
    print("tree", build_tree(rng, 150000))
    print("dicts", dict_phase(rng, 12))
    print("text", text_phase(rng, 60000))
    print("json", json_phase(rng, 30000))
    print("sort", sort_phase(rng, 150000))
    print("tree2", build_tree(rng, 150000))


main()

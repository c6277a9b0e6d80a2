"""A callgrind dump read as a call graph: each function's own instructions, the calls made to
it and the instructions spent inside those calls (inclusive), per caller.

Envoy's release binary is stripped, so functions are addresses; bench/hostcalls.py names
the ones that matter (each proxy-wasm host call) by finding them in the dumps of
bench/hostcall-probe, which makes one known kind of call a known number of times.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_NAME = re.compile(r"\((\d+)\)(?:\s+(.*))?$")


@dataclass
class CallGraph:
    own: Counter = field(default_factory=Counter)  # function -> instructions in its own code
    calls: Counter = field(default_factory=Counter)  # function -> calls made to it
    inclusive: Counter = field(default_factory=Counter)  # function -> instructions inside those calls
    arcs: dict = field(default_factory=dict)  # (caller, callee) -> (calls, inclusive)
    obj: dict = field(default_factory=dict)  # function -> object file ("???" for JIT code)

    @property
    def total(self) -> int:
        return sum(self.own.values())

    def callees(self, fn: str) -> list[tuple[str, int, int]]:
        return sorted(((b, n, i) for (a, b), (n, i) in self.arcs.items() if a == fn), key=lambda x: -x[2])


def read(path: str | Path) -> CallGraph:
    g = CallGraph()
    names: dict[tuple[str, str], str] = {}

    def name(kind: str, rest: str) -> str:
        m = _NAME.match(rest.strip())
        if not m:
            return rest.strip()
        if m.group(2) is not None:
            names[(kind, m.group(1))] = m.group(2)
        return names.get((kind, m.group(1)), "?" + m.group(1))

    fn = ob = cob = callee = None
    pending = None
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line[0] == "#":
                continue
            if line.startswith("ob="):
                ob = name("ob", line[3:])
            elif line.startswith("cob="):
                cob = name("ob", line[4:])
            elif line.startswith("fn="):
                fn = name("fn", line[3:])
                g.obj[fn] = ob
                cob = None
            elif line.startswith("cfn="):
                callee = name("fn", line[4:])
                if cob is not None:
                    g.obj.setdefault(callee, cob)
            elif line.startswith(("fl=", "fi=", "fe=", "cfi=", "cfl=")):
                key, rest = line.split("=", 1)
                name("fl", rest)
            elif line.startswith("calls="):
                pending = int(line[6:].split()[0])
            elif line[0].isdigit() or line[0] in "+-*":
                parts = line.split()
                if len(parts) < 2:
                    continue
                cost = int(parts[1])
                if pending is not None:
                    g.calls[callee] += pending
                    g.inclusive[callee] += cost
                    n, i = g.arcs.get((fn, callee), (0, 0))
                    g.arcs[(fn, callee)] = (n + pending, i + cost)
                    pending = None
                    cob = None
                else:
                    g.own[fn] += cost
    return g

"""Per-request views of the callgrind runs that bench/profile/run.sh leaves in target/profile.

    python3 bench/profile/callgrind.py functions bare-cookie typed [PATTERN]
        instructions per request by function (its own, callees excluded), the second variant
        minus the first: where the extra cost of a layer is
    python3 bench/profile/callgrind.py callers typed FUNCTION
        how many calls per request each caller makes to FUNCTION (an exact `fn=` name, such as
        `__rustc::__rust_alloc` or `malloc`)
    python3 bench/profile/callgrind.py lines bare-cookie typed
        the 64-byte code lines executed on (nearly) every request, the second variant's extra
        lines by function: what the instruction cache has to hold
"""

import collections
import re
import signal
import subprocess
import sys

DIR = "target/profile"
SMALL, LARGE = 2000, 6000
PER = LARGE - SMALL


def path(variant, requests):
    return f"{DIR}/cg.{variant}.{requests}"


def by_function(variant, requests):
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", path(variant, requests)],
        capture_output=True, text=True, check=True,
    ).stdout
    costs = collections.Counter()
    for line in out.splitlines():
        match = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(\S+?):(.*?)( \[.*\])?$", line)
        if match and "=>" not in line:
            costs[match.group(3)] += int(match.group(1).replace(",", ""))
    return costs


def per_request(variant):
    small, large = by_function(variant, SMALL), by_function(variant, LARGE)
    return {name: (large[name] - small[name]) / PER for name in set(small) | set(large)}


def functions(base, variant, pattern=""):
    a, b = per_request(base), per_request(variant)
    diff = {name: b.get(name, 0) - a.get(name, 0) for name in set(a) | set(b)}
    shown = [(cost, name) for name, cost in diff.items() if pattern in name and abs(cost) >= 5]
    for cost, name in sorted(shown, key=lambda row: -abs(row[0])):
        print(f"{cost:8.0f}  {name[:150]}")
    print(f"{sum(cost for cost, _ in shown):8.0f}  total shown")


def read(variant, requests):
    """One pass over a run's file: calls per (callee, caller), instruction address -> times
    executed, and address -> the function it belongs to."""
    calls, executed, owner = collections.Counter(), collections.Counter(), {}
    obj = function = callee = None
    after_call = False
    with open(path(variant, requests)) as lines:
        for line in lines:
            if line.startswith("ob="):
                obj = line[3:].strip()
            elif line.startswith("fn="):
                function = line[3:].strip()
            elif line.startswith("cfn="):
                callee = line[4:].strip()
            elif line.startswith("calls="):
                calls[(callee, function)] += int(line[6:].split()[0])
                after_call = True  # the next cost line is the call's, not this function's
            elif line[:2] == "0x":
                if after_call:
                    after_call = False
                    continue
                fields = line.split()
                address = (obj, int(fields[0], 16))
                executed[address] += int(fields[-1])
                owner[address] = function
    return calls, executed, owner


def callers(variant, function):
    small, large = read(variant, SMALL)[0], read(variant, LARGE)[0]
    rows = collections.Counter()
    for (callee, caller) in set(small) | set(large):
        if callee == function:
            rows[caller] = (large[(callee, caller)] - small[(callee, caller)]) / PER
    for caller, count in rows.most_common(30):
        if count:
            print(f"{count:6.2f}  {caller[:150]}")
    print(f"{sum(rows.values()):6.2f}  calls per request in all")


def hot_lines(variant):
    _, small, _ = read(variant, SMALL)
    _, large, owner = read(variant, LARGE)
    lines = collections.defaultdict(set)
    for address, count in large.items():
        if count - small.get(address, 0) >= 0.9 * PER:
            lines[owner[address]].add((address[0], address[1] >> 6))
    return lines


def lines(base, variant):
    a, b = hot_lines(base), hot_lines(variant)
    all_a = set().union(*a.values())
    all_b = set().union(*b.values())
    print(f"code lines per request: {base} {len(all_a)}, {variant} {len(all_b)}, extra {len(all_b - all_a)}")
    extra = collections.Counter({function: len(owned - all_a) for function, owned in b.items()})
    for function, count in extra.most_common(60):
        if count:
            print(f"{count:4d}  {function[:150]}")


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet when piped into `head`
    command, *args = sys.argv[1:] or ["help"]
    if command == "functions" and len(args) in (2, 3):
        functions(*args)
    elif command == "callers" and len(args) == 2:
        callers(*args)
    elif command == "lines" and len(args) == 2:
        lines(*args)
    else:
        print(__doc__)
        sys.exit(2)

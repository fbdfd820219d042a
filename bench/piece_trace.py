#!/usr/bin/env python3
"""piece_trace.py -- what the pods' peerd did with each piece, from a netns run's logs.

Usage:  PEER_LOG_FILTER=info,piece_trace=debug bench/fidelity.sh SCENARIO.toml   (or netns_fanout.sh)
        bench/piece_trace.py WORK_DIR [PODS]
        bench/piece_trace.py --sim reports/fidelity/NAME/sim/NAME/pieces.csv [MODE]
WORK_DIR is the run's WORK (default of fidelity.sh: /tmp/p2pimg-fidelity); PODS limits the
pods read to pod1..PODS (a WORK reused by a run with more pods keeps their old logs).
--sim reads the simulator's trace of the same scenario (`sim fidelity-compare` writes it;
MODE defaults to p2p) and prints the same transfer figures (no news delay: the simulator's
children learn of a piece at once unless `network.queue_delay_ms` is set).

Prints:
  - piece-map news delay: from a parent storing a piece (its log) to a child's piece-map
    update naming it (the child's log), over every parent/child pair and piece; updates a
    child gets when it first joins a task (the parent had the piece before) count too
  - request -> stored per source kind (seed, pod, origin)
  - per pod and seed: pieces in flight on average, MB stored by source, transfers aborted
"""
import collections
import datetime
import glob
import os
import re
import sys

LINE = re.compile(r'^(\S+Z)\s+DEBUG piece_trace: (\w+) task=(\w+) (.*)$')
FIELD = re.compile(r'(\w+)=(\[[^\]]*\]|\S+)')


def when(stamp):
    return datetime.datetime.strptime(stamp[:26], '%Y-%m-%dT%H:%M:%S.%f').timestamp()


def names_by_ip():
    names = {'198.18.0.3': 'seed1', '198.18.0.4': 'seed2'}
    for i in range(1, 255):
        names[f'198.18.1.{i}'] = f'pod{i}'
    return names


def node_of(addr, names):
    return names.get(addr.split(':')[0], addr)


def read(work, pods):
    logs = [f for f in glob.glob(os.path.join(work, 'pod*', 'mirror.log'))
            if int(f.split(os.sep)[-2][3:]) <= pods]
    logs.sort(key=lambda f: int(f.split(os.sep)[-2][3:]))
    for d, name in (('infra', 'seed1'), ('seed2', 'seed2')):
        f = os.path.join(work, d, 'seed.log')
        if os.path.exists(f):
            logs.append(f)
    events = {}
    for f in logs:
        d = f.split(os.sep)[-2]
        name = {'infra': 'seed1', 'seed2': 'seed2'}.get(d, d)
        rows = []
        with open(f) as fh:
            for line in fh:
                m = LINE.match(line)
                if m:
                    t, what, task, rest = m.groups()
                    rows.append((when(t), what, task, dict(FIELD.findall(rest))))
        events[name] = rows
    # A WORK reused across runs keeps a seed2 log from an earlier run with two seeds: keep
    # only logs that overlap the pods' time.
    pod_times = [r[0] for n, rows in events.items() if n.startswith('pod') for r in rows]
    if pod_times:
        first, last = min(pod_times), max(pod_times)
        events = {n: rows for n, rows in events.items()
                  if n.startswith('pod') or (rows and rows[0][0] <= last and rows[-1][0] >= first)}
    return events


def pct(values, qs=(0.1, 0.5, 0.9, 0.99)):
    values = sorted(values)
    return ' '.join(f'p{int(q * 100)} {1000 * values[int(q * (len(values) - 1))]:.1f}' for q in qs)


def sim_main(path, mode):
    import csv
    rows = collections.defaultdict(list)
    with open(path) as fh:
        for r in csv.DictReader(fh):
            if r['mode'] == mode:
                rows[r['receiver']].append(r)
    if not rows:
        sys.exit(f'no {mode} rows in {path}')
    waits = collections.defaultdict(list)
    for rs in rows.values():
        for r in rs:
            if r['end'] == 'stored':
                kind = r['source'].rstrip('0123456789').replace('node', 'pod').replace('registry', 'origin')
                waits[kind].append(float(r['ended_s']) - float(r['requested_s']))
    for kind, d in sorted(waits.items()):
        print(f'request -> stored (ms) from {kind}, {len(d)} pieces: {pct(d, (0.1, 0.5, 0.9))}')
    for node in sorted(rows, key=lambda n: (n.rstrip('0123456789'), int(n.lstrip('abcdefghijklmnopqrstuvwxyz')))):
        rs = rows[node]
        start = min(float(r['requested_s']) for r in rs)
        end = max(float(r['ended_s']) for r in rs)
        busy = sum(float(r['ended_s']) - float(r['requested_s']) for r in rs)
        by_source = collections.Counter()
        for r in rs:
            if r['end'] == 'stored':
                by_source[r['source'].rstrip('0123456789').replace('node', 'pod').replace('registry', 'origin')] += int(r['bytes'])
        mb = ', '.join(f'{k} {v / 1e6:.1f}' for k, v in sorted(by_source.items()))
        cancelled = sum(r['end'] == 'cancelled' for r in rs)
        print(f'{node}: {end - start:.2f} s, {busy / max(end - start, 1e-9):.1f} pieces in flight on average, MB from {mb}; {cancelled} cancelled')


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ('-h', '--help'):
        print(__doc__)
        sys.exit(0 if len(sys.argv) > 1 else 2)
    if sys.argv[1] == '--sim':
        if len(sys.argv) < 3:
            sys.exit('--sim needs the pieces.csv of a simulated run')
        sim_main(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else 'p2p')
        return
    work, pods = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 255
    names = names_by_ip()
    events = read(work, pods)
    if not any(events.values()):
        sys.exit(f'no piece_trace lines under {work}: run with PEER_LOG_FILTER=info,piece_trace=debug')
    stored = {}
    for node, rows in events.items():
        for t, what, task, kv in rows:
            if what == 'stored':
                stored.setdefault((node, task, int(kv['piece'])), t)
    news = []
    for node, rows in events.items():
        for t, what, task, kv in rows:
            if what == 'has':
                parent = node_of(kv['parent'], names)
                for p in re.findall(r'\d+', kv['added']):
                    s = stored.get((parent, task, int(p)))
                    if s is not None:
                        news.append(t - s)
    if news:
        print(f'piece-map news delay (ms), {len(news)} pieces: {pct(news)}')
    kinds = collections.defaultdict(list)
    for node, rows in events.items():
        asked = {}
        for t, what, task, kv in rows:
            src = kv.get('from', '')
            key = (task, kv.get('piece'), src)
            if what == 'request':
                asked[key] = t
            elif what == 'stored' and key in asked:
                kind = 'origin' if src == 'origin' else node_of(src, names).rstrip('0123456789')
                kinds[kind].append(t - asked.pop(key))
    for kind, d in sorted(kinds.items()):
        print(f'request -> stored (ms) from {kind}, {len(d)} pieces: {pct(d, (0.1, 0.5, 0.9))}')
    for node, rows in events.items():
        if not rows:
            continue
        by_source = collections.Counter()
        open_now, area, last, aborted = set(), 0.0, rows[0][0], 0
        for t, what, task, kv in rows:
            area += len(open_now) * (t - last)
            last = t
            src = kv.get('from', '')
            key = (task, kv.get('piece'), src)
            if what == 'request':
                open_now.add(key)
            elif what in ('stored', 'dropped', 'failed', 'aborted', 'fatal'):
                open_now.discard(key)
                aborted += what == 'aborted'
            if what == 'stored':
                by_source[node_of(src, names).rstrip('0123456789') if src != 'origin' else 'origin'] += int(kv['bytes'])
        span = rows[-1][0] - rows[0][0]
        mb = ', '.join(f'{k} {v / 1e6:.1f}' for k, v in sorted(by_source.items()))
        print(f'{node}: {span:.2f} s, {area / max(span, 1e-9):.1f} pieces in flight on average, MB from {mb}; {aborted} aborted')


if __name__ == '__main__':
    main()

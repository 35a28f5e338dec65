#!/usr/bin/env python3
"""What the post script (crates/cluster/src/posts.lua) costs Redis by
itself: a fresh redis-server, rooms laid out as a cluster node leaves them
for posting (members, their joins counted, the room's seq), and calls of
the script with a batch of posts each, piped back to back so that Redis
never waits. The figure is Redis's utime + stime over the calls, per post.

Run beside a cluster, Redis also pays for waking up between calls and for
caches the node and the bench have just used (docs/performance.md, "Round
seven"); this figure leaves both out, so it moves little from hour to
hour and tells one script from another.

    contrib/redis-post-script-cost.py                 # posts.lua as it is
    contrib/redis-post-script-cost.py --script other.lua --runs 5

Checked at the end: every call answered without an error, and every room's
seq is the number of posts sent to it (a post the script refused would not
have counted).
"""

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def resp(*args):
    out = [b'*%d\r\n' % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b'$%d\r\n%s\r\n' % (len(a), a))
    return b''.join(out)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def cli(port, *args, stdin=None):
    return subprocess.run(['redis-cli', '-p', str(port), *args], stdin=stdin,
                          capture_output=True, check=True).stdout.decode()


def cpu_ticks(pid):
    fields = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])


def run(args, script, work):
    port = free_port()
    redis = subprocess.Popen(['redis-server', '--bind', '127.0.0.1', '--port', str(port),
                              '--save', '', '--appendonly', 'no'], stdout=subprocess.DEVNULL)
    try:
        for _ in range(50):
            try:
                cli(port, 'ping')
                break
            except subprocess.CalledProcessError:
                time.sleep(0.1)
        rng = random.Random(args.seed)
        alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789'
        codes = [''.join(rng.choice(alphabet) for _ in range(6)) for _ in range(args.rooms)]
        members = {c: ['u_' + ''.join(rng.choice(alphabet.lower() + alphabet) for _ in range(12))
                       for _ in range(args.members)] for c in codes}
        ns = 'cf'
        setup = []
        for c in codes:
            room = f'{ns}:{{{c}}}:'
            fields = [x for u in members[c] for x in (u, '1')]
            setup.append(resp('HSET', room + 'mem', *fields, '#j', len(members[c])))
            setup.append(resp('HSET', room + 'meta', 'json', '{}'))
            setup.append(resp('SET', room + 'seq', 0))
        with open(os.path.join(work, 'setup'), 'wb') as f:
            f.write(b''.join(setup))
        with open(os.path.join(work, 'setup'), 'rb') as f:
            cli(port, '--pipe', stdin=f)
        sha = cli(port, 'script', 'load', script).strip()
        body = 'x' * args.size
        sent = {c: 0 for c in codes}
        calls = []
        n = 0
        for _ in range(args.calls):
            call = ['cf:events', 1000, 1024, ns]
            for _ in range(args.batch):
                c = rng.choice(codes)
                u = rng.choice(members[c])
                n += 1
                sent[c] += 1
                tail = (f',"room":"{c}","from":{{"id":"{u}","name":"m{n % 10}"}},'
                        f'"body":"{body}","ts":"2026-12-05T14:12:33.865Z"}}')
                call += [c, u, f'n1#e440332d {n % 10000} {n}', '', tail]
            calls.append(resp('EVALSHA', sha, 0, *call))
        with open(os.path.join(work, 'load'), 'wb') as f:
            f.write(b''.join(calls))
        pid = int(cli(port, 'info', 'server').split('process_id:')[1].split()[0])
        before = cpu_ticks(pid)
        with open(os.path.join(work, 'load'), 'rb') as f:
            piped = cli(port, '--pipe', stdin=f)
        used = cpu_ticks(pid) - before
        if 'errors: 0,' not in piped:
            sys.exit(f'the script answered with errors: {piped.strip()}')
        got = cli(port, 'eval',
                  "local t = {} for i, k in ipairs(KEYS) do t[i] = redis.call('GET', k) end return t",
                  str(len(codes)), *[f'{ns}:{{{c}}}:seq' for c in codes]).split()
        seqs = [int(x.strip('"')) for x in got if x.strip('"').isdigit()]
        if seqs != [sent[c] for c in codes]:
            sys.exit('a room\'s seq is not the number of posts sent to it')
        return used / 100.0 / n * 1e6
    finally:
        redis.terminate()
        redis.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--script', default=os.path.join(ROOT, 'crates/cluster/src/posts.lua'))
    p.add_argument('--rooms', type=int, default=1000)
    p.add_argument('--members', type=int, default=10)
    p.add_argument('--batch', type=int, default=80, help='posts a call')
    p.add_argument('--calls', type=int, default=3000)
    p.add_argument('--size', type=int, default=100, help='body bytes')
    p.add_argument('--runs', type=int, default=3)
    p.add_argument('--seed', type=int, default=7)
    args = p.parse_args()
    script = open(args.script).read()
    with tempfile.TemporaryDirectory() as work:
        figures = [run(args, script, work) for _ in range(args.runs)]
    print(f'{os.path.basename(args.script)}: Redis CPU per post, piped: '
          + ', '.join(f'{f:.2f}' for f in figures)
          + f' us (mean {sum(figures) / len(figures):.2f}; {args.calls} calls of {args.batch} posts,'
          f' {args.rooms} rooms x {args.members})')


if __name__ == '__main__':
    main()

#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""bench/vs.py: listq against Postfix on the same machine, in the same run.

    bench/vs.py [enqueue|deliver|rtt|fanout|latency|scaling|mailman|all]...

Run as root (a private Postfix instance needs it).  Every benchmark starts
Postfix's smtp-sink on 127.0.0.1 as the receiving relay and a private
Postfix instance (its own config directory and queue under the work
directory, loopback only, high ports; the system instance is never
touched) as the peer, runs listq and Postfix on identical input,
alternating, for ROUNDS rounds (default 3), and prints medians, ranges
(min-max) and the ratio listq/Postfix.  Each table is appended to
bench/results/<name>.txt with the machine (cores, kernel, filesystem).

Sizes (environment): BENCH_ROUNDS (3), BENCH_ENQ_N (1000 per measurement;
the issue's 10,000 with BENCH_FULL=1), BENCH_DELIVER_N (10000),
BENCH_RTT_N (2000) and BENCH_RTT_MS (10: the round trip bench/delay.py adds),
BENCH_FANOUT ("10000 100000"), BENCH_LAT_N (1000), BENCH_SCALE
("1 2 4 8 16"), BENCH_MM_N (200 posts), BENCH_MM_J (2 injectors).

The mailman benchmark has a second peer: a private Mailman 3 instance
(Debian's mailman3: its own mailman.cfg and var directory under the work
directory, SQLite, run as Debian's service user; the system instance is
never started) against listq for posts to a 100-member list.

Every process started here is stopped by pid.
"""
import os, sys, time, subprocess, shutil, signal, socket, statistics
import threading, re, glob

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
BUILD = os.environ.get('BUILD', 'build')
WORK = os.environ.get('BENCH_DIR', '/tmp/listq-bench-vs')
RESULTS = os.environ.get('BENCH_RESULTS',
                         os.path.join(TOP, 'bench', 'results'))
ROUNDS = int(os.environ.get('BENCH_ROUNDS', '3'))
FULL = os.environ.get('BENCH_FULL') == '1'
ENQ_N = int(os.environ.get('BENCH_ENQ_N', '10000' if FULL else '1000'))
DELIVER_N = int(os.environ.get('BENCH_DELIVER_N', '10000'))
FANOUT = [int(x) for x in os.environ.get('BENCH_FANOUT', '10000 100000').split()]
LAT_N = int(os.environ.get('BENCH_LAT_N', '1000'))
SCALE = [int(x) for x in os.environ.get('BENCH_SCALE', '1 2 4 8 16').split()]
WORKERS = int(os.environ.get('BENCH_WORKERS', '4'))
SESSIONS = 4		# listqd's smtp_sessions default: per worker
RTT_N = int(os.environ.get('BENCH_RTT_N', '2000'))
RTT_MS = float(os.environ.get('BENCH_RTT_MS', '10'))
WAIT = float(os.environ.get('BENCH_WAIT', '300'))
MM_N = int(os.environ.get('BENCH_MM_N', '200'))
MM_J = int(os.environ.get('BENCH_MM_J', '2'))
MM_MEMBERS = 100
SENDER = 'poster@example.net'

started = []		# Popen objects to stop at exit


def say(*a):
    print(*a, flush=True)


def die(msg):
    say('bench: ' + msg)
    sys.exit(1)


def run(cmd, **kw):
    kw.setdefault('check', True)
    return subprocess.run(cmd, **kw)


def stop(p, sig=signal.SIGTERM, wait=20):
    if p is None or p.poll() is not None:
        return
    try:
        p.send_signal(sig)
        p.wait(wait)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def med(v):
    return statistics.median(v)


def rng(v, fmt='%.0f'):
    return (fmt % min(v)) + '-' + (fmt % max(v))


# ------------------------------------------------------------------ machine

def machine():
    dev = run(['findmnt', '-n', '-o', 'SOURCE,FSTYPE,OPTIONS', '-T', WORK],
              capture_output=True, text=True, check=False).stdout.strip()
    rev = run(['git', '-C', TOP, 'rev-parse', '--short', 'HEAD'],
              capture_output=True, text=True, check=False).stdout.strip()
    dirty = run(['git', '-C', TOP, 'status', '--porcelain',
                 '--untracked-files=no'], capture_output=True, text=True,
                check=False).stdout.strip()
    model = ''
    for line in open('/proc/cpuinfo'):
        if line.startswith('model name'):
            model = line.split(':', 1)[1].strip()
            break
    mem = open('/proc/meminfo').readline().split()[1]
    pf = run(['postconf', '-d', '-h', 'mail_version'], capture_output=True,
             text=True, check=False).stdout.strip()
    return ('machine: %d cores (%s), %d MB RAM, kernel %s, filesystem %s; '
            'Postfix %s; listq %s%s; load at start %s' % (
                os.cpu_count(), model, int(mem) // 1024, os.uname().release,
                dev, pf, rev or 'unknown',
                ' + uncommitted changes' if dirty else '',
                open('/proc/loadavg').read().split()[0]))


def record(name, title, lines):
    os.makedirs(RESULTS, exist_ok=True)
    text = '\n'.join(['== %s  %s' % (title, time.strftime(
        '%Y-%m-%d %H:%M:%S UTC', time.gmtime())), MACHINE] + lines) + '\n'
    say('')
    say(text)
    with open(os.path.join(RESULTS, name + '.txt'), 'a') as f:
        f.write(text + '\n')


# ------------------------------------------------------------------ setup

def ensure_packages(what):
    if 'mailman' in what and not os.path.exists('/usr/bin/mailman'):
        install_mailman()
    need = []
    if not os.path.exists('/usr/sbin/smtp-sink'):
        need.append('postfix')
    if 'scaling' in what and not shutil.which('gnuplot'):
        need.append('gnuplot-nox')	# only the scaling plot needs it
    if not need:
        return
    say('installing ' + ' '.join(need) + ' ("No configuration": nothing starts)')
    run(['debconf-set-selections'], input=b'postfix postfix/main_mailer_type '
        b'select No configuration\n')
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    run(['apt-get', 'install', '-y', '-qq'] + need, env=env,
        stdout=subprocess.DEVNULL)


def dpkg_installed(pkg):
    out = run(['dpkg-query', '-W', '-f', '${Status}', pkg], check=False,
              capture_output=True, text=True).stdout
    return out.endswith(' installed')


def install_mailman():
    """Debian's mailman3 with no service started or enabled: the bench runs
    its own instance.  A policy-rc.d that denies every start is in place
    during the install (any existing one is set aside and put back), and
    the services the install enabled for the next boot, mailman3 and cron
    (its dependency) when cron came with it, are disabled again."""
    services = ['mailman3'] if dpkg_installed('cron') else ['mailman3', 'cron']
    say('installing mailman3 (no service started or enabled)')
    policy = '/usr/sbin/policy-rc.d'
    saved = policy + '.bench-vs'
    if os.path.lexists(policy):
        os.rename(policy, saved)
    try:
        with open(policy, 'w') as f:
            f.write('#!/bin/sh\n'
                    '# bench/vs.py installs mailman3: start nothing\n'
                    'exit 101\n')
        os.chmod(policy, 0o755)
        env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
        # no Recommends: its default-mta would be exim4
        run(['apt-get', 'install', '-y', '-qq', '--no-install-recommends',
             'mailman3'], env=env, stdout=subprocess.DEVNULL)
    finally:
        os.unlink(policy)
        if os.path.lexists(saved):
            os.rename(saved, policy)
    for svc in services:
        run(['update-rc.d', svc, 'disable'], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)


def file_size(path):
    """Where a log that may not exist yet ends."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def build():
    """A development build of listq whose service identity is root, with
    this work directory's spool and lists compiled in."""
    b = os.path.join(BUILD, 'bench-vs')
    run(['make', '-s', '--no-print-directory', '-C', TOP, 'BUILD=' + b,
         'LISTQ_UID=0', 'LISTQ_GID=0', 'MAIL_GIDS=0',
         'SPOOLDIR=' + WORK + '/spool', 'LISTDIR=' + WORK + '/lists',
         'wrapper', 'daemon'])
    run(['make', '-s', '--no-print-directory', '-C', TOP,
         BUILD + '/bench/spawn'])
    return (os.path.join(TOP, b, 'listq-wrapper'),
            os.path.join(TOP, b, 'listqd'),
            os.path.join(TOP, BUILD, 'bench', 'spawn'))


def listening(port, tries):
    """True once something accepts on 127.0.0.1:port (tries x 50 ms)."""
    for _ in range(tries):
        try:
            socket.create_connection(('127.0.0.1', port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Sink:
    """smtp-sink -c on a loopback port; a thread timestamps its counter."""

    def __init__(self):
        for _ in range(5):
            self.port = free_port()
            self.p = subprocess.Popen(
                ['/usr/sbin/smtp-sink', '-u', 'nobody', '-c',
                 '127.0.0.1:%d' % self.port, '1000'],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            started.append(self.p)
            if listening(self.port, 50):
                break
            stop(self.p)
        else:
            die('smtp-sink could not listen')
        self.mesg = 0
        self.cond = threading.Condition()
        threading.Thread(target=self.reader, daemon=True).start()

    def reader(self):
        buf = b''
        fd = self.p.stdout.fileno()
        while True:
            d = os.read(fd, 4096)
            if not d:
                return
            buf += d
            parts = re.split(rb'[\r\n]', buf)
            buf = parts.pop()
            for part in parts:
                m = re.search(rb'mesg=(\d+)', part)
                if m:
                    with self.cond:
                        self.mesg = int(m.group(1))
                        self.cond.notify_all()

    def count(self):
        # the connecting probe above counts as a session, never as mesg
        with self.cond:
            return self.mesg

    def wait_above(self, n, timeout):
        end = time.monotonic() + timeout
        with self.cond:
            while self.mesg <= n:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True


def tree_rss(roots):
    """Sum of VmRSS (kB) of the processes ROOTS and all their descendants."""
    kids = {}
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % d) as f:
                s = f.read()
            ppid = int(s[s.rindex(')') + 2:].split()[1])
            kids.setdefault(ppid, []).append(int(d))
        except (OSError, ValueError):
            pass
    todo, seen, total = list(roots), set(), 0
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        todo.extend(kids.get(p, []))
        try:
            with open('/proc/%d/status' % p) as f:
                for line in f:
                    if line.startswith('VmRSS:'):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class PeakRss:
    """Samples the total RSS of ROOTS() and their descendants every 0.1 s
    in a thread, from its creation until stop(), which returns the peak
    (kB): a run that blocks while it injects is sampled too."""

    def __init__(self, roots):
        self.roots, self.peak = roots, 0
        self.over = threading.Event()
        self.t = threading.Thread(target=self.sample, daemon=True)
        self.t.start()

    def sample(self):
        while True:
            self.peak = max(self.peak, tree_rss(self.roots()))
            if self.over.wait(0.1):
                return

    def stop(self):
        self.over.set()
        self.t.join()
        return self.peak


def wait_until(done, roots, what, timeout=WAIT, step=0.02):
    """Polls DONE() every STEP s; returns (seconds, peak RSS kB of ROOTS()).
    The clock starts at the call."""
    t0 = time.monotonic()
    peak = 0
    n = 0
    while True:
        if done():
            return time.monotonic() - t0, peak
        if n % 5 == 0:
            peak = max(peak, tree_rss(roots()))
        n += 1
        if time.monotonic() - t0 > timeout:
            die('%s: not done after %d s' % (what, timeout))
        time.sleep(step)


# ------------------------------------------------------------------ listq

class Listq:
    def __init__(self, wrapper, listqd, sink):
        self.wrapper, self.listqd, self.sink = wrapper, listqd, sink
        self.spool = WORK + '/spool'
        self.lists = WORK + '/lists'
        self.p = None
        self.log = None
        self.conf = WORK + '/listq.conf'
        with open(self.conf, 'w') as f:
            f.write('smarthost = 127.0.0.1:%d\n' % sink.port)
        os.makedirs(self.lists, mode=0o700, exist_ok=True)

    def mklist(self, name, members):
        d = os.path.join(self.lists, name)
        os.makedirs(d, mode=0o700, exist_ok=True)
        with open(d + '/config', 'w') as f:
            f.write('address = %s@example.org\npost_policy = open\n' % name)
        with open(d + '/owners', 'w') as f:
            f.write('owner@example.org\n')
        shutil.copyfile(members, d + '/members')

    def reset(self):
        self.stop()
        shutil.rmtree(self.spool, ignore_errors=True)
        make_spool(self.spool)

    def queued(self):
        n = 0
        for b in os.scandir(self.spool + '/queue'):
            n += len(os.listdir(b.path))
        return n

    def empty(self):
        for b in os.scandir(self.spool + '/queue'):
            if os.listdir(b.path):
                return False
        return True

    def start(self, workers=WORKERS, tag='run'):
        self.log = WORK + '/listqd.%s.log' % tag
        self.p = subprocess.Popen(
            [self.listqd, '-F', '-f', self.conf, '-n', str(workers)],
            stdout=subprocess.DEVNULL, stderr=open(self.log, 'w'))
        started.append(self.p)

    def ready(self, workers):
        """Waits until listqd logged that its workers started."""
        for _ in range(200):
            try:
                if 'started' in open(self.log).read():
                    time.sleep(0.2)
                    return
            except OSError:
                pass
            time.sleep(0.05)

    def roots(self):
        return [self.p.pid] if self.p and self.p.poll() is None else []

    def stop(self):
        stop(self.p)
        self.p = None

    def sent(self):
        return open(self.log).read().count('status=sent')

    def post_cmd(self, lst):
        return [self.wrapper, 'post', lst]


def make_spool(d):
    os.makedirs(d + '/queue', mode=0o700)
    for s in ('tmp', 'hold', 'corrupt'):
        os.mkdir(d + '/' + s, 0o700)
    os.chmod(d, 0o700)
    for b in range(256):
        os.mkdir('%s/queue/%02x' % (d, b), 0o700)


# ------------------------------------------------------------------ postfix

MASTER_CF = '''\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
%(qmgr)sqmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
127.0.0.1:%(smtpd)d inet n  -       n       -       -       smtpd
'''


class Postfix:
    """A private instance: config in WORK/pf/etc, queue in WORK/pf/queue,
    log in WORK/pf/maillog, listening only on 127.0.0.1:<high port> (used
    only to load the queue for the delivery benchmark)."""

    def __init__(self, sink):
        self.sink = sink
        self.dir = WORK + '/pf'
        self.etc = self.dir + '/etc'
        self.q = self.dir + '/queue'
        self.maillog = self.dir + '/maillog'
        self.smtpd = free_port()
        self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.etc)
        os.chmod(self.dir, 0o755)
        os.makedirs(self.q, mode=0o755)
        os.makedirs(self.dir + '/include', mode=0o755)
        with open(self.etc + '/main.cf', 'w') as f:
            f.write('''\
compatibility_level = 3.6
queue_directory = %(q)s
data_directory = %(q)s/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = pf.bench.example
mydomain = bench.example
myorigin = bench.example
mydestination = localhost, pf.bench.example
relayhost = [127.0.0.1]:%(port)d
alias_maps = hash:%(etc)s/aliases
alias_database = hash:%(etc)s/aliases
maillog_file = %(log)s
maillog_file_prefixes = %(dir)s
smtputf8_enable = no
biff = no
mynetworks = 127.0.0.0/8
# tuned for throughput (the issue's "tuned" Postfix):
in_flow_delay = 0
default_process_limit = 100
initial_destination_concurrency = 20
default_destination_concurrency_limit = 20
default_destination_recipient_limit = 500
smtp_connection_cache_on_demand = yes
qmgr_message_recipient_limit = 200000
duplicate_filter_limit = 0
''' % dict(q=self.q, etc=self.etc, port=sink.port, log=self.maillog,
                dir=self.dir))
        self.aliases = ['postmaster: root']
        self.write_aliases()
        self.master_cf(True)

    def write_aliases(self):
        with open(self.etc + '/aliases', 'w') as f:
            f.write('\n'.join(self.aliases) + '\n')
        run(['postalias', '-c', self.etc, self.etc + '/aliases'])

    def include(self, name, members):
        path = '%s/include/%s' % (self.dir, name)
        shutil.copyfile(members, path)
        os.chmod(path, 0o644)
        self.aliases.append('%s: :include:%s' % (name, path))
        self.write_aliases()

    def master_cf(self, qmgr):
        with open(self.etc + '/master.cf', 'w') as f:
            f.write(MASTER_CF % dict(qmgr='' if qmgr else '#',
                                     smtpd=self.smtpd))

    def cmd(self, *a):
        run(['postfix', '-c', self.etc] + list(a), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)

    def start(self, qmgr=True):
        self.master_cf(qmgr)
        if self.running:
            self.cmd('reload')
        else:
            self.cmd('check')
            self.cmd('start')
            self.running = True
        time.sleep(0.3)

    def qmgr_on(self):
        """Starts the queue manager: the clock of a delivery run starts
        here."""
        self.master_cf(True)
        self.cmd('reload')

    def stop(self):
        if self.running:
            self.cmd('stop')
            self.running = False

    def master_pid(self):
        try:
            return int(open(self.q + '/pid/master.pid').read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def roots(self):
        p = self.master_pid()
        return [p] if p else []

    def queued(self, dirs=('maildrop', 'incoming', 'active', 'deferred',
                           'hold')):
        n = 0
        for d in dirs:
            for _, _, files in os.walk(os.path.join(self.q, d)):
                n += len(files)
        return n

    def empty(self):
        return self.queued() == 0

    def purge(self):
        run(['postsuper', '-c', self.etc, '-d', 'ALL'],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            check=False)

    def logpos(self):
        return file_size(self.maillog)

    def sent_since(self, pos):
        with open(self.maillog, 'rb') as f:
            f.seek(pos)
            return sum(1 for line in f.read().splitlines()
                       if b'status=sent' in line and b'relay=local' not in line)

    def sendmail(self, *rcpts):
        return ['/usr/sbin/sendmail', '-C', self.etc, '-i', '-f', SENDER] + \
            list(rcpts)


# ------------------------------------------------------------------ mailman

MM_USER = 'list'	# Debian's mailman3 runs as list:list

MM_CFG = '''\
[mailman]
site_owner: owner@example.org
layout: bench

[paths.bench]
var_dir: %(dir)s/var
bin_dir: /usr/lib/mailman3/bin
pid_file: $var_dir/master.pid

[database]
class: mailman.database.sqlite.SQLiteDatabase
url: sqlite:///$DATA_DIR/mailman.db

[mta]
# no MTA maps to write: posts come straight to the LMTP runner
incoming: mailman.mta.null.NullMTA
outgoing: mailman.mta.deliver.deliver
smtp_host: 127.0.0.1
smtp_port: %(sink)d
lmtp_host: 127.0.0.1
lmtp_port: %(lmtp)d

[webservice]
hostname: 127.0.0.1
port: %(rest)d
admin_user: bench
admin_pass: %(secret)s

[logging.vette]
# its own file, so that the bench sees a held or discarded post
path: vette.log
'''

# Run by `mailman shell -r` on the list: what a list administrator sets
# for an announcement-style list that nobody moderates.
MM_SETUP = '''\
from mailman.interfaces.action import Action
from mailman.interfaces.archiver import ArchivePolicy


def setup(mlist):
    mlist.default_member_action = Action.accept
    mlist.default_nonmember_action = Action.accept
    mlist.digests_enabled = False
    mlist.archive_policy = ArchivePolicy.never
    mlist.send_welcome_message = False
    mlist.admin_notify_mchanges = False
    print(mlist.members.member_count)
'''


class Mailman:
    """A private Mailman 3 instance: mailman.cfg and its var directory
    (SQLite database, queues, logs) in WORK/mm, run as Debian's service
    user; its LMTP runner and REST API on free 127.0.0.1 ports, its
    outgoing SMTP to the sink.  Every runner is started by `mailman start`
    with the stock runner settings (one process each)."""

    def __init__(self, sink):
        self.dir = WORK + '/mm'
        self.cfg = self.dir + '/mailman.cfg'
        self.var = self.dir + '/var'
        self.lmtp = free_port()
        self.master = None
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.var)
        with open(self.cfg, 'w') as f:
            f.write(MM_CFG % dict(dir=self.dir, sink=sink.port,
                                  lmtp=self.lmtp, rest=free_port(),
                                  secret=os.urandom(12).hex()))
        with open(self.dir + '/benchsetup.py', 'w') as f:
            f.write(MM_SETUP)
        run(['chown', '-R', '%s:%s' % (MM_USER, MM_USER), self.dir])
        self.version = run(['dpkg-query', '-W', '-f', '${Version}',
                            'mailman3'], capture_output=True,
                           text=True).stdout.strip()

    def cli(self, *args, **kw):
        env = dict(os.environ, HOME=self.dir, PYTHONPATH=self.dir)
        return run(['mailman', '-C', self.cfg] + list(args), user=MM_USER,
                   group=MM_USER, extra_groups=[], cwd=self.dir, env=env,
                   **kw)

    def mklist(self, addr, members):
        self.cli('create', '-q', '-N', addr, stdout=subprocess.DEVNULL)
        with open(members) as f:
            self.cli('addmembers', '-W', '-', addr, stdin=f)
        out = self.cli('shell', '-r', 'benchsetup.setup', '-l', addr,
                       capture_output=True, text=True).stdout.split()
        if not out or int(out[-1]) != MM_MEMBERS:
            die('mailman: %s has %s members' % (addr, out))

    def start(self):
        """`mailman start`; ready when the LMTP runner accepts."""
        self.cli('start', '-q')
        end = time.monotonic() + 120
        while True:
            try:
                if self.master is None:
                    self.master = self.pidfile()
                socket.create_connection(('127.0.0.1', self.lmtp), 1).close()
                return
            except (OSError, ValueError):
                if time.monotonic() > end:
                    die('mailman: its LMTP runner never listened; see ' +
                        self.var + '/logs/mailman.log')
                time.sleep(0.2)

    def pidfile(self):
        with open(self.var + '/master.pid') as f:
            return int(f.read())

    def alive(self):
        try:
            with open('/proc/%d/stat' % self.master) as f:
                s = f.read()
            return s[s.rindex(')') + 2] != 'Z'
        except OSError:
            return False

    def stop(self):
        """`mailman stop`, then waits for the master; its runners share its
        process group (it called setsid), which gets SIGKILL after 60 s."""
        if self.master is None:
            try:	# stopped before start() saw the master
                self.master = self.pidfile()
            except (OSError, ValueError):
                return
        self.cli('stop', '-q', check=False)
        end = time.monotonic() + 60
        while self.alive() and time.monotonic() < end:
            time.sleep(0.2)
        if self.alive():
            say('  mailman: still running after 60 s, killed')
            os.killpg(self.master, signal.SIGKILL)
            if os.path.exists(self.var + '/master.pid'):
                os.unlink(self.var + '/master.pid')	# never read again
        self.master = None

    def roots(self):
        return [self.master] if self.master else []

    def held(self):
        """Whether Mailman set a post aside instead of delivering it: held
        or discarded by its rules (vette log), or failed (shunt, bad)."""
        try:
            with open(self.var + '/logs/vette.log') as f:
                if re.search(r'(HOLD|DISCARD|REJECT): ', f.read()):
                    return True
        except FileNotFoundError:
            pass
        return any(os.listdir(self.var + '/queue/' + q)
                   for q in ('shunt', 'bad')
                   if os.path.isdir(self.var + '/queue/' + q))

    def logpos(self):
        return file_size(self.var + '/logs/smtp.log')

    def rcpts_since(self, pos):
        """Recipients in the smtp log's "for N recips" lines after POS, and
        the count of refused recipients."""
        with open(self.var + '/logs/smtp.log') as f:
            f.seek(pos)
            text = f.read()
        return (sum(int(x) for x in re.findall(r' for (\d+) recips,', text)),
                sum(int(x) for x in re.findall(r', (\d+) failures', text)))


# ------------------------------------------------------------------ inputs

def mkmsg(path, to):
    import base64
    body = base64.encodebytes(os.urandom(3750)).decode().replace('\n', '')
    lines = [body[i:i + 72] for i in range(0, len(body), 72)]
    with open(path, 'w') as f:
        f.write('From: %s\nTo: %s\nSubject: benchmark\n'
                'Message-ID: <bench@example.net>\n\n' % (SENDER, to))
        f.write('\n'.join(lines) + '\n')
    os.chmod(path, 0o644)


def members(n):
    path = '%s/members.%d' % (WORK, n)
    if not os.path.exists(path):
        with open(path, 'w') as f:
            for i in range(n):
                f.write('m%d@members.example\n' % i)
    return path


def spawn_rate(spawn, n, j, msg, cmd):
    out = run([spawn, '-n', str(n), '-j', str(j), '-i', msg] + cmd,
              capture_output=True, text=True)
    return float(out.stdout.split()[0])


# ------------------------------------------------------------------ benches

def bench_enqueue(env):
    lq, pf, spawn = env['lq'], env['pf'], env['spawn']
    floor = os.path.join(TOP, BUILD, 'bench', 'floor')
    run(['make', '-s', '--no-print-directory', '-C', TOP,
         BUILD + '/bench/floor'])
    fdir = WORK + '/floor'
    lq.stop()
    pf.start(qmgr=False)
    res = {}
    for r in range(ROUNDS):
        for j in (1, 4):
            order = ('listq', 'postfix', 'floor') if r % 2 == 0 else \
                ('postfix', 'listq', 'floor')
            for who in order:
                if who == 'listq':
                    lq.reset()
                    v = spawn_rate(spawn, ENQ_N, j, env['msg1'],
                                   lq.post_cmd('one'))
                    if lq.queued() != ENQ_N:
                        die('listq queued %d of %d' % (lq.queued(), ENQ_N))
                elif who == 'postfix':
                    pf.purge()
                    v = spawn_rate(spawn, ENQ_N, j, env['msg1'],
                                   pf.sendmail('m0@members.example'))
                    # let pickup/cleanup finish before the next measurement
                    wait_until(lambda: pf.queued(('maildrop',)) == 0,
                               lambda: [], 'postfix pickup')
                    pf.purge()
                else:
                    shutil.rmtree(fdir, ignore_errors=True)
                    os.makedirs(fdir + '/tmp')
                    os.makedirs(fdir + '/queue')
                    v = spawn_rate(spawn, ENQ_N, j, env['msg1'],
                                   [floor, fdir])
                res.setdefault((who, j), []).append(v)
                say('  enqueue round %d, %d caller(s): %s %.0f/s' %
                    (r + 1, j, who, v))
    lq.reset()
    lines = ['enqueue: %d messages of %d bytes per measurement, %d rounds; '
             'listq-wrapper post (development build) vs Postfix sendmail '
             '(postdrop; pickup and cleanup running, qmgr stopped), both '
             'called by root; floor = fork+exec of write+fsync+rename+fsync'
             % (ENQ_N, os.path.getsize(env['msg1']), ROUNDS),
             '%-8s %16s %16s %16s %10s %12s' % (
                 'callers', 'listq/s (range)', 'postfix/s', 'floor/s',
                 'listq/pf', 'listq/floor')]
    for j in (1, 4):
        a, b, c = res[('listq', j)], res[('postfix', j)], res[('floor', j)]
        lines.append('%-8d %16s %16s %16s %9.1fx %11.0f%%' % (
            j, '%.0f (%s)' % (med(a), rng(a)), '%.0f (%s)' % (med(b), rng(b)),
            '%.0f (%s)' % (med(c), rng(c)), med(a) / med(b),
            100 * med(a) / med(c)))
    lines.append('target: listq >= 5x Postfix sendmail')
    record('enqueue', 'enqueue: listq-wrapper vs Postfix sendmail', lines)


def listq_template(env, n):
    """A spool of N one-recipient posts, written once by the wrapper with
    listqd stopped; copied for every delivery run."""
    lq = env['lq']
    tpl = '%s/spool.tpl.%d' % (WORK, n)
    if os.path.isdir(tpl):
        return tpl
    lq.reset()
    t0 = time.monotonic()
    out = run([env['spawn'], '-n', str(n), '-j', '2', '-i', env['msg1']] +
              lq.post_cmd('one'), capture_output=True, text=True)
    say('  listq: %d posts enqueued for the template in %.1f s (%s/s)' % (
        n, time.monotonic() - t0, out.stdout.strip()))
    if lq.queued() != n:
        die('template spool holds %d, not %d' % (lq.queued(), n))
    os.rename(lq.spool, tpl)
    return tpl


def listq_drain(env, tpl, n, workers, tag):
    """Copies the template into place, starts listqd and times until the
    spool is empty and the sink has N more messages."""
    lq, sink = env['lq'], env['sink']
    lq.stop()
    shutil.rmtree(lq.spool, ignore_errors=True)
    run(['cp', '-a', tpl, lq.spool])
    run(['sync'])
    base = sink.count()
    lq.start(workers, tag)
    secs, peak = wait_until(
        lambda: sink.count() - base >= n and lq.empty(), lq.roots,
        'listqd (%s)' % tag)
    lq.stop()
    sent = lq.sent()
    if sent != n:
        say('  WARNING: listqd logged %d deliveries, expected %d' % (sent, n))
    return secs, peak


def pf_load(env, n):
    """N one-recipient messages into the private Postfix over its own
    smtpd (smtp-source, 4 sessions) with the queue manager stopped."""
    pf = env['pf']
    pf.start(qmgr=False)
    pf.purge()
    run(['/usr/sbin/smtp-source', '-s', '4', '-d', '-m', str(n), '-l',
         '5000', '-f', SENDER, '-t', 'm0@members.example',
         '127.0.0.1:%d' % pf.smtpd])
    wait_until(lambda: pf.queued(('incoming',)) >= n, lambda: [],
               'postfix load')
    if pf.queued() != n:
        die('postfix queue holds %d, not %d' % (pf.queued(), n))


def pf_drain(env, n):
    pf, sink = env['pf'], env['sink']
    base, pos = sink.count(), pf.logpos()
    pf.qmgr_on()
    secs, peak = wait_until(
        lambda: sink.count() - base >= n and pf.empty(), pf.roots,
        'postfix delivery')
    time.sleep(0.2)
    sent = pf.sent_since(pos)
    if sent != n:
        say('  WARNING: postfix logged %d deliveries, expected %d' % (sent, n))
    return secs, peak


def bench_deliver(env):
    n = DELIVER_N
    sink = env['sink']
    tpl = listq_template(env, n)
    res = {}
    for r in range(ROUNDS):
        order = ('listq', 'postfix') if r % 2 == 0 else ('postfix', 'listq')
        for who in order:
            if who == 'listq':
                secs, peak = listq_drain(env, tpl, n, WORKERS, 'deliver')
            else:
                pf_load(env, n)
                secs, peak = pf_drain(env, n)
            res.setdefault(who, []).append((n / secs, peak))
            say('  deliver round %d: %s %.2f s, %.0f msg/s, peak RSS %d MB' %
                (r + 1, who, secs, n / secs, peak / 1024))
        base = sink.count()
        t0 = time.monotonic()
        # the same number of connections as listqd holds
        run(['/usr/sbin/smtp-source', '-s', str(WORKERS * SESSIONS), '-d',
             '-m', str(n), '-l', '5000', '-f', SENDER, '-t',
             'm0@members.example', '127.0.0.1:%d' % sink.port])
        c = time.monotonic() - t0
        if sink.count() - base != n:
            say('  WARNING: smtp-source: the sink counted %d' %
                (sink.count() - base))
        res.setdefault('ceiling', []).append((n / c, 0))
        say('  deliver round %d: smtp-source %.2f s, %.0f msg/s' %
            (r + 1, c, n / c))
    env['pf'].start(qmgr=True)
    L = [x[0] for x in res['listq']]
    P = [x[0] for x in res['postfix']]
    C = [x[0] for x in res['ceiling']]
    env['deliver_pf'] = med(P)
    lines = ['deliver: %d queued messages of 5 KB, one recipient each, %d '
             'rounds; listqd -n %d (spool filled by the wrapper with listqd '
             'stopped) vs tuned Postfix (loaded over its smtpd with qmgr '
             'stopped; clock from qmgr start); ceiling = smtp-source -s %d '
             '-d into the same sink (as many connections as listqd\'s '
             '%d workers x %d sessions)' % (n, ROUNDS, WORKERS,
                                            WORKERS * SESSIONS, WORKERS,
                                            SESSIONS),
             '%-10s %18s %10s %14s' % ('', 'msg/s (range)', 'vs Postfix',
                                       'vs ceiling'),
             '%-10s %18s %9.2fx %13.0f%%' % (
                 'listq', '%.0f (%s)' % (med(L), rng(L)), med(L) / med(P),
                 100 * med(L) / med(C)),
             '%-10s %18s %10s %13.0f%%' % (
                 'postfix', '%.0f (%s)' % (med(P), rng(P)), '1.00x',
                 100 * med(P) / med(C)),
             '%-10s %18s' % ('ceiling', '%.0f (%s)' % (med(C), rng(C))),
             'targets: listq >= 3x Postfix (tuned), >= 70% of the ceiling']
    record('deliver', 'deliver: listqd vs Postfix vs smtp-source', lines)
    env['mem'].append(('deliver %d x 1 rcpt' % n,
                       [x[1] for x in res['listq']],
                       [x[1] for x in res['postfix']]))


class Delay:
    """bench/delay.py between a client and the sink: RTT_MS round trip."""

    def __init__(self, target):
        self.port = free_port()
        self.p = subprocess.Popen(
            [sys.executable, os.path.join(TOP, 'bench', 'delay.py'),
             str(self.port), str(target), str(RTT_MS / 2)])
        started.append(self.p)
        if not listening(self.port, 100):
            die('the delay proxy did not listen')

    def stop(self):
        stop(self.p)


def bench_rtt(env):
    """Single-recipient delivery through a RTT_MS round-trip path, both
    sides with their default concurrency: listqd WORKERS workers x its
    default smtp_sessions, Postfix 20 sessions to the destination."""
    n, sink, lq, pf = RTT_N, env['sink'], env['lq'], env['pf']
    proxy = Delay(sink.port)
    tpl = listq_template(env, n)
    with open(lq.conf, 'w') as f:
        f.write('smarthost = 127.0.0.1:%d\n' % proxy.port)
    pf.stop()		# restarted by pf_load with the proxy as relayhost
    run(['postconf', '-c', pf.etc, '-e',
         'relayhost = [127.0.0.1]:%d' % proxy.port])
    res = {}
    try:
        for r in range(ROUNDS):
            order = ('listq', 'postfix') if r % 2 == 0 else \
                ('postfix', 'listq')
            for who in order:
                if who == 'listq':
                    secs, _ = listq_drain(env, tpl, n, WORKERS, 'rtt')
                else:
                    pf_load(env, n)
                    secs, _ = pf_drain(env, n)
                res.setdefault(who, []).append(n / secs)
                say('  rtt round %d: %s %.2f s, %.0f msg/s' %
                    (r + 1, who, secs, n / secs))
    finally:
        with open(lq.conf, 'w') as f:
            f.write('smarthost = 127.0.0.1:%d\n' % sink.port)
        run(['postconf', '-c', pf.etc, '-e',
             'relayhost = [127.0.0.1]:%d' % sink.port])
        proxy.stop()
    L, P = res['listq'], res['postfix']
    lines = ['rtt: %d queued messages of 5 KB, one recipient each, through '
             'a %.0f ms round-trip delay proxy (bench/delay.py); listqd -n '
             '%d with default settings (%d sessions per worker) vs Postfix '
             'at its default destination concurrency (20); %d rounds' %
             (n, RTT_MS, WORKERS, SESSIONS, ROUNDS),
             '%-10s %18s %10s' % ('', 'msg/s (range)', 'vs Postfix'),
             '%-10s %18s %9.2fx' % ('listq', '%.0f (%s)' % (med(L), rng(L)),
                                    med(L) / med(P)),
             '%-10s %18s %10s' % ('postfix', '%.0f (%s)' % (med(P), rng(P)),
                                  '1.00x'),
             'target: listq ahead of Postfix; >= 5x the 166 msg/s that '
             'listqd reached before its own client']
    record('rtt', 'rtt: delivery through a %.0f ms round trip' % RTT_MS,
           lines)


def bench_fanout(env):
    lq, pf, sink = env['lq'], env['pf'], env['sink']
    res = {}
    pf.start(qmgr=True)
    for n in FANOUT:
        name = 'fan%d' % n
        lq.mklist(name, members(n))
        pf.include(name, members(n))
        mkmsg('%s/msg.%s' % (WORK, name), name + '@example.org')
    pf.cmd('reload')
    time.sleep(0.5)
    lq.reset()
    lq.start(WORKERS, 'fanout')
    lq.ready(WORKERS)
    for r in range(ROUNDS):
        for n in FANOUT:
            name = 'fan%d' % n
            msg = '%s/msg.%s' % (WORK, name)
            order = ('listq', 'postfix') if r % 2 == 0 else ('postfix', 'listq')
            for who in order:
                if who == 'listq':
                    before = lq.sent()
                    base = sink.count()
                    t0 = time.monotonic()
                    run(lq.post_cmd(name), stdin=open(msg))
                    secs, peak = wait_until(lq.empty, lq.roots, 'listq fanout')
                    secs += 0  # the clock covers the wrapper too
                    secs = time.monotonic() - t0
                    got = lq.sent() - before
                else:
                    pos = pf.logpos()
                    base = sink.count()
                    t0 = time.monotonic()
                    run(pf.sendmail('%s@localhost' % name), stdin=open(msg))
                    secs, peak = wait_until(pf.empty, pf.roots,
                                            'postfix fanout')
                    secs = time.monotonic() - t0
                    time.sleep(0.3)
                    got = pf.sent_since(pos)
                if got != n:
                    say('  WARNING: %s logged %d deliveries of %d' %
                        (who, got, n))
                res.setdefault((who, n), []).append((n / secs, peak))
                say('  fanout round %d, %d members: %s %.2f s, %.0f rcpt/s, '
                    '%d transactions, peak RSS %d MB' % (
                        r + 1, n, who, secs, n / secs, sink.count() - base,
                        peak / 1024))
    lq.stop()
    lines = ['fan-out: one 5 KB post to a list of N members, %d rounds; '
             'listq list (listqd -n %d running, idle) vs Postfix :include: '
             'alias (sendmail to the alias); clock from the post until the '
             'queue is empty and every recipient logged sent (500 rcpts per '
             'transaction on both sides)' % (ROUNDS, WORKERS),
             '%-9s %20s %20s %10s' % ('members', 'listq rcpt/s (range)',
                                      'postfix rcpt/s', 'listq/pf')]
    for n in FANOUT:
        a = [x[0] for x in res[('listq', n)]]
        b = [x[0] for x in res[('postfix', n)]]
        lines.append('%-9d %20s %20s %9.1fx' % (
            n, '%.0f (%s)' % (med(a), rng(a)), '%.0f (%s)' % (med(b), rng(b)),
            med(a) / med(b)))
        env['mem'].append(('fan-out %d' % n, [x[1] for x in res[('listq', n)]],
                           [x[1] for x in res[('postfix', n)]]))
    lines.append('target: listq >= 5x Postfix :include:')
    record('fanout', 'fan-out: listq list vs Postfix :include:', lines)


def pct(v, p):
    v = sorted(v)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def bench_latency(env):
    lq, pf, sink = env['lq'], env['pf'], env['sink']
    pf.start(qmgr=True)
    lq.reset()
    lq.start(WORKERS, 'latency')
    lq.ready(WORKERS)
    msg = env['msg1']
    res = {}
    for r in range(ROUNDS):
        order = ('listq', 'postfix') if r % 2 == 0 else ('postfix', 'listq')
        for who in order:
            cmd = lq.post_cmd('one') if who == 'listq' else \
                pf.sendmail('m0@members.example')
            lat = []
            for i in range(LAT_N):
                base = sink.count()
                with open(msg) as f:
                    t0 = time.monotonic()
                    subprocess.run(cmd, stdin=f, check=True)
                    if not sink.wait_above(base, 30):
                        die('%s: post %d never reached the sink' % (who, i))
                    lat.append((time.monotonic() - t0) * 1000)
                # idle: let the queue settle before the next post
                wait_until(lq.empty if who == 'listq' else pf.empty,
                           lambda: [], 'latency settle', step=0.001)
            res.setdefault(who, []).append((pct(lat, 50), pct(lat, 99)))
            say('  latency round %d: %s p50 %.1f ms, p99 %.1f ms' % (
                r + 1, who, pct(lat, 50), pct(lat, 99)))
    lq.stop()
    lines = ['latency: %d posts one after the other at idle (each waits for '
             'the previous to reach the sink), %d rounds; time from the '
             'start of listq-wrapper / sendmail to smtp-sink counting the '
             'message (its 250), in ms' % (LAT_N, ROUNDS),
             '%-10s %18s %18s' % ('', 'p50 ms (range)', 'p99 ms (range)')]
    for who in ('listq', 'postfix'):
        a = [x[0] for x in res[who]]
        b = [x[1] for x in res[who]]
        lines.append('%-10s %18s %18s' % (
            who, '%.1f (%s)' % (med(a), rng(a, '%.1f')),
            '%.1f (%s)' % (med(b), rng(b, '%.1f'))))
    lines.append('ratio listq/postfix: p50 %.2f, p99 %.2f; target: p99 <= '
                 'Postfix and < 20 ms' % (
                     med([x[0] for x in res['listq']]) /
                     med([x[0] for x in res['postfix']]),
                     med([x[1] for x in res['listq']]) /
                     med([x[1] for x in res['postfix']])))
    record('latency', 'latency: enqueue-to-250 at idle', lines)


def bench_scaling(env):
    n = DELIVER_N
    tpl = listq_template(env, n)
    res = {}
    for r in range(ROUNDS):
        for w in (SCALE if r % 2 == 0 else list(reversed(SCALE))):
            secs, peak = listq_drain(env, tpl, n, w, 'scale%d' % w)
            res.setdefault(w, []).append(n / secs)
            say('  scaling round %d: %2d workers %.2f s, %.0f msg/s' % (
                r + 1, w, secs, n / secs))
    pfm = env.get('deliver_pf')
    lines = ['scaling: listqd delivering %d queued one-recipient 5 KB '
             'messages into smtp-sink, %d rounds' % (n, ROUNDS),
             '%-8s %20s %12s' % ('workers', 'msg/s (range)',
                                 'vs Postfix' if pfm else '')]
    dat = WORK + '/scaling.dat'
    with open(dat, 'w') as f:
        for w in SCALE:
            v = res[w]
            f.write('%d %.1f %.1f %.1f\n' % (w, med(v), min(v), max(v)))
            lines.append('%-8d %20s %12s' % (
                w, '%.0f (%s)' % (med(v), rng(v)),
                '%.2fx' % (med(v) / pfm) if pfm else ''))
    if pfm:
        lines.append('Postfix (tuned) in the deliver table of this run: '
                     '%.0f msg/s' % pfm)
    png = os.path.join(RESULTS, 'scaling.png')
    os.makedirs(RESULTS, exist_ok=True)
    gp = ['set terminal png size 800,500',
          'set output "%s"' % png,
          'set title "listqd deliveries/s by workers (%d x 5 KB, 1 rcpt; '
          'median, min-max)"' % n,
          'set xlabel "workers"', 'set ylabel "messages/s"',
          'set logscale x 2', 'set xrange [0.8:20]', 'set yrange [0:*]',
          'set grid', 'set key bottom right']
    plot = 'plot "%s" using 1:2:3:4 with yerrorlines lw 2 title "listqd"' % dat
    if pfm:
        plot += ', %f with lines dt 2 title "Postfix (tuned), same run"' % pfm
    run(['gnuplot'], input=('\n'.join(gp + [plot]) + '\n').encode())
    lines.append('plot: bench/results/scaling.png')
    record('scaling', 'scaling: listqd workers', lines)


def mm_round(env, mm, msg, addr):
    """N posts injected over LMTP, as an MTA would (smtp-source -L, MM_J
    sessions); the clock runs until the sink has one transaction per
    post and Mailman logged every recipient."""
    sink = env['sink']
    base, pos = sink.count(), mm.logpos()
    rss = PeakRss(mm.roots)
    t0 = time.monotonic()
    run(['/usr/sbin/smtp-source', '-L', '-d', '-s', str(MM_J), '-m',
         str(MM_N), '-F', msg, '-f', SENDER, '-t', addr,
         '127.0.0.1:%d' % mm.lmtp])
    posted = time.monotonic() - t0

    def done():
        if mm.held():
            die('mailman held, discarded or shunted posts; see ' +
                mm.var + '/logs')
        return sink.count() - base >= MM_N and \
            mm.rcpts_since(pos)[0] >= MM_N * MM_MEMBERS
    wait_until(done, lambda: [], 'mailman', step=0.1)
    return time.monotonic() - t0, posted, rss.stop(), mm.rcpts_since(pos)


def lq_posts_round(env, name, msg):
    """The same N posts through the wrapper (MM_J callers) to a running
    listqd; the clock runs until the spool is empty, the sink has one
    transaction per post and listqd logged every recipient."""
    lq, sink = env['lq'], env['sink']
    base, before = sink.count(), lq.sent()
    rss = PeakRss(lq.roots)
    t0 = time.monotonic()
    run([env['spawn'], '-n', str(MM_N), '-j', str(MM_J), '-i', msg] +
        lq.post_cmd(name), stdout=subprocess.DEVNULL)
    posted = time.monotonic() - t0
    wait_until(
        lambda: sink.count() - base >= MM_N and lq.empty() and
        lq.sent() - before >= MM_N * MM_MEMBERS, lambda: [], 'listq posts')
    return time.monotonic() - t0, posted, rss.stop(), \
        (lq.sent() - before, 0)


def bench_mailman(env):
    lq = env['lq']
    name = 'mm%d' % MM_MEMBERS
    addr = name + '@example.org'
    msg = '%s/msg.%s' % (WORK, name)
    mkmsg(msg, addr)
    t_mm = time.monotonic()
    mm = env['mm'] = Mailman(env['sink'])
    mm.mklist(addr, members(MM_MEMBERS))
    mm.start()
    say('  mailman %s: list created, runners started in %.0f s' % (
        mm.version, time.monotonic() - t_mm))
    lq.mklist(name, members(MM_MEMBERS))
    lq.reset()
    lq.start(WORKERS, 'mailman')
    lq.ready(WORKERS)
    res = {}
    for r in range(ROUNDS):
        order = ('listq', 'mailman') if r % 2 == 0 else ('mailman', 'listq')
        for who in order:
            if who == 'listq':
                secs, posted, peak, (got, bad) = lq_posts_round(env, name,
                                                                msg)
            else:
                secs, posted, peak, (got, bad) = mm_round(env, mm, msg, addr)
            if got != MM_N * MM_MEMBERS or bad:
                say('  WARNING: %s logged %d recipients (%d refused), '
                    'expected %d' % (who, got, bad, MM_N * MM_MEMBERS))
            res.setdefault(who, []).append((MM_N / secs, peak))
            say('  mailman round %d: %s %.2f s (all posted after %.2f s), '
                '%.1f posts/s, %.0f rcpt/s, peak RSS %d MB' % (
                    r + 1, who, secs, posted, MM_N / secs,
                    MM_N * MM_MEMBERS / secs, peak / 1024))
    lq.stop()
    mm.stop()
    lines = ['mailman: %d posts of 5 KB to a list of %d members, %d rounds; '
             'listq (listq-wrapper post, %d callers, listqd -n %d running) vs '
             'Mailman %s (Debian mailman3, SQLite, stock runners, all '
             'running; posts injected by smtp-source -L, %d LMTP sessions); '
             'moderation, digests and archiving off; clock from the first '
             'post until the sink has every transaction and every recipient '
             'was logged sent; peak RSS = listqd master + workers, Mailman '
             'master + runners' % (MM_N, MM_MEMBERS, ROUNDS, MM_J, WORKERS,
                                  mm.version, MM_J),
             '%-9s %18s %20s %18s %10s' % ('', 'posts/s (range)',
                                          'rcpt/s (range)', 'peak RSS MB',
                                          'listq/mm')]
    for who in ('listq', 'mailman'):
        v = [x[0] for x in res[who]]
        m = [x[1] / 1024 for x in res[who]]
        lines.append('%-9s %18s %20s %18s %10s' % (
            who, '%.1f (%s)' % (med(v), rng(v, '%.1f')),
            '%.0f (%s)' % (med(v) * MM_MEMBERS,
                           rng([x * MM_MEMBERS for x in v])),
            '%.1f (%s)' % (med(m), rng(m, '%.1f')),
            '%.1fx' % (med(v) / med([x[0] for x in res['mailman']]))
            if who == 'listq' else '1.0x'))
    lines.append('target: listq >= 50x Mailman 3 in recipients/s')
    record('mailman', 'mailman: listq vs Mailman 3, posts to a %d-member '
           'list' % MM_MEMBERS, lines)
    say('  mailman: the benchmark took %.0f s' % (time.monotonic() - t_mm))


def memory_table(env):
    if not env['mem']:
        return
    lines = ['memory: peak total RSS (sum over every process of the system: '
             'listqd master + workers; Postfix master + all its daemons), '
             'sampled every ~0.1 s during the runs above; median (range), MB',
             '%-24s %18s %18s %9s' % ('run', 'listq', 'postfix', 'listq/pf')]
    for name, a, b in env['mem']:
        a = [x / 1024 for x in a]
        b = [x / 1024 for x in b]
        lines.append('%-24s %18s %18s %9.2f' % (
            name, '%.1f (%s)' % (med(a), rng(a, '%.1f')),
            '%.1f (%s)' % (med(b), rng(b, '%.1f')), med(a) / med(b)))
    lines.append('target: less total RSS than Postfix')
    record('memory', 'memory: peak RSS, listq vs Postfix', lines)


# ------------------------------------------------------------------ main

def main():
    global MACHINE
    if os.geteuid() != 0:
        die('run as root (a private Postfix instance needs it)')
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    what = sys.argv[1:] or ['all']
    if 'all' in what:
        what = ['enqueue', 'deliver', 'rtt', 'fanout', 'latency', 'scaling',
                'mailman']
    ensure_packages(what)
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK, mode=0o755)
    MACHINE = machine()
    wrapper, listqd, spawn = build()
    t_start = time.monotonic()
    sink = Sink()
    env = dict(sink=sink, spawn=spawn, mem=[])
    lq = env['lq'] = Listq(wrapper, listqd, sink)
    pf = env['pf'] = Postfix(sink)
    lq.mklist('one', members(1))
    lq.reset()
    env['msg1'] = WORK + '/msg.one'
    mkmsg(env['msg1'], 'one@example.org')
    try:
        for w in what:
            say('== %s (%.0f s so far)' % (w, time.monotonic() - t_start))
            globals()['bench_' + w](env)
        memory_table(env)
    finally:
        lq.stop()
        pf.stop()
        if env.get('mm'):
            env['mm'].stop()
        stop(sink.p)
        for p in started:
            stop(p)
    say('bench: done in %.0f s' % (time.monotonic() - t_start))


if __name__ == '__main__':
    main()

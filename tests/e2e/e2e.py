#!/usr/bin/env python3
"""listq end to end through a real Postfix (run by tests/e2e/run.sh, as root).

A private Postfix instance (postfix -c DIR, own queue and data directory,
own master.cf, logging to a file) listens on two loopback ports: one where
the test posts (unknown recipients refused at RCPT, as an MX would), one
where listqd relays (unknown recipients accepted, so that Postfix itself
bounces them later with a DSN).  The lists' domain is in mydestination and
its aliases come from `listq aliases`; the alias database belongs to root,
so local(8) runs the wrapper as default_privs nobody:nogroup.  Members
and posters live at virtual Maildir domains, so every copy can be counted.

listq is built for the service user `list` (38:38), MAIL_GIDS=65534, with
its spool, lists, configuration and wrapper under ROOT; the wrapper is
installed root:nogroup 0750 with cap_setuid,cap_setgid (setuid root where
setcap fails), as tests/lib.sh does.

Prints one line per assertion and ends with "e2e: N passed, N failed".
Everything started is stopped by pid and ROOT is removed, also on failure.
"""

import email.parser
import email.utils
import email.policy
import os
import random
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time

T0 = time.monotonic()
LIMIT = 280                     # seconds: the whole run stays under 5 min

TOP = os.getcwd()
BUILD = os.environ.get("BUILD", "build")
ROOT = os.environ.get("LISTQ_E2E_ROOT") or (
    os.environ.get("LISTQ_CHECK_ROOT", "/tmp/listq-check") + "-e2e")
BDIR = os.path.join(BUILD, "e2e")
MAKE = os.environ.get("MAKE", "make")

SVC_USER, SVC_UID, SVC_GID = "list", 38, 38
NOBODY = 65534
MAXSIZE = 262144
LDOM, MDOM, PDOM = "lists.e2e.test", "members.e2e.test", "posters.e2e.test"
NMEMBERS, NPOSTS, WORKERS = 300, 50, 4

SPOOL = os.path.join(ROOT, "spool")
LISTS = os.path.join(ROOT, "lists")
ETC = os.path.join(ROOT, "etc")
LIBEXEC = os.path.join(ROOT, "libexec")
PF = os.path.join(ROOT, "pf")
PFETC = os.path.join(PF, "etc")
PFQ = os.path.join(PF, "queue")
PFLOG = os.path.join(PF, "log", "maillog")
MAIL = os.path.join(ROOT, "mail")
LQLOG = os.path.join(ROOT, "listqd.log")
CONF = os.path.join(ETC, "listq", "listq.conf")

npass = nfail = 0
listqd = None                   # Popen of the running master
pf_master = None                # pid of Postfix's master
pf_started = False
ro_mode = None                  # how the spool was made read-only


def ok(msg):
    global npass
    npass += 1
    print("  ok    " + msg, flush=True)


def fail(msg):
    global nfail
    nfail += 1
    print("  FAIL  " + msg, flush=True)


def check(cond, msg, why=""):
    if cond:
        ok(msg)
    else:
        fail(msg + (": " + why if why else ""))
    return cond


def note(msg):
    print("        " + msg, flush=True)


def section(msg):
    print("e2e: %s (%.0fs)" % (msg, time.monotonic() - T0), flush=True)


def left():
    return LIMIT - (time.monotonic() - T0)


def wait_for(pred, timeout, step=0.2):
    """Polls pred() until true or timeout (also bounded by the run's limit)."""
    end = time.monotonic() + max(0.0, min(timeout, left()))
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)


def run(cmd, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    kw.setdefault("timeout", 120)
    return subprocess.run(cmd, text=True, **kw)


def must(cmd, what, **kw):
    r = run(cmd, **kw)
    if r.returncode != 0:
        raise Setup("%s: exit %d: %s" % (what, r.returncode,
                                        (r.stdout or "").strip()[-600:]))
    return r.stdout


class Setup(Exception):
    pass


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(st[1]) == pid:
            out.append(int(d))
    return out


def title(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


# ---------------------------------------------------------------------
# Setting up

def build():
    must([MAKE, "-s", "--no-print-directory", "BUILD=" + BDIR,
          "LISTQ_USER=" + SVC_USER, "LISTQ_UID=%d" % SVC_UID,
          "LISTQ_GID=%d" % SVC_GID, "MAIL_GIDS=%d" % NOBODY,
          "SPOOLDIR=" + SPOOL, "LISTDIR=" + LISTS, "SYSCONFDIR=" + ETC,
          "LIBEXECDIR=" + LIBEXEC, "MAX_MESSAGE_SIZE=%d" % MAXSIZE,
          "wrapper", "daemon", "admin"], "building listq", timeout=600)


def mkdir(path, uid=0, gid=0, mode=0o755):
    os.mkdir(path)
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def install_listq():
    mkdir(LIBEXEC)
    w = os.path.join(LIBEXEC, "listq-wrapper")
    shutil.copyfile(os.path.join(BDIR, "listq-wrapper"), w)
    os.chown(w, 0, NOBODY)
    os.chmod(w, 0o750)
    mode = "caps"
    if run(["setcap", "cap_setuid,cap_setgid=ep", w]).returncode != 0:
        os.chmod(w, 0o4750)
        mode = "setuid"
    for d in (SPOOL, SPOOL + "/tmp", SPOOL + "/queue", SPOOL + "/hold",
              SPOOL + "/corrupt"):
        mkdir(d, SVC_UID, SVC_GID, 0o700)
    for b in range(256):
        mkdir("%s/queue/%02x" % (SPOOL, b), SVC_UID, SVC_GID, 0o700)
    mkdir(LISTS, SVC_UID, SVC_GID, 0o700)
    mkdir(ETC)
    mkdir(ETC + "/listq")
    return w, mode


def listq(*args):
    return must([os.path.join(BDIR, "listq"), "-f", CONF] + list(args),
                "listq " + " ".join(args))


def make_lists():
    members = ["m%03d@%s" % (i, MDOM) for i in range(1, NMEMBERS + 1)]
    f = os.path.join(ROOT, "members.txt")
    with open(f, "w") as fh:
        fh.write("\n".join(members) + "\n")
    os.chmod(f, 0o644)
    owner = "owner@" + PDOM
    listq("newlist", "big@" + LDOM, owner)
    listq("members", "big", "import", f)
    # probe: the spool-ownership, size and read-only checks.
    listq("newlist", "probe@" + LDOM, owner)
    listq("members", "probe", "add", "p1@" + MDOM)
    # bounce (no VERP) and verpl (VERP): one member without a mailbox each.
    listq("newlist", "bounce@" + LDOM, owner)
    listq("members", "bounce", "add", "b1@" + MDOM, "ghost1@" + MDOM)
    listq("newlist", "verpl@" + LDOM, owner)
    listq("members", "verpl", "add", "b2@" + MDOM, "ghost2@" + MDOM)
    with open(os.path.join(LISTS, "verpl", "config"), "a") as fh:
        fh.write("verp = yes\n")
    # gone: its aliases stay, the list goes.
    listq("newlist", "gone@" + LDOM, owner)
    aliases = listq("aliases")
    listq("rmlist", "gone")
    mailboxes = members + ["p1@" + MDOM, "b1@" + MDOM, "b2@" + MDOM,
                           "poster1@" + PDOM, "poster2@" + PDOM,
                           "poster3@" + PDOM, owner, "postmaster@" + PDOM]
    return aliases, mailboxes


MASTER_CF = """\
# The e2e instance: loopback only, no chroot, logging to a file.
127.0.0.1:{post} inet n - n - - smtpd
127.0.0.1:{relay} inet n - n - - smtpd
  -o syslog_name=postfix-e2e/relay
  -o smtpd_reject_unlisted_recipient=no
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {q}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-e2e
maillog_file = {log}
maillog_file_prefixes = {root}
myhostname = mx.e2e.test
mydomain = e2e.test
myorigin = $myhostname
mydestination = {ldom}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_banner = $myhostname ESMTP
alias_maps = hash:{etc}/aliases
alias_database = hash:{etc}/aliases
local_recipient_maps = $alias_maps
default_privs = nobody
allow_mail_to_commands = alias
allow_mail_to_files =
forward_path =
mailbox_transport = error:5.1.1 no local mailboxes in the e2e instance
owner_request_special = no
recipient_delimiter = +
virtual_mailbox_domains = {mdom}, {pdom}
virtual_mailbox_base = {mail}
virtual_mailbox_maps = hash:{etc}/vmailbox
virtual_uid_maps = static:{nobody}
virtual_gid_maps = static:{nobody}
virtual_destination_concurrency_limit = 40
default_transport = error:5.7.1 nothing leaves the e2e instance
relay_transport = error:5.7.1 nothing leaves the e2e instance
relayhost =
notify_classes =
in_flow_delay = 0
delay_warning_time = 0
biff = no
smtputf8_enable = no
"""


def start_postfix(aliases, mailboxes, post, relay):
    global pf_master, pf_started
    for d in (PF, PFETC, PFQ, os.path.dirname(PFLOG)):
        mkdir(d)
    mkdir(MAIL, NOBODY, NOBODY, 0o700)
    with open(PFETC + "/master.cf", "w") as f:
        f.write(MASTER_CF.format(post=post, relay=relay))
    with open(PFETC + "/main.cf", "w") as f:
        f.write(MAIN_CF.format(q=PFQ, data=PF + "/data", log=PFLOG,
                               root=ROOT, ldom=LDOM, etc=PFETC, mdom=MDOM,
                               pdom=PDOM, mail=MAIL, nobody=NOBODY))
    with open(PFETC + "/aliases", "w") as f:
        f.write("postmaster: postmaster@%s\nroot: postmaster@%s\n"
                "MAILER-DAEMON: postmaster@%s\n" % (PDOM, PDOM, PDOM))
        f.write(aliases)
    with open(PFETC + "/vmailbox", "w") as f:
        for a in mailboxes:
            lp, dom = a.split("@")
            f.write("%s %s/%s/\n" % (a, dom, lp))
    must(["postalias", "-c", PFETC, "hash:" + PFETC + "/aliases"],
         "postalias")
    must(["postmap", "-c", PFETC, "hash:" + PFETC + "/vmailbox"], "postmap")
    must(["postfix", "-c", PFETC, "check"], "postfix check")
    st = os.stat(PFETC + "/aliases.db")
    check(st.st_uid == 0, "alias database root-owned (%s/aliases.db, uid "
          "%d): local(8) runs its pipes as default_privs" % (PFETC,
                                                            st.st_uid))
    pf_started = True
    must(["postfix", "-c", PFETC, "start"], "postfix start")
    pidf = PFQ + "/pid/master.pid"
    wait_for(lambda: read(pidf).strip().isdigit(), 20)
    try:
        pf_master = int(read(pidf).strip())
    except ValueError:
        raise Setup("postfix start: no %s" % pidf)
    if not wait_for(lambda: port_open(post) and port_open(relay), 20):
        raise Setup("postfix does not listen on 127.0.0.1:%d and :%d"
                    % (post, relay))


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


def stop_postfix():
    global pf_master, pf_started
    if not pf_started:
        return
    run(["postfix", "-c", PFETC, "stop"], timeout=60)
    if pf_master is not None:
        if not wait_for(lambda: not alive(pf_master), 20, 0.1):
            for c in children(pf_master):
                os.kill(c, signal.SIGKILL)
            os.kill(pf_master, signal.SIGKILL)
            wait_for(lambda: not alive(pf_master), 5, 0.1)
    pf_master = None
    pf_started = False


def write_conf(relay):
    with open(CONF, "w") as f:
        f.write("smarthost = 127.0.0.1:%d\nhelo_name = listq.e2e.test\n"
                "workers = %d\nrescan_interval = 10s\nmin_backoff = 2s\n"
                "max_backoff = 10s\n" % (relay, WORKERS))
    os.chmod(CONF, 0o644)


def start_listqd():
    global listqd
    log = open(LQLOG, "a")
    listqd = subprocess.Popen([os.path.join(BDIR, "listqd"), "-F", "-f",
                               CONF], stdin=subprocess.DEVNULL, stdout=log,
                              stderr=log, start_new_session=True)
    log.close()
    ok_ = wait_for(lambda: listqd.poll() is not None or
                   len(workers()) == WORKERS, 20, 0.1)
    if listqd.poll() is not None or not ok_:
        raise Setup("listqd did not start: " + read(LQLOG)[-600:])


def workers():
    return [p for p in children(listqd.pid) if "worker" in title(p)] \
        if listqd is not None else []


def stop_listqd():
    global listqd
    if listqd is None:
        return
    if listqd.poll() is None:
        listqd.send_signal(signal.SIGTERM)
        try:
            listqd.wait(60)
        except subprocess.TimeoutExpired:
            for c in children(listqd.pid):
                os.kill(c, signal.SIGKILL)
            listqd.kill()
            listqd.wait(10)
    listqd = None


# ---------------------------------------------------------------------
# Mail

def message(sender, rcpt, mid, subject, body="hello\n"):
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s>\r\n"
            "Date: %s\r\n\r\n%s" % (sender, rcpt, subject, mid,
                                     email.utils.formatdate(),
                                     body.replace("\n", "\r\n")))


def post(port, sender, rcpt, mid, subject, body="hello\n"):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.sendmail(sender, [rcpt], message(sender, rcpt, mid, subject, body))


def maildir(addr):
    lp, dom = addr.split("@")
    return os.path.join(MAIL, dom, lp)


def mails(addr):
    """Files in the Maildir of addr (new/ and cur/)."""
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(maildir(addr), sub)
        try:
            out += [os.path.join(d, n) for n in os.listdir(d)]
        except OSError:
            pass
    return out


HEAD = email.parser.BytesHeaderParser(policy=email.policy.compat32)


def headers(path):
    with open(path, "rb") as f:
        data = f.read(65536)
    return HEAD.parsebytes(data.split(b"\n\n", 1)[0] + b"\n\n")


MID = re.compile(rb"^Message-ID:[ \t]*<([^>]*@post\.e2e\.test)>",
                 re.I | re.M)


def post_id(path):
    """The Message-ID the test gave the post, wherever it is in the copy
    (in its headers, or lower down if the copy's headers were mangled)."""
    with open(path, "rb") as f:
        m = MID.search(f.read(65536))
    return m.group(1).decode() if m else ""


def entry_message_id(qid):
    """The post's Message-ID in the spool entry qid, if still there."""
    for b in range(256):
        p = "%s/queue/%02x/%s" % (SPOOL, b, qid)
        if os.path.exists(p):
            try:
                return post_id(p)
            except OSError:
                return ""
    return ""


def postfix_queue_empty():
    r = run(["postqueue", "-c", PFETC, "-p"], timeout=30)
    return "Mail queue is empty" in (r.stdout or "")


def spool_entries():
    n = 0
    for b in range(256):
        try:
            n += sum(1 for x in os.listdir("%s/queue/%02x" % (SPOOL, b))
                     if not x.endswith(".state") and "." not in x)
        except OSError:
            pass
    return n


def spool_files():
    out = []
    for dp, dn, fn in os.walk(SPOOL):
        out += [os.path.join(dp, x) for x in fn]
    return out


# ---------------------------------------------------------------------
# The phases

def phase_spool_owner(post_port):
    section("a post piped in by Postfix, listqd stopped")
    post(post_port, "poster1@" + PDOM, "probe@" + LDOM, "probe-1@post.e2e.test",
         "spool owner")
    got = wait_for(lambda: [p for p in spool_files()
                            if "/queue/" in p], 30)
    logline = [l for l in read(PFLOG).splitlines()
               if "to=<probe@" + LDOM in l and "relay=local" in l]
    check(any("status=sent (delivered to command: " + LIBEXEC in l
              for l in logline),
          "Postfix's local(8) delivered the post to the wrapper (pipe)",
          " / ".join(logline)[-300:] or "no log line")
    owners = sorted({"%d:%d:%o" % (os.stat(p).st_uid, os.stat(p).st_gid,
                                   os.stat(p).st_mode & 0o7777)
                     for p in got})
    check(got and owners == ["%d:%d:600" % (SVC_UID, SVC_GID)],
          "spool entry is %s:%s 0600 (%d file(s))" % (SVC_USER, SVC_USER,
                                                      len(got)),
          "got %s" % owners)
    hdr = read(got[0]) if got else ""
    check("\nuid: %d\ngid: %d\n" % (NOBODY, NOBODY) in hdr,
          "the entry's caller is uid %d gid %d: Postfix ran the pipe as "
          "nobody:nogroup" % (NOBODY, NOBODY),
          repr(hdr[:200]))


def phase_concurrent(post_port):
    global listqd
    section("%d posts to a %d-member list from 3 concurrent senders; "
            "listqd restarted once, a worker SIGKILLed" % (NPOSTS, NMEMBERS))
    start_listqd()
    uids = sorted({os.stat("/proc/%d" % p).st_uid
                   for p in [listqd.pid] + workers()})
    check(uids == [SVC_UID], "listqd (master and %d workers) runs as %s "
          "(uid %d)" % (WORKERS, SVC_USER, SVC_UID), "uids %s" % uids)
    split = [17, 17, 16]
    errors = []
    sent = []
    in_flight = {}
    lock = threading.Lock()

    def sender(k, n, base):
        rnd = random.Random(k)
        me = "poster%d@%s" % (k + 1, PDOM)
        try:
            with smtplib.SMTP("127.0.0.1", post_port, timeout=30) as s:
                for i in range(n):
                    mid = "big-%02d@post.e2e.test" % (base + i)
                    s.sendmail(me, ["big@" + LDOM],
                               message(me, "big@" + LDOM, mid,
                                       "post %d from %s" % (base + i, me)))
                    with lock:
                        sent.append(mid)
                    time.sleep(rnd.uniform(0.05, 0.15))
        except Exception as e:      # reported below
            errors.append("%s: %r" % (me, e))

    threads = []
    base = 1
    for k, n in enumerate(split):
        t = threading.Thread(target=sender, args=(k, n, base), daemon=True)
        base += n
        threads.append(t)
    t_start = time.monotonic()
    for t in threads:
        t.start()

    # The kill: a worker caught in an SMTP session if we can see one.
    wait_for(lambda: len(sent) >= 10, 30, 0.02)
    victim, busy = None, ""
    end = time.monotonic() + 5
    while time.monotonic() < end and victim is None:
        for p in workers():
            tt = title(p)
            if "idle" not in tt and "worker" in tt:
                victim, busy = p, tt.strip()
                break
        else:
            time.sleep(0.002)
    if victim is None:
        ws = workers()
        victim = ws[0] if ws else None
        busy = title(victim).strip() if victim else ""
    if victim is not None:
        os.kill(victim, signal.SIGKILL)
        note("SIGKILL worker pid %d (%s) after %d posts" %
             (victim, busy, len(sent)))
    killed_ok = victim is not None and wait_for(
        lambda: "killed by signal 9" in read(LQLOG), 10, 0.02)
    # The entry it was delivering (the master names it): read its
    # Message-ID from the spool before the replacement finishes it.
    m = re.search(r"(\w{18}): worker \d+ \(pid %d\) killed by signal 9 "
                  r"while delivering" % (victim or 0), read(LQLOG))
    if m:
        mid = entry_message_id(m.group(1))
        in_flight[m.group(1)] = mid
        note("in flight at the kill: entry %s, %s" %
             (m.group(1), "<%s>" % mid if mid else "Message-ID not read"))
    else:
        note("the killed worker had no entry in flight")

    # The restart, in the middle of the posts.
    wait_for(lambda: len(sent) >= 30, 30, 0.02)
    old = listqd.pid
    stop_listqd()
    start_listqd()
    note("listqd restarted after %d posts (pid %d -> %d)" %
         (len(sent), old, listqd.pid))
    for t in threads:
        t.join(max(1, left() - 60))
    inject = time.monotonic() - t_start
    check(not errors and len(sent) == NPOSTS,
          "%d posts accepted by Postfix's smtpd from 3 concurrent senders "
          "(%.1fs)" % (len(sent), inject), "; ".join(errors))
    check(killed_ok, "listqd's master saw the SIGKILLed worker and "
          "replaced it")

    # Wait for every copy: 300 x 50, listq's spool and Postfix's queue empty.
    members = ["m%03d@%s" % (i, MDOM) for i in range(1, NMEMBERS + 1)]

    def done():
        if sum(len(mails(m)) for m in members) < NMEMBERS * NPOSTS:
            return False
        return spool_entries() == 0 and postfix_queue_empty()
    t1 = time.monotonic()
    finished = wait_for(done, 150, 1.0)
    time.sleep(2)               # a late duplicate would show up here
    note("all copies delivered %.1fs after the last post" %
         (time.monotonic() - t1) if finished else
         "not finished after %.1fs" % (time.monotonic() - t1))

    # Count, by the Message-ID each post was given.
    in_flight_mids = {v for v in in_flight.values() if v} | \
        in_flight_message_ids(in_flight)
    want = {"big-%02d@post.e2e.test" % i for i in range(1, NPOSTS + 1)}
    missing, dups, dup_msgs, bad_hdr, mangled, total = 0, 0, {}, [], [], 0
    complete = 0
    for m in members:
        seen = {}
        for p in mails(m):
            h = headers(p)
            mid = post_id(p)
            seen[mid] = seen.get(mid, 0) + 1
            total += 1
            lid = h.get("List-Id") or ""
            rp = (h.get("Return-Path") or "").strip()
            if "<big." + LDOM + ">" not in lid or \
               rp != "<big-bounces@%s>" % LDOM:
                bad_hdr.append("%s %s: List-Id %r Return-Path %r" %
                               (m, mid, lid, rp))
            hm = (h.get("Message-ID") or "").strip()
            if hm != "<%s>" % mid or not (h.get("Subject") or "").startswith(
                    "post ") or not (h.get("From") or "").startswith(
                    "poster"):
                mangled.append("%s: header Message-ID %s, Subject %r, "
                               "From %r for the post <%s>" %
                               (os.path.basename(p), hm, h.get("Subject"),
                                h.get("From"), mid))
        missing += len(want - set(seen))
        extra = set(seen) - want
        for mid, n in seen.items():
            if n > 1:
                dups += n - 1
                dup_msgs[mid] = dup_msgs.get(mid, 0) + n - 1
        if extra:
            bad_hdr.append("%s: unexpected %s" % (m, sorted(extra)[:3]))
        if set(seen) == want and all(n == 1 or k in in_flight_mids
                                     for k, n in seen.items()):
            complete += 1
    note("copies: %d in %d Maildirs (%d expected without duplicates); "
         "duplicates %d; missing %d" % (total, NMEMBERS, NMEMBERS * NPOSTS,
                                        dups, missing))
    if dup_msgs:
        note("duplicated: " + ", ".join(
            "<%s> %d extra copies%s" % (k, v, " (in flight at the kill)"
                                        if k in in_flight_mids else "")
            for k, v in sorted(dup_msgs.items())))
    check(missing == 0, "nothing missing: every member has all %d posts"
          % NPOSTS, "%d member-copies missing" % missing)
    check(complete == NMEMBERS,
          "every member's Maildir holds the %d posts and nothing else, each "
          "once but for the entry in flight at the kill (%d/%d members)"
          % (NPOSTS, complete, NMEMBERS),
          "%d members differ" % (NMEMBERS - complete))
    stray = {k: v for k, v in dup_msgs.items() if k not in in_flight_mids}
    check(not stray, "duplicates only of the message in flight at the kill "
          "(%d duplicate copies of %d message(s))" % (dups, len(dup_msgs)),
          "duplicated, not in flight: %s" % stray)
    check(not bad_hdr, "every copy has List-Id <big.%s> and Return-Path "
          "<big-bounces@%s>" % (LDOM, LDOM), "; ".join(bad_hdr[:3]))
    check(not mangled, "every copy's headers are the post's own (From, "
          "Subject, Message-ID) plus the list's",
          "%d of %d copies differ, e.g. %s" % (len(mangled), total,
                                              mangled[0] if mangled else ""))
    return dups, total


def in_flight_message_ids(entries):
    """Message-IDs of the in-flight entries, through listqd's log of the
    later attempt ("queued as" a Postfix queue id) and Postfix's log."""
    pfq = set()
    for l in read(LQLOG).splitlines():
        m = re.match(r"listqd\S*: (\w{18}): to=.*queued as (\w+)", l)
        if m and m.group(1) in entries:
            pfq.add(m.group(2))
    mids = set()
    for l in read(PFLOG).splitlines():
        m = re.search(r" (\w+): message-id=<([^>]*@post\.e2e\.test)>", l)
        if m and m.group(1) in pfq:
            mids.add(m.group(2))
    return mids


ERRPAT = re.compile(r"ENOENT|EACCES|No such file or directory|"
                    r"Permission denied|[Bb]roken pipe|EPIPE|"
                    r"Command died|Command time limit|"
                    r"relay=local.*status=(deferred|bounced)")


def phase_spool_sweep():
    """Invariant 6 over all that the run left in the spool."""
    section("the spool after the run")
    r = run(["sh", os.path.join(TOP, "tests", "spool_sweep.sh"), SPOOL,
             str(SVC_UID), str(SVC_GID)])
    check(r.returncode == 0, "every file under the spool is %s:%s, "
          "0600 (directories 0700)" % (SVC_USER, SVC_USER),
          r.stdout.strip()[-800:])


def phase_logs():
    section("logs after the concurrent posts")
    bad = [l for l in read(PFLOG).splitlines() if ERRPAT.search(l)]
    check(not bad, "Postfix's log: no ENOENT, EACCES or pipe error "
          "(%d lines)" % len(read(PFLOG).splitlines()),
          " / ".join(bad[:3]))
    bad = [l for l in read(LQLOG).splitlines() if ERRPAT.search(l)]
    check(not bad, "listqd's log: no ENOENT, EACCES or pipe error "
          "(%d lines)" % len(read(LQLOG).splitlines()), " / ".join(bad[:3]))


def score_of(lst, addr):
    for l in read(os.path.join(LISTS, lst, "bounce-scores")).splitlines():
        f = l.split()
        if f and f[0].lower() == addr.lower() and len(f) > 1:
            try:
                return int(f[1])
            except ValueError:
                return -1
    return 0


def phase_bounces(post_port):
    section("a member without a mailbox: Postfix's DSN to -bounces")
    for lst, ghost in (("bounce", "ghost1@" + MDOM),
                       ("verpl", "ghost2@" + MDOM)):
        before = score_of(lst, ghost)
        post(post_port, "poster1@" + PDOM, "%s@%s" % (lst, LDOM),
             "%s-1@post.e2e.test" % lst, "to a member without a mailbox")
        pat = "bounce: list=%s, member=<%s>" % (lst, ghost)
        wait_for(lambda: pat in read(LQLOG) and
                 score_of(lst, ghost) > before, 60, 0.3)
        pflog = read(PFLOG)
        dsn = re.search(r"(\w+): to=<%s>.*status=bounced" % re.escape(ghost),
                        pflog)
        sender = "%s-bounces" % lst
        if lst == "verpl":
            sender += "+" + ghost.replace("@", "=")
        notif = dsn and re.search(r"%s: sender non-delivery notification: "
                                  r"(\w+)" % dsn.group(1), pflog)
        piped = notif and re.search(
            r"%s: to=<%s@%s>.*relay=local.*status=sent \(delivered to "
            r"command" % (notif.group(1), re.escape(sender), LDOM), pflog)
        check(bool(piped), "%s: Postfix bounced %s and its DSN went to "
              "%s@%s, piped to the wrapper" % (lst, ghost, sender, LDOM),
              "bounced: %s, DSN: %s" % (bool(dsn), bool(notif)))
        line = [l for l in read(LQLOG).splitlines() if pat in l]
        check(bool(line), "%s: listqd processed the bounce: %s" %
              (lst, line[0].split(": ", 2)[-1] if line else ""))
        after = score_of(lst, ghost)
        check(after > before, "%s: %s's bounce score rose (%s/bounce-scores:"
              " %d -> %d tenths)" % (lst, ghost, lst, before, after))
        if lst == "verpl":
            check(any("attributed by verp" in l for l in line),
                  "verpl (verp = yes): the bounce was attributed by verp",
                  " / ".join(line))
        else:
            note("bounce (no VERP): " + (line[0].split("attributed by ")[-1]
                                         if line else "-"))
        good = "b1@" if lst == "bounce" else "b2@"
        check(len(mails(good + MDOM)) >= 1, "%s: the member with a mailbox "
              "got the post" % lst)


def dsn_in(addr, text, timeout):
    def find():
        for p in mails(addr):
            b = read(p)
            if text in b:
                return b
        return None
    return wait_for(find, timeout, 0.3)


def phase_refusals(post_port):
    section("refusals: no such list, too large, spool read-only")
    p2 = "poster2@" + PDOM
    post(post_port, p2, "gone@" + LDOM, "gone-1@post.e2e.test", "to a list gone")
    b = dsn_in(p2, "gone-1@post.e2e.test", 30)
    check(b is not None and "no such list: gone" in b,
          "a post to a list that does not exist bounces to the sender with "
          "\"no such list: gone\"", "DSN %s" % ("without the text"
                                              if b else "not received"))
    p3 = "poster3@" + PDOM
    big = ("x" * 76 + "\n") * (MAXSIZE // 77 + 500)
    post(post_port, p3, "probe@" + LDOM, "probe-big@post.e2e.test", "too large",
         big)
    b = dsn_in(p3, "probe-big@post.e2e.test", 30)
    check(b is not None and "limit of %d bytes" % MAXSIZE in b,
          "a post over the size limit bounces to the sender with \"limit "
          "of %d bytes\"" % MAXSIZE, "DSN %s" % ("without the limit"
                                                if b else "not received"))

    # Read-only spool: 75, Postfix defers, then delivers after a flush.
    how = spool_readonly(True)
    note("spool made read-only: " + how)
    n_before = len(mails("p1@" + MDOM))
    post(post_port, "poster1@" + PDOM, "probe@" + LDOM, "probe-ro@post.e2e.test",
         "spool read-only")
    pat = re.compile(r"to=<probe@%s>.*relay=local.*dsn=4\.3\.0.*"
                     r"status=deferred" % re.escape(LDOM))
    line = wait_for(lambda: [l for l in read(PFLOG).splitlines()
                             if pat.search(l)], 30, 0.2)
    check(bool(line), "spool read-only: the wrapper's 75 makes Postfix "
          "defer (dsn=4.3.0)", "no deferred line")
    if line:
        note(line[-1].split("status=deferred", 1)[-1].strip()[:200])
    check(not postfix_queue_empty(), "  ... the message stays in Postfix's "
          "queue")
    time.sleep(1)
    check(len(mails("p1@" + MDOM)) == n_before,
          "  ... and is not delivered meanwhile")
    spool_readonly(False)
    run(["postqueue", "-c", PFETC, "-f"], timeout=30)

    def got():
        return [p for p in mails("p1@" + MDOM)
                if post_id(p) == "probe-ro@post.e2e.test"]
    g = wait_for(got, 60, 0.3)
    time.sleep(1)
    g = got()
    check(len(g) == 1 and postfix_queue_empty(),
          "spool writable again, postqueue -f: delivered once (%d copy), "
          "Postfix's queue empty" % len(g))
    return


def system_postfix():
    """What the system's own instance is made of: /etc/postfix's entries."""
    out = []
    for n in sorted(os.listdir("/etc/postfix")):
        st = os.lstat(os.path.join("/etc/postfix", n))
        out.append((n, st.st_mtime_ns, st.st_size))
    return out


def spool_readonly(on):
    """A read-only bind mount of the spool on itself (listqd, started
    before, keeps its descriptors on the writable mount); mode 0500 on
    spool/tmp where mounting is not possible."""
    global ro_mode
    if on:
        if run(["mount", "--bind", SPOOL, SPOOL]).returncode == 0:
            ro_mode = "mount"
            if run(["mount", "-o", "remount,ro,bind", SPOOL]).returncode == 0:
                return "a read-only bind mount of %s on itself" % SPOOL
            spool_readonly(False)
        os.chmod(SPOOL + "/tmp", 0o500)
        ro_mode = "chmod"
        return "%s/tmp mode 0500" % SPOOL
    if ro_mode == "mount":
        if run(["umount", SPOOL]).returncode != 0:
            run(["umount", "-l", SPOOL])
    elif ro_mode == "chmod":
        os.chmod(SPOOL + "/tmp", 0o700)
    ro_mode = None
    return ""


def cleanup():
    t = time.monotonic()
    try:
        spool_readonly(False)
    except Exception as e:
        print("e2e: spool read-write again: %r" % e)
    try:
        stop_listqd()
    except Exception as e:
        print("e2e: stopping listqd: %r" % e)
    try:
        stop_postfix()
    except Exception as e:
        print("e2e: stopping postfix: %r" % e)
    print("e2e: listqd and Postfix stopped (%.1fs)" % (time.monotonic() - t))
    if os.environ.get("LISTQ_KEEP"):
        print("e2e: kept " + ROOT)
        return
    t = time.monotonic()
    shutil.rmtree(ROOT, ignore_errors=True)
    print("e2e: removed %s (%.1fs); %.0fs in all" %
          (ROOT, time.monotonic() - t, time.monotonic() - T0))


def on_signal(sig, frame):
    raise SystemExit(1)


def main():
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    try:
        pwd_ok = run(["getent", "passwd", SVC_USER]).stdout.split(":")
        if len(pwd_ok) < 4 or pwd_ok[2:4] != [str(SVC_UID), str(SVC_GID)]:
            fail("the service user %s is not %d:%d" % (SVC_USER, SVC_UID,
                                                       SVC_GID))
            return
        # Another run's leftovers would be under ROOT: a fixed path, since
        # it is compiled into the build.
        if os.path.exists(PFQ + "/pid/master.pid"):
            old = read(PFQ + "/pid/master.pid").strip()
            if old.isdigit() and alive(int(old)):
                fail("a Postfix of a previous run (pid %s) still runs on %s"
                     % (old, PFETC))
                return
        if os.path.ismount(SPOOL):      # a killed run's read-only mount
            run(["umount", "-l", SPOOL])
        shutil.rmtree(ROOT, ignore_errors=True)
        mkdir(ROOT)
        sys_before = system_postfix()
        section("building listq for %s (%d:%d), MAIL_GIDS=%d, under %s" %
                (SVC_USER, SVC_UID, SVC_GID, NOBODY, ROOT))
        build()
        w, mode = install_listq()
        st = os.stat(w)
        check((st.st_uid, st.st_gid) == (0, NOBODY) and
              st.st_mode & 0o7777 == (0o750 if mode == "caps" else 0o4750),
              "wrapper installed root:nogroup %s" %
              ("0750 + " + run(["getcap", w]).stdout.split(" ", 1)[-1].strip()
               if mode == "caps" else "4750 (setcap failed)"))
        post_port, relay_port = free_port(), free_port()
        while relay_port == post_port:
            relay_port = free_port()
        write_conf(relay_port)
        aliases, mailboxes = make_lists()
        start_postfix(aliases, mailboxes, post_port, relay_port)
        section("Postfix -c %s: posts on 127.0.0.1:%d, relay on "
                "127.0.0.1:%d" % (PFETC, post_port, relay_port))
        t = time.monotonic()
        phase_spool_owner(post_port)
        dups, total = phase_concurrent(post_port)
        phase_logs()
        phase_bounces(post_port)
        phase_refusals(post_port)
        phase_spool_sweep()
        check(system_postfix() == sys_before, "the system's Postfix "
              "(/etc/postfix) untouched: no main.cf, nothing changed")
        note("posts %d, copies %d, duplicates after the kill %d; "
             "%.0fs in all (%.0fs with Postfix up)" %
             (NPOSTS, total, dups, time.monotonic() - T0,
              time.monotonic() - t))
    except Setup as e:
        fail("setup: %s" % e)
    except SystemExit:
        fail("interrupted")
    except Exception as e:
        import traceback
        traceback.print_exc()
        fail("unexpected: %r" % e)
    finally:
        if nfail and os.path.exists(PFLOG):
            print("e2e: last lines of Postfix's log:")
            for l in read(PFLOG).splitlines()[-8:]:
                print("        " + l)
            print("e2e: last lines of listqd's log:")
            for l in read(LQLOG).splitlines()[-8:]:
                print("        " + l)
        cleanup()
    print("e2e: %d passed, %d failed" % (npass, nfail), flush=True)


if __name__ == "__main__":
    main()
    sys.exit(1 if nfail else 0)

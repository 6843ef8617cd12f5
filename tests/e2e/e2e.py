#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
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

The phases take the MTA as an object (class Postfix here, the default);
tests/e2e/rounds.py runs the same phases through Exim and OpenSMTPD.
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
MOD = "moderator@" + PDOM
MODL_MEMBERS = ["q1@" + MDOM, "q2@" + MDOM]

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
ROUND = "e2e"                   # "e2e exim" etc.: tests/e2e/rounds.py
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
    print("%s: %s (%.0fs)" % (ROUND, msg, time.monotonic() - T0), flush=True)


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


def make_lists(aliases_args=("aliases",)):
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
    # dm: DMARC munge_from, for the OpenDKIM phase.
    listq("newlist", "dm@" + LDOM, owner)
    listq("members", "dm", "add", "d1@" + MDOM)
    with open(os.path.join(LISTS, "dm", "config"), "a") as fh:
        fh.write("dmarc_mitigation = munge_from\n")
    # These lists take posts from the posters, who are not members.
    for l in ("big", "probe", "bounce", "verpl", "dm"):
        with open(os.path.join(LISTS, l, "config"), "a") as fh:
            fh.write("post_policy = open\n")
    # modl keeps newlist's default (members + hold); MOD moderates.
    listq("newlist", "modl@" + LDOM, owner)
    listq("members", "modl", "add", *MODL_MEMBERS)
    mods = os.path.join(LISTS, "modl", "moderators")
    with open(mods, "w") as fh:
        fh.write(MOD + "\n")
    os.chown(mods, SVC_UID, SVC_GID)
    os.chmod(mods, 0o600)
    # gone: its aliases stay, the list goes.
    listq("newlist", "gone@" + LDOM, owner)
    aliases = listq(*aliases_args)
    listq("rmlist", "gone")
    mailboxes = members + ["p1@" + MDOM, "b1@" + MDOM, "b2@" + MDOM,
                           "d1@" + MDOM,
                           "poster1@" + PDOM, "poster2@" + PDOM,
                           "poster3@" + PDOM, owner, "postmaster@" + PDOM,
                           MOD] + MODL_MEMBERS
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

def phase_spool_owner(post_port, mta=None):
    mta = mta or POSTFIX
    section("a post piped in by %s, listqd stopped" % mta.name)
    post(post_port, "poster1@" + PDOM, "probe@" + LDOM, "probe-1@post.e2e.test",
         "spool owner")
    got = wait_for(lambda: [p for p in spool_files()
                            if "/queue/" in p], 30)
    pat = re.compile(mta.piped("probe@" + LDOM))
    logline = wait_for(lambda: [l for l in mta.log().splitlines()
                                if pat.search(l)], 10)
    check(bool(logline), "%s delivered the post to the wrapper (pipe)" %
          mta.name, "no log line")
    owners = sorted({"%d:%d:%o" % (os.stat(p).st_uid, os.stat(p).st_gid,
                                   os.stat(p).st_mode & 0o7777)
                     for p in got})
    check(got and owners == ["%d:%d:600" % (SVC_UID, SVC_GID)],
          "spool entry is %s:%s 0600 (%d file(s))" % (SVC_USER, SVC_USER,
                                                      len(got)),
          "got %s" % owners)
    hdr = read(got[0]) if got else ""
    check("\nuid: %d\ngid: %d\n" % (NOBODY, NOBODY) in hdr,
          "the entry's caller is uid %d gid %d: %s ran the pipe as "
          "nobody:nogroup" % (NOBODY, NOBODY, mta.name),
          repr(hdr[:200]))
    if got:
        note("the piped message begins: " + " | ".join(
            hdr.split("\n\n", 1)[-1].splitlines()[:4]))
    phase_delivered_to(post_port, mta)


def phase_delivered_to(post_port, mta):
    """Bounce attribution trusts the topmost Delivered-To: of what the
    MTA pipes in: it must be the MTA's, naming the envelope recipient
    with its VERP suffix, above one the sender wrote."""
    rcpt = "probe-bounces+p9=%s@%s" % (MDOM, LDOM)
    forged = "probe-bounces+forged=%s@%s" % (MDOM, LDOM)
    with smtplib.SMTP("127.0.0.1", post_port, timeout=30) as s:
        s.sendmail("poster1@" + PDOM, [rcpt], "Delivered-To: %s\r\n" %
                   forged + message("poster1@" + PDOM, rcpt,
                                    "probe-verp@post.e2e.test", "verp"))

    def entry():
        return [p for p in spool_files() if "/queue/" in p and
                "probe-verp@post.e2e.test" in read(p)]
    got = wait_for(entry, 30)
    head = read(got[0]).split("\n\n", 1)[-1].split("\n\n", 1)[0] \
        if got else ""
    top = [l for l in head.splitlines()
           if l.lower().startswith("delivered-to:")]
    check(top and top[0].split(":", 1)[1].strip() == rcpt,
          "a post to %s: the topmost Delivered-To: is %s's, naming the "
          "envelope recipient, VERP suffix included, above the sender's"
          % (rcpt, mta.name), "Delivered-To lines: %s" % top)


def phase_concurrent(post_port, mta=None):
    global listqd
    mta = mta or POSTFIX
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
          "%d posts accepted by %s from 3 concurrent senders "
          "(%.1fs)" % (len(sent), mta.name, inject), "; ".join(errors))
    check(killed_ok, "listqd's master saw the SIGKILLed worker and "
          "replaced it")

    # Wait for every copy: 300 x 50, listq's spool and the MTA's queue empty.
    members = ["m%03d@%s" % (i, MDOM) for i in range(1, NMEMBERS + 1)]

    def done():
        if sum(len(mails(m)) for m in members) < NMEMBERS * NPOSTS:
            return False
        return spool_entries() == 0 and mta.queue_empty()
    t1 = time.monotonic()
    finished = wait_for(done, 150, 1.0)
    time.sleep(2)               # a late duplicate would show up here
    note("all copies delivered %.1fs after the last post" %
         (time.monotonic() - t1) if finished else
         "not finished after %.1fs" % (time.monotonic() - t1))

    # Count, by the Message-ID each post was given.
    in_flight_mids = {v for v in in_flight.values() if v} | \
        mta.in_flight(in_flight)
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


class Postfix:
    """The Postfix instance as the phases see an MTA; tests/e2e/rounds.py
    describes Exim and OpenSMTPD the same way."""
    name = "Postfix"
    errpat = ERRPAT

    def log(self):
        return read(PFLOG)

    def queue_empty(self):
        return postfix_queue_empty()

    def flush(self):
        run(["postqueue", "-c", PFETC, "-f"], timeout=30)

    def piped(self, addr):
        return r"to=<%s>.*relay=local.*status=sent \(delivered to " \
            r"command: %s" % (re.escape(addr), re.escape(LIBEXEC))

    def deferred(self, addr):
        return r"to=<%s>.*relay=local.*dsn=4\.3\.0.*status=deferred" % \
            re.escape(addr)

    def dsn_piped(self, member, rcpt):
        """Postfix bounced member, and its DSN went to rcpt, piped: the
        queue ids lead from one log line to the next."""
        log = read(PFLOG)
        dsn = re.search(r"(\w+): to=<%s>.*status=bounced" %
                        re.escape(member), log)
        notif = dsn and re.search(r"%s: sender non-delivery notification: "
                                  r"(\w+)" % dsn.group(1), log)
        piped = notif and re.search(r"%s: %s" % (notif.group(1),
                                                 self.piped(rcpt)), log)
        return bool(piped), "bounced: %s, DSN: %s" % (bool(dsn), bool(notif))

    def in_flight(self, entries):
        return in_flight_message_ids(entries)

    def nsenter(self, cmd):
        return cmd


POSTFIX = Postfix()


def phase_logs(mta=None):
    mta = mta or POSTFIX
    section("logs after the concurrent posts")
    for who, text in ((mta.name, mta.log()), ("listqd", read(LQLOG))):
        bad = [l for l in text.splitlines() if re.search(mta.errpat, l)]
        check(not bad, "%s's log: no ENOENT, EACCES or pipe error "
              "(%d lines)" % (who, len(text.splitlines())),
              " / ".join(bad[:3]))


def score_of(lst, addr):
    for l in read(os.path.join(LISTS, lst, "bounce-scores")).splitlines():
        f = l.split()
        if f and f[0].lower() == addr.lower() and len(f) > 1:
            try:
                return int(f[1])
            except ValueError:
                return -1
    return 0


def phase_bounces(post_port, mta=None):
    mta = mta or POSTFIX
    section("a member without a mailbox: %s's DSN to -bounces" % mta.name)
    for lst, ghost in (("bounce", "ghost1@" + MDOM),
                       ("verpl", "ghost2@" + MDOM)):
        before = score_of(lst, ghost)
        post(post_port, "poster1@" + PDOM, "%s@%s" % (lst, LDOM),
             "%s-1@post.e2e.test" % lst, "to a member without a mailbox")
        pat = "bounce: list=%s, member=<%s>" % (lst, ghost)
        sender = "%s-bounces" % lst
        if lst == "verpl":
            sender += "+" + ghost.replace("@", "=")
        # The MTA may log its pipe delivery after listqd has seen it.
        wait_for(lambda: pat in read(LQLOG) and
                 score_of(lst, ghost) > before and
                 mta.dsn_piped(ghost, "%s@%s" % (sender, LDOM))[0], 60, 0.3)
        piped, why = mta.dsn_piped(ghost, "%s@%s" % (sender, LDOM))
        check(piped, "%s: %s bounced %s and its DSN went to %s@%s, piped "
              "to the wrapper" % (lst, mta.name, ghost, sender, LDOM), why)
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


def phase_moderation(post_port):
    section("moderation: a stranger's post held, approved by a reply")
    post(post_port, "poster1@" + PDOM, "modl@" + LDOM,
         "modl-1@post.e2e.test", "from a stranger", "held until approved\n")
    notice = wait_for(lambda: mails(MOD), 30)
    check(bool(notice), "the moderator gets a notice through Postfix")
    if not notice:
        return
    check(len(notice) == 1, "  ... exactly one", "%d" % len(notice))
    h = headers(notice[0])
    subject = " ".join((h.get("Subject") or "").split())
    check(h.get("Auto-Submitted") == "auto-replied" and
          h.get("X-Loop") == "modl@" + LDOM,
          "  ... Auto-Submitted: auto-replied and the list's X-Loop")
    check(all(len(mails(m)) == 0 for m in MODL_MEMBERS),
          "no member has the post while it is held")
    m = re.search(r"approve-[0-9A-Za-z]+-[0-9]+-[0-9a-f]+", subject)
    check(m is not None, "the notice's Subject carries the approve token",
          subject)
    if m is None:
        return
    # The moderator's client replies: to Reply-To, "Re: " + Subject.
    check((h.get("Reply-To") or "").strip("<> ") == "modl-request@" + LDOM,
          "  ... and its Reply-To is modl-request@" + LDOM)
    post(post_port, MOD, "modl-request@" + LDOM, "modl-reply@post.e2e.test",
         "Re: " + subject, "yes\n")
    got = wait_for(lambda: all(len(mails(x)) >= 1 for x in MODL_MEMBERS), 30)
    check(got, "the approval by mail, through Postfix, delivers the post "
          "to every member")
    wait_for(lambda: not spool_entries(), 30)
    ok_once = all(len(mails(x)) == 1 and
                  post_id(mails(x)[0]) == "modl-1@post.e2e.test"
                  for x in MODL_MEMBERS)
    check(ok_once, "  ... each member's Maildir holds it once",
          str([len(mails(x)) for x in MODL_MEMBERS]))
    # The same reply again: the token is spent.
    post(post_port, MOD, "modl-request@" + LDOM, "modl-replay@post.e2e.test",
         "Re: " + subject, "yes\n")
    spent = wait_for(lambda: "no such held post" in read(LQLOG), 30)
    check(spent and all(len(mails(x)) == 1 for x in MODL_MEMBERS),
          "a replayed approval does nothing but a log line")


def phase_refusals(post_port, mta=None):
    mta = mta or POSTFIX
    section("refusals: no such list, too large, spool read-only")
    try:
        post(post_port, "poster2@" + PDOM, "nolist@" + LDOM,
             "nolist-1@post.e2e.test", "to no list")
        refused = ""
    except smtplib.SMTPRecipientsRefused as e:
        refused = str(e)
    check(re.search(r"\(5\d\d,", refused), "a post to an address of the "
          "lists' domain that is no list is refused at RCPT: %s" %
          refused[-80:], "accepted")
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

    # Read-only spool: 75, the MTA defers, then delivers after a flush.
    how = spool_readonly(True, mta.nsenter)
    note("spool made read-only: " + how)
    n_before = len(mails("p1@" + MDOM))
    post(post_port, "poster1@" + PDOM, "probe@" + LDOM, "probe-ro@post.e2e.test",
         "spool read-only")
    pat = re.compile(mta.deferred("probe@" + LDOM))
    line = wait_for(lambda: [l for l in mta.log().splitlines()
                             if pat.search(l)], 30, 0.2)
    check(bool(line), "spool read-only: the wrapper's 75 makes %s defer" %
          mta.name, "no deferral in its log")
    if line:
        note(line[-1][-200:])
    check(not mta.queue_empty(), "  ... the message stays in %s's queue" %
          mta.name)
    time.sleep(1)
    check(len(mails("p1@" + MDOM)) == n_before,
          "  ... and is not delivered meanwhile")
    spool_readonly(False, mta.nsenter)
    mta.flush()

    def got():
        return [p for p in mails("p1@" + MDOM)
                if post_id(p) == "probe-ro@post.e2e.test"]
    g = wait_for(got, 60, 0.3)
    time.sleep(1)
    g = got()
    check(len(g) == 1 and mta.queue_empty(),
          "spool writable again, %s flushed: delivered once (%d copy), "
          "its queue empty" % (mta.name, len(g)))


# ---------------------------------------------------------------------
# DMARC and DKIM: unbound serves the poster domain's p=reject and the
# list domain's DKIM key; OpenDKIM signs what leaves Postfix's relay port.

dns_proc = None                 # Popen of unbound
dkim_proc = None                # Popen of opendkim
DKIM = os.path.join(ROOT, "dkim")


def spawn(argv):
    """A server in the foreground, in a session of its own, output gone."""
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def start_unbound(port, records):
    global dns_proc
    conf = os.path.join(DKIM, "unbound.conf")
    log = os.path.join(DKIM, "unbound.log")
    with open(conf, "w") as f:
        f.write("server:\n  interface: 127.0.0.1@%d\n  port: %d\n"
                "  outgoing-interface: 127.0.0.1\n  do-tcp: no\n"
                "  do-ip6: no\n  do-daemonize: no\n  username: \"\"\n"
                "  chroot: \"\"\n  directory: \"%s\"\n  pidfile: \"\"\n"
                "  use-syslog: no\n  logfile: \"%s\"\n  log-queries: yes\n"
                "  module-config: \"iterator\"\n"
                "  access-control: 127.0.0.0/8 allow\n"
                "  local-zone: \".\" refuse\n"
                "  local-zone: \"e2e.test.\" static\n"
                % (port, port, DKIM, log))
        for name, txt in records:
            f.write("  local-data: '%s. 300 IN TXT \"%s\"'\n" % (name, txt))
        f.write("remote-control:\n  control-enable: no\n")
    dns_proc = spawn(["unbound", "-d", "-c", conf])
    if not wait_for(lambda: "start of service" in read(log), 20, 0.1):
        raise Setup("unbound did not start: " + read(log)[-400:])


def start_opendkim(port, key):
    global dkim_proc
    conf = os.path.join(DKIM, "opendkim.conf")
    with open(conf, "w") as f:
        f.write("Syslog no\nMode s\nDomain %s\nSelector listq\n"
                "KeyFile %s\nCanonicalization relaxed/simple\n"
                "OversignHeaders From\nInternalHosts 127.0.0.1\n"
                "Socket inet:%d@127.0.0.1\n"
                # the test key lies below /tmp, which others may write
                "RequireSafeKeys no\n" % (LDOM, key, port))
    dkim_proc = spawn(["opendkim", "-f", "-x", conf])
    if not wait_for(lambda: dkim_proc.poll() is not None or
                    port_open(port), 20, 0.1) or dkim_proc.poll() is not None:
        raise Setup("opendkim did not start")


def stop_proc(p):
    if p is not None and p.poll() is None:
        p.terminate()
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def dkim_key():
    """A fresh 1024-bit key (one TXT string): its file and its p=."""
    mkdir(DKIM)
    must(["opendkim-genkey", "-b", "1024", "-D", DKIM, "-d", LDOM, "-s",
          "listq"], "opendkim-genkey")
    txt = "".join(re.findall(r'"([^"]*)"', read(os.path.join(DKIM,
                                                             "listq.txt"))))
    return os.path.join(DKIM, "listq.private"), txt.replace(" ", "")


def verify_dkim(data, port):
    """python3-dkim's verifier, its key lookups sent to the test DNS."""
    import dkim
    import dns.resolver

    r = dns.resolver.Resolver(configure=False)
    r.nameservers, r.port, r.lifetime = ["127.0.0.1"], port, 5

    def txt(name, timeout=5):
        a = r.resolve(name.decode().rstrip("."), "TXT")
        return b"".join(b"".join(x.strings) for x in a)
    return dkim.verify(data, dnsfunc=txt)


def phase_dmarc(post_port):
    section("DMARC: a post from a p=reject domain, signed by OpenDKIM")
    key, ptxt = dkim_key()
    dns_port, milter_port = free_port(), free_port()
    start_unbound(dns_port, [
        ("_dmarc." + PDOM, "v=DMARC1; p=reject"),
        ("listq._domainkey." + LDOM, ptxt)])
    start_opendkim(milter_port, key)
    must(["postconf", "-c", PFETC, "-e",
          "smtpd_milters=inet:127.0.0.1:%d" % milter_port,
          "milter_default_action=tempfail"], "postconf milters")
    must(["postfix", "-c", PFETC, "reload"], "postfix reload")
    stop_listqd()
    with open(CONF, "a") as f:
        f.write("dns_resolver = 127.0.0.1:%d\ndns_timeout = 2s\n" % dns_port)
    start_listqd()
    post(post_port, "poster1@" + PDOM, "dm@" + LDOM, "dm-1@post.e2e.test",
         "dmarc")
    got = wait_for(lambda: [p for p in mails("d1@" + MDOM)
                            if post_id(p) == "dm-1@post.e2e.test"], 60, 0.3)
    if not check(bool(got), "the post reached the member's Maildir"):
        return
    h = headers(got[0])
    check(h["From"] == "poster1 via dm <dm@%s>" % LDOM and
          h["Reply-To"] == "poster1@" + PDOM and
          h["X-Original-From"] == "poster1@" + PDOM,
          "From: rewritten (\"%s\"), the author in Reply-To: and "
          "X-Original-From:" % h["From"])
    sig = h["DKIM-Signature"] or ""
    check("d=" + LDOM in sig and "s=listq" in sig,
          "OpenDKIM signed it for %s (selector listq)" % LDOM, sig[:80])
    with open(got[0], "rb") as f:
        data = f.read()
    check(verify_dkim(data, dns_port), "python3-dkim verifies the "
          "signature with the key published in the test DNS")
    check(not verify_dkim(data.replace(b"hello", b"hellO"), dns_port),
          "  ... and refuses the copy with one body byte changed")
    n = read(os.path.join(DKIM, "unbound.log")).count("_dmarc.%s. TXT IN" %
                                                      PDOM)
    check(n == 1, "listqd asked the DNS for _dmarc.%s once (%d)" % (PDOM, n))


def system_postfix():
    """What the system's own instance is made of: /etc/postfix's entries."""
    out = []
    for n in sorted(os.listdir("/etc/postfix")):
        st = os.lstat(os.path.join("/etc/postfix", n))
        out.append((n, st.st_mtime_ns, st.st_size))
    return out


def spool_readonly(on, ns=lambda cmd: cmd):
    """A read-only bind mount of the spool on itself (listqd, started
    before, keeps its descriptors on the writable mount); mode 0500 on
    spool/tmp where mounting is not possible.  ns(cmd): the command run
    in the mount namespace of the MTA that runs the wrapper."""
    global ro_mode
    if on:
        if run(ns(["mount", "--bind", SPOOL, SPOOL])).returncode == 0:
            ro_mode = "mount"
            if run(ns(["mount", "-o", "remount,ro,bind",
                       SPOOL])).returncode == 0:
                return "a read-only bind mount of %s on itself" % SPOOL
            spool_readonly(False, ns)
        os.chmod(SPOOL + "/tmp", 0o500)
        ro_mode = "chmod"
        return "%s/tmp mode 0500" % SPOOL
    if ro_mode == "mount":
        if run(ns(["umount", SPOOL])).returncode != 0:
            run(ns(["umount", "-l", SPOOL]))
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
    for p in (dkim_proc, dns_proc):
        try:
            stop_proc(p)
        except Exception as e:
            print("e2e: stopping %r: %r" % (p.args, e))
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
        phase_dmarc(post_port)
        phase_moderation(post_port)
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

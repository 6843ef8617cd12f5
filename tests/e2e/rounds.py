# SPDX-License-Identifier: ISC
"""One end-to-end round of listq through an MTA other than Postfix.

tests/e2e/exim.py and tests/e2e/opensmtpd.py each describe their MTA as
an object, as e2e.py describes its Postfix (class Postfix there): how to
start and stop it, where it logs, how to see its queue and flush it, what
its log says of a pipe delivery, a deferral and a bounce.  This module
runs the phases of e2e.py with it: the same listq build and installation,
the same lists, the same assertions.

An MTA object has, besides what e2e.Postfix has (name, errpat, log(),
queue_empty(), flush(), piped(addr), deferred(addr), dsn_piped(member,
rcpt), in_flight(entries), nsenter(cmd)):
  aliases                 the `listq aliases` arguments for this MTA
  start(aliases, mailboxes, post, relay)   up on two loopback ports
  stop()                  stopped by pid (also after a failed start)
  bounced(addr)           a regex: the MTA failed addr (no mailbox)
  untouched()             a value that must not change: the system's
                          own files of this MTA

The MTA takes posts on `post` (unknown lists refused at RCPT) and
listqd's mail on `relay` (unknown members accepted, then bounced by the
MTA with a DSN), delivering members and posters to Maildirs under
e2e.MAIL that e2e.mails() counts.  Prints one line per assertion and
ends with "e2e NAME: N passed, N failed".
"""

import os
import re
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e                                      # noqa: E402
from e2e import NOBODY, SVC_USER, SVC_UID, SVC_GID, read  # noqa: E402

# The Postfix round fans out to 300 members; here the same 50 posts go
# to fewer, which is enough to see a lost or doubled copy and keeps the
# round short (Exim's and OpenSMTPD's Maildir deliveries are slower).
e2e.NMEMBERS = 25


def run_round(mta):
    """The whole round; returns the exit status."""
    e2e.ROUND = "e2e " + mta.name
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, e2e.on_signal)
    try:
        pw = e2e.run(["getent", "passwd", SVC_USER]).stdout.split(":")
        if len(pw) < 4 or pw[2:4] != [str(SVC_UID), str(SVC_GID)]:
            e2e.fail("the service user %s is not %d:%d" % (SVC_USER, SVC_UID,
                                                           SVC_GID))
            return 1
        if os.path.ismount(e2e.SPOOL):
            e2e.run(["umount", "-l", e2e.SPOOL])
        shutil.rmtree(e2e.ROOT, ignore_errors=True)
        e2e.mkdir(e2e.ROOT)
        before = mta.untouched()
        e2e.section("listq for %s (%d:%d), MAIL_GIDS=%d, under %s" %
                    (SVC_USER, SVC_UID, SVC_GID, NOBODY, e2e.ROOT))
        e2e.build()
        e2e.install_listq()
        post_port, relay_port = e2e.free_port(), e2e.free_port()
        while relay_port == post_port:
            relay_port = e2e.free_port()
        e2e.write_conf(relay_port)
        aliases, mailboxes = e2e.make_lists(mta.aliases)
        mta.start(aliases, mailboxes, post_port, relay_port)
        e2e.section("posts on 127.0.0.1:%d, relay on 127.0.0.1:%d" %
                    (post_port, relay_port))
        e2e.phase_spool_owner(post_port, mta)
        e2e.phase_concurrent(post_port, mta)
        e2e.phase_logs(mta)
        e2e.phase_bounces(post_port, mta)
        e2e.phase_refusals(post_port, mta)
        e2e.phase_spool_sweep()
        e2e.check(mta.untouched() == before, "the system's %s files "
                  "untouched (%s)" % (mta.name, ", ".join(
                      p for p, _ in before)))
    except e2e.Setup as e:
        e2e.fail("setup: %s" % e)
    except SystemExit:
        e2e.fail("interrupted")
    except Exception as e:
        import traceback
        traceback.print_exc()
        e2e.fail("unexpected: %r" % e)
    finally:
        if e2e.nfail:
            for what, text in ((mta.name, mta.log()),
                               ("listqd", read(e2e.LQLOG))):
                print("e2e %s: last lines of %s's log:" % (mta.name, what))
                for l in text.splitlines()[-8:]:
                    print("        " + l)
        finish(mta)
    print("e2e %s: %d passed, %d failed" % (mta.name, e2e.npass, e2e.nfail),
          flush=True)
    return 1 if e2e.nfail else 0


def finish(mta):
    for what, f in (("spool read-write again",
                     lambda: e2e.spool_readonly(False, mta.nsenter)),
                    ("stopping listqd", e2e.stop_listqd),
                    ("stopping " + mta.name, mta.stop)):
        try:
            f()
        except Exception as e:
            print("e2e %s: %s: %r" % (mta.name, what, e))
    if os.environ.get("LISTQ_KEEP"):
        print("e2e %s: kept %s" % (mta.name, e2e.ROOT))
        return
    shutil.rmtree(e2e.ROOT, ignore_errors=True)
    print("e2e %s: removed %s; %.0fs in all" %
          (mta.name, e2e.ROOT, time.monotonic() - e2e.T0))


# ---------------------------------------------------------------------
# What the MTA modules share

GUIDES = os.path.join(e2e.TOP, "doc")


def guide_block(guide, marker):
    """The indented block that follows the first paragraph of
    doc/GUIDE naming marker: the lines the administrator is told to
    write, which the round writes unchanged but for the names
    substituted by the caller."""
    lines = read(os.path.join(GUIDES, guide)).splitlines()
    at = next((i for i, l in enumerate(lines) if marker in l), None)
    if at is None:
        raise e2e.Setup("%s: nothing names %s" % (guide, marker))
    i = at + 1
    while i < len(lines) and not lines[i].startswith("    "):
        i += 1
    block = []
    while i < len(lines) and (lines[i].startswith("    ") or
                              not lines[i].strip()):
        block.append(lines[i][4:])
        i += 1
    if not block:
        raise e2e.Setup("%s: no block after %s" % (guide, marker))
    return "\n".join(block).strip("\n") + "\n"


def substitute(text, names):
    for k, v in names.items():
        text = text.replace(k, v)
    return text


def unpack(debs, names, into):
    """dpkg -x of the named packages' .debs from the directory debs."""
    os.makedirs(into)
    for n in names:
        got = sorted(f for f in os.listdir(debs)
                     if f.startswith(n + "_") and f.endswith(".deb"))
        if not got:
            raise e2e.Setup("no %s_*.deb in %s (tests/e2e/run.sh fetches "
                            "it)" % (n, debs))
        e2e.must(["dpkg-deb", "-x", os.path.join(debs, got[-1]), into],
                 "dpkg-deb -x " + got[-1])


def system_user(name, home="/nonexistent"):
    """The MTA's own user and group, as its package would create them."""
    if e2e.run(["getent", "group", name]).returncode != 0:
        e2e.must(["groupadd", "--system", name], "groupadd " + name)
    if e2e.run(["getent", "passwd", name]).returncode != 0:
        e2e.must(["useradd", "--system", "-g", name, "-d", home, "-M",
                  "-s", "/usr/sbin/nologin", name], "useradd " + name)


def paths_state(paths):
    """What exists of paths: the system's own MTA setup, to compare."""
    return [(p, os.path.lexists(p)) for p in paths]


class Namespaced:
    """An MTA daemon in a mount namespace of its own, in which a
    read-only overlay adds the few files it wants at compiled-in paths
    (the system's directories stay as they are); started in the
    foreground, so that its pid is the Popen's."""

    proc = None

    def dsn_piped(self, member, rcpt):
        """The MTA failed member and piped its DSN to rcpt."""
        log = self.log()
        failed = re.search(self.bounced(member), log)
        piped = re.search(self.piped(rcpt), log)
        return bool(failed and piped), "failed: %s, DSN piped: %s" % (
            bool(failed), bool(piped))

    def in_flight(self, entries):
        """Only what e2e reads from the spool at the kill."""
        return set()

    def nsenter(self, cmd):
        if self.proc is None or self.proc.poll() is not None:
            return cmd
        return ["nsenter", "-t", str(self.proc.pid), "-m", "--"] + cmd

    def spawn(self, mounts, argv, log, ports):
        """mounts: (target, lower, upper) overlays on target, of lower
        (a directory of files to add) or, where upper is given, of a
        private writable layer upper (with its work directory beside).
        Returns once the daemon listens on every port of ports."""
        sh = []
        for target, lower, upper in mounts:
            opt = "lowerdir=%s:%s" % (lower, target) if lower else \
                "lowerdir=%s,upperdir=%s,workdir=%s.work" % (target, upper,
                                                            upper)
            sh.append("mount -t overlay overlay -o %s %s" % (opt, target))
        out = open(log, "a")
        self.proc = e2e.subprocess.Popen(
            ["unshare", "-m", "sh", "-c", " && ".join(sh) + ' && exec "$@"',
             "sh"] + argv, stdin=e2e.subprocess.DEVNULL, stdout=out,
            stderr=out, start_new_session=True)
        out.close()
        p = self.proc
        if not e2e.wait_for(lambda: p.poll() is not None or
                            all(e2e.port_open(n) for n in ports), 20) or \
                p.poll() is not None:
            raise e2e.Setup("%s does not listen on 127.0.0.1:%s (exit %s): "
                            "%s" % (self.name, ports, p.poll(),
                                    read(log)[-600:]))

    def stop_proc(self):
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except e2e.subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        # Its delivery processes, of its session (its pid).
        for d in os.listdir("/proc"):
            if d.isdigit() and int(d) != os.getpid():
                try:
                    if os.getpgid(int(d)) == p.pid:
                        os.kill(int(d), signal.SIGKILL)
                except OSError:
                    pass
        self.proc = None

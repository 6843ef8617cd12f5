#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""listq end to end through OpenSMTPD (run by tests/e2e/run.sh, as root).

Debian's opensmtpd conflicts with postfix, which the Postfix round needs
installed, so it is not installed: tests/e2e/run.sh fetches its .deb and
this round unpacks it under ROOT and runs that smtpd in the foreground
(`smtpd -d -f FILE`), logging to a file.  smtpd has its queue, its
control socket, its chroot and its delivery helpers at compiled-in paths
(/var/spool/smtpd, /run/smtpd.sock, /var/lib/opensmtpd/empty,
/usr/libexec/opensmtpd); it runs in a mount namespace of its own where
overlays give it private writable layers over /var and /run and add the
helpers to /usr/libexec, and the system's directories stay as they are.

The configuration holds the lines of doc/opensmtpd-guide.md as the guide
has them (the table of the lists, the listq action, its match rule),
with the test's domain, wrapper and table put in; around them, two
loopback listeners (posts; listqd's relay, tagged RELAY) and the
members' and posters' Maildirs.  A member without a mailbox is accepted
on the relay port and refused by its delivery agent with exit 67
(EX_NOUSER), as a local delivery agent refuses an unknown user, so that
OpenSMTPD itself bounces it.  tests/e2e/rounds.py runs the assertions of
the Postfix round; it ends with "e2e opensmtpd: N passed, N failed".
"""

import grp
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e                                      # noqa: E402
import rounds                                   # noqa: E402
from e2e import LDOM, MDOM, PDOM, NOBODY, read  # noqa: E402

OS = os.path.join(e2e.ROOT, "opensmtpd")
PKG = os.path.join(OS, "pkg")
SMTPD = os.path.join(PKG, "usr", "sbin", "smtpd")
SMTPCTL = os.path.join(PKG, "usr", "sbin", "smtpctl")
CONF = os.path.join(OS, "smtpd.conf")
LOG = os.path.join(OS, "smtpd.log")
LISTS = os.path.join(OS, "listq-lists")
BOXES = os.path.join(OS, "mailboxes")
VUSERS = os.path.join(OS, "vusers")
DEBS = os.environ.get("LISTQ_MTA_DEBS") or os.path.join(
    e2e.BUILD, "e2e-mta")

CONFIG = """\
# The e2e instance: two loopback listeners, Maildirs under the test root.
table boxes file:{boxes}
table vusers file:{vusers}

listen on 127.0.0.1 port {post}
listen on 127.0.0.1 port {relay} tag RELAY

# doc/opensmtpd-guide.md, /etc/smtpd.conf:
{guide}
action "maildir" maildir "{mail}/%{{rcpt.domain}}/%{{rcpt.user}}" \\
    virtual <vusers>
action "nobox" mda "echo no mailbox here >&2; exit 67" user nobody \
    virtual {{ "@" = nobody }}

match from any for rcpt-to <boxes> action "maildir"
match from any tag RELAY for domain "{mdom}" action "nobox"
"""


class OpenSMTPD(rounds.Namespaced):
    name = "opensmtpd"
    aliases = ("aliases", "--mta", "opensmtpd")
    # Not of the spool: smtpd looks for the ~/.forward of the delivery
    # user nobody (home /nonexistent) and warns, and its purge task may
    # open its purge directory before smtpd has made it.
    errpat = (r"^(?!warn: (smtpd: parent_forward_open|purge_task): )"
              r".*(ENOENT|EACCES|No such file|Permission denied|[Bb]roken "
              r"pipe|EPIPE|rcpt=<[^>]*@" + re.escape(LDOM) +
              r">.*result=(TempFail|PermFail))")

    def start(self, aliases, mailboxes, post, relay):
        for u in ("opensmtpd", "opensmtpq"):
            rounds.system_user(u, "/var/lib/opensmtpd/empty")
        rounds.unpack(DEBS, ("opensmtpd",), PKG)
        # As the package's statoverride: smtpctl refuses to run otherwise.
        os.chown(SMTPCTL, 0, grp.getgrnam("opensmtpq").gr_gid)
        os.chmod(SMTPCTL, 0o2755)
        e2e.mkdir(e2e.MAIL, NOBODY, NOBODY, 0o700)
        for d in ("var", "run"):
            e2e.mkdir(os.path.join(OS, d))
            e2e.mkdir(os.path.join(OS, d + ".work"))
        for d in ("lib", "lib/opensmtpd", "lib/opensmtpd/empty"):
            e2e.mkdir(os.path.join(OS, "var", d))
        # The table without the list `big` at first (a table with no line
        # at all is refused: smtpd cannot tell its type): big is added
        # while smtpd runs, with the guide's `smtpctl update table`, which
        # the posts to big then rely on.
        with open(LISTS, "w") as f:
            f.write("".join(l + "\n" for l in aliases.splitlines()
                            if not l.startswith("big")))
        with open(BOXES, "w") as f:
            f.write("".join("%s\n" % a for a in mailboxes))
        with open(VUSERS, "w") as f:
            f.write("".join("%s nobody\n" % a for a in mailboxes))
        names = {"lists.example.org": LDOM,
                 "/etc/mail/listq-lists": LISTS,
                 "/usr/lib/listq/listq-wrapper":
                 os.path.join(e2e.LIBEXEC, "listq-wrapper")}
        with open(CONF, "w") as f:
            f.write(CONFIG.format(
                boxes=BOXES, vusers=VUSERS, post=post, relay=relay,
                mail=e2e.MAIL,
                mdom=MDOM, guide=rounds.substitute(rounds.guide_block(
                    "opensmtpd-guide.md", "## /etc/smtpd.conf"), names)))
        mounts = [("/var", None, os.path.join(OS, "var")),
                  ("/run", None, os.path.join(OS, "run")),
                  ("/usr/libexec", os.path.join(PKG, "usr", "libexec"),
                   None)]
        r = e2e.run(["unshare", "-m", "sh", "-c", "mount -t overlay overlay"
                     " -o lowerdir=%s:/usr/libexec /usr/libexec && exec "
                     "\"$@\"" % os.path.join(PKG, "usr", "libexec"), "sh",
                     SMTPD, "-n", "-f", CONF])
        if r.returncode != 0:
            raise e2e.Setup("smtpd -n: " + r.stdout[-600:])
        self.spawn(mounts, [SMTPD, "-d", "-f", CONF], LOG, (post, relay))
        with open(LISTS, "w") as f:
            f.write(aliases)
        r = self.smtpctl("update", "table", "listq-lists")
        e2e.check(r.returncode == 0, "a list added to the table while smtpd "
                  "runs: smtpctl update table listq-lists", r.stdout)

    def stop(self):
        self.stop_proc()

    def log(self):
        return read(LOG)

    def smtpctl(self, *args):
        return e2e.run(self.nsenter([SMTPCTL] + list(args)), timeout=60)

    def queue_empty(self):
        r = self.smtpctl("show", "queue")
        return r.returncode == 0 and r.stdout.strip() == ""

    def flush(self):
        self.smtpctl("schedule", "all")

    def piped(self, addr):
        return r"delivery .*rcpt=<%s>.*result=Ok" % re.escape(addr)

    def deferred(self, addr):
        return r"delivery .*rcpt=<%s>.*result=TempFail" % re.escape(addr)

    def bounced(self, addr):
        return r"delivery .*rcpt=<%s>.*result=PermFail" % re.escape(addr)

    def untouched(self):
        return rounds.paths_state(("/var/spool/smtpd", "/run/smtpd.sock",
                                   "/var/lib/opensmtpd",
                                   "/usr/libexec/opensmtpd"))


if __name__ == "__main__":
    sys.exit(rounds.run_round(OpenSMTPD()))

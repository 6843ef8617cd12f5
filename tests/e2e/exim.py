#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""listq end to end through Exim 4 (run by tests/e2e/run.sh, as root).

Debian's exim4-daemon-light conflicts with postfix, which the Postfix
round needs installed, so it is not installed: tests/e2e/run.sh fetches
the .debs of exim4-base and exim4-daemon-light, and this round unpacks
them under ROOT and runs that exim4 as root with its own configuration
(`-C`): its own spool, logs and pid file, listening on two loopback ports.
Exim keeps root for a `-C` file only when the file is named in its
compiled-in /etc/exim4/trusted_configs; the daemon runs in a mount
namespace of its own where a read-only overlay adds that one file, and
the system's /etc stays as it is.

The configuration holds the lines of doc/exim-guide.md as the guide has
them (the macros, the listq router, the listq_pipe transport), with the
test's domain, wrapper and list file put in; around them, what a Debian
configuration has: recipients verified at RCPT on the posting port, and
the members' and posters' Maildirs.  tests/e2e/rounds.py runs the
assertions of the Postfix round; it ends with "e2e exim: N passed, N
failed".
"""

import os
import pwd
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e                                      # noqa: E402
import rounds                                   # noqa: E402
from e2e import LDOM, MDOM, PDOM, NOBODY, read  # noqa: E402

EX = os.path.join(e2e.ROOT, "exim")
PKG = os.path.join(EX, "pkg")
EXIM = os.path.join(PKG, "usr", "sbin", "exim4")
CONF = os.path.join(EX, "exim.conf")
OVERLAY = os.path.join(EX, "etc")               # overlaid on /etc
LOG = os.path.join(EX, "log", "mainlog")
LISTS = os.path.join(EX, "listq-lists")
BOXES = os.path.join(EX, "mailboxes")
DEBS = os.environ.get("LISTQ_MTA_DEBS") or os.path.join(
    e2e.BUILD, "e2e-mta")

HEAD = """\
# The e2e instance: loopback only, its own spool, logs and pid file.
exim_path = {exim}
spool_directory = {ex}/spool
log_file_path = {ex}/log/%slog
pid_file_path = {ex}/exim.pid
primary_hostname = mx.e2e.test
qualify_domain = e2e.test
daemon_smtp_ports = {post} : {relay}
local_interfaces = 127.0.0.1
keep_environment =
host_lookup =
rfc1413_hosts =
tls_advertise_hosts =
never_users = root
smtp_accept_max = 100
smtp_accept_queue_per_connection = 0
message_size_limit = 50M
acl_smtp_rcpt = acl_check_rcpt

# doc/exim-guide.md, /etc/exim4/conf.d/main/05_listq:
{macros}
begin acl

# As Debian's: recipients verified on the posting port; listqd's relay
# port takes any member, so that Exim itself bounces one without a
# mailbox.
acl_check_rcpt:
  accept condition = ${{if eq{{$received_port}}{{{relay}}}}}
  require verify = recipient
  accept

begin routers

# doc/exim-guide.md, /etc/exim4/conf.d/router/350_listq:
{router}
mailbox:
  driver = accept
  domains = {mdom} : {pdom}
  condition = ${{lookup{{$local_part@$domain}}lsearch{{{boxes}}}{{yes}}{{no}}}}
  transport = maildir

no_mailbox:
  driver = redirect
  domains = {mdom} : {pdom}
  allow_fail
  data = :fail: no mailbox here

begin transports

# doc/exim-guide.md, /etc/exim4/conf.d/transport/30_listq:
{transport}
maildir:
  driver = appendfile
  directory = {mail}/${{lookup{{$local_part@$domain}}lsearch{{{boxes}}}}}
  maildir_format
  create_directory
  user = nobody
  group = nogroup
  return_path_add
  delivery_date_add
  envelope_to_add

begin retry

*  *  F,1h,15s
"""


class Exim(rounds.Namespaced):
    name = "exim"
    aliases = ("aliases", "--mta", "exim")
    errpat = (r"ENOENT|EACCES|No such file|Permission denied|[Bb]roken pipe"
              r"|EPIPE|lost privilege|Tainted|panic|T=listq_pipe.*defer"
              r"|\*\* .*T=listq_pipe")

    def start(self, aliases, mailboxes, post, relay):
        rounds.system_user("Debian-exim")
        rounds.unpack(DEBS, ("exim4-base", "exim4-daemon-light"), PKG)
        for d in (EX + "/spool", EX + "/log"):
            e2e.mkdir(d, pwd.getpwnam("Debian-exim").pw_uid,
                      pwd.getpwnam("Debian-exim").pw_gid, 0o750)
        e2e.mkdir(e2e.MAIL, NOBODY, NOBODY, 0o700)
        e2e.mkdir(OVERLAY)
        e2e.mkdir(OVERLAY + "/exim4")
        with open(OVERLAY + "/exim4/trusted_configs", "w") as f:
            f.write(CONF + "\n")
        with open(LISTS, "w") as f:
            f.write(aliases)
        with open(BOXES, "w") as f:
            for a in mailboxes:
                lp, dom = a.split("@")
                f.write("%s: %s/%s\n" % (a, dom, lp))
        names = {"lists.example.org": LDOM,
                 "/etc/exim4/listq-lists": LISTS,
                 "/usr/lib/listq/listq-wrapper":
                 os.path.join(e2e.LIBEXEC, "listq-wrapper")}
        guide = "exim-guide.md"
        with open(CONF, "w") as f:
            f.write(HEAD.format(
                exim=EXIM, ex=EX, post=post, relay=relay, mdom=MDOM,
                pdom=PDOM, boxes=BOXES, mail=e2e.MAIL,
                macros=rounds.substitute(rounds.guide_block(
                    guide, "conf.d/main/05_listq`"), names),
                router=rounds.substitute(rounds.guide_block(
                    guide, "conf.d/router/350_listq`"), names),
                transport=rounds.substitute(rounds.guide_block(
                    guide, "conf.d/transport/30_listq`"), names)))
        self.spawn([("/etc", OVERLAY, None)],
                   [EXIM, "-C", CONF, "-bdf", "-q15s"],
                   os.path.join(EX, "daemon.out"), (post, relay))
        out = self.exim("-bV").stdout
        e2e.note("%s, -C %s" % (out.splitlines()[0] if out else "?", CONF))
        # The guide's check (its section 4).
        verp = "verpl-bounces+b2=%s@%s" % (MDOM, LDOM)
        out = self.exim("-bt", verp).stdout
        e2e.check("router = listq, transport = listq_pipe" in out,
                  "exim -bt %s: router = listq, transport = listq_pipe, as "
                  "the guide says" % verp, out.strip()[-300:])

    def stop(self):
        self.stop_proc()

    def log(self):
        return read(LOG)

    def exim(self, *args):
        return e2e.run(self.nsenter([EXIM, "-C", CONF] + list(args)),
                       timeout=60)

    def queue_empty(self):
        r = self.exim("-bpc")
        return r.returncode == 0 and r.stdout.strip() == "0"

    def flush(self):
        self.exim("-qff")

    def piped(self, addr):
        return r"=> \S+ <%s> R=listq T=listq_pipe" % re.escape(addr)

    def deferred(self, addr):
        return r"== %s R=listq T=listq_pipe defer" % re.escape(addr)

    def bounced(self, addr):
        return r"\*\* %s R=no_mailbox" % re.escape(addr)

    def untouched(self):
        return rounds.paths_state(("/etc/exim4", "/var/spool/exim4",
                                   "/var/log/exim4", "/run/exim4"))


if __name__ == "__main__":
    sys.exit(rounds.run_round(Exim()))

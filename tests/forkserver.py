"""Start `w2v` commands quickly: import w2v and MXNet once, then fork one process per command.

Used by the kill test, which needs dozens of `w2v train` processes and would otherwise spend
~2 s of CPU per process importing MXNet. Each child runs the `w2v` entry point exactly as the
console script does (argv, W2V_WORKDIR, stderr to a file); only the interpreter start-up is
shared. Protocol, one line each: stdin ``<workdir>\\t<stderr file>\\t<arg>\\t<arg>...``;
stdout ``pid <n>`` once the child runs, then ``exit <code>`` (negative: killed by that signal).
"""

import os
import sys

from w2v_cli import backend, cli


def main() -> None:
    backend.mxnet()  # the import the children then share
    print("ready", flush=True)
    for line in sys.stdin:
        workdir, err, *args = line.rstrip("\n").split("\t")
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                os.environ["W2V_WORKDIR"] = workdir
                fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 2)
                os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
                cli.cli(args, prog_name="w2v")
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            finally:
                os._exit(code)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main()

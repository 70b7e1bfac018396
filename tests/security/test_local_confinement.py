"""Attacks on the local executor's and local kernels' confinement, through the
`kernex` CLI as a user runs it: processes that try to outlive their block
(job control, setsid, double fork, nohup), kill -9 of kernex mid-block and
mid-cell, secrets in kernex's environment, and the bubblewrap sandbox
(network, host home, /usr, /etc/shadow covered, escaping children, a fork bomb).
Every check is a /proc walk, a file or what the code printed."""
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "helpers"))
from process_walk import eventually_none, kill_leftovers, processes_with  # noqa: E402

KERNEX = os.path.join(os.environ["KERNEX_BUILD_DIR"], "src", "cli", "kernex")
ALLOWED = {"PATH", "HOME", "LANG", "TERM", "TZ", "USER"}
SECRETS = {"API_KEY": "sk-secret-1", "KERNEX_GATEWAY_TOKEN": "gw-secret-2", "DOCKER_HOST": "tcp://10.9.9.9:2375"}


def allowed(name):
    return name in ALLOWED or name.startswith("LC_") or (len(name) > 10 and name.endswith("SAN_OPTIONS"))


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Base(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.work = os.path.join(self.tmp.name, "work")
        self.runtime = os.path.join(self.tmp.name, "runtime")
        os.makedirs(self.work)
        self.env = dict(os.environ, JUPYTER_RUNTIME_DIR=self.runtime)
        # A unique word in every command line the tests start, for the /proc walk.
        self.marker = "kxmark" + uuid.uuid4().hex[:10]
        self.sleep = f"exec -a {self.marker} sleep 1000"

    def tearDown(self):
        kill_leftovers(self.marker)
        self.tmp.cleanup()

    def exec(self, message, *args, env=None, user=None, timeout=120):
        cmd = [KERNEX, "exec", "--json", *args, "-"]
        return subprocess.run(cmd, input=message, capture_output=True, text=True, env=env or self.env,
                              timeout=timeout, user=user)

    def kill_kernex_mid_block(self, *flags):
        """kill -9 of `kernex exec` while its block and two escaped children run: within 5 s none is left."""
        message = (f"```bash\nsetsid bash -c '{self.sleep}' >/dev/null 2>&1 < /dev/null &\n"
                   f"( ( bash -c '{self.sleep}' >/dev/null 2>&1 & ) & )\n"
                   f"sleep 0.3; echo up > ready; {self.sleep}\n```\n")
        proc = subprocess.Popen([KERNEX, "exec", *flags, "--work-dir", self.work, "-"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env, text=True)
        proc.stdin.write(message)
        proc.stdin.close()
        self.wait_for_file(os.path.join(self.work, "ready"))
        self.assertGreaterEqual(len(processes_with(self.marker)), 3)
        proc.kill()
        proc.wait()
        self.assertEqual(eventually_none(self.marker, 5.0), [])

    def wait_for_file(self, path, within=30.0):
        deadline = time.monotonic() + within
        while not (os.path.exists(path) and os.path.getsize(path) > 0):
            if time.monotonic() > deadline:
                self.fail(f"{path} never appeared")
            time.sleep(0.05)


class BlockEndTests(Base):
    """Item 3: after every block, nothing it started still runs."""

    def escapes(self, d):
        return {
            "job control": f"set -m; ( {self.sleep} ) >/dev/null 2>&1 & echo $! > {d}/jobs",
            "setsid": f"setsid bash -c '{self.sleep}' >/dev/null 2>&1 < /dev/null &",
            "double fork": f"( ( bash -c '{self.sleep}' >/dev/null 2>&1 & ) & )",
            "nohup": f"nohup bash -c '{self.sleep}' >/dev/null 2>&1 &",
        }

    def test_children_are_killed_at_a_normal_block_end(self):
        for what, line in self.escapes(self.work).items():
            with self.subTest(what):
                script = f"{line}\nsleep 0.3\necho started\n"
                r = self.exec(f"```bash\n{script}```\n", "--work-dir", self.work)
                self.assertEqual(json.loads(r.stdout)["exit_code"], 0, r.stderr)
                self.assertEqual(eventually_none(self.marker, 3.0), [], f"{what} child outlived its block")
                kill_leftovers(self.marker)

    def test_a_block_that_kills_its_reaper_still_leaves_nothing(self):
        # The reaper by $PPID and by the pid /proc shows (the host's number),
        # then a second escaped child: as init of the block's own pid
        # namespace the reaper survives both, kills the child at block end,
        # and the block's own status comes back.
        if os.geteuid() != 0:
            self.skipTest("a pid namespace of the block's own needs CAP_SYS_ADMIN; unprivileged, --sandbox holds")
        script = (f"setsid bash -c '{self.sleep}' >/dev/null 2>&1 < /dev/null &\n"
                  "read -r _ _ _ host_ppid _ < /proc/self/stat\n"
                  "kill -9 $PPID; kill -9 $host_ppid\n"
                  f"sleep 0.3; nohup bash -c '{self.sleep}' >/dev/null 2>&1 &\n"
                  "sleep 0.3; echo survived; exit 3\n")
        r = self.exec(f"```bash\n{script}```\n", "--work-dir", self.work)
        result = json.loads(r.stdout)
        self.assertIn("survived", result["output"], result)
        self.assertEqual(result["exit_code"], 3, result)
        self.assertEqual(eventually_none(self.marker, 3.0), [], "a child outlived its block after it killed its reaper")
        # The status of a block killed by a signal is the block's own.
        r = self.exec("```bash\nkill -SEGV $$\n```\n", "--work-dir", self.work)
        self.assertEqual(json.loads(r.stdout)["exit_code"], 128 + signal.SIGSEGV, r.stdout)

    def test_the_next_block_sees_nothing_of_the_previous_one(self):
        message = (f"```bash\nsetsid bash -c '{self.sleep}' >/dev/null 2>&1 < /dev/null &\nsleep 0.3\n```\n"
                   f"```bash\npgrep -f {self.marker} || echo none\n```\n")
        r = self.exec(message, "--work-dir", self.work)
        result = json.loads(r.stdout)
        self.assertEqual(result["output"].strip().splitlines()[-1], "none", result["output"])


class DeathTests(Base):
    """Item 6: kill -9 of kernex leaves nothing of the run within 5 s."""

    def test_kill_9_mid_block_leaves_no_process(self):
        self.kill_kernex_mid_block()

    def test_dirs_the_code_made_unreadable_or_read_only_do_not_keep_the_temporary_dir(self):
        # As a user (root's rights pass over modes): a chmod 500 dir with a
        # file in it and a chmod 000 dir, in the temporary work dir, at a
        # normal end and at a kill -9 of kernex mid-block.
        nobody = pwd.getpwnam("nobody")
        os.chmod(self.tmp.name, 0o755)
        tmpdir = os.path.join(self.tmp.name, "tmp")
        os.mkdir(tmpdir)
        for d in (tmpdir, self.work):
            os.chown(d, nobody.pw_uid, nobody.pw_gid)
        env = {k: v for k, v in self.env.items() if k in ("PATH", "LANG", "KERNEX_LIBEXEC_DIR")}
        env.update(HOME="/nonexistent", TMPDIR=tmpdir)
        lock = "mkdir -p d/e; touch d/e/f; chmod 500 d; mkdir z; chmod 000 z; chmod 500 .\n"
        r = self.exec(f"```bash\n{lock}```\n", env=env, user=nobody.pw_uid)
        self.assertEqual(json.loads(r.stdout)["exit_code"], 0, r.stderr)
        self.assertEqual(os.listdir(tmpdir), [])

        message = f"```bash\n{lock}echo up > {self.work}/ready; {self.sleep}\n```\n"
        proc = subprocess.Popen([KERNEX, "exec", "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env, text=True, user=nobody.pw_uid)
        proc.stdin.write(message)
        proc.stdin.close()
        self.wait_for_file(os.path.join(self.work, "ready"))
        self.assertEqual(len(os.listdir(tmpdir)), 1)
        proc.kill()
        proc.wait()
        self.assertEqual(eventually_none(self.marker, 5.0), [])
        deadline = time.monotonic() + 5
        while os.listdir(tmpdir) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(os.listdir(tmpdir), [])

    def test_kill_9_mid_block_removes_the_temporary_work_dir_and_follows_no_link(self):
        # No --work-dir: kernex makes one under TMPDIR. The block plants a
        # link to a dir outside and a deep tree, then waits to be killed.
        tmpdir = os.path.join(self.tmp.name, "tmpdir")
        outside = os.path.join(self.tmp.name, "outside")
        os.makedirs(tmpdir)
        os.makedirs(outside)
        with open(os.path.join(outside, "canary"), "w") as f:
            f.write("precious")
        ready = os.path.join(self.tmp.name, "ready")
        message = (f"```bash\nln -s {outside} link\nln -s {outside}/canary canary-link\n"
                   f"mkdir -p deep/a/b/c/d && echo x > deep/a/b/c/d/f && mkfifo fifo\n"
                   f"setsid bash -c '{self.sleep}' >/dev/null 2>&1 < /dev/null &\n"
                   f"pwd > {ready}; {self.sleep}\n```\n")
        proc = subprocess.Popen([KERNEX, "exec", "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=dict(self.env, TMPDIR=tmpdir), text=True)
        proc.stdin.write(message)
        proc.stdin.close()
        self.wait_for_file(ready)
        with open(ready) as f:
            work = f.read().strip()
        self.assertTrue(work.startswith(tmpdir), work)
        self.assertTrue(os.path.isdir(os.path.join(work, "deep")))
        proc.kill()
        proc.wait()
        self.assertEqual(eventually_none(self.marker, 5.0), [])
        deadline = time.monotonic() + 5
        while os.path.exists(work) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(os.path.exists(work), os.listdir(work) if os.path.exists(work) else None)
        self.assertEqual(os.listdir(tmpdir), [])
        with open(os.path.join(outside, "canary")) as f:
            self.assertEqual(f.read(), "precious")

    def test_kill_9_mid_cell_ends_the_kernel_its_children_and_its_files(self):
        cell = self.write_cell(
            "import os, subprocess, sys, time\n"
            f"subprocess.Popen(['setsid', 'bash', '-c', '{self.sleep}'], stdin=subprocess.DEVNULL,"
            " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            f"open({self.work!r} + '/kernel', 'w').write(str(os.getpid()))\n"
            "time.sleep(1000)\n")
        proc = subprocess.Popen([KERNEX, "run", "--kernel", "python3", cell], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=self.env, cwd=self.work)
        self.wait_for_file(os.path.join(self.work, "kernel"), within=60)
        with open(os.path.join(self.work, "kernel")) as f:
            kernel = int(f.read())
        self.assertTrue(alive(kernel))
        self.assertNotEqual(os.listdir(self.runtime), [])
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 5
        while (alive(kernel) or processes_with(self.marker) or os.listdir(self.runtime)) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(alive(kernel))
        self.assertEqual(processes_with(self.marker), [])
        self.assertEqual(os.listdir(self.runtime), [])

    def write_cell(self, text):
        path = os.path.join(self.tmp.name, "cell.py")
        with open(path, "w") as f:
            f.write(text)
        return path


class EnvironmentTests(Base):
    """Item 5: code gets a clean environment, plus what is asked for."""

    def setUp(self):
        super().setUp()
        self.env.update(SECRETS)
        # The system's python3, not a version manager's shim that adds its own variables.
        self.env["PATH"] = "/usr/bin:/bin"
        self.env.setdefault("LANG", "C.UTF-8")
        self.env["LC_TIME"] = "C"
        self.expected = {n for n in self.env if allowed(n)}

    def names_seen(self, *args, executor="local"):
        message = "```python\nimport json, os\nprint(json.dumps(dict(os.environ)))\n```\n"
        r = self.exec(message, "--executor", executor, *args)
        result = json.loads(r.stdout)
        self.assertEqual(result["exit_code"], 0, r.stderr + result["output"])
        return json.loads(result["output"].strip().splitlines()[-1])

    def test_local_executor_blocks_see_exactly_the_allowed_set(self):
        seen = self.names_seen()
        self.assertEqual(set(seen), self.expected | {"PYTHONUNBUFFERED"})
        self.assertEqual(seen["PATH"], self.env["PATH"])

    def test_env_adds_and_inherit_env_keeps_everything(self):
        seen = self.names_seen("--env", "EXTRA=1", "--env", "API_KEY")
        self.assertEqual(set(seen), self.expected | {"PYTHONUNBUFFERED", "EXTRA", "API_KEY"})
        self.assertEqual(seen["API_KEY"], SECRETS["API_KEY"])
        seen = self.names_seen("--inherit-env")
        for name, value in SECRETS.items():
            self.assertEqual(seen[name], value)

    def test_local_kernels_see_the_allowed_set_and_the_kernelspec_env(self):
        # The jupyter executor's local kernel (ipykernel): what ipykernel sets
        # for itself is allowed, nothing of kernex's environment beyond the set.
        seen = self.names_seen(executor="jupyter")
        for name in SECRETS:
            self.assertNotIn(name, seen)
        own = {"JPY_PARENT_PID", "MPLBACKEND", "CLICOLOR", "PAGER", "GIT_PAGER", "FORCE_COLOR", "PYDEVD_USE_FRAME_EVAL",
               "PYDEVD_DISABLE_FILE_VALIDATION"}
        self.assertEqual(set(seen) - self.expected - own, set())
        self.assertTrue(self.expected - {"TERM"} <= set(seen))

    def cli_kernel_environment(self, *args, start=()):
        """The environment a python3 kernel sees: kernex run ARGS, or a kernel from kernex kernel start START."""
        code = "import json, os\nprint(json.dumps(dict(os.environ)))\n"
        if not start:
            r = subprocess.run([KERNEX, "run", "--kernel", "python3", *args, "-"], input=code, capture_output=True,
                               text=True, env=self.env, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            return json.loads(r.stdout.strip().splitlines()[-1])
        server = subprocess.Popen([KERNEX, "kernel", "start", "--kernel", "python3", *start], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True, env=self.env)
        try:
            path = server.stdout.readline().strip()
            self.assertTrue(path)
            r = subprocess.run([KERNEX, "run", "--existing", path, "-"], input=code, capture_output=True, text=True,
                               env=self.env, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            return json.loads(r.stdout.strip().splitlines()[-1])
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)

    def test_kernex_run_and_kernel_start_take_env_and_inherit_env(self):
        for seen in (self.cli_kernel_environment("--env", "EXTRA=1", "--env", "API_KEY"),
                     self.cli_kernel_environment(start=("--env", "EXTRA=1", "--env", "API_KEY"))):
            self.assertEqual(seen["EXTRA"], "1")
            self.assertEqual(seen["API_KEY"], SECRETS["API_KEY"])
            for name in set(SECRETS) - {"API_KEY"}:
                self.assertNotIn(name, seen)
        for seen in (self.cli_kernel_environment("--inherit-env"), self.cli_kernel_environment(start=("--inherit-env",))):
            for name, value in SECRETS.items():
                self.assertEqual(seen[name], value)

    def test_a_kernel_gets_its_kernelspec_env_then_env_or_everything_with_inherit_env(self):
        # As jupyter_client launches a kernel: the kernelspec's env on top of
        # the clean set; the executor's env (--env) on top of that.
        spec = os.path.join(self.tmp.name, "jupyter", "kernels", "py-spec-env")
        os.makedirs(spec)
        with open(os.path.join(spec, "kernel.json"), "w") as f:
            json.dump({"argv": ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                       "display_name": "py with env", "language": "python",
                       "env": {"FROM_SPEC": "spec", "OVERRIDDEN": "spec"}}, f)
        self.env["JUPYTER_PATH"] = os.path.join(self.tmp.name, "jupyter")
        seen = self.names_seen("--kernel", "py-spec-env", "--env", "OVERRIDDEN=mine", "--env", "API_KEY",
                               executor="jupyter")
        self.assertEqual(seen["FROM_SPEC"], "spec")
        self.assertEqual(seen["OVERRIDDEN"], "mine")
        self.assertEqual(seen["API_KEY"], SECRETS["API_KEY"])  # NAME alone: kernex's value
        for name in set(SECRETS) - {"API_KEY"}:
            self.assertNotIn(name, seen)
        seen = self.names_seen("--kernel", "py-spec-env", "--inherit-env", executor="jupyter")
        for name, value in SECRETS.items():
            self.assertEqual(seen[name], value)
        self.assertEqual(seen["FROM_SPEC"], "spec")
        # A kernel kernex only connects to has the environment it was started with.
        r = self.exec("```python\n1\n```\n", "--executor", "jupyter", "--existing", "kernel-x.json", "--env", "A=1")
        self.assertEqual(r.returncode, 2, r.stderr)


class SandboxTests(Base):
    """The sandboxed local executor."""

    def run_sandboxed(self, code, lang="bash", *args, **kw):
        r = self.exec(f"```{lang}\n{code}\n```\n", "--sandbox", "--work-dir", self.work, *args, **kw)
        self.assertNotEqual(r.stdout, "", r.stderr)
        return json.loads(r.stdout)

    def test_network_is_unreachable(self):
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        try:
            code = ("import socket\ns = socket.socket()\ns.settimeout(3)\n"
                    f"try:\n    s.connect(('127.0.0.1', {port}))\n    print('connected')\n"
                    "except OSError as e:\n    print('refused', e.errno)\n")
            result = self.run_sandboxed(code, "python")
            self.assertEqual(result["exit_code"], 0, result["output"])
            self.assertIn("refused", result["output"])
            self.assertNotIn("connected", result["output"])
        finally:
            server.close()

    def test_host_home_and_other_dirs_are_invisible(self):
        home = os.path.expanduser("~")
        canary = os.path.join(home, f".kernex-canary-{self.marker}")
        outside = os.path.join(self.tmp.name, "outside.txt")
        with open(canary, "w") as f:
            f.write("secret")
        with open(outside, "w") as f:
            f.write("secret")
        try:
            result = self.run_sandboxed(f"cat {canary} || echo no-canary\ncat {outside} || echo no-outside\n"
                                        f"echo $HOME\nls {home} | wc -l")
            out = result["output"]
            self.assertIn("no-canary", out)
            self.assertIn("no-outside", out)
            self.assertNotIn("secret", out)
        finally:
            os.unlink(canary)

    def test_usr_is_read_only_and_the_work_dir_writable(self):
        result = self.run_sandboxed("touch /usr/kernex-x && echo wrote-usr\necho hi > in-work && echo wrote-work\n"
                                    "touch /etc/kernex-x && echo wrote-etc\necho t > /tmp/t && echo wrote-tmp")
        out = result["output"]
        self.assertNotIn("wrote-usr", out)
        self.assertNotIn("wrote-etc", out)
        self.assertIn("wrote-work", out)
        self.assertIn("wrote-tmp", out)
        self.assertFalse(os.path.exists("/usr/kernex-x"))
        with open(os.path.join(self.work, "in-work")) as f:
            self.assertEqual(f.read(), "hi\n")

    def test_secrets_of_etc_are_covered(self):
        # Each secret reads empty (an empty file is bound over it); the rest of /etc is there.
        with open("/etc/shadow") as f:
            self.assertIn("root:", f.read())  # the host's is not empty: the check below can fail
        result = self.run_sandboxed("for f in /etc/shadow /etc/gshadow /etc/ssh/ssh_host_rsa_key /etc/ssh/ssh_host_ed25519_key; do\n"
                                    "  test -s $f && echo readable $f || echo empty $f\ndone\ncat /etc/shadow\n"
                                    "test -s /etc/passwd && echo passwd-ok")
        out = result["output"]
        self.assertNotIn("readable", out)
        self.assertIn("empty /etc/shadow", out)
        self.assertNotIn("root:", out)
        self.assertIn("passwd-ok", out)

    def test_escaping_children_die_at_block_end(self):
        result = self.run_sandboxed(f"setsid bash -c '{self.sleep}' >/dev/null 2>&1 < /dev/null &\n"
                                    f"( ( bash -c '{self.sleep}' >/dev/null 2>&1 & ) & )\nsleep 0.3\necho ok")
        self.assertEqual(result["exit_code"], 0, result["output"])
        self.assertEqual(eventually_none(self.marker, 3.0), [])

    def test_escaping_children_die_with_kernex(self):
        self.kill_kernex_mid_block("--sandbox")

    def test_environment_is_clean(self):
        env = dict(self.env, **SECRETS)
        result = json.loads(self.exec("```python\nimport os\nprint(sorted(os.environ))\n```\n", "--sandbox",
                                      "--work-dir", self.work, env=env).stdout)
        for name in SECRETS:
            self.assertNotIn(name, result["output"])

    def test_cpu_address_space_and_open_files_limits_hold(self):
        # CPU seconds: a busy loop is ended at the limit (soft and hard are
        # one: SIGKILL, 128 + 9), not by the timeout.
        result = self.run_sandboxed("python3 -c 'while True: pass'; echo status=$?", "bash", "--rlimit-cpu", "1",
                                    "--timeout", "60")
        self.assertIn("status=137", result["output"])
        self.assertFalse(result["timed_out"])
        # Address space: 512 MiB cannot be had under 256 MiB.
        result = self.run_sandboxed("try:\n    x = bytearray(512 << 20)\n    print('allocated')\n"
                                    "except MemoryError:\n    print('MemoryError')\n", "python",
                                    "--rlimit-as", str(256 << 20))
        self.assertEqual(result["output"], "MemoryError\n")
        # Open files: the 33rd descriptor is refused (EMFILE).
        result = self.run_sandboxed("import os\nfds = []\ntry:\n    while True:\n"
                                    "        fds.append(os.open('/dev/null', os.O_RDONLY))\n"
                                    "except OSError as e:\n    print(max(fds) < 32, e.errno)\n", "python",
                                    "--rlimit-nofile", "32")
        self.assertEqual(result["output"], "True 24\n")

    @unittest.skipUnless(os.geteuid() == 0, "hides bwrap in a mount namespace of its own: needs root")
    def test_without_bwrap_or_its_namespaces_the_error_says_what_to_do(self):
        # Never a silent fallback to no sandbox: the block does not run.
        missing = os.path.join(self.tmp.name, "not-a-program")
        open(missing, "w").close()
        failing = os.path.join(self.tmp.name, "bwrap-without-namespaces")
        with open(failing, "w") as f:
            f.write("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
        os.chmod(failing, 0o755)
        ran = os.path.join(self.work, "ran")
        for stand_in, said in ((missing, "the sandbox needs bubblewrap, which is not installed: apt-get install "
                                         "bubblewrap"),
                               (failing, "the sandbox cannot start here: bwrap failed (bwrap: No permissions to "
                                         "creating new namespace). It needs user namespaces")):
            with self.subTest(stand_in=os.path.basename(stand_in)):
                script = 'mount --bind "$0" /usr/bin/bwrap && exec "$@"'
                r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, stand_in,
                                    KERNEX, "exec", "--sandbox", "--work-dir", self.work, "-"],
                                   input=f"```bash\ntouch {ran}\n```\n", capture_output=True, text=True,
                                   env=self.env, timeout=120)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(said, r.stderr)
                self.assertFalse(os.path.exists(ran))

    def test_fork_bomb_is_contained_by_the_process_limit(self):
        # RLIMIT_NPROC binds users, not root: the bomb runs as nobody, whose
        # processes the test counts before and after.
        nobody = pwd.getpwnam("nobody")
        os.chmod(self.tmp.name, 0o755)
        os.chown(self.work, nobody.pw_uid, nobody.pw_gid)
        env = {k: v for k, v in self.env.items() if k in ("PATH", "LANG")}
        env["HOME"] = "/nonexistent"
        before = set(self.processes_of(nobody.pw_uid))
        code = "bomb() { bomb | bomb & }; bomb\nsleep 3\necho survived"
        started = time.monotonic()
        r = self.exec(f"```bash\n{code}\n```\n", "--sandbox", "--work-dir", self.work, "--rlimit-nproc", "40",
                      "--timeout", "20", env=env, user=nobody.pw_uid, timeout=120)
        self.assertLess(time.monotonic() - started, 60)
        result = json.loads(r.stdout)
        self.assertIn("survived", result["output"])
        self.assertIn("Resource temporarily unavailable", result["output"])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and set(self.processes_of(nobody.pw_uid)) - before:
            time.sleep(0.05)
        self.assertEqual(set(self.processes_of(nobody.pw_uid)) - before, set())

    @staticmethod
    def processes_of(uid):
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    st = os.stat(f"/proc/{entry}")
                    with open(f"/proc/{entry}/stat") as f:
                        zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
                except OSError:
                    continue
                if st.st_uid == uid and not zombie:
                    found.append(int(entry))
        return found


class SandboxKernelTests(Base):
    """A local kernel in the sandbox (kernex run --sandbox)."""

    def write_cell(self, text):
        path = os.path.join(self.work, "cell.py")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_sandboxed_kernel_has_no_network_no_secrets_and_a_private_transport(self):
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        canary = os.path.join(self.tmp.name, "outside.txt")
        with open(canary, "w") as f:
            f.write("secret")
        cell = self.write_cell(
            "import os, socket\n"
            "s = socket.socket(); s.settimeout(3)\n"
            f"print('net', s.connect_ex(('127.0.0.1', {port})) != 0)\n"
            "try:\n    leaked = open('/etc/shadow').read() != ''\nexcept OSError:\n    leaked = False\n"
            "print('shadow', leaked)\n"
            f"print('outside', os.path.exists({canary!r}))\n"
            "open('written', 'w').write('x')\n"
            "print('secret', 'API_KEY' in os.environ)\n")
        env = dict(self.env, **SECRETS)
        try:
            r = subprocess.run([KERNEX, "run", "--sandbox", "--kernel", "python3", cell], capture_output=True,
                               text=True, env=env, cwd=self.work, timeout=120)
        finally:
            server.close()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "net True\nshadow False\noutside False\nsecret False\n")
        self.assertTrue(os.path.exists(os.path.join(self.work, "written")))
        self.assertEqual(os.listdir(self.runtime) if os.path.isdir(self.runtime) else [], [])

    def test_a_sandboxed_kernel_is_interrupted_not_killed(self):
        # A signal to the group would reach bwrap and end the sandbox: the
        # interrupt goes to the kernel as a message, and the next cell runs.
        cell = self.write_cell("import time\nprint('a', flush=True)\ntime.sleep(60)\n# %%\nprint('after')\n")
        r = subprocess.run([KERNEX, "run", "--sandbox", "--continue", "--timeout", "3", "--kernel", "python3", cell],
                           capture_output=True, text=True, env=self.env, cwd=self.work, timeout=120)
        self.assertEqual(r.stdout, "a\nafter\n", r.stderr)
        self.assertIn("KeyboardInterrupt", r.stderr)
        self.assertNotIn("died", r.stderr)

    def test_kill_9_mid_cell_of_a_sandboxed_kernel_leaves_nothing(self):
        cell = self.write_cell(
            "import subprocess, time\n"
            f"subprocess.Popen(['setsid', 'bash', '-c', '{self.sleep}'], stdin=subprocess.DEVNULL,"
            " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "open('ready', 'w').write('up')\n"
            "time.sleep(1000)\n")
        proc = subprocess.Popen([KERNEX, "run", "--sandbox", "--kernel", "python3", cell],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env, cwd=self.work)
        self.wait_for_file(os.path.join(self.work, "ready"), within=60)
        self.assertNotEqual(processes_with(self.marker), [])
        self.assertNotEqual(os.listdir(self.runtime), [])
        proc.kill()
        proc.wait()
        self.assertEqual(eventually_none(self.marker, 5.0), [])
        deadline = time.monotonic() + 5
        while os.listdir(self.runtime) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(os.listdir(self.runtime), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)

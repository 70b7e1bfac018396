"""What `meson install` gives a program that embeds kernex, and that such a
program builds and runs against the installed tree only.

Installs the build into a staging DESTDIR, then checks the layout (the
versioned library and its soname, libkernex.a, kernex.pc, the headers, the
programs, kernex-bash's kernelspec naming the installed program), builds
examples/embed both as an external meson project and as a CMake project
(pkg-config), each against the staged kernex.pc only, runs both (a python3
kernel: two cells sharing a variable, streamed output, a bash block through
make_executor) with the staged library, and configures the example with
kernex as a meson subproject (dependency('kernex') through
meson.override_dependency). Prints the installed library's size, as
installed and stripped (what `meson install --strip` installs).

    test_embed.py MESON SOURCE_DIR BUILD_DIR PREFIX LIBDIR BINDIR DATADIR INCLUDEDIR
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

# pkg-config's own dirs for the system's packages (nlohmann_json), without
# /usr/local: only the staged kernex.pc may be found.
SYSTEM_PC_DIRS = ["/usr/lib/x86_64-linux-gnu/pkgconfig", "/usr/lib/pkgconfig", "/usr/share/pkgconfig"]


def in_destdir(destdir, path):
    return os.path.join(destdir, os.path.relpath(path, "/"))


class embed_test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        (cls.meson, cls.source, cls.build, prefix, libdir, bindir, datadir,
         includedir) = sys.argv[1:9]
        cls.prefix = prefix
        cls.libdir = os.path.join(prefix, libdir)
        cls.bindir = os.path.join(prefix, bindir)
        cls.datadir = os.path.join(prefix, datadir)
        cls.includedir = os.path.join(prefix, includedir)
        cls.root = tempfile.mkdtemp(prefix="kernex-embed-")
        cls.stage = os.path.join(cls.root, "stage")
        done = subprocess.run(
            [cls.meson, "install", "-C", cls.build, "--destdir", cls.stage, "--no-rebuild", "--quiet"],
            capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            shutil.rmtree(cls.root, ignore_errors=True)
            raise AssertionError(f"meson install failed:\n{done.stdout}\n{done.stderr}")
        cls.staged_libdir = in_destdir(cls.stage, cls.libdir)
        # The staged kernex.pc, its prefix moved to where the tree was staged
        # (what a package manager's relocation or --define-prefix does).
        cls.pc_dir = os.path.join(cls.root, "pkgconfig")
        os.makedirs(cls.pc_dir)
        with open(os.path.join(cls.staged_libdir, "pkgconfig", "kernex.pc"), encoding="utf-8") as f:
            cls.pc_text = f.read()
        staged_prefix = in_destdir(cls.stage, prefix)
        with open(os.path.join(cls.pc_dir, "kernex.pc"), "w", encoding="utf-8") as f:
            f.write("".join(f"prefix={staged_prefix}\n" if line.startswith("prefix=") else line
                            for line in cls.pc_text.splitlines(keepends=True)))
        cls.env = dict(os.environ)
        cls.env["PKG_CONFIG_LIBDIR"] = os.pathsep.join([cls.pc_dir] + SYSTEM_PC_DIRS)
        cls.env.pop("PKG_CONFIG_PATH", None)
        cls.env["LD_LIBRARY_PATH"] = cls.staged_libdir
        cls.env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
        cls.env["JUPYTER_DATA_DIR"] = os.path.join(cls.root, "jupyter-data")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def run_ok(self, argv, cwd=None, timeout=600):
        done = subprocess.run(argv, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout)
        self.assertEqual(done.returncode, 0, f"{argv}:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def test_library_has_a_version_and_soname(self):
        lib = os.path.join(self.staged_libdir, "libkernex.so")
        self.assertEqual(os.readlink(lib), "libkernex.so.0")
        self.assertTrue(os.readlink(lib + ".0").startswith("libkernex.so.0."))
        real = os.path.realpath(lib)
        dynamic = self.run_ok(["objdump", "-p", real])
        self.assertIn("SONAME               libkernex.so.0", dynamic)
        needed = [line.split()[1] for line in dynamic.splitlines() if line.strip().startswith("NEEDED")]
        self.assertFalse([n for n in needed if n.startswith(("libzmq", "libssl", "libcrypto"))], needed)
        self.assertTrue(os.path.isfile(os.path.join(self.staged_libdir, "libkernex.a")))
        stripped = os.path.join(self.root, "libkernex-stripped.so")
        shutil.copy(real, stripped)
        self.run_ok(["strip", "--strip-unneeded", stripped])
        print(f"\nlibkernex: {os.path.getsize(real) / 1e6:.1f} MB as installed, "
              f"{os.path.getsize(stripped) / 1e6:.1f} MB stripped (meson install --strip)")

    def test_pc_file_requires_json_and_keeps_the_rest_private(self):
        fields = dict(line.split(": ", 1) for line in self.pc_text.splitlines() if ": " in line)
        self.assertEqual(fields["Requires"].split(), ["nlohmann_json", ">=", "3.9"])
        self.assertNotIn("Requires.private", fields)
        self.assertEqual(fields["Libs"], "-L${libdir} -lkernex")
        # libzmq, libssl and libcrypto are loaded when first used (src/dlopen), not linked.
        self.assertEqual(fields["Libs.private"], "-pthread")
        flags = self.run_ok(["pkg-config", "--cflags", "--libs", "kernex"])
        self.assertIn("-I" + in_destdir(self.stage, self.includedir), flags)
        self.assertIn("-L" + self.staged_libdir, flags)

    def test_headers_programs_and_kernelspec_are_installed(self):
        for header in ("kernel_manager.hpp", "kernel_client.hpp", "executor.hpp", "error.hpp"):
            self.assertTrue(os.path.isfile(os.path.join(in_destdir(self.stage, self.includedir), "kernex", header)))
        for program in ("kernex", "kernex-bash"):
            self.assertTrue(os.access(os.path.join(in_destdir(self.stage, self.bindir), program), os.X_OK))
        spec = os.path.join(in_destdir(self.stage, self.datadir), "jupyter", "kernels", "kernex-bash", "kernel.json")
        with open(spec, encoding="utf-8") as f:
            self.assertEqual(json.load(f)["argv"][0], os.path.join(self.bindir, "kernex-bash"))

    def check_example(self, program):
        # The staged library, not one from the build tree or the system.
        linked = self.run_ok(["ldd", program])
        kernex_line = [line for line in linked.splitlines() if "libkernex.so.0" in line]
        self.assertEqual(len(kernex_line), 1, linked)
        self.assertIn(self.staged_libdir + "/libkernex.so.0", kernex_line[0])
        out = self.run_ok([program], cwd=self.root, timeout=180)
        self.assertIn("ok: two cells share a variable: x + 1 = 42", out)
        self.assertIn("ok: on_output saw the three lines", out)
        self.assertIn("ok: the bash block printed: bash says 42", out)
        self.assertIn("embed: all checks passed", out)

    def test_meson_project_builds_and_runs_against_the_staged_tree(self):
        build = os.path.join(self.root, "meson-example")
        self.run_ok([self.meson, "setup", build, os.path.join(self.source, "examples", "embed")])
        self.run_ok([self.meson, "compile", "-C", build])
        self.check_example(os.path.join(build, "embed"))

    def test_cmake_project_builds_and_runs_against_the_staged_tree(self):
        build = os.path.join(self.root, "cmake-example")
        self.run_ok(["cmake", "-S", os.path.join(self.source, "examples", "embed"), "-B", build])
        self.run_ok(["cmake", "--build", build])
        self.check_example(os.path.join(build, "embed"))

    def test_meson_subproject_gives_dependency_kernex(self):
        project = os.path.join(self.root, "subproject-example")
        os.makedirs(os.path.join(project, "subprojects"))
        for name in ("meson.build", "embed.cpp"):
            shutil.copy(os.path.join(self.source, "examples", "embed", name), project)
        os.symlink(self.source, os.path.join(project, "subprojects", "kernex"))
        # Configure only: kernex found as a subproject, not through pkg-config.
        env = dict(self.env, PKG_CONFIG_LIBDIR=os.pathsep.join(SYSTEM_PC_DIRS))
        done = subprocess.run([self.meson, "setup", os.path.join(project, "build"), project],
                              env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("Dependency kernex found: YES 0.1.0 (overridden)", done.stdout)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)

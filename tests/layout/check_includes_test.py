#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Self-test of check_includes.py: a tiny fake tree in a temp dir, clean, then with one violation
# of each kind, each of which must be reported (and only it).
import sys
import tempfile
import unittest
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_includes  # noqa: E402

CLEAN = {
    "include/tcptrack/abi.h": "#include <linux/types.h>\n",
    "bpf/lib/maps.h": '#include "vmlinux.h"\n#include "tcptrack/abi.h"\n',
    "bpf/prog.bpf.c": '#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n#include "lib/maps.h"\n',
    "src/sys/fd.hpp": "#pragma once\n",
    "src/datapath/collector.hpp": '#include "sys/fd.hpp"\n#include "tcptrack/abi.h"\n',
    "src/datapath/collector.cpp": '#include "datapath/collector.hpp"\n'
                                  '#include "tcptrack/abi.h"\n#include "tcptrack.skel.h"\n',
    "src/report/model.hpp": '#include "datapath/collector.hpp"\n',
    "src/app/main.cpp": '#include "report/model.hpp"\n#include "tcptrack.skel.h"\n'
                        '#include <vector>\n',
}


class CheckIncludesTest(unittest.TestCase):
    def run_check(self, extra):
        with tempfile.TemporaryDirectory() as d:
            for rel, text in {**CLEAN, **extra}.items():
                (Path(d) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(d) / rel).write_text(text)
            return check_includes.check(d)

    def assert_one(self, extra, *fragments):
        errors = self.run_check(extra)
        self.assertEqual(len(errors), 1, errors)
        for f in fragments:
            self.assertIn(f, errors[0])

    def test_clean_tree_passes(self):
        self.assertEqual(self.run_check({}), [])

    def test_lower_room_includes_higher(self):
        self.assert_one({"src/datapath/x.cpp": '#include "sys/fd.hpp"\n'
                                               '#include "report/model.hpp"\n'},
                        "src/datapath/x.cpp:2: datapath includes report/model.hpp "
                        "(report is above datapath)")

    def test_missing_file(self):
        self.assert_one({"src/sys/y.cpp": '#include "sys/nope.hpp"\n'},
                        "src/sys/y.cpp:1:", "sys/nope.hpp", "not a file")

    def test_skeleton_below_datapath(self):
        self.assert_one({"src/attach/a.cpp": '#include "tcptrack.skel.h"\n'},
                        "src/attach/a.cpp:1: attach includes tcptrack.skel.h")

    def test_bpf_includes_src(self):
        self.assert_one({"bpf/bad.h": '#include "sys/fd.hpp"\n'},
                        "bpf/bad.h:1: bpf/ includes src/sys/fd.hpp")

    def test_shared_abi_includes_src(self):
        self.assert_one({"include/tcptrack/bad.h": '#include "../../src/sys/fd.hpp"\n'},
                        "include/tcptrack/bad.h:1: include/ includes src/sys/fd.hpp")

    def test_src_includes_bpf(self):
        self.assert_one({"src/datapath/m.cpp": '#include "lib/maps.h"\n'},
                        "src/datapath/m.cpp:1: datapath includes bpf/lib/maps.h")

    def test_file_directly_under_src(self):
        self.assert_one({"src/loose.cpp": "\n"}, "src/loose.cpp: directly under src/")

    def test_unknown_room(self):
        self.assert_one({"src/misc/z.hpp": "\n"}, "src/misc/z.hpp: room 'misc' is not in the known")

    def test_header_cycle(self):
        self.assert_one({"src/report/a.hpp": '#include "report/b.hpp"\n',
                         "src/report/b.hpp": '#include "report/a.hpp"\n'},
                        "include cycle:", "src/report/a", "src/report/b")

    def test_cycle_through_implementation(self):
        self.assert_one({"src/report/a.hpp": '#include "report/b.hpp"\n',
                         "src/report/b.hpp": "\n",
                         "src/report/b.cpp": '#include "report/b.hpp"\n#include "report/a.hpp"\n'},
                        "include cycle:", "src/report/a", "src/report/b")


if __name__ == "__main__":
    unittest.main()

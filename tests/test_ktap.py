"""KTAP parsing of guest output as it arrives on the console."""

from __future__ import annotations

from pvkit import ktap

LINES = [
    "(XEN) *** Serial input to DOM0 (type 'CTRL-a' three times to switch input)",
    "KTAP version 1",
    "# Subtest: smoke.dom0",
    "1..3",
    "# xen_version 4.17",
    "ok 1 dom0_is_control_domain",
    "[domU] KTAP version 1",
    "[domU] # Subtest: smoke.domU",
    "[domU] 1..2",
    "[domU] # metric: iperf3_tx 812.5 Mbit/s",
    "[domU] ok 1 iperf3_throughput",
    "[domU] # guest_type HVM",
    "[domU] not ok 2 guest_type_is_pv",
    "some kernel message",
    "ok 2 domU_create # SKIP not needed",
    "ok 3 domU_destroy",
]


def test_split_and_parse() -> None:
    docs = ktap.parse_console(LINES, "xen")
    dom0, domu = docs["dom0"], docs["domU"]
    assert dom0.plan == 3 and dom0.complete and dom0.passed
    assert [c.status for c in dom0.cases] == ["ok", "skip", "ok"]
    assert dom0.cases[0].diagnostics == ["xen_version 4.17"]
    assert dom0.cases[1].reason == "not needed"
    assert domu.cases[0].metrics == {"iperf3_tx": (812.5, "Mbit/s")}
    assert domu.cases[1].status == "not ok" and domu.cases[1].diagnostics == ["guest_type HVM"]
    assert not domu.passed


def test_incomplete_and_misnumbered() -> None:
    doc = ktap.parse("dom0", ["KTAP version 1", "1..3", "ok 1 a", "ok 3 c"])
    assert doc is not None
    assert not doc.complete
    assert doc.errors == ["test 'c' numbered 3, expected 2"]
    assert not doc.passed


def test_missing_plan_and_no_document() -> None:
    doc = ktap.parse("dom0", ["KTAP version 1", "ok 1 a"])
    assert doc is not None and doc.errors == ["no test plan (1..N) line"]
    assert ktap.parse("dom0", ["hello", "ok 1 not ktap"]) is None


def test_native_lines_are_domU() -> None:
    docs = ktap.parse_console(["KTAP version 1", "1..1", "ok 1 x"], "native")
    assert list(docs) == ["domU"] and docs["domU"].passed


def test_nested_subtests_are_ignored_at_top_level() -> None:
    doc = ktap.parse("domU", ["KTAP version 1", "1..1", "    KTAP version 1", "    1..1",
                              "    ok 1 inner", "ok 1 outer"])
    assert doc is not None and [c.name for c in doc.cases] == ["outer"]


def test_malformed_metric_is_a_diagnostic_not_a_crash() -> None:
    doc = ktap.parse("domU", ["KTAP version 1", "1..1", "# metric: x 1.2.3 MB",
                              "# metric: y -4.5e-3 s", "# metric: z 7", "# metric: w 1e", "ok 1 t"])
    assert doc is not None
    case = doc.cases[0]
    assert case.metrics == {"y": (-4.5e-3, "s"), "z": (7.0, "")}
    assert case.diagnostics == ["metric: x 1.2.3 MB", "metric: w 1e"]

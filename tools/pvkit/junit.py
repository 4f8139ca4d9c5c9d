"""JUnit XML for CI: one testsuite per place a KTAP document came from, plus the boot."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any


def to_xml(result: dict[str, Any]) -> str:
    """`result` is a run's results.json content."""
    scenario = result["scenario"]
    root = ET.Element("testsuites", name=f"pvkit.{scenario}")
    boot = ET.SubElement(root, "testsuite", name=f"{scenario}.boot", tests="1",
                         failures="0" if result["boot"]["status"] == "PASS" else "1")
    case = ET.SubElement(boot, "testcase", classname=f"{scenario}.boot", name="console",
                         time=str(result["wall_s"]))
    if result["boot"]["status"] != "PASS":
        fail = ET.SubElement(case, "failure", message=result["boot"]["reason"])
        fail.text = "\n".join(result["boot"].get("tail", []))
    for source, doc in result["ktap"].items():
        cases = doc["cases"]
        failures = sum(1 for c in cases if c["status"] == "not ok")
        skipped = sum(1 for c in cases if c["status"] == "skip")
        missing = (doc["plan"] or 0) - len(cases)
        suite = ET.SubElement(root, "testsuite", name=f"{scenario}.{source}",
                              tests=str(len(cases) + max(missing, 0)),
                              failures=str(failures + max(missing, 0)), skipped=str(skipped))
        for c in cases:
            tc = ET.SubElement(suite, "testcase", classname=f"{scenario}.{source}",
                               name=c["name"])
            if c["status"] == "not ok":
                f = ET.SubElement(tc, "failure", message=f"{c['name']} failed")
                f.text = "\n".join(c["diagnostics"])
            elif c["status"] == "skip":
                ET.SubElement(tc, "skipped", message=c.get("reason", ""))
            if c.get("metrics"):
                props = ET.SubElement(tc, "properties")
                for name, (value, unit) in c["metrics"].items():
                    ET.SubElement(props, "property", name=name, value=f"{value} {unit}".strip())
        for n in range(max(missing, 0)):
            tc = ET.SubElement(suite, "testcase", classname=f"{scenario}.{source}",
                               name=f"missing-{len(cases) + n + 1}")
            ET.SubElement(tc, "failure", message="test never reported (guest stopped early)")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"

"""The pvstat generator's header parser and op classification, on two header layouts."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import linux_tree

from pvkit.errors import PvkitError
from pvkit.gen import pvstat

FIXTURE = Path(__file__).parent / "data" / "pvstat" / "paravirt_types-5.10-layout.h"


def ops_by_path(text: str) -> dict[str, pvstat.Op]:
    return {op.path: op for op in pvstat.parse(text).ops}


def test_param_types() -> None:
    assert pvstat.param_type("const struct desc_ptr *") == "const struct desc_ptr *"
    assert pvstat.param_type("unsigned entries") == "unsigned int"
    assert pvstat.param_type("unsigned long") == "unsigned long"
    assert pvstat.param_type(" struct desc_struct *") == "struct desc_struct *"
    assert pvstat.param_type("pgd_t *pgd") == "pgd_t *"
    assert pvstat.param_type("pte_t pteval") == "pte_t"
    assert pvstat.param_type("const gate_desc *gate") == "const gate_desc *"
    assert pvstat.param_type("u8 *ptr") == "u8 *"
    assert pvstat.param_type("struct mm_struct") == "struct mm_struct"


def test_older_layout() -> None:
    parsed = pvstat.parse(FIXTURE.read_text())
    assert parsed.groups == ["init", "time", "cpu", "irq", "mmu", "lock"]
    ops = {op.path: op for op in parsed.ops}
    assert ops["init.patch"].params == ("u8", "void *", "unsigned long", "unsigned int")
    assert ops["init.patch"].ret == "unsigned int"
    assert ops["time.steal_clock"].ret == "unsigned long long"
    assert ops["cpu.write_gdt_entry"].signature("w") == (
        "void w(struct desc_struct *a0, int a1, const void *a2, int a3)")
    assert ops["cpu.io_delay"].cond == ""
    assert ops["cpu.read_cr0"].cond == "defined(CONFIG_PARAVIRT_XXL)"
    assert ops["mmu.set_pgd"].cond == "defined(CONFIG_PARAVIRT_XXL) && (CONFIG_PGTABLE_LEVELS >= 5)"
    assert ops["mmu.set_p4d_only"].cond == (
        "defined(CONFIG_PARAVIRT_XXL) && !(CONFIG_PGTABLE_LEVELS >= 5)")
    assert ops["mmu.lazy_mode.flush"].cond == "defined(CONFIG_PARAVIRT_XXL)"
    assert ops["mmu.set_fixmap"].params == ("unsigned int", "phys_addr_t", "pgprot_t")
    long = ops["mmu.ptep_modify_prot_start"].definition("static notrace ", "pvstat_" + "x" * 40)
    assert all(len(line.expandtabs()) <= 100 for line in long.splitlines())
    assert long.count("\n") == 1 and long.endswith("pte_t *a2)")
    assert ops["mmu.ptep_modify_prot_start"].ret == "pte_t"
    assert ops["irq.restore_fl"].callee_save
    wrapped, skipped = pvstat.classify(parsed)
    names = {op.path for op in wrapped}
    reasons = dict(skipped)
    assert "mmu.flush_tlb_others" in names and "lock.kick" in names
    for path in ("cpu.iret", "cpu.usergs_sysret64", "cpu.swapgs", "init.patch",
                 "time.sched_clock", "mmu.write_cr2", "irq.halt"):
        assert path in reasons and path not in names
    assert reasons["irq.save_fl"] == pvstat.CALLEE_SAVE
    assert "time.steal_clock" in names


@pytest.mark.real
def test_linux_6_1_layout() -> None:
    header = linux_tree() / "arch/x86/include/asm/paravirt_types.h"
    parsed = pvstat.parse(header.read_text())
    assert parsed.groups == ["cpu", "irq", "mmu", "lock"]
    wrapped, skipped = pvstat.classify(parsed)
    names = {op.path for op in wrapped}
    assert {"mmu.set_pte", "mmu.flush_tlb_multi", "cpu.load_sp0", "mmu.lazy_mode.enter"} <= names
    assert not parsed.skipped  # every declaration was understood
    assert len(wrapped) > 50 and len(skipped) >= 15


def test_not_a_paravirt_header() -> None:
    with pytest.raises(PvkitError, match="no struct paravirt_patch_template"):
        pvstat.parse("struct foo { int x; };\n")

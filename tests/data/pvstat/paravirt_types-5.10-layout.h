/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Test fixture for pvkit's pvstat generator, written for pvkit: the *layout* of
 * arch/x86/include/asm/paravirt_types.h as it was around Linux 5.10 (init and time op
 * groups, restore_fl, iret/usergs_sysret64/swapgs, flush_tlb_others), reduced to the
 * struct declarations the generator reads. Not a copy of the kernel header.
 */
#ifndef FIXTURE_PARAVIRT_TYPES_H
#define FIXTURE_PARAVIRT_TYPES_H

struct paravirt_callee_save {
	void *func;
};

struct pv_init_ops {
	unsigned (*patch)(u8 type, void *insn_buff,
			  unsigned long addr, unsigned len);
} __no_randomize_layout;

#ifdef CONFIG_PARAVIRT_XXL
struct pv_lazy_ops {
	void (*enter)(void);
	void (*leave)(void);
	void (*flush)(void);
} __no_randomize_layout;
#endif

struct pv_time_ops {
	unsigned long long (*sched_clock)(void);
	unsigned long long (*steal_clock)(int cpu);
} __no_randomize_layout;

struct pv_cpu_ops {
	void (*io_delay)(void);
#ifdef CONFIG_PARAVIRT_XXL
	unsigned long (*read_cr0)(void);
	void (*write_cr0)(unsigned long);
	void (*load_gdt)(const struct desc_ptr *);
	void (*write_gdt_entry)(struct desc_struct *,
				int entrynum, const void *desc, int size);
	void (*cpuid)(unsigned int *eax, unsigned int *ebx,
		      unsigned int *ecx, unsigned int *edx);
	u64 (*read_msr_safe)(unsigned int msr, int *err);
	void (*usergs_sysret64)(void);
	void (*iret)(void);
	void (*swapgs)(void);
	void (*start_context_switch)(struct task_struct *prev);
#endif
} __no_randomize_layout;

struct pv_irq_ops {
#ifdef CONFIG_PARAVIRT_XXL
	struct paravirt_callee_save save_fl;
	struct paravirt_callee_save restore_fl;
	struct paravirt_callee_save irq_disable;
	struct paravirt_callee_save irq_enable;
	void (*safe_halt)(void);
	void (*halt)(void);
#endif
} __no_randomize_layout;

struct pv_mmu_ops {
	void (*flush_tlb_user)(void);
	void (*flush_tlb_others)(const struct cpumask *cpus,
				 const struct flush_tlb_info *info);
	void (*exit_mmap)(struct mm_struct *mm);
#ifdef CONFIG_PARAVIRT_XXL
	struct paravirt_callee_save read_cr2;
	void (*write_cr2)(unsigned long);
	int  (*pgd_alloc)(struct mm_struct *mm);
	void (*pgd_free)(struct mm_struct *mm, pgd_t *pgd);
	void (*set_pte)(pte_t *ptep, pte_t pteval);
	pte_t (*ptep_modify_prot_start)(struct vm_area_struct *vma, unsigned long addr,
					pte_t *ptep);
	struct paravirt_callee_save pte_val;
#if CONFIG_PGTABLE_LEVELS >= 5
	void (*set_pgd)(pgd_t *pgdp, pgd_t pgdval);
#else
	void (*set_p4d_only)(p4d_t *p4dp, p4d_t p4dval);
#endif
	struct pv_lazy_ops lazy_mode;
	void (*set_fixmap)(unsigned /* enum fixed_addresses */ idx,
			   phys_addr_t phys, pgprot_t flags);
#endif
} __no_randomize_layout;

struct pv_lock_ops {
	void (*queued_spin_lock_slowpath)(struct qspinlock *lock, u32 val);
	struct paravirt_callee_save queued_spin_unlock;
	void (*wait)(u8 *ptr, u8 val);
	void (*kick)(int cpu);
} __no_randomize_layout;

struct paravirt_patch_template {
	struct pv_init_ops	init;
	struct pv_time_ops	time;
	struct pv_cpu_ops	cpu;
	struct pv_irq_ops	irq;
	struct pv_mmu_ops	mmu;
	struct pv_lock_ops	lock;
} __no_randomize_layout;

#endif

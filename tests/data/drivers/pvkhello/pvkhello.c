// SPDX-License-Identifier: GPL-2.0
/*
 * pvkhello.c - the smallest module pvkit's driver build can build (a test fixture).
 */

#include <linux/module.h>

static int __init pvkhello_init(void)
{
	pr_info("pvkhello: loaded\n");
	return 0;
}

static void __exit pvkhello_exit(void)
{
	pr_info("pvkhello: unloaded\n");
}

module_init(pvkhello_init);
module_exit(pvkhello_exit);
MODULE_DESCRIPTION("pvkit driver build test fixture");
MODULE_LICENSE("GPL");

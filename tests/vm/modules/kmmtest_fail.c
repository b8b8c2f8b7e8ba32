// SPDX-License-Identifier: GPL-2.0
/*
 * A driver whose probe finds nothing: init returns -ENODEV, so finit_module
 * fails and the agent must roll back to the in-tree modules.
 */
#include <linux/module.h>

static int __init kmmtest_fail_init(void)
{
	pr_info("kmmtest_fail: refusing to load (ENODEV), as intended\n");
	return -ENODEV;
}

module_init(kmmtest_fail_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmm-day1 test: init fails with ENODEV");
MODULE_VERSION("kmm-day1-test");

// SPDX-License-Identifier: GPL-2.0
/*
 * A driver for a PCI device no QEMU guest has (vendor 0xabcd), as far as modules.alias
 * and the agent's hardware gate can tell: it only declares the PCI alias
 * (what MODULE_DEVICE_TABLE would write) and drives nothing.
 */
#include <linux/module.h>

static int __init kmmtest_nodev_init(void)
{
	pr_info("kmmtest_nodev: loaded\n");
	return 0;
}

static void __exit kmmtest_nodev_exit(void)
{
}

module_init(kmmtest_nodev_init);
module_exit(kmmtest_nodev_exit);
MODULE_ALIAS("pci:v0000ABCDd0000EF01sv*sd*bc*sc*i*");
MODULE_LICENSE("GPL");
MODULE_VERSION("kmm-day1-test");

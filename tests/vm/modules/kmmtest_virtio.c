// SPDX-License-Identifier: GPL-2.0
/*
 * A driver for QEMU's virtio-net PCI device (1af4:1000), as far as modules.alias
 * and the agent's hardware gate can tell: it only declares the PCI alias
 * (what MODULE_DEVICE_TABLE would write) and drives nothing.
 */
#include <linux/module.h>

static int __init kmmtest_virtio_init(void)
{
	pr_info("kmmtest_virtio: loaded\n");
	return 0;
}

static void __exit kmmtest_virtio_exit(void)
{
}

module_init(kmmtest_virtio_init);
module_exit(kmmtest_virtio_exit);
MODULE_ALIAS("pci:v00001AF4d00001000sv*sd*bc*sc*i*");
MODULE_LICENSE("GPL");
MODULE_VERSION("kmm-day1-test");

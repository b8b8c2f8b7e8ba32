// SPDX-License-Identifier: GPL-2.0
/*
 * A driver that takes the kernel down from its init, as a broken out-of-tree
 * driver can: the crash-loop guard's test (replace-crash-loop). With panic=1
 * the guest reboots, and replace runs again on the next boot.
 */
#include <linux/module.h>
#include <linux/panic.h>

static int __init kmmtest_panic_init(void)
{
	panic("kmmtest_panic: module_init panics, as intended");
	return 0;
}

module_init(kmmtest_panic_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmm-day1 test: init panics the kernel");
MODULE_VERSION("kmm-day1-test");

// SPDX-License-Identifier: GPL-2.0
/*
 * A driver whose init never returns (a probe waiting forever on hardware
 * that never answers): the boot stalls inside finit_module until a watchdog
 * resets the machine (replace-hang).
 */
#include <linux/delay.h>
#include <linux/module.h>

static int __init kmmtest_hang_init(void)
{
	pr_info("kmmtest_hang: init never returns, as intended\n");
	for (;;)
		msleep_interruptible(1000);
	return 0;
}

module_init(kmmtest_hang_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmm-day1 test: init never returns");
MODULE_VERSION("kmm-day1-test");

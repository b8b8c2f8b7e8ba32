// SPDX-License-Identifier: GPL-2.0
/*
 * Parameters of each kind the agent passes (int, string, bool), readable in
 * /sys/module/kmmtest_params/parameters/ so a test sees what finit_module got.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>

static int count = 1;
module_param(count, int, 0444);
MODULE_PARM_DESC(count, "an integer");

static char *label = "unset";
module_param(label, charp, 0444);
MODULE_PARM_DESC(label, "a string");

static bool enabled;
module_param(enabled, bool, 0444);
MODULE_PARM_DESC(enabled, "a boolean");

static int __init kmmtest_params_init(void)
{
	pr_info("kmmtest_params: count=%d label=%s enabled=%d\n", count, label, enabled);
	return 0;
}

static void __exit kmmtest_params_exit(void)
{
}

module_init(kmmtest_params_init);
module_exit(kmmtest_params_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmm-day1 test: module parameters");
MODULE_VERSION("kmm-day1-test");

// SPDX-License-Identifier: GPL-2.0
/*
 * Uses kmmtest_dep's symbol: loading it before kmmtest_dep fails with
 * "Unknown symbol" (ENOENT). The value it got is shown as a read-only
 * parameter so a test can see the call went through.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>

#include "kmmtest_dep.h"

static int dep_value;
module_param(dep_value, int, 0444);
MODULE_PARM_DESC(dep_value, "what kmmtest_dep_value() returned at load");

static int __init kmmtest_user_init(void)
{
	dep_value = kmmtest_dep_value();
	pr_info("kmmtest_user: kmmtest_dep_value() = %d\n", dep_value);
	return 0;
}

static void __exit kmmtest_user_exit(void)
{
}

module_init(kmmtest_user_init);
module_exit(kmmtest_user_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmm-day1 test: depends on kmmtest_dep");
MODULE_VERSION("kmm-day1-test");

// SPDX-License-Identifier: GPL-2.0
/*
 * Exports a symbol that kmmtest_user needs, so depmod records a dependency
 * (kmmtest_user.ko: kmmtest_dep.ko) and load order matters.
 */
#include <linux/module.h>

#include "kmmtest_dep.h"

int kmmtest_dep_value(void)
{
	return 42;
}
EXPORT_SYMBOL_GPL(kmmtest_dep_value);

static int __init kmmtest_dep_init(void)
{
	return 0;
}

static void __exit kmmtest_dep_exit(void)
{
}

module_init(kmmtest_dep_init);
module_exit(kmmtest_dep_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmm-day1 test: exports a symbol");
MODULE_VERSION("kmm-day1-test");

// SPDX-License-Identifier: GPL-2.0
/*
 * Uses crc16(), exported by the in-tree crc16 module: the driver image does
 * not carry crc16, so its modules.dep cannot list it, but modpost records
 * `depends=crc16` in this module's .modinfo. Whoever loads this module must
 * load crc16 from the host's own tree first. The checksum of "kmm-day1" is
 * published so a test can check the call went through.
 */
#include <linux/crc16.h>
#include <linux/module.h>
#include <linux/moduleparam.h>

static int crc;
module_param(crc, int, 0444);
MODULE_PARM_DESC(crc, "crc16(0, \"kmm-day1\") computed by the in-tree crc16 at load");

static int __init kmmtest_hostdep_init(void)
{
	static const u8 data[] = "kmm-day1";

	crc = crc16(0, data, sizeof(data) - 1);
	pr_info("kmmtest_hostdep: crc16 = %d\n", crc);
	return 0;
}

static void __exit kmmtest_hostdep_exit(void)
{
}

module_init(kmmtest_hostdep_init);
module_exit(kmmtest_hostdep_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmm-day1 test: depends on an in-tree module the image lacks");
MODULE_VERSION("kmm-day1-test");

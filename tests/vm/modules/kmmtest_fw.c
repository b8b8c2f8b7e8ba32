// SPDX-License-Identifier: GPL-2.0
/*
 * Requests firmware "kmmtest/kmmtest_fw.bin" at init and refuses to load when
 * it is missing, like a real driver whose firmware lives in the driver image.
 * request_firmware() needs a device: a platform device is created for the
 * duration of the request. The first bytes of the file and its size are
 * published as read-only parameters, so a test compares them with the file
 * it shipped.
 */
#include <linux/firmware.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/platform_device.h>
#include <linux/string.h>

#define KMMTEST_FW_NAME "kmmtest/kmmtest_fw.bin"

static int fw_size = -1;
module_param(fw_size, int, 0444);
MODULE_PARM_DESC(fw_size, "size of the firmware file loaded at init");

static char fw_text[64];
module_param_string(fw_text, fw_text, sizeof(fw_text), 0444);
MODULE_PARM_DESC(fw_text, "first line of the firmware file");

static int __init kmmtest_fw_init(void)
{
	struct platform_device *pdev;
	const struct firmware *fw;
	size_t n;
	int ret;

	pdev = platform_device_register_simple("kmmtest_fw", PLATFORM_DEVID_NONE, NULL, 0);
	if (IS_ERR(pdev))
		return PTR_ERR(pdev);

	ret = request_firmware(&fw, KMMTEST_FW_NAME, &pdev->dev);
	if (ret) {
		pr_err("kmmtest_fw: firmware %s not found: %d\n", KMMTEST_FW_NAME, ret);
		platform_device_unregister(pdev);
		return ret;
	}
	fw_size = fw->size;
	n = min(fw->size, sizeof(fw_text) - 1);
	memcpy(fw_text, fw->data, n);
	fw_text[n] = '\0';
	/* Keep only the first line so sysfs shows a clean string. */
	fw_text[strcspn(fw_text, "\n")] = '\0';
	pr_info("kmmtest_fw: loaded %s (%d bytes): %s\n", KMMTEST_FW_NAME, fw_size, fw_text);
	release_firmware(fw);
	platform_device_unregister(pdev);
	return 0;
}

static void __exit kmmtest_fw_exit(void)
{
}

module_init(kmmtest_fw_init);
module_exit(kmmtest_fw_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmm-day1 test: needs a firmware file");
MODULE_VERSION("kmm-day1-test");
MODULE_FIRMWARE(KMMTEST_FW_NAME);

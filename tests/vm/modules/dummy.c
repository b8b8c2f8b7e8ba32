// SPDX-License-Identifier: GPL-2.0
/*
 * An out-of-tree stand-in for the in-tree `dummy` network driver: same module
 * name, so it can only load once the in-tree one is gone, and a
 * MODULE_VERSION the in-tree one lacks, so /sys/module/dummy/version tells
 * which of the two is loaded. It creates one device, dummy0, that drops
 * every packet.
 */
#include <linux/etherdevice.h>
#include <linux/module.h>
#include <linux/netdevice.h>

static struct net_device *kmmtest_dev;

static netdev_tx_t kmmtest_xmit(struct sk_buff *skb, struct net_device *dev)
{
	dev->stats.tx_packets++;
	dev->stats.tx_bytes += skb->len;
	dev_kfree_skb(skb);
	return NETDEV_TX_OK;
}

static const struct net_device_ops kmmtest_ops = {
	.ndo_start_xmit = kmmtest_xmit,
};

static void kmmtest_setup(struct net_device *dev)
{
	ether_setup(dev);
	dev->netdev_ops = &kmmtest_ops;
	dev->needs_free_netdev = true;
	dev->flags |= IFF_NOARP;
	eth_hw_addr_random(dev);
}

static int __init kmmtest_dummy_init(void)
{
	int ret;

	kmmtest_dev = alloc_netdev(0, "dummy%d", NET_NAME_ENUM, kmmtest_setup);
	if (!kmmtest_dev)
		return -ENOMEM;
	ret = register_netdev(kmmtest_dev);
	if (ret) {
		free_netdev(kmmtest_dev);
		return ret;
	}
	pr_info("dummy: out-of-tree kmm-day1-test build, %s registered\n", kmmtest_dev->name);
	return 0;
}

static void __exit kmmtest_dummy_exit(void)
{
	unregister_netdev(kmmtest_dev);
}

module_init(kmmtest_dummy_init);
module_exit(kmmtest_dummy_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmm-day1 test: out-of-tree replacement for the dummy net driver");
MODULE_VERSION("kmm-day1-test");

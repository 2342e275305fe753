// SPDX-License-Identifier: GPL-2.0
/*
 * The nested lab's Linux driver for the PCI device that a Lua script serves
 * through kvmc's binding (1234:beef, tests/lab/lab-pcidev.lua). Its probe
 * does what any real driver does: enables the device and bus mastering,
 * allocates two MSI-X vectors, requests vector 0, maps BAR 0, and asks the
 * device three times to raise vector 0 (a write of 0 at BAR 0 + 4). Each
 * interrupt that arrives is counted by Linux in /proc/interrupts under
 * "kvmc-lab-pcidev"; the probe waits for them and says how many came.
 */
#include <linux/delay.h>
#include <linux/interrupt.h>
#include <linux/module.h>
#include <linux/pci.h>

static atomic_t fired = ATOMIC_INIT(0);

static irqreturn_t on_vector0(int irq, void *data)
{
	atomic_inc(&fired);
	return IRQ_HANDLED;
}

static int kvmc_lab_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	void __iomem *regs;
	int err, i;

	err = pcim_enable_device(pdev);
	if (err)
		return err;
	pci_set_master(pdev);
	err = pci_alloc_irq_vectors(pdev, 2, 2, PCI_IRQ_MSIX);
	if (err < 0)
		return err;
	err = devm_request_irq(&pdev->dev, pci_irq_vector(pdev, 0), on_vector0, 0,
			       "kvmc-lab-pcidev", pdev);
	if (err)
		return err;
	regs = pcim_iomap(pdev, 0, 0);
	if (!regs)
		return -ENOMEM;
	for (i = 0; i < 3; i++) {
		iowrite32(0, regs + 4);
		msleep(50);
	}
	dev_info(&pdev->dev, "kvmc-lab-pcidev: bar0+8 reads %#x, %d of 3 MSI-X interrupts\n",
		 ioread32(regs + 8), atomic_read(&fired));
	return 0;
}

static const struct pci_device_id kvmc_lab_ids[] = {
	{ PCI_DEVICE(0x1234, 0xbeef) },
	{ }
};
MODULE_DEVICE_TABLE(pci, kvmc_lab_ids);

static struct pci_driver kvmc_lab_driver = {
	.name = "kvmc_lab_pcidev",
	.id_table = kvmc_lab_ids,
	.probe = kvmc_lab_probe,
};
module_pci_driver(kvmc_lab_driver);

MODULE_DESCRIPTION("kvmc nested lab: a driver for a PCI device written in Lua");
MODULE_LICENSE("GPL");

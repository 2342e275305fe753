// SPDX-License-Identifier: GPL-2.0
/*
 * The nested lab's Linux driver for the PCI device that a Lua script serves
 * through kvmc's binding (1234:beef, tests/lab/lab-pcidev.lua). Its probe
 * does what any real driver does: enables the device and bus mastering,
 * allocates two MSI-X vectors, requests vector 0, maps BAR 0, and asks the
 * device three times to raise vector 0 (a write of 0 at BAR 0 + 4). Each
 * interrupt that arrives is counted by Linux in /proc/interrupts under
 * "kvmc-lab-pcidev"; the probe waits for them and says how many came.
 *
 * A second driver, for QEMU's "edu" device (1234:11e8, MSI and no MSI-X)
 * passed through with VFIO, checks MSI: it allocates one MSI vector, reads
 * the device's identification register, and has the device raise its
 * interrupt three times (a write at BAR 0 + 0x60; the handler
 * acknowledges at 0x64), then says how many arrived.
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

static atomic_t edu_fired = ATOMIC_INIT(0);

static irqreturn_t on_edu(int irq, void *data)
{
	void __iomem *regs = data;

	iowrite32(ioread32(regs + 0x24), regs + 0x64);
	atomic_inc(&edu_fired);
	return IRQ_HANDLED;
}

static int kvmc_lab_edu_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	void __iomem *regs;
	int err, i;

	err = pcim_enable_device(pdev);
	if (err)
		return err;
	pci_set_master(pdev);
	regs = pcim_iomap(pdev, 0, 0);
	if (!regs)
		return -ENOMEM;
	err = pci_alloc_irq_vectors(pdev, 1, 1, PCI_IRQ_MSI);
	if (err < 0)
		return err;
	err = devm_request_irq(&pdev->dev, pci_irq_vector(pdev, 0), on_edu, 0,
			       "kvmc-lab-edu", regs);
	if (err)
		return err;
	for (i = 0; i < 3; i++) {
		iowrite32(1, regs + 0x60);
		msleep(50);
	}
	dev_info(&pdev->dev, "kvmc-lab-edu: ident %#x, %d of 3 MSI interrupts\n",
		 ioread32(regs), atomic_read(&edu_fired));
	return 0;
}

static const struct pci_device_id kvmc_lab_edu_ids[] = {
	{ PCI_DEVICE(0x1234, 0x11e8) },
	{ }
};

static struct pci_driver kvmc_lab_edu_driver = {
	.name = "kvmc_lab_edu",
	.id_table = kvmc_lab_edu_ids,
	.probe = kvmc_lab_edu_probe,
};

static const struct pci_device_id kvmc_lab_ids[] = {
	{ PCI_DEVICE(0x1234, 0xbeef) },
	{ }
};
MODULE_DEVICE_TABLE(pci, kvmc_lab_ids);
MODULE_DEVICE_TABLE(pci, kvmc_lab_edu_ids);

static struct pci_driver kvmc_lab_driver = {
	.name = "kvmc_lab_pcidev",
	.id_table = kvmc_lab_ids,
	.probe = kvmc_lab_probe,
};
static int __init kvmc_lab_init(void)
{
	int err = pci_register_driver(&kvmc_lab_driver);

	if (err)
		return err;
	err = pci_register_driver(&kvmc_lab_edu_driver);
	if (err)
		pci_unregister_driver(&kvmc_lab_driver);
	return err;
}

static void __exit kvmc_lab_exit(void)
{
	pci_unregister_driver(&kvmc_lab_edu_driver);
	pci_unregister_driver(&kvmc_lab_driver);
}

module_init(kvmc_lab_init);
module_exit(kvmc_lab_exit);

MODULE_DESCRIPTION("kvmc nested lab: a driver for a PCI device written in Lua");
MODULE_LICENSE("GPL");

/* SPDX-License-Identifier: MIT */
/* An NVMe controller emulated in the process, for the driver's tests only
 * (the nvme-emu test plugin; never installed). It is the driver's device
 * (dev.h): registers in memory, IOVA == the address, one eventfd per
 * interrupt vector. Commands run when their doorbell is written. A RAM
 * namespace (nsid 1) and faults the tests ask for by I/O command number. */
#ifndef NVME_EMU_H
#define NVME_EMU_H

#include "dev.h"
#include "hw.h"

#include <pthread.h>
#include <stdbool.h>

#define EMU_MAX_Q 17 /* the admin queue and up to 16 I/O queues */
#define EMU_MAX_AER 4
#define PAGE 4096u /* the host memory page PRPs point into */

struct emu_cfg {
	uint64_t bytes;
	uint32_t sector;
	unsigned grant; /* I/O queues the controller grants */
	unsigned mqes;	/* CAP.MQES (zero-based) */
	unsigned mdts;	/* 0: no limit */
	unsigned nvec;	/* interrupt vectors */
	bool vwc, dsm, rsv;
	bool wz;	  /* Write Zeroes (ONCS bit 3) */
	uint8_t dlfeat;	  /* Identify Namespace DLFEAT */
	bool sgl;	  /* SGLs for NVM commands (SGLS 01b) */
	bool sglonly;	  /* and PRPs refused on I/O commands */
	bool metadata;	  /* the namespace's LBA format carries 8 bytes of metadata */
	bool noready;	  /* CSTS.RDY never rises */
	bool rsvconflict; /* reads and writes end in a reservation conflict */
	/* Faults at the Nth I/O command (1-based; 0: never). */
	unsigned cfs_at;    /* controller fatal status; nothing completes */
	unsigned gone_at;   /* surprise removal: registers read all ones */
	unsigned drop_at;   /* that command never completes */
	unsigned badcid_at; /* a completion with a CID never issued comes first */
	unsigned resize_at; /* the namespace becomes resize_to bytes, with an AEN */
	uint64_t resize_to;
	unsigned aerfail;    /* the first N AERs complete with an error */
	uint16_t err_status; /* reads/writes touching err_lba fail with it */
	uint64_t err_lba;
};

struct emu_sq {
	uint64_t base;
	uint16_t size, head, tail, cqid;
	bool on;
};

struct emu_cq {
	uint64_t base;
	uint16_t size, head, tail, iv;
	uint8_t phase;
	bool ien, on;
};

struct emu {
	struct nvme_dev d;
	pthread_mutex_t lock;
	struct emu_cfg cfg;
	uint32_t cc, csts, aqa;
	uint64_t asq, acq;
	struct emu_sq sq[EMU_MAX_Q];
	struct emu_cq cq[EMU_MAX_Q];
	uint8_t *data; /* max(bytes, resize_to) */
	uint64_t nsze;
	unsigned shift;
	unsigned io_cmds;
	bool fatal, gone;
	uint16_t aer_cid[EMU_MAX_AER];
	unsigned naer;
	bool ns_changed, aen_due;
	/* One host's reservation state. */
	bool registered, holder, ptpl;
	uint64_t key;
	uint8_t rtype;
	uint32_t gen;
	int irq[8];
};

int emu_create(const struct emu_cfg *cfg, struct nvme_dev **out);

/* emu.c */
void emu_post(struct emu *e, uint16_t sqid, uint16_t cid, uint16_t status, uint32_t dw0);
void emu_resize(struct emu *e, uint64_t bytes);
/* emu_io.c, for emu.c: a transfer through PRPs; an NVM command, which returns
 * false when it must not complete. */
int emu_dma(uint64_t prp1, uint64_t prp2, void *buf, size_t len, bool to_dev);
bool emu_io(struct emu *e, uint16_t sqid, const struct nvme_sqe *c, uint16_t *st);

#endif

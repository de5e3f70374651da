/* SPDX-License-Identifier: MIT */
/* NVMe over PCIe as the driver and the test emulator see it: controller
 * registers, submission and completion entries, the Identify fields read, and
 * the status codes mapped to DC_E_* (docs/spec-strings.md, "nvme"). */
#ifndef NVME_HW_H
#define NVME_HW_H

#include <stdint.h>

/* Controller registers (BAR0). */
#define NVME_REG_CAP 0x00
#define NVME_REG_VS 0x08
#define NVME_REG_CC 0x14
#define NVME_REG_CSTS 0x1c
#define NVME_REG_AQA 0x24
#define NVME_REG_ASQ 0x28
#define NVME_REG_ACQ 0x30
#define NVME_REG_DBS 0x1000

#define NVME_CAP_MQES(c) ((uint32_t)((c)&0xffff))
#define NVME_CAP_TO(c) ((uint32_t)(((c) >> 24) & 0xff)) /* 500 ms units */
#define NVME_CAP_DSTRD(c) ((uint32_t)(((c) >> 32) & 0xf))
#define NVME_CAP_CSS_NVM(c) ((((c) >> 37) & 1) != 0)
#define NVME_CAP_MPSMIN(c) ((uint32_t)(((c) >> 48) & 0xf))

#define NVME_CC_EN 1u
#define NVME_CC_SHN_NORMAL (1u << 14)
#define NVME_CC_SHN_MASK (3u << 14)
#define NVME_CC_IOSQES(n) ((uint32_t)(n) << 16)
#define NVME_CC_IOCQES(n) ((uint32_t)(n) << 20)

#define NVME_CSTS_RDY 1u
#define NVME_CSTS_CFS 2u
#define NVME_CSTS_SHST_MASK (3u << 2)
#define NVME_CSTS_SHST_DONE (2u << 2)

/* Admin opcodes. */
#define NVME_ADM_DELETE_SQ 0x00
#define NVME_ADM_CREATE_SQ 0x01
#define NVME_ADM_GET_LOG 0x02
#define NVME_ADM_DELETE_CQ 0x04
#define NVME_ADM_CREATE_CQ 0x05
#define NVME_ADM_IDENTIFY 0x06
#define NVME_ADM_SET_FEATURES 0x09
#define NVME_ADM_AER 0x0c

#define NVME_FEAT_NUM_QUEUES 0x07
#define NVME_FEAT_ASYNC_EVENT 0x0b
#define NVME_LOG_CHANGED_NS 0x04
#define NVME_AER_TYPE_NOTICE 2

/* I/O opcodes. */
#define NVME_CMD_FLUSH 0x00
#define NVME_CMD_WRITE 0x01
#define NVME_CMD_READ 0x02
#define NVME_CMD_WRITE_ZEROES 0x08
#define NVME_CMD_DSM 0x09
#define NVME_CMD_RSV_REGISTER 0x0d
#define NVME_CMD_RSV_REPORT 0x0e
#define NVME_CMD_RSV_ACQUIRE 0x11
#define NVME_CMD_RSV_RELEASE 0x15

#define NVME_RW_FUA (1u << 30)
/* CDW0 PSDT (flags bits 7:6) 01b: the data pointer is an SGL descriptor;
 * byte 15 of a descriptor is its type (bits 7:4) and subtype (3:0). */
#define NVME_PSDT_SGL (1u << 6)
#define NVME_PSDT(flags) (((flags) >> 6) & 3u)
#define NVME_SGL_DATA_BLOCK 0x00
#define NVME_SGLS_SUPPORTED(s) (((s)&3u) != 0) /* 01b any, 10b dword-aligned */
#define NVME_DSM_AD (1u << 2)
#define NVME_WZ_DEAC (1u << 25) /* Write Zeroes may deallocate */

/* ONCS bits (Identify Controller). */
#define NVME_ONCS_DSM (1u << 2)
#define NVME_ONCS_WRITE_ZEROES (1u << 3)
#define NVME_ONCS_RESERVATIONS (1u << 5)

struct nvme_sqe {
	uint8_t opc;
	uint8_t flags;
	uint16_t cid;
	uint32_t nsid;
	uint64_t rsvd;
	uint64_t mptr;
	uint64_t prp1;
	uint64_t prp2;
	uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
} __attribute__((packed));

/* Not packed: every field is aligned already, and status is loaded atomically
 * through its address (clang refuses that on a packed member). */
struct nvme_cqe {
	uint32_t dw0;
	uint32_t dw1;
	uint16_t sqhd;
	uint16_t sqid;
	uint16_t cid;
	uint16_t status; /* bit 0: phase; bits 1-8 SC, 9-11 SCT, 15 DNR */
};

_Static_assert(sizeof(struct nvme_sqe) == 64, "SQE is 64 bytes");
_Static_assert(sizeof(struct nvme_cqe) == 16, "CQE is 16 bytes");

/* Status as (SCT << 8) | SC, without phase and DNR. */
#define NVME_STATUS(cqe_status) ((uint16_t)(((cqe_status) >> 1) & 0x7ff))
#define NVME_SC_SUCCESS 0x000
#define NVME_SC_INVALID_OPCODE 0x001
#define NVME_SC_INVALID_FIELD 0x002
#define NVME_SC_DATA_TRANSFER 0x004
#define NVME_SC_INTERNAL 0x006
#define NVME_SC_INVALID_NS 0x00b
#define NVME_SC_SGL_LENGTH 0x00f
#define NVME_SC_SGL_TYPE 0x011
#define NVME_SC_PREEMPT_ABORT 0x01b
#define NVME_SC_LBA_RANGE 0x080
#define NVME_SC_CAPACITY 0x081
#define NVME_SC_RSV_CONFLICT 0x083
#define NVME_SC_INVALID_QID 0x101
#define NVME_SC_INVALID_QSIZE 0x102
#define NVME_SC_AER_LIMIT 0x105
#define NVME_SC_WRITE_FAULT 0x280
#define NVME_SC_UNRECOVERED_READ 0x281
#define NVME_SC_GUARD 0x282
#define NVME_SC_APP_TAG 0x283
#define NVME_SC_REF_TAG 0x284

/* Identify Controller (CNS 1), the fields the driver reads. */
#define NVME_IDC_SN 4  /* 20 bytes */
#define NVME_IDC_MN 24 /* 40 bytes */
#define NVME_IDC_FR 64 /* 8 bytes */
#define NVME_IDC_MDTS 77
#define NVME_IDC_NN 516
#define NVME_IDC_ONCS 520
#define NVME_IDC_VWC 525
#define NVME_IDC_SGLS 536 /* 4 bytes */

/* Identify Namespace (CNS 0). */
#define NVME_IDN_NSZE 0
#define NVME_IDN_NSFEAT 24
#define NVME_IDN_NLBAF 25
#define NVME_IDN_FLBAS 26
#define NVME_IDN_RESCAP 31
#define NVME_IDN_DLFEAT 33
#define NVME_IDN_NPDG 68
#define NVME_IDN_LBAF 128 /* 4 bytes each: MS (16), LBADS (8), RP (2) */

/* DLFEAT: deallocated blocks read as zeroes (bits 2:0 = 1); Write Zeroes
 * honours its Deallocate bit (bit 3). */
#define NVME_DLFEAT_READ_ZERO(d) (((d)&7u) == 1)
#define NVME_DLFEAT_WZ_DEAC(d) (((d) >> 3) & 1u)

/* Reservation report header (extended, EDS=1) and registrant entries. */
#define NVME_RSV_HDR 64
#define NVME_RSV_ENTRY 64

#endif

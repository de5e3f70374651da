/* SPDX-License-Identifier: MIT */
/*
 * nvme-emu: the nvme driver over the emulated controller, for the tests only
 * (built in plugins/nvme/emu, never installed; a test puts this directory on
 * its plugin path). `nvme-emu:SIZE` with the nvme: options and the
 * controller's shape and faults (docs/spec-strings.md, "nvme").
 */
#include "drv.h"
#include "emu.h"

#include <string.h>

static const struct dc_option emu_options[] = {
	NVME_OPTIONS_COMMON,
	DC_OPTION_UINT("sector", "block size, 512 (default) or 4096"),
	DC_OPTION_UINT("grant", "I/O queues the controller grants (default 4)"),
	DC_OPTION_UINT("mqes", "CAP.MQES, zero-based (default 1023)"),
	DC_OPTION_UINT("mdts", "MDTS, 2^N pages per command (default 0: no limit)"),
	DC_OPTION_UINT("vectors", "interrupt vectors (default 4)"),
	DC_OPTION_FLAG("novwc", "no volatile write cache"),
	DC_OPTION_FLAG("nodsm", "no Dataset Management"),
	DC_OPTION_FLAG("norsv", "no reservations"),
	DC_OPTION_FLAG("wz", "Write Zeroes (ONCS bit 3)"),
	DC_OPTION_UINT("dlfeat", "Identify Namespace DLFEAT (default 0)"),
	DC_OPTION_FLAG("sgl", "SGLs for I/O commands (SGLS 01b)"),
	DC_OPTION_FLAG("sglonly", "SGLs, and PRPs refused on I/O commands"),
	DC_OPTION_FLAG("metadata", "8 bytes of metadata per block"),
	DC_OPTION_FLAG("noready", "CSTS.RDY never rises"),
	DC_OPTION_FLAG("rsvconflict", "reads and writes end in a reservation conflict"),
	DC_OPTION_UINT("cfs", "controller fatal status at the Nth I/O command"),
	DC_OPTION_UINT("gone", "surprise removal at the Nth I/O command"),
	DC_OPTION_UINT("drop", "the Nth I/O command never completes"),
	DC_OPTION_UINT("badcid", "a completion with a bad CID before the Nth"),
	DC_OPTION_UINT("aerfail", "the first N AERs fail"),
	DC_OPTION_UINT("resizeat", "resize the namespace at the Nth I/O command"),
	DC_OPTION_SIZE("resize", "the size resizeat= gives it (0: removed)"),
	DC_OPTION_UINT("errstatus", "status (SCT << 8 | SC) for I/O at errlba"),
	DC_OPTION_UINT("errlba", "the block errstatus= fails"),
	DC_OPTIONS_END,
};

static unsigned opt_u(const struct dc_open_args *a, const char *name, unsigned def)
{
	uint64_t v;

	return dc_opt_num(a, name, &v) ? (unsigned)v : def;
}

static int emu_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct emu_cfg cfg = {
		.sector = opt_u(a, "sector", 512),
		.grant = opt_u(a, "grant", 4),
		.mqes = opt_u(a, "mqes", 1023),
		.mdts = opt_u(a, "mdts", 0),
		.nvec = opt_u(a, "vectors", 4),
		.vwc = !dc_opt_flag(a, "novwc"),
		.dsm = !dc_opt_flag(a, "nodsm"),
		.rsv = !dc_opt_flag(a, "norsv"),
		.wz = dc_opt_flag(a, "wz"),
		.dlfeat = (uint8_t)opt_u(a, "dlfeat", 0),
		.sgl = dc_opt_flag(a, "sgl") || dc_opt_flag(a, "sglonly"),
		.sglonly = dc_opt_flag(a, "sglonly"),
		.metadata = dc_opt_flag(a, "metadata"),
		.noready = dc_opt_flag(a, "noready"),
		.rsvconflict = dc_opt_flag(a, "rsvconflict"),
		.cfs_at = opt_u(a, "cfs", 0),
		.gone_at = opt_u(a, "gone", 0),
		.drop_at = opt_u(a, "drop", 0),
		.badcid_at = opt_u(a, "badcid", 0),
		.aerfail = opt_u(a, "aerfail", 0),
		.resize_at = opt_u(a, "resizeat", 0),
		.err_status = (uint16_t)opt_u(a, "errstatus", 0),
	};
	struct nvme_dev *dev;
	uint64_t v;
	int rc;

	if (dc_parse_size(a->fields[0], &cfg.bytes) < 0 || cfg.bytes == 0)
		return dc_fail(-EINVAL, "'%s' is not a size", a->fields[0]);
	if (cfg.sector != 512 && cfg.sector != 4096)
		return dc_fail(-EINVAL, "sector=%u: 512 or 4096", cfg.sector);
	if (cfg.nvec < 1 || cfg.nvec > 8 || cfg.grant < 1 || cfg.grant >= EMU_MAX_Q)
		return dc_fail(-EINVAL, "vectors=1..8, grant=1..%u", EMU_MAX_Q - 1);
	if (dc_opt_num(a, "resize", &v))
		cfg.resize_to = v;
	if (dc_opt_num(a, "errlba", &v))
		cfg.err_lba = v;
	rc = emu_create(&cfg, &dev);
	if (rc)
		return rc;
	return nvme_drv_open(a, dev, inst, info);
}

NVME_DC_PLUGIN(emu_plugin, "nvme-emu",
	       "the nvme driver over an emulated controller, for tests",
	       DC_FORMS(DC_FORM("nvme-emu", 1, DC_CHILD_NONE, "nvme-emu:SIZE[;OPTIONS]",
				"the nvme driver over an emulated controller (tests only)",
				emu_options)),
	       emu_open);

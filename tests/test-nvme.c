/* SPDX-License-Identifier: MIT */
/* The nvme driver against the emulated controller (the nvme-emu test plugin,
 * plugins/nvme/emu): bring-up and its refusals, every command path, the
 * status mapping, every fault (none may hang: each wait has a deadline), the
 * three completion modes, and the conformance suite. The same driver code
 * is nvme.so's; only the device under dev.h differs (the VM test,
 * tests/test-nvme-vm.sh, runs it over VFIO). */
#include "conformance.h"
#include "harness.h"

#include <diskcore/plugin.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS 10000

static const char *desc(dc_disk *d, const char *key, struct h_desc *t)
{
	h_describe(d, "nvme-emu", t);
	return h_desc_get(t, key);
}

START_TEST(bringup_describe)
{
	dc_disk *d = h_open("nvme-emu:1M;queues=4;grant=2;depth=16", 0);
	struct h_desc t;
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, 2048);
	ck_assert_uint_eq(info.sector_size, 512);
	ck_assert_uint_eq(info.physical_sector_size, 4096);
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_UNSPECIFIED);
	ck_assert_uint_eq(info.optimal_unmap_sectors, 8);
	ck_assert(info.flags & DC_INFO_FUA_RESPECTED);
	ck_assert(info.flags & DC_INFO_PR);
	ck_assert_str_eq(info.disk_type, "nvme");
	ck_assert_str_eq(desc(d, "model", &t), "diskcore emulated NVMe");
	ck_assert_str_eq(h_desc_get(&t, "serial"), "EMU0000000000001");
	ck_assert_str_eq(h_desc_get(&t, "firmware"), "1.0");
	ck_assert_str_eq(h_desc_get(&t, "queues"), "2 granted of 4 asked");
	ck_assert_str_eq(h_desc_get(&t, "queue-depth"), "16");
	ck_assert_str_eq(h_desc_get(&t, "lba-format"),
			 "0 of 2: 512-byte blocks, no metadata");
	ck_assert_str_eq(h_desc_get(&t, "volatile-write-cache"), "yes");
	ck_assert_str_eq(h_desc_get(&t, "oncs"), "0x24 dsm reservations");
	ck_assert_str_eq(h_desc_get(&t, "reservations"), "rescap 0x7f");
	ck_assert_str_eq(h_desc_get(&t, "state"), "ok");
	dc_close(d);
}
END_TEST

START_TEST(bringup_shapes)
{
	struct h_desc t;
	struct dc_info info;
	dc_disk *d = h_open("nvme-emu:1M;sector=4096;mdts=1;mqes=3;nodsm;norsv;novwc", 0);

	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, 256);
	ck_assert_uint_eq(info.sector_size, 4096);
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_IGNORED);
	ck_assert(!(info.flags & DC_INFO_PR));
	ck_assert_str_eq(desc(d, "mdts", &t), "1 (8 KiB per command)");
	ck_assert_str_eq(h_desc_get(&t, "queue-depth"), "4"); /* MQES + 1 */
	ck_assert_str_eq(h_desc_get(&t, "lba-format"),
			 "1 of 2: 4096-byte blocks, no metadata");
	ck_assert_str_eq(h_desc_get(&t, "reservations"), "no");
	ck_assert_int_eq(dc_flush(d), 0); /* no volatile cache: nothing to do */
	dc_close(d);
}
END_TEST

START_TEST(bringup_refusals)
{
	h_open_fails(0, -EINVAL, "CAP.MQES is 0", "nvme-emu:1M;mqes=0");
	h_open_fails(0, -EOPNOTSUPP, "metadata", "nvme-emu:1M;metadata");
	h_open_fails(0, -ENOENT, "no namespace 2", "nvme-emu:1M;nsid=2");
	h_open_fails(0, -EINVAL, "queues=0", "nvme-emu:1M;queues=0");
	h_open_fails(0, -EINVAL, "depth=1", "nvme-emu:1M;depth=1");
	uint64_t t0 = h_now_ms();
	h_open_fails(0, -ETIMEDOUT, "CAP.TO", "nvme-emu:1M;noready");
	/* CAP.TO is 500 ms: the wait is bounded by it. */
	ck_assert_uint_lt(h_now_ms() - t0, 5000);
}
END_TEST

/* Write a pattern over the disk in pieces of `len`, read it back whole. */
static void roundtrip(const char *spec, size_t len)
{
	dc_disk *d = h_open(spec, 0);
	uint64_t size = dc_sector_count(d) * dc_sector_size(d);
	uint8_t *w = h_alloc(size), *r = h_alloc(size);

	h_fill(w, size, len);
	for (uint64_t off = 0; off < size; off += len)
		ck_assert_int_eq(dc_write(d, off / dc_sector_size(d), w + off, len,
					  off % (2 * len) ? DC_IO_FUA : 0),
				 0);
	ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_int_eq(dc_read(d, 0, r, size), 0);
	ck_assert_int_eq(h_check(r, size, len), -1);
	free(w);
	free(r);
	dc_close(d);
}

START_TEST(io_roundtrip)
{
	roundtrip("nvme-emu:1M", 4096);
	roundtrip("nvme-emu:1M", 512);
	roundtrip("nvme-emu:1M", 1u << 20); /* split at 128 KiB, the slot buffer */
	roundtrip("nvme-emu:1M;mdts=1;depth=4", 1u << 20); /* 8 KiB, 3 slots */
	roundtrip("nvme-emu:2M;sector=4096;mdts=2", 65536);
}
END_TEST

START_TEST(io_unmap)
{
	dc_disk *d = h_open("nvme-emu:1M", 0);
	uint8_t *w = h_alloc(65536), *r = h_alloc(65536);

	h_fill(w, 65536, 7);
	ck_assert_int_eq(dc_write(d, 0, w, 65536, 0), 0);
	ck_assert_int_eq(dc_unmap(d, 8, 16, 0), 0);
	ck_assert_int_eq(dc_read(d, 0, r, 65536), 0);
	ck_assert_int_eq(memcmp(r, w, 4096), 0);
	ck_assert_int_eq(h_check_zero(r + 4096, 8192), -1); /* the emulator zeroes */
	ck_assert_int_eq(memcmp(r + 12288, w + 12288, 65536 - 12288), 0);
	free(w);
	free(r);
	dc_close(d);
}
END_TEST

/* Unmap by DSM, by Write Zeroes (deallocating only when DLFEAT allows it:
 * the emulator refuses the bit otherwise), or not at all. */
struct unmap_case {
	const char *spec;
	unsigned behavior;
	const char *how;
	bool zeroes;
};

START_TEST(io_unmap_commands)
{
	static const struct unmap_case cases[] = {
		{ "nvme-emu:40M", DC_UNMAP_UNSPECIFIED, "dsm deallocate", true },
		{ "nvme-emu:40M;wz;dlfeat=9", DC_UNMAP_UNSPECIFIED, "dsm deallocate",
		  true },
		{ "nvme-emu:40M;nodsm;wz", DC_UNMAP_ZEROES, "write zeroes", true },
		{ "nvme-emu:40M;nodsm;wz;dlfeat=8", DC_UNMAP_ZEROES, "write zeroes",
		  true },
		{ "nvme-emu:40M;nodsm;wz;dlfeat=9", DC_UNMAP_ZEROES,
		  "write zeroes, deallocating", true },
		{ "nvme-emu:40M;nodsm;wz;dlfeat=9;sector=4096", DC_UNMAP_ZEROES,
		  "write zeroes, deallocating", true },
		{ "nvme-emu:40M;nodsm", DC_UNMAP_IGNORED, "no", false },
		{ "nvme-emu:40M;nodsm;dlfeat=9", DC_UNMAP_IGNORED, "no", false },
	};
	uint8_t *w = h_alloc(1u << 20), *r = h_alloc(1u << 20);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct unmap_case *k = &cases[i];
		dc_disk *d = h_open(k->spec, 0);
		uint32_t ss = dc_sector_size(d);
		uint64_t last = dc_sector_count(d) - 1; /* > 65536 blocks at 512 */
		struct dc_info info;
		struct h_desc t;

		dc_get_info(d, &info);
		ck_assert_msg(info.unmap_behavior == k->behavior, "%s: %u", k->spec,
			      info.unmap_behavior);
		ck_assert_str_eq(desc(d, "unmap", &t), k->how);
		h_fill(w, 1u << 20, i + 1);
		ck_assert_int_eq(dc_write(d, 0, w, 1u << 20, 0), 0);
		ck_assert_int_eq(dc_write(d, last, w, ss, 0), 0);
		ck_assert_int_eq(dc_unmap(d, 1, last - 1, 0), 0);
		ck_assert_int_eq(dc_read(d, 0, r, 1u << 20), 0);
		ck_assert_int_eq(memcmp(r, w, ss), 0);
		if (k->zeroes)
			ck_assert_int_eq(h_check_zero(r + ss, (1u << 20) - ss), -1);
		else
			ck_assert_int_eq(memcmp(r + ss, w + ss, (1u << 20) - ss), 0);
		ck_assert_int_eq(dc_read(d, last, r, ss), 0);
		ck_assert_int_eq(memcmp(r, w, ss), 0);
		dc_close(d);
	}
	free(w);
	free(r);
}
END_TEST

/* Data pointers: PRPs unless the controller has SGLs; with ;sglonly the
 * emulator refuses PRPs on I/O commands, so every path below used SGLs. */
START_TEST(io_sgl_describe)
{
	struct h_desc t;
	dc_disk *d = h_open("nvme-emu:1M", 0);

	ck_assert_str_eq(desc(d, "data-pointers", &t), "prp (SGLS 0)");
	dc_close(d);
	d = h_open("nvme-emu:1M;sgl", 0);
	ck_assert_str_eq(desc(d, "data-pointers", &t), "sgl (SGLS 0x1)");
	dc_close(d);
}
END_TEST

START_TEST(io_sgl_roundtrip)
{
	roundtrip("nvme-emu:1M;sglonly", 4096);
	roundtrip("nvme-emu:1M;sglonly", 512);
	roundtrip("nvme-emu:1M;sglonly", 1u << 20); /* split at 128 KiB */
	roundtrip("nvme-emu:1M;sglonly;mdts=1;depth=4", 65536);
	roundtrip("nvme-emu:2M;sglonly;sector=4096", 8192);
}
END_TEST

/* Page-aligned and unaligned iovecs, few and many (up to 200) segments of
 * odd lengths, written and read back in different cuts, PRPs and SGLs. */
static void iov_cut(uint8_t *base, size_t total, int nseg, size_t skew, struct iovec *iov)
{
	size_t off = 0;

	for (int i = 0; i < nseg; i++) {
		size_t len = i == nseg - 1 ? total - off : total / nseg - (size_t)(i % 7);

		iov[i].iov_base = base + off + skew;
		iov[i].iov_len = len;
		off += len;
	}
}

static const char *const iov_specs[] = { "nvme-emu:4M", "nvme-emu:4M;sglonly",
					 "nvme-emu:4M;sglonly;mdts=1" };

START_TEST(io_iovecs)
{
	static const int nsegs[] = { 1, 3, 17, 200 };
	static const size_t skews[] = { 0, 1, 4093 };
	size_t total = 256 * 1024;
	dc_disk *d = h_open(iov_specs[_i], 0);
	uint8_t *w = h_alloc(total + 8192), *r = h_alloc(total + 8192);
	struct iovec wi[200], ri[200];

	for (size_t k = 0; k < sizeof(skews) / sizeof(skews[0]); k++)
		for (size_t n = 0; n < sizeof(nsegs) / sizeof(nsegs[0]); n++) {
			uint64_t sector = (k * 4 + n) * (total / 512);
			int rn = nsegs[(n + 1) % 4];

			h_fill(w + skews[k], total, k * 10 + n + 1);
			memset(r, 0, total + 8192);
			iov_cut(w, total, nsegs[n], skews[k], wi);
			iov_cut(r, total, rn, skews[(k + 1) % 3], ri);
			ck_assert_int_eq(dc_writev(d, sector, wi, nsegs[n], 0), 0);
			ck_assert_int_eq(dc_readv(d, sector, ri, rn), 0);
			ck_assert_int_eq(
				memcmp(r + skews[(k + 1) % 3], w + skews[k], total), 0);
		}
	free(w);
	free(r);
	dc_close(d);
}
END_TEST

struct status_case {
	unsigned status;
	int result;
	int detail;
};

START_TEST(io_status_mapping)
{
	static const struct status_case cases[] = {
		{ 0x080, DC_E_ILLEGAL_BLOCK, 0 },
		{ 0x083, DC_E_RESERVATION_CONFLICT, 0 },
		{ 0x002, DC_E_INVALID_INPUT, 0 },
		{ 0x01b, DC_E_ABORTED_PREEMPT, 0 },
		{ 0x004, DC_E_IO, EIO },
		{ 0x081, DC_E_IO, EIO },
		{ 0x006, DC_E_IO, EIO },
		{ 0x280, DC_E_MEDIUM, DC_MEDIUM_WRITE_FAULT },
		{ 0x281, DC_E_MEDIUM, DC_MEDIUM_UNRECOVERED_READ },
		{ 0x282, DC_E_MEDIUM, DC_MEDIUM_GUARD_CHECK },
		{ 0x283, DC_E_MEDIUM, DC_MEDIUM_APP_TAG_CHECK },
		{ 0x284, DC_E_MEDIUM, DC_MEDIUM_REF_TAG_CHECK },
	};
	uint8_t b[4096];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		dc_disk *d =
			h_openf(0, "nvme-emu:1M;errstatus=%u;errlba=3", cases[i].status);
		struct iovec iov = { b, sizeof(b) };
		struct dc_io io = { .op = DC_OP_WRITE, .iov = &iov, .iovcnt = 1 };
		int detail = -1;

		ck_assert_int_eq(dc_read(d, 0, b, 4096), cases[i].result);
		ck_assert_int_eq(dc_execute(d, &io, &detail), cases[i].result);
		ck_assert_int_eq(detail, cases[i].detail);
		ck_assert_int_eq(dc_read(d, 16, b, 4096), 0); /* elsewhere: fine */
		dc_close(d);
	}
}
END_TEST

/* PRPs, and SGLs the emulator insists on for the keys and the report. */
static const char *const pr_specs[] = { "nvme-emu:1M", "nvme-emu:1M;sglonly" };

START_TEST(pr_commands)
{
	dc_disk *d = h_open(pr_specs[_i], 0);
	struct dc_pr_caps caps;
	struct dc_pr_controller ctl[4];
	struct dc_pr_report rep = { .max_controllers = 4, .controllers = ctl };
	uint64_t k1 = 0x1111;

	ck_assert_int_eq(dc_pr_caps(d, &caps), 0);
	ck_assert_uint_eq(caps.types, 0x7e);
	ck_assert(caps.persist_through_power_loss);
	ck_assert_int_eq(dc_pr_register(d, NULL, k1, -1), 0);
	ck_assert_int_eq(dc_pr_reserve(d, 0x2222, DC_PR_WRITE_EXCLUSIVE),
			 DC_E_RESERVATION_CONFLICT);
	ck_assert_int_eq(dc_pr_reserve(d, k1, DC_PR_WRITE_EXCLUSIVE), 0);
	ck_assert_int_eq(dc_pr_report(d, &rep), 0);
	ck_assert_uint_eq(rep.ncontrollers, 1);
	ck_assert_uint_eq(rep.reservation_type, DC_PR_WRITE_EXCLUSIVE);
	ck_assert_uint_eq(ctl[0].key, k1);
	ck_assert(ctl[0].holds_reservation);
	ck_assert_int_eq(dc_pr_register(d, &k1, 0x3333, 1), 0); /* replace */
	ck_assert_int_eq(dc_pr_release(d, 0x3333, DC_PR_WRITE_EXCLUSIVE), 0);
	ck_assert_int_eq(dc_pr_report(d, &rep), 0);
	ck_assert_uint_eq(rep.reservation_type, 0);
	ck_assert(rep.persist_through_power_loss);
	ck_assert_int_eq(dc_pr_preempt(d, 0x3333, 0x3333, DC_PR_EXCLUSIVE_ACCESS, false),
			 0);
	ck_assert_int_eq(dc_pr_clear(d, 0x3333), 0);
	ck_assert_int_eq(dc_pr_report(d, &rep), 0);
	ck_assert_uint_eq(rep.ncontrollers, 0);
	dc_close(d);

	d = h_open("nvme-emu:1M;norsv", 0);
	ck_assert_int_eq(dc_pr_caps(d, &caps), DC_E_UNSUPPORTED);
	dc_close(d);
	d = h_open("nvme-emu:1M;rsvconflict", 0);
	ck_assert_int_eq(dc_read(d, 0, ctl, 512), DC_E_RESERVATION_CONFLICT);
	dc_close(d);
}
END_TEST

/* One request on a callback queue, waited for with a deadline: a request the
 * driver lost would fail the test here instead of hanging it. */
struct one {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned done;
	int result, detail;
};

static void one_cb(const struct dc_completion *c)
{
	struct one *o = c->user_data;

	pthread_mutex_lock(&o->lock);
	o->result = c->result;
	o->detail = c->detail;
	o->done++;
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->lock);
}

static int io_wait(dc_disk *d, uint32_t op, uint64_t sector, void *buf, size_t len,
		   int *detail)
{
	struct one o = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0 };
	struct iovec iov = { buf, len };
	struct dc_io io = { .op = op,
			    .sector = sector,
			    .iov = &iov,
			    .iovcnt = len ? 1 : 0,
			    .cb = one_cb,
			    .user_data = &o };
	dc_queue *q;

	ck_assert_int_eq(dc_queue_open(d, 0, &q), 0);
	ck_assert_int_eq(dc_submit(q, &io), 0);
	pthread_mutex_lock(&o.lock);
	h_cond_wait_count(&o.lock, &o.cond, &o.done, 1, WAIT_MS);
	pthread_mutex_unlock(&o.lock);
	dc_queue_close(q);
	if (detail)
		*detail = o.detail;
	return o.result;
}

/* The Nth I/O command meets a fault: it and everything after fail, soon. */
static void fault_case(const char *spec, int detail_want, uint64_t max_ms)
{
	dc_disk *d = h_open(spec, 0);
	uint8_t b[4096] = { 0 };
	struct h_desc t;
	uint64_t t0;
	int detail;

	ck_assert_int_eq(io_wait(d, DC_OP_WRITE, 0, b, sizeof(b), NULL), 0);
	t0 = h_now_ms();
	ck_assert_int_eq(io_wait(d, DC_OP_READ, 0, b, sizeof(b), &detail), DC_E_IO);
	ck_assert_int_eq(detail, detail_want);
	ck_assert_uint_lt(h_now_ms() - t0, max_ms);
	ck_assert_int_eq(io_wait(d, DC_OP_WRITE, 8, b, sizeof(b), &detail), DC_E_IO);
	ck_assert_int_eq(io_wait(d, DC_OP_FLUSH, 0, NULL, 0, &detail), DC_E_IO);
	ck_assert_str_eq(desc(d, "state", &t), "failed");
	dc_close(d);
}

START_TEST(fault_fatal_status)
{
	fault_case("nvme-emu:1M;cfs=2", EIO, 5000);
}
END_TEST

START_TEST(fault_surprise_removal)
{
	fault_case("nvme-emu:1M;gone=2", ENOTCONN, 5000);
}
END_TEST

START_TEST(fault_timeout)
{
	/* The lost command's timeout (200 ms) bounds the wait. */
	fault_case("nvme-emu:1M;drop=2;timeout=200", ETIMEDOUT, 5000);
}
END_TEST

START_TEST(fault_in_queue_wait)
{
	/* The queue pair is reaped by its queue's thread only; the reaper still
	 * watches the controller and fails the request, which wakes the wait. */
	dc_disk *d = h_open("nvme-emu:1M;cfs=2", 0);
	uint8_t b[4096] = { 0 };
	struct iovec iov = { b, sizeof(b) };
	struct dc_io io = { .op = DC_OP_READ, .iov = &iov, .iovcnt = 1 };
	struct dc_completion c[2];
	uint64_t deadline = h_now_ms() + WAIT_MS;
	int got = 0;
	dc_queue *q;

	ck_assert_int_eq(dc_queue_open(d, DC_QUEUE_POLL, &q), 0);
	ck_assert_int_ge(dc_queue_wait(q, 0), 0);
	ck_assert_int_eq(dc_submit(q, &io), 0);
	ck_assert_int_eq(dc_submit(q, &io), 0);
	while (got < 2 && h_now_ms() < deadline) {
		ck_assert_int_ge(dc_queue_wait(q, 100), 0);
		got += dc_queue_reap(q, c + got, 2 - got);
	}
	ck_assert_int_eq(got, 2);
	ck_assert_int_eq(c[0].result + c[1].result, DC_E_IO); /* one ok, one failed */
	dc_queue_close(q);
	dc_close(d);
}
END_TEST

START_TEST(fault_bad_cid)
{
	dc_disk *d = h_open("nvme-emu:1M;badcid=2", 0);
	uint8_t b[4096];
	struct h_desc t;

	h_fill(b, sizeof(b), 3);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(io_wait(d, DC_OP_WRITE, 8 * i, b, sizeof(b), NULL), 0);
	ck_assert_int_eq(io_wait(d, DC_OP_READ, 8, b, sizeof(b), NULL), 0);
	ck_assert_int_eq(h_check(b, sizeof(b), 3), -1);
	ck_assert_str_eq(desc(d, "dropped-completions", &t), "1");
	ck_assert_str_eq(h_desc_get(&t, "state"), "ok");
	dc_close(d);
}
END_TEST

static void resize_case(const char *spec)
{
	dc_disk *d = h_open(spec, 0);
	uint8_t b[4096];
	uint64_t count = 0;
	struct h_desc t;

	h_fill(b, sizeof(b), 5);
	ck_assert_int_eq(io_wait(d, DC_OP_WRITE, 0, b, sizeof(b), NULL), 0);
	ck_assert_int_eq(dc_wait_resize(d, 2048, WAIT_MS, &count), 0);
	ck_assert_uint_eq(count, 4096);
	ck_assert_uint_eq(dc_sector_count(d), 4096);
	ck_assert_str_eq(desc(d, "resizes", &t), "1");
	ck_assert_int_eq(dc_write(d, 4000, b, sizeof(b), 0), 0);
	ck_assert_int_eq(dc_read(d, 4000, b, sizeof(b)), 0);
	ck_assert_int_eq(h_check(b, sizeof(b), 5), -1);
	dc_close(d);
}

START_TEST(aer_resize)
{
	resize_case("nvme-emu:1M;resizeat=1;resize=2M");
}
END_TEST

START_TEST(aer_failed_then_resize)
{
	/* Two failed AERs are re-armed; the third carries the notice. */
	resize_case("nvme-emu:1M;resizeat=1;resize=2M;aerfail=2");
}
END_TEST

START_TEST(aer_namespace_removed)
{
	dc_disk *d = h_open("nvme-emu:1M;resizeat=2;resize=0", 0);
	uint8_t b[4096] = { 0 };
	uint64_t deadline = h_now_ms() + WAIT_MS;
	int rc, detail = 0;

	ck_assert_int_eq(io_wait(d, DC_OP_WRITE, 0, b, sizeof(b), NULL), 0);
	/* The removing command itself sees an empty namespace. */
	ck_assert_int_eq(io_wait(d, DC_OP_READ, 0, b, sizeof(b), NULL),
			 DC_E_ILLEGAL_BLOCK);
	do
		rc = io_wait(d, DC_OP_READ, 0, b, sizeof(b), &detail);
	while (rc == DC_E_ILLEGAL_BLOCK && h_now_ms() < deadline);
	ck_assert_int_eq(rc, DC_E_IO);
	ck_assert_int_eq(detail, ENODEV);
	dc_close(d);
}
END_TEST

#define NREQ 64

/* NREQ 4 KiB reads of what was written, with few slots (depth=4): most wait
 * on the queue pair's pending list. */
static void submit_reads(dc_queue *q, uint8_t *bufs, struct iovec *iov, dc_complete_fn cb,
			 void *arg)
{
	for (int i = 0; i < NREQ; i++) {
		struct dc_io io = { .op = DC_OP_READ,
				    .sector = 8u * i,
				    .iov = &iov[i],
				    .iovcnt = 1,
				    .cb = cb,
				    .user_data = arg ? arg : &iov[i] };

		iov[i] = (struct iovec){ bufs + 4096u * i, 4096 };
		ck_assert_int_eq(dc_submit(q, &io), 0);
	}
}

static dc_disk *modes_disk(uint8_t **bufs)
{
	dc_disk *d = h_open("nvme-emu:1M;depth=4", 0);
	uint8_t *w = h_alloc(NREQ * 4096);

	h_fill(w, NREQ * 4096, 11);
	ck_assert_int_eq(dc_write(d, 0, w, NREQ * 4096, 0), 0);
	free(w);
	*bufs = h_alloc(NREQ * 4096);
	return d;
}

START_TEST(mode_queue_wait)
{
	uint8_t *bufs;
	dc_disk *d = modes_disk(&bufs);
	struct iovec iov[NREQ];
	struct dc_completion c[NREQ];
	uint64_t deadline = h_now_ms() + WAIT_MS;
	int got = 0;
	dc_queue *q;

	ck_assert_int_eq(dc_queue_open(d, DC_QUEUE_POLL, &q), 0);
	ck_assert_int_ge(dc_queue_wait(q, 0), 0);
	submit_reads(q, bufs, iov, NULL, NULL);
	while (got < NREQ && h_now_ms() < deadline) {
		ck_assert_int_ge(dc_queue_wait(q, 100), 0);
		int n = dc_queue_reap(q, c + got, NREQ - got);
		for (int i = 0; i < n; i++)
			ck_assert_int_eq(c[got + i].result, 0);
		got += n;
	}
	ck_assert_int_eq(got, NREQ);
	ck_assert_int_eq(h_check(bufs, NREQ * 4096, 11), -1);
	dc_queue_close(q);
	free(bufs);
	dc_close(d);
}
END_TEST

START_TEST(mode_eventfd)
{
	uint8_t *bufs;
	dc_disk *d = modes_disk(&bufs);
	struct iovec iov[NREQ];
	struct dc_completion c[NREQ];
	int got = 0;
	dc_queue *q;

	ck_assert_int_eq(dc_queue_open(d, DC_QUEUE_POLL, &q), 0);
	submit_reads(q, bufs, iov, NULL, NULL);
	while (got < NREQ)
		got += h_reap(q, c + got, NREQ - got, WAIT_MS);
	for (int i = 0; i < NREQ; i++)
		ck_assert_int_eq(c[i].result, 0);
	ck_assert_int_eq(h_check(bufs, NREQ * 4096, 11), -1);
	dc_queue_close(q);
	free(bufs);
	dc_close(d);
}
END_TEST

START_TEST(mode_callback)
{
	uint8_t *bufs;
	dc_disk *d = modes_disk(&bufs);
	struct iovec iov[NREQ];
	struct h_count k = H_COUNT_INIT;
	dc_queue *q;

	ck_assert_int_eq(dc_queue_open(d, 0, &q), 0);
	submit_reads(q, bufs, iov, h_count_cb, &k);
	h_count_wait(&k, NREQ, WAIT_MS);
	ck_assert_uint_eq(k.failed, 0);
	/* The reaper thread took them, woken by the vectors' eventfds. */
	ck_assert_uint_gt(h_desc_num(d, "nvme-emu", "interrupts"), 0);
	ck_assert_int_eq(h_check(bufs, NREQ * 4096, 11), -1);
	dc_queue_close(q);
	free(bufs);
	dc_close(d);
}
END_TEST

/* Four threads (four queues) over two granted queue pairs: shared under the
 * queue pair's lock, each thread's region intact. */
static void *thread_io(void *arg)
{
	dc_disk *d = arg;
	static atomic_int next;
	int me = atomic_fetch_add(&next, 1);
	uint8_t *b = h_alloc(65536), *r = h_alloc(65536);
	intptr_t bad = 0;

	for (int i = 0; i < 50 && !bad; i++) {
		uint64_t sector = (uint64_t)me * 256 + (uint64_t)(i % 2) * 128;

		h_fill(b, 65536, (uint64_t)me * 1000 + i);
		bad |= dc_write(d, sector, b, 65536, 0) != 0;
		bad |= dc_read(d, sector, r, 65536) != 0;
		bad |= memcmp(b, r, 65536) != 0;
	}
	free(b);
	free(r);
	return (void *)bad;
}

START_TEST(queues_shared)
{
	dc_disk *d = h_open("nvme-emu:1M;queues=4;grant=2;depth=8", 0);
	pthread_t t[4];
	void *bad;

	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, thread_io, d), 0);
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], &bad);
		ck_assert_ptr_null(bad);
	}
	dc_close(d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("nvme");
	TCase *tc = tcase_create("nvme");

	h_plugin_path_add("plugins/nvme/emu");
	if (!h_have_plugin("nvme-emu"))
		h_skip("the nvme-emu test plugin was not built");
	tcase_add_test(tc, bringup_describe);
	tcase_add_test(tc, bringup_shapes);
	tcase_add_test(tc, bringup_refusals);
	tcase_add_test(tc, io_roundtrip);
	tcase_add_test(tc, io_unmap);
	tcase_add_test(tc, io_unmap_commands);
	tcase_add_test(tc, io_sgl_describe);
	tcase_add_test(tc, io_sgl_roundtrip);
	tcase_add_loop_test(tc, io_iovecs, 0, 3);
	tcase_add_test(tc, io_status_mapping);
	tcase_add_loop_test(tc, pr_commands, 0, 2);
	tcase_add_test(tc, fault_fatal_status);
	tcase_add_test(tc, fault_surprise_removal);
	tcase_add_test(tc, fault_timeout);
	tcase_add_test(tc, fault_in_queue_wait);
	tcase_add_test(tc, fault_bad_cid);
	tcase_add_test(tc, aer_resize);
	tcase_add_test(tc, aer_failed_then_resize);
	tcase_add_test(tc, aer_namespace_removed);
	tcase_add_test(tc, mode_queue_wait);
	tcase_add_test(tc, mode_eventfd);
	tcase_add_test(tc, mode_callback);
	tcase_add_test(tc, queues_shared);
	suite_add_tcase(s, tc);
	conformance_add(s, "nvme-emu", "nvme-emu:1M");
	conformance_add(s, "nvme-emu-4k", "nvme-emu:1M;sector=4096");
	conformance_add(s, "nvme-emu-small",
			"nvme-emu:1M;mdts=1;depth=4;grant=1;vectors=1");
	conformance_add(s, "nvme-emu-wz", "nvme-emu:1M;nodsm;wz;dlfeat=9");
	conformance_add(s, "nvme-emu-sgl", "nvme-emu:1M;sglonly");
	return h_run(s);
}

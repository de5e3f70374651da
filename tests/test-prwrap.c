/* SPDX-License-Identifier: MIT */
/* prwrap: the persistent-reservation emulation of docs/openvmm-compat.md §3.3. The
 * generation sequence of OpenVMM's SCSI compliance run for every reservation
 * type, each conflict and invalid-input rule, the report, and the I/O that
 * passes through untouched (conformance suite). */
#include "conformance.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K1 0x1111222233334444ull
#define K2 0x5555666677778888ull

struct tp_state {
	uint32_t generation;
	uint32_t type;
	uint32_t ncontrollers;
	uint64_t key;
	bool holds;
	bool ptpl;
};

static struct tp_state tp_report(dc_disk *d)
{
	struct dc_pr_controller c[2];
	struct dc_pr_report r = { .max_controllers = 2, .controllers = c };
	struct tp_state s = { 0 };

	memset(c, 0xee, sizeof(c));
	ck_assert_int_eq(dc_pr_report(d, &r), 0);
	s.generation = r.generation;
	s.type = r.reservation_type;
	s.ncontrollers = r.ncontrollers;
	s.ptpl = r.persist_through_power_loss;
	ck_assert_uint_le(r.ncontrollers, 1);
	if (r.ncontrollers) {
		uint8_t zero[16] = { 0 };

		s.key = c[0].key;
		s.holds = c[0].holds_reservation;
		ck_assert_uint_eq(c[0].host_id_len, 8);
		ck_assert(memcmp(c[0].host_id, zero, 8) == 0);
		ck_assert_uint_eq(c[0].controller_id, 0);
		ck_assert_int_eq(s.holds, s.type != 0);
	}
	return s;
}

static void tp_expect(dc_disk *d, uint32_t gen, uint32_t type, uint64_t key, int line)
{
	struct tp_state s = tp_report(d);

	ck_assert_msg(s.generation == gen, "line %d: generation %u, expected %u", line,
		      s.generation, gen);
	ck_assert_msg(s.type == type, "line %d: reservation type %u, expected %u", line,
		      s.type, type);
	ck_assert_msg(s.ncontrollers == (key != 0), "line %d: %u controllers", line,
		      s.ncontrollers);
	if (key)
		ck_assert_msg(s.key == key, "line %d: key %llx, expected %llx", line,
			      (unsigned long long)s.key, (unsigned long long)key);
}
#define EXPECT(d, gen, type, key) tp_expect(d, gen, type, key, __LINE__)

/* OpenVMM's scsidisk pr_tests run_pr_scsi_compliance_with_reserve_type. */
START_TEST(compliance_sequence)
{
	uint32_t type = (uint32_t)_i;
	dc_disk *d = h_open("prwrap:mem:1M", 0);
	uint64_t k1 = K1, k2 = K2;

	EXPECT(d, 0, 0, 0);
	ck_assert_int_eq(dc_pr_register(d, NULL, k1, -1),
			 0); /* REGISTER_IGNORE_EXISTING */
	EXPECT(d, 1, 0, k1);
	ck_assert_int_eq(dc_pr_reserve(d, k1, type), 0);
	EXPECT(d, 1, type, k1);
	ck_assert_int_eq(dc_pr_release(d, k1, type), 0);
	EXPECT(d, 1, 0, k1);
	ck_assert_int_eq(dc_pr_register(d, &k1, k2, -1), 0); /* REGISTER k1 -> k2 */
	EXPECT(d, 2, 0, k2);
	ck_assert_int_eq(dc_pr_register(d, NULL, k1, -1), 0);
	EXPECT(d, 3, 0, k1);
	ck_assert_int_eq(dc_pr_reserve(d, k1, type), 0);
	EXPECT(d, 3, type, k1);
	ck_assert_int_eq(dc_pr_clear(d, k1), 0);
	EXPECT(d, 4, 0, 0);
	ck_assert_int_eq(dc_pr_register(d, NULL, k2, -1), 0);
	EXPECT(d, 5, 0, k2);
	ck_assert_int_eq(dc_pr_reserve(d, k2, type), 0);
	EXPECT(d, 5, type, k2);
	ck_assert_int_eq(dc_pr_preempt(d, k2, k2, type, false), 0);
	EXPECT(d, 6, 0, k2); /* unreserved, still registered */
	ck_assert_int_eq(dc_pr_preempt(d, k2, k2, type, true), 0);
	EXPECT(d, 7, 0, k2);
	dc_close(d);
}
END_TEST

START_TEST(capabilities)
{
	dc_disk *d = h_open("prwrap:mem:1M", 0);
	struct dc_pr_caps caps = { 0 };
	struct dc_info info;

	ck_assert_int_eq(dc_pr_caps(d, &caps), 0);
	ck_assert_uint_eq(caps.types, (1u << DC_PR_WRITE_EXCLUSIVE) |
					      (1u << DC_PR_EXCLUSIVE_ACCESS) |
					      (1u << DC_PR_WRITE_EXCLUSIVE_REG_ONLY) |
					      (1u << DC_PR_EXCLUSIVE_ACCESS_REG_ONLY));
	ck_assert(caps.persist_through_power_loss);
	dc_get_info(d, &info);
	ck_assert(info.flags & DC_INFO_PR);
	ck_assert_str_eq(info.disk_type, "prwrap");
	ck_assert_uint_eq(info.sector_count, 2048);
	dc_close(d);
}
END_TEST

START_TEST(register_rules)
{
	dc_disk *d = h_open("prwrap:mem:1M", 0);
	uint64_t zero = 0, k1 = K1, k2 = K2;

	/* Key 0 stands for "not registered": REGISTER from 0 succeeds. */
	ck_assert_int_eq(dc_pr_register(d, &k2, k1, -1), DC_E_RESERVATION_CONFLICT);
	EXPECT(d, 0, 0, 0);
	ck_assert_int_eq(dc_pr_register(d, &zero, k1, -1), 0);
	EXPECT(d, 1, 0, k1);
	ck_assert_int_eq(dc_pr_register(d, &zero, k2, -1), DC_E_RESERVATION_CONFLICT);
	ck_assert_int_eq(dc_pr_register(d, &k2, k2, -1), DC_E_RESERVATION_CONFLICT);
	EXPECT(d, 1, 0, k1);
	/* Unregistering drops the reservation. */
	ck_assert_int_eq(dc_pr_reserve(d, k1, DC_PR_EXCLUSIVE_ACCESS), 0);
	ck_assert_int_eq(dc_pr_register(d, &k1, 0, -1), 0);
	EXPECT(d, 2, 0, 0);
	/* Registering "nothing" over nothing still counts. */
	ck_assert_int_eq(dc_pr_register(d, NULL, 0, -1), 0);
	EXPECT(d, 3, 0, 0);
	dc_close(d);
}
END_TEST

START_TEST(ptpl)
{
	dc_disk *d = h_open("prwrap:mem:1M", 0);
	uint64_t k1 = K1;

	ck_assert(!tp_report(d).ptpl);
	ck_assert_int_eq(dc_pr_register(d, NULL, k1, 1), 0);
	ck_assert(tp_report(d).ptpl);
	ck_assert_int_eq(dc_pr_register(d, &k1, k1, -1), 0); /* no change */
	ck_assert(tp_report(d).ptpl);
	ck_assert_int_eq(dc_pr_register(d, &k1, k1, 0), 0);
	ck_assert(!tp_report(d).ptpl);
	EXPECT(d, 3, 0, k1);
	/* A conflicting REGISTER changes nothing, ptpl included. */
	ck_assert_int_eq(dc_pr_register(d, &(uint64_t){ K2 }, k1, 1),
			 DC_E_RESERVATION_CONFLICT);
	ck_assert(!tp_report(d).ptpl);
	ck_assert_int_eq(dc_pr_register(d, &k1, k1, 2), DC_E_INVALID_INPUT);
	dc_close(d);
}
END_TEST

START_TEST(reserve_rules)
{
	dc_disk *d = h_open("prwrap:mem:1M", 0);

	/* Unregistered: conflict, whatever the key. */
	ck_assert_int_eq(dc_pr_reserve(d, 0, DC_PR_WRITE_EXCLUSIVE),
			 DC_E_RESERVATION_CONFLICT);
	ck_assert_int_eq(dc_pr_reserve(d, K1, DC_PR_WRITE_EXCLUSIVE),
			 DC_E_RESERVATION_CONFLICT);
	ck_assert_int_eq(dc_pr_register(d, NULL, K1, -1), 0);
	ck_assert_int_eq(dc_pr_reserve(d, K2, DC_PR_WRITE_EXCLUSIVE),
			 DC_E_RESERVATION_CONFLICT);
	ck_assert_int_eq(dc_pr_reserve(d, K1, DC_PR_WRITE_EXCLUSIVE), 0);
	ck_assert_int_eq(dc_pr_reserve(d, K1, DC_PR_WRITE_EXCLUSIVE), 0); /* same type */
	ck_assert_int_eq(dc_pr_reserve(d, K1, DC_PR_EXCLUSIVE_ACCESS),
			 DC_E_RESERVATION_CONFLICT);
	EXPECT(d, 1, DC_PR_WRITE_EXCLUSIVE, K1);
	/* Types outside the enum are invalid input. */
	ck_assert_int_eq(dc_pr_reserve(d, K1, 0), DC_E_INVALID_INPUT);
	ck_assert_int_eq(dc_pr_reserve(d, K1, 7), DC_E_INVALID_INPUT);
	ck_assert_int_eq(dc_pr_reserve(d, K1, 0xffffffffu), DC_E_INVALID_INPUT);
	EXPECT(d, 1, DC_PR_WRITE_EXCLUSIVE, K1);
	dc_close(d);
}
END_TEST

START_TEST(release_rules)
{
	dc_disk *d = h_open("prwrap:mem:1M", 0);

	ck_assert_int_eq(dc_pr_release(d, 0, DC_PR_WRITE_EXCLUSIVE),
			 DC_E_RESERVATION_CONFLICT);
	ck_assert_int_eq(dc_pr_register(d, NULL, K1, -1), 0);
	/* Nothing reserved: releasing succeeds. */
	ck_assert_int_eq(dc_pr_release(d, K1, DC_PR_EXCLUSIVE_ACCESS), 0);
	ck_assert_int_eq(dc_pr_release(d, K2, DC_PR_EXCLUSIVE_ACCESS),
			 DC_E_RESERVATION_CONFLICT);
	ck_assert_int_eq(dc_pr_reserve(d, K1, DC_PR_WRITE_EXCLUSIVE_REG_ONLY), 0);
	ck_assert_int_eq(dc_pr_release(d, K2, DC_PR_WRITE_EXCLUSIVE_REG_ONLY),
			 DC_E_RESERVATION_CONFLICT);
	ck_assert_int_eq(dc_pr_release(d, K1, DC_PR_WRITE_EXCLUSIVE), DC_E_INVALID_INPUT);
	ck_assert_int_eq(dc_pr_release(d, K1, 9), DC_E_INVALID_INPUT);
	EXPECT(d, 1, DC_PR_WRITE_EXCLUSIVE_REG_ONLY, K1);
	ck_assert_int_eq(dc_pr_release(d, K1, DC_PR_WRITE_EXCLUSIVE_REG_ONLY), 0);
	EXPECT(d, 1, 0, K1);
	dc_close(d);
}
END_TEST

START_TEST(clear_rules)
{
	dc_disk *d = h_open("prwrap:mem:1M", 0);

	ck_assert_int_eq(dc_pr_clear(d, 0), DC_E_RESERVATION_CONFLICT);
	ck_assert_int_eq(dc_pr_clear(d, K1), DC_E_RESERVATION_CONFLICT);
	ck_assert_int_eq(dc_pr_register(d, NULL, K1, -1), 0);
	ck_assert_int_eq(dc_pr_reserve(d, K1, DC_PR_EXCLUSIVE_ACCESS_REG_ONLY), 0);
	ck_assert_int_eq(dc_pr_clear(d, K2), DC_E_RESERVATION_CONFLICT);
	EXPECT(d, 1, DC_PR_EXCLUSIVE_ACCESS_REG_ONLY, K1);
	ck_assert_int_eq(dc_pr_clear(d, K1), 0);
	EXPECT(d, 2, 0, 0);
	ck_assert_int_eq(dc_pr_clear(d, K1), DC_E_RESERVATION_CONFLICT);
	dc_close(d);
}
END_TEST

START_TEST(preempt_rules)
{
	dc_disk *d = h_open("prwrap:mem:1M", 0);

	ck_assert_int_eq(dc_pr_preempt(d, 0, 0, DC_PR_WRITE_EXCLUSIVE, false),
			 DC_E_RESERVATION_CONFLICT);
	ck_assert_int_eq(dc_pr_register(d, NULL, K1, -1), 0);
	ck_assert_int_eq(dc_pr_preempt(d, K2, K1, DC_PR_WRITE_EXCLUSIVE, false),
			 DC_E_RESERVATION_CONFLICT);
	/* The key to preempt must be the registered one. */
	ck_assert_int_eq(dc_pr_preempt(d, K1, K2, DC_PR_WRITE_EXCLUSIVE, false),
			 DC_E_INVALID_INPUT);
	ck_assert_int_eq(dc_pr_preempt(d, K1, K2, DC_PR_WRITE_EXCLUSIVE, true),
			 DC_E_INVALID_INPUT);
	ck_assert_int_eq(dc_pr_reserve(d, K1, DC_PR_EXCLUSIVE_ACCESS), 0);
	/* A reservation of another type is invalid input, not a conflict. */
	ck_assert_int_eq(dc_pr_preempt(d, K1, K1, DC_PR_WRITE_EXCLUSIVE, false),
			 DC_E_INVALID_INPUT);
	ck_assert_int_eq(dc_pr_preempt(d, K1, K1, 0, false), DC_E_INVALID_INPUT);
	EXPECT(d, 1, DC_PR_EXCLUSIVE_ACCESS, K1);
	ck_assert_int_eq(dc_pr_preempt(d, K1, K1, DC_PR_EXCLUSIVE_ACCESS, true), 0);
	EXPECT(d, 2, 0, K1);
	/* Nothing reserved: any valid type preempts (and bumps the generation). */
	ck_assert_int_eq(dc_pr_preempt(d, K1, K1, DC_PR_WRITE_EXCLUSIVE, false), 0);
	EXPECT(d, 3, 0, K1);
	dc_close(d);
}
END_TEST

START_TEST(report_truncation)
{
	dc_disk *d = h_open("prwrap:mem:1M", 0);
	struct dc_pr_report r = { 0 };

	ck_assert_int_eq(dc_pr_register(d, NULL, K1, -1), 0);
	ck_assert_int_eq(dc_pr_report(d, &r), 0); /* no room for controllers */
	ck_assert_uint_eq(r.ncontrollers, 1);
	ck_assert_uint_eq(r.generation, 1);
	dc_close(d);
}
END_TEST

/* Reservations are not enforced: I/O from anyone goes through. */
START_TEST(io_not_enforced)
{
	dc_disk *d = h_open("prwrap:mem:1M", 0);
	uint8_t *buf = h_alloc(4096), *back = h_alloc(4096);
	int inner, outer;
	dc_disk *m;

	ck_assert_int_eq(dc_pr_register(d, NULL, K1, -1), 0);
	ck_assert_int_eq(dc_pr_reserve(d, K1, DC_PR_EXCLUSIVE_ACCESS), 0);
	h_fill(buf, 4096, 1);
	ck_assert_int_eq(dc_write(d, 8, buf, 4096, DC_IO_FUA), 0);
	ck_assert_int_eq(dc_read(d, 8, back, 4096), 0);
	ck_assert(memcmp(buf, back, 4096) == 0);
	ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_int_eq(dc_unmap(d, 8, 8, 0), 0);
	ck_assert_int_eq(dc_read(d, 2048, back, 512), DC_E_ILLEGAL_BLOCK);
	/* Eject is forwarded: prwrap answers what its inner disk answers. */
	m = h_open("mem:1M", 0);
	inner = dc_eject(m);
	outer = dc_eject(d);
	ck_assert_int_eq(outer, inner);
	dc_close(m);
	dc_close(d);
	free(buf);
	free(back);
}
END_TEST

/* Each open starts from nothing; state is per disk. */
START_TEST(state_per_disk)
{
	dc_disk *a = h_open("prwrap:mem:1M", 0), *b = h_open("prwrap:mem:1M", 0);

	ck_assert_int_eq(dc_pr_register(a, NULL, K1, -1), 0);
	EXPECT(a, 1, 0, K1);
	EXPECT(b, 0, 0, 0);
	dc_close(a);
	dc_close(b);
}
END_TEST

/* Resize requests go down to the disk that can resize, and the new size is
 * seen (and waited for) through prwrap. */
START_TEST(resize_forwarded)
{
	dc_disk *d = h_open("prwrap:mem:1M", 0);
	uint64_t count = 0;
	uint8_t buf[512];

	ck_assert_int_eq(dc_resize(d, 4096), 0);
	ck_assert_int_eq(dc_wait_resize(d, 2048, 5000, &count), 0);
	ck_assert_uint_eq(count, 4096);
	ck_assert_uint_eq(dc_sector_count(d), 4096);
	ck_assert_int_eq(dc_read(d, 4095, buf, sizeof(buf)), 0);
	ck_assert_int_eq(dc_read(d, 4096, buf, sizeof(buf)), DC_E_ILLEGAL_BLOCK);
	dc_close(d);
}
END_TEST

START_TEST(describe_state)
{
	dc_disk *d = h_open("prwrap:mem:1M", 0);
	struct h_desc t;

	h_describe(d, "prwrap", &t);
	ck_assert_pstr_eq(h_desc_get(&t, "registered_key"), "none");
	ck_assert_pstr_eq(h_desc_get(&t, "reservation"), "none");
	ck_assert_pstr_eq(h_desc_get(&t, "generation"), "0");
	ck_assert_int_eq(dc_pr_register(d, NULL, 0xabcdef, -1), 0);
	ck_assert_int_eq(dc_pr_reserve(d, 0xabcdef, DC_PR_WRITE_EXCLUSIVE_REG_ONLY), 0);
	h_describe(d, "prwrap", &t);
	ck_assert_pstr_eq(h_desc_get(&t, "registered_key"), "0x0000000000abcdef");
	ck_assert_pstr_eq(h_desc_get(&t, "reservation"),
			  "write-exclusive-registrants-only");
	ck_assert_pstr_eq(h_desc_get(&t, "generation"), "1");
	dc_close(d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("prwrap");
	TCase *tc = tcase_create("prwrap");

	tcase_add_loop_test(tc, compliance_sequence, DC_PR_WRITE_EXCLUSIVE,
			    DC_PR_EXCLUSIVE_ACCESS_ALL_REGS + 1);
	tcase_add_test(tc, capabilities);
	tcase_add_test(tc, register_rules);
	tcase_add_test(tc, ptpl);
	tcase_add_test(tc, reserve_rules);
	tcase_add_test(tc, release_rules);
	tcase_add_test(tc, clear_rules);
	tcase_add_test(tc, preempt_rules);
	tcase_add_test(tc, report_truncation);
	tcase_add_test(tc, io_not_enforced);
	tcase_add_test(tc, state_per_disk);
	tcase_add_test(tc, resize_forwarded);
	tcase_add_test(tc, describe_state);
	suite_add_tcase(s, tc);

	conformance_add(s, "prwrap-mem", "prwrap:mem:1M");
	conformance_add(s, "prwrap-file", "prwrap:file:@TMP@");
	conformance_add(s, "prwrap-memdiff-file", "prwrap:memdiff:file:@TMP@");
	return h_run(s);
}

/* SPDX-License-Identifier: MIT */
/* crc32c.h: the RFC 3720 (iSCSI) check values, the instruction against the
 * table at every length and alignment, and continuation. CRC32C_BENCH=1 also
 * prints the throughput of both. */
#include "crc32c.h"

#include "check-run.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

START_TEST(check_values)
{
	uint8_t b[32];

	ck_assert_uint_eq(crc32c(0, "123456789", 9), 0xe3069283u);
	ck_assert_uint_eq(crc32c_sw(0, "123456789", 9), 0xe3069283u);
	ck_assert_uint_eq(crc32c(0, "", 0), 0);
	/* RFC 3720 appendix B.4. */
	memset(b, 0, sizeof(b));
	ck_assert_uint_eq(crc32c(0, b, sizeof(b)), 0x8a9136aau);
	memset(b, 0xff, sizeof(b));
	ck_assert_uint_eq(crc32c(0, b, sizeof(b)), 0x62a8ab43u);
	for (int i = 0; i < 32; i++)
		b[i] = (uint8_t)i;
	ck_assert_uint_eq(crc32c(0, b, sizeof(b)), 0x46dd794eu);
	for (int i = 0; i < 32; i++)
		b[i] = (uint8_t)(31 - i);
	ck_assert_uint_eq(crc32c(0, b, sizeof(b)), 0x113fdb5cu);
}
END_TEST

START_TEST(both_ways_agree)
{
	uint8_t buf[300];
	unsigned seed = 7;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)rand_r(&seed);
	for (size_t off = 0; off < 9; off++)
		for (size_t len = 0; len + off <= sizeof(buf); len++)
			ck_assert_uint_eq(crc32c(0, buf + off, len),
					  crc32c_sw(0, buf + off, len));
}
END_TEST

START_TEST(continuation)
{
	static const char s[] = "The quick brown fox jumps over the lazy dog";
	size_t n = strlen(s);
	uint32_t whole = crc32c(0, s, n);

	ck_assert_uint_eq(whole, 0x22620404u);
	for (size_t cut = 0; cut <= n; cut++) {
		ck_assert_uint_eq(crc32c(crc32c(0, s, cut), s + cut, n - cut), whole);
		ck_assert_uint_eq(crc32c_sw(crc32c(0, s, cut), s + cut, n - cut), whole);
	}
}
END_TEST

static double bench(uint32_t (*fn)(uint32_t, const void *, size_t), const void *buf,
		    size_t len, unsigned rounds)
{
	struct timespec a, b;
	uint32_t c = 0;

	clock_gettime(CLOCK_MONOTONIC, &a);
	for (unsigned i = 0; i < rounds; i++)
		c = fn(c, buf, len);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ck_assert_uint_ne(c, 1); /* keep the result */
	return (double)len * rounds /
	       ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec));
}

/* Not a test: the numbers behind the choice in crc32c.c. */
START_TEST(throughput)
{
	static uint8_t buf[4096];

	if (!getenv("CRC32C_BENCH"))
		return;
	memset(buf, 0x5a, sizeof(buf));
	printf("crc32c 4 KiB: table %.2f GB/s, crc32c() %.2f GB/s\n",
	       bench(crc32c_sw, buf, sizeof(buf), 100000),
	       bench(crc32c, buf, sizeof(buf), 100000));
	fflush(stdout);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = { check_values, both_ways_agree, continuation,
				       throughput, NULL };

	return common_check_run("crc32c", tests);
}

/* SPDX-License-Identifier: MIT */
/* A tiny diskcore consumer, built out of tree: opens "pattern:1M;seed=SEED"
 * and checks what it reads. Usage: consumer SEED */
#include <diskcore/diskcore.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, int rc)
{
	fprintf(stderr, "consumer: %s: %d (%s) %s\n", what, rc, dc_strerror(rc),
		dc_last_error());
	return 1;
}

int main(int argc, char **argv)
{
	unsigned seed = argc > 1 ? (unsigned)atoi(argv[1]) : 0;
	unsigned char buf[4 * 512];
	char spec[64];
	dc_disk *d;
	int rc;

	snprintf(spec, sizeof(spec), "pattern:1M;seed=%u", seed);
	rc = dc_open(spec, 0, &d);
	if (rc < 0)
		return fail("dc_open", rc);
	if (dc_sector_count(d) != 2048 || dc_sector_size(d) != 512)
		return fail("unexpected geometry", 0);
	/* Four sectors ending at the last one. */
	rc = dc_read(d, 2044, buf, sizeof(buf));
	if (rc < 0)
		return fail("dc_read", rc);
	for (size_t i = 0; i < sizeof(buf); i++)
		if (buf[i] != (unsigned char)(2044 + i / 512 + seed))
			return fail("wrong data", (int)i);
	rc = dc_read(d, 2045, buf, sizeof(buf));
	if (rc != DC_E_ILLEGAL_BLOCK)
		return fail("read past the end", rc);
	rc = dc_write(d, 0, buf, 512, 0);
	if (rc != DC_E_READ_ONLY)
		return fail("write", rc);
	dc_close(d);
	printf("ok\n");
	return 0;
}

/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the luks plugin's LUKS1 and LUKS2 header parsing (binary
 * headers, JSON area, key slots, digests, segment), key slot unlocking and I/O
 * on whatever opened, through dc_open() of "luks;passphrase-file=...:file:IMG"
 * where IMG is an image made of the input and the passphrase is "fuzz".
 *
 * Input (a sparse image: LUKS2 headers are mostly zeroes):
 *   byte 0      mode: bit 0 open read-only; bit 1 store valid SHA-256
 *               checksums into both LUKS2 headers after patching (so that
 *               mutations reach the JSON parser); bit 2 keyfile= instead of
 *               passphrase-file=; bit 3 add ;slot=0;
 *   bytes 1-2   file size in 4 KiB units (little-endian);
 *   then runs of: 2 bytes 512-byte sector number, 2 bytes length, that many
 *   bytes written at the sector (the file grows to hold them).
 * tests/fuzz/luks-seeds.py makes the seeds (tests/fuzz/corpus/luks/).
 *
 * A header may ask for key derivation that takes minutes or gigabytes (PBKDF2
 * up to 2^31 iterations, Argon2 up to 4 GiB). The plugin's own limits keep
 * every input cheap (FUZZ_LIMITS, far below the defaults): the fuzzer runs
 * the checks that refuse such headers (issue 19) rather than stepping
 * around them. */
#include "fuzz-env.h"

#include <endian.h>
#include <openssl/evp.h>
#include <sys/mman.h>

#define FUZZ_MAX_FILE (16u << 20)
/* PBKDF2 iterations and Argon2 memory and work, summed over the slots tried. */
#define FUZZ_LIMITS ";pbkdf-iterations-max=4000;pbkdf-memory-max=1M;pbkdf-work-max=4M"
#define FUZZ_HDR_MIN 0x4000
#define FUZZ_HDR_MAX 0x400000

static uint64_t fuzz_be64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return be64toh(v);
}

/* Write the sparse image of the input to fd; its size, or 0 if it cannot be. */
static size_t fuzz_image(int fd, const uint8_t *data, size_t size)
{
	uint64_t file = (uint64_t)(data[1] | data[2] << 8) << 12;
	size_t i = 3;

	while (i + 4 <= size) {
		uint64_t off = (uint64_t)(data[i] | data[i + 1] << 8) * 512;
		size_t n = (size_t)(data[i + 2] | data[i + 3] << 8);

		i += 4;
		if (n > size - i)
			n = size - i;
		if (pwrite(fd, data + i, n, (off_t)off) != (ssize_t)n)
			return 0;
		i += n;
		if (off + n > file)
			file = off + n;
	}
	if (file == 0 || file > FUZZ_MAX_FILE || ftruncate(fd, (off_t)file) < 0)
		return 0;
	return (size_t)file;
}

/* Store a valid checksum into the LUKS2 header at off, if it names SHA-256. */
static void fuzz_fix_csum(uint8_t *img, size_t size, uint64_t off)
{
	uint8_t *h, md[EVP_MAX_MD_SIZE];
	uint64_t len;
	unsigned mdlen;

	if (off > size || size - off < 4096)
		return;
	h = img + off;
	len = fuzz_be64(h + 8);
	if (len < FUZZ_HDR_MIN || len > FUZZ_HDR_MAX || len > size - off ||
	    memcmp(h + 72, "sha256", 7) != 0)
		return;
	memset(h + 448, 0, 64);
	if (EVP_Digest(h, len, md, &mdlen, EVP_sha256(), NULL))
		memcpy(h + 448, md, mdlen);
}

static void fuzz_io(dc_disk *d, const char *spec, bool ro)
{
	static uint8_t buf[64 * 4096], wbuf[4096];
	uint64_t n = dc_sector_count(d);
	uint32_t ss = dc_sector_size(d);
	uint64_t last = n ? n - 1 : 0;
	int rc;

	if (n == 0 || ss < 512 || ss > 4096)
		fuzz_die("%s: %llu sectors of %u bytes", spec, (unsigned long long)n, ss);
	dc_read(d, 0, buf, (size_t)(n < 64 ? n : 64) * ss);
	dc_read(d, last, buf, ss);
	if (dc_read(d, n, buf, ss) >= 0)
		fuzz_die("%s: a read past the end succeeded", spec);
	if (ro)
		return;
	for (uint32_t i = 0; i < ss; i++)
		wbuf[i] = (uint8_t)(i * 13 + n);
	rc = dc_write(d, last, wbuf, ss, DC_IO_FUA);
	if (rc == 0 && (dc_read(d, last, buf, ss) != 0 || memcmp(buf, wbuf, ss)))
		fuzz_die("%s: sector %llu does not read back what was written", spec,
			 (unsigned long long)last);
	dc_flush(d);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_enter_scratch("luks", argc, argv);
	fuzz_put_file("pass", "fuzz", 4);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char spec[512];
	dc_disk *d = NULL;
	uint8_t *img;
	size_t file;
	bool ro;
	int fd, rc;

	if (size < 3)
		return 0;
	ro = data[0] & 1;
	fd = memfd_create("fuzz-luks", 0);
	if (fd < 0)
		return 0;
	file = fuzz_image(fd, data, size);
	img = file ? mmap(NULL, file, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) :
		     MAP_FAILED;
	if (img == MAP_FAILED) {
		close(fd);
		return 0;
	}
	if (data[0] & 2) {
		fuzz_fix_csum(img, file, 0);
		if (file >= 16)
			fuzz_fix_csum(img, file, fuzz_be64(img + 8));
	}
	munmap(img, file);
	snprintf(spec, sizeof(spec),
		 "luks;%s=%s/pass%s" FUZZ_LIMITS ":file:/proc/self/fd/%d",
		 data[0] & 4 ? "keyfile" : "passphrase-file", fuzz_scratch,
		 data[0] & 8 ? ";slot=0" : "", fd);
	rc = dc_open(spec, ro ? DC_OPEN_READ_ONLY : 0, &d);
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "dc_open(%s) = %d: %s\n", spec, rc,
			rc ? dc_last_error() : "ok");
	if (rc == 0) {
		fuzz_io(d, spec, ro);
		dc_close(d);
	}
	close(fd);
	return 0;
}

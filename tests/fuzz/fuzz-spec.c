/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the spec parser (core/spec.c), the registry's lookup and
 * the open, describe and close paths of the in-memory forms, through dc_open()
 * on the spec the input spells; on what opened, a little I/O that must read
 * back what it wrote, and the persistent-reservation calls.
 *
 * Input: byte 0 flags (bit 0: open read-only, DC_OPEN_READ_ONLY; bit 1: no
 * I/O), then the spec (no NUL).
 *
 * A fuzzed spec must never create, write or read a file outside a scratch
 * directory, nor reach the network or a device. So the run works in a private
 * scratch directory holding a 64-byte key file "k" (for crypt:), and a spec
 * is opened only when:
 *  - it has no '/': no absolute path, bare path or path into another
 *    directory, so any file name a plugin is given is a name in the scratch
 *    directory;
 *  - every text that stands where the parser reads a disk kind (at the start,
 *    after ':', '[' or ',', up to the next ':', ';', ',', '[' or ']'; more
 *    places than the grammar has, never fewer) and could be a kind (made of
 *    a-z, 0-9 and '-', the only names the registry looks up) is one of the
 *    in-memory kinds below, a number, or a field value named below.
 * After every input the scratch directory must hold "k" alone. delay: can
 * make I/O wait for as long as its field says, so specs that name it are only
 * opened and closed; RAM disks over 1 TiB are not opened (FUZZ_MAX_MEM). */
#include "fuzz-env.h"

#define FUZZ_MAX_SS 65536

static const char *const fuzz_kinds[] = { "mem",     "memdiff", "delay", "crypt",
					  "striped", "prwrap",	NULL };
/* Field values that look like kinds: the cipher and the key file. */
static const char *const fuzz_words[] = { "xts-aes-256", "k", NULL };
static const char *const fuzz_files[] = { "k", NULL };

static bool fuzz_in_list(const char *const *list, const char *s, size_t len)
{
	for (; *list; list++)
		if (strlen(*list) == len && !memcmp(*list, s, len))
			return true;
	return false;
}

static bool fuzz_spec_allowed(const char *spec, size_t len)
{
	if (memchr(spec, '/', len))
		return false;
	for (size_t p = 0; p <= len; p++) {
		size_t q = p;
		bool kindlike = true, digits = true;

		if (p > 0 && !strchr(":[,", spec[p - 1]))
			continue;
		while (q < len && !strchr(":;,[]", spec[q])) {
			char c = spec[q];

			kindlike = kindlike && ((c >= 'a' && c <= 'z') ||
						(c >= '0' && c <= '9') || c == '-');
			digits = digits && c >= '0' && c <= '9';
			q++;
		}
		if (q == p || !kindlike || digits)
			continue;
		if (!fuzz_in_list(fuzz_kinds, spec + p, q - p) &&
		    !fuzz_in_list(fuzz_words, spec + p, q - p))
			return false;
	}
	return true;
}

/* RAM disks of at most FUZZ_MAX_MEM bytes. The ram plugin sizes its chunk
 * index by the declared size (8 bytes per 64 MiB), allocated at open and walked
 * at close: mem:88888888881M takes 6 s to open and close uninstrumented, over 60
 * under the sanitizers (tests/fuzz/crashes/README.md). */
#define FUZZ_MAX_MEM (UINT64_C(1) << 40)

static bool fuzz_mem_sizes_ok(const char *spec, size_t len)
{
	for (size_t p = 0; p + 4 <= len; p++) {
		char size[32];
		uint64_t v;
		size_t n;

		if (memcmp(spec + p, "mem:", 4) || (p > 0 && !strchr(":[,", spec[p - 1])))
			continue;
		n = strcspn(spec + p + 4, ";,]:");
		if (n >= sizeof(size))
			continue; /* not a SIZE the plugin takes */
		memcpy(size, spec + p + 4, n);
		size[n] = 0;
		if (dc_parse_size(size, &v) == 0 && v > FUZZ_MAX_MEM)
			return false;
	}
	return true;
}

static int fuzz_describe(void *arg, int depth, const char *plugin, const char *form,
			 const struct dc_info *info, const char *key, const char *value)
{
	size_t *n = arg;

	/* Every string must be a string (ASan checks the reads). */
	*n += strlen(plugin) + strlen(form) +
	      strnlen(info->disk_type, sizeof(info->disk_type));
	if (key)
		*n += strlen(key) + (value ? strlen(value) : 0);
	*n += (size_t)depth;
	return 0;
}

static void fuzz_pattern(uint8_t *buf, size_t len, uint64_t sector, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seed ^ (sector * 131) ^ (i * 7) ^ (i >> 9));
}

static void fuzz_io(dc_disk *d, const char *spec, bool ro)
{
	static uint8_t wbuf[2 * FUZZ_MAX_SS], rbuf[2 * FUZZ_MAX_SS];
	uint64_t n = dc_sector_count(d);
	uint32_t ss = dc_sector_size(d);
	uint64_t at[2] = { 0, n - 1 };
	int rc;

	if (ss < 512 || ss > FUZZ_MAX_SS || (ss & (ss - 1)))
		fuzz_die("'%s': sector size %u", spec, ss);
	if (n == 0) {
		/* Only a raw file shorter than a sector opens with no sectors
		 * (file:, as OpenVMM's FileDisk; the bare word `k` names the
		 * key file now that bare words open existing files): nothing
		 * can be read, and a read at 0 must say so. */
		if (dc_read(d, 0, rbuf, ss) != DC_E_ILLEGAL_BLOCK)
			fuzz_die("'%s': no sectors, yet sector 0 does not fail", spec);
		return;
	}
	for (int i = 0; i < 2; i++) {
		rc = dc_read(d, at[i], rbuf, ss);
		if (rc)
			fuzz_die("'%s': read of sector %llu: %d", spec,
				 (unsigned long long)at[i], rc);
		if (ro)
			continue;
		fuzz_pattern(wbuf, ss, at[i], (uint8_t)n);
		rc = dc_write(d, at[i], wbuf, ss, i ? DC_IO_FUA : 0);
		if (rc)
			fuzz_die("'%s': write of sector %llu: %d", spec,
				 (unsigned long long)at[i], rc);
		rc = dc_read(d, at[i], rbuf, ss);
		if (rc || memcmp(rbuf, wbuf, ss))
			fuzz_die("'%s': sector %llu does not read back what was written "
				 "(%d)",
				 spec, (unsigned long long)at[i], rc);
	}
	if (dc_read(d, n, rbuf, ss) >= 0 || dc_read(d, n - 1, rbuf, 2 * (size_t)ss) >= 0)
		fuzz_die("'%s': a read past the end (%llu sectors) succeeded", spec,
			 (unsigned long long)n);
	if (!ro) {
		if (dc_write(d, n, wbuf, ss, 0) >= 0)
			fuzz_die("'%s': a write past the end succeeded", spec);
		dc_unmap(d, 0, n < 4 ? n : 4, 0);
		rc = dc_flush(d);
		if (rc)
			fuzz_die("'%s': flush: %d", spec, rc);
	} else if (dc_write(d, 0, wbuf, ss, 0) >= 0) {
		fuzz_die("'%s': a write to a read-only disk succeeded", spec);
	}
}

static void fuzz_pr(dc_disk *d)
{
	struct dc_pr_controller ctl[4];
	struct dc_pr_report rep = { .max_controllers = 4, .controllers = ctl };
	struct dc_pr_caps caps;

	if (dc_pr_caps(d, &caps) != 0)
		return;
	dc_pr_register(d, NULL, 0x1234, -1);
	dc_pr_reserve(d, 0x1234, DC_PR_WRITE_EXCLUSIVE);
	dc_pr_report(d, &rep);
	dc_pr_preempt(d, 0x1234, 0x1234, DC_PR_EXCLUSIVE_ACCESS, true);
	dc_pr_release(d, 0x1234, DC_PR_EXCLUSIVE_ACCESS);
	dc_pr_clear(d, 0x1234);
}

/* mem: sizes come from the input: a RAM disk of exabytes makes the ram plugin
 * ask for a chunk index of terabytes, a refusal it must handle (ENOMEM). So the
 * allocator returns NULL for what it cannot give instead of ending the run, and
 * run.sh lifts libFuzzer's -malloc_limit_mb (which would report every single
 * allocation above -rss_limit_mb); -rss_limit_mb still bounds what is used. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "allocator_may_return_null=1";
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	uint8_t key[64];

	fuzz_enter_scratch("spec", argc, argv);
	for (int i = 0; i < 64; i++)
		key[i] = (uint8_t)(i * 37 + 11);
	fuzz_put_file("k", key, sizeof(key));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	dc_disk *d = NULL;
	char *spec;
	bool ro, io;
	int rc;

	if (size < 1 || size > 4096 || memchr(data + 1, 0, size - 1))
		return 0;
	spec = strndup((const char *)data + 1, size - 1);
	if (!spec)
		return 0;
	if (!fuzz_spec_allowed(spec, size - 1) || !fuzz_mem_sizes_ok(spec, size - 1)) {
		free(spec);
		return 0;
	}
	ro = data[0] & 1;
	io = !(data[0] & 2) && !strstr(spec, "delay");
	rc = dc_open(spec, ro ? DC_OPEN_READ_ONLY : 0, &d);
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "dc_open(%s) = %d: %s\n", spec, rc,
			rc ? dc_last_error() : "ok");
	if (rc == 0) {
		struct dc_info info;
		size_t n = 0;

		dc_get_info(d, &info);
		if (ro && !(info.flags & DC_INFO_READ_ONLY))
			fuzz_die("'%s' opened read-only says it is writable", spec);
		dc_describe(d, fuzz_describe, &n);
		if (io) {
			fuzz_io(d, spec, (info.flags & DC_INFO_READ_ONLY) != 0);
			if (info.flags & DC_INFO_PR)
				fuzz_pr(d);
		}
		dc_close(d);
	} else if (rc > 0 || !dc_last_error() || !*dc_last_error()) {
		fuzz_die("'%s': dc_open returned %d with no message", spec, rc);
	}
	fuzz_check_scratch(fuzz_files, spec);
	free(spec);
	return 0;
}

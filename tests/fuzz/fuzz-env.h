/* SPDX-License-Identifier: MIT */
/* What the fuzz targets that open disks through dc_open() share: a private
 * scratch directory that is the working directory for the whole run (removed at
 * exit), a check that nothing besides the files a target put there appeared in
 * it, and little-endian readers of the input. tests/fuzz/run.sh points
 * DISKCORE_PLUGIN_PATH at the plugins of its instrumented build. */
#ifndef DISKCORE_FUZZ_ENV_H
#define DISKCORE_FUZZ_ENV_H

#include <diskcore/diskcore.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fuzz_scratch[PATH_MAX];

__attribute__((noreturn, format(printf, 1, 2))) static inline void
fuzz_die(const char *fmt, ...);
static inline void fuzz_die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("FUZZ CHECK FAILED: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

/* Remove every entry of the working directory (the scratch directory). */
static inline void fuzz_clear_scratch(void)
{
	DIR *d = opendir(".");
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlink(e->d_name);
	closedir(d);
}

static inline void fuzz_remove_scratch(void)
{
	if (!fuzz_scratch[0] || chdir(fuzz_scratch) < 0)
		return;
	fuzz_clear_scratch();
	if (chdir("/") == 0)
		rmdir(fuzz_scratch);
}

/* libFuzzer reads the corpus directories and files named on the command line
 * (and -artifact_prefix=) after LLVMFuzzerInitialize: make relative ones
 * absolute before the working directory changes. */
static inline void fuzz_absolute_args(int argc, char **argv)
{
	static const char prefix[] = "-artifact_prefix=";
	const size_t plen = sizeof(prefix) - 1;
	char cwd[PATH_MAX];

	if (!getcwd(cwd, sizeof(cwd)))
		return;
	for (int i = 1; i < argc; i++) {
		bool opt = !strncmp(argv[i], prefix, plen);
		const char *path = opt ? argv[i] + plen : argv[i];
		char *abs;

		if ((argv[i][0] == '-' && !opt) || path[0] == '/' || !path[0])
			continue;
		if (asprintf(&abs, "%s%s/%s", opt ? prefix : "", cwd, path) >= 0)
			argv[i] = abs; /* for the whole run */
	}
}

/* The same for the directories on DISKCORE_PLUGIN_PATH. */
static inline void fuzz_absolute_plugin_path(void)
{
	const char *path = getenv("DISKCORE_PLUGIN_PATH");
	char cwd[PATH_MAX], *copy, *dir, *save = NULL, *abs = NULL;
	bool first = true, rel;
	size_t len = 0;
	FILE *f;

	if (!path || !getcwd(cwd, sizeof(cwd)) || !(copy = strdup(path)))
		return;
	f = open_memstream(&abs, &len);
	for (dir = strtok_r(copy, ":", &save); f && dir;
	     dir = strtok_r(NULL, ":", &save)) {
		rel = dir[0] != '/';
		fprintf(f, "%s%s%s%s", first ? "" : ":", rel ? cwd : "", rel ? "/" : "",
			dir);
		first = false;
	}
	if (f && fclose(f) == 0)
		setenv("DISKCORE_PLUGIN_PATH", abs, 1);
	free(abs);
	free(copy);
}

/* Make the scratch directory and enter it; the run ends if that fails. */
static inline void fuzz_enter_scratch(const char *name, int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");

	fuzz_absolute_args(*argc, *argv);
	fuzz_absolute_plugin_path();
	snprintf(fuzz_scratch, sizeof(fuzz_scratch), "%s/diskcore-fuzz-%s-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp", name);
	if (!mkdtemp(fuzz_scratch) || chdir(fuzz_scratch) < 0) {
		perror(fuzz_scratch);
		exit(1);
	}
	atexit(fuzz_remove_scratch);
}

/* Write len bytes to a new file name (mode 0600) in the scratch directory. */
static inline void fuzz_put_file(const char *name, const void *data, size_t len)
{
	int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || write(fd, data, len) != (ssize_t)len || close(fd) < 0) {
		perror(name);
		exit(1);
	}
}

/* The scratch directory holds exactly the names in allowed (NULL-terminated). */
static inline void fuzz_check_scratch(const char *const *allowed, const char *spec)
{
	DIR *d = opendir(".");
	struct dirent *e;

	if (!d)
		fuzz_die("cannot list the scratch directory: %s", strerror(errno));
	while ((e = readdir(d))) {
		bool ok = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");

		for (const char *const *a = allowed; !ok && *a; a++)
			ok = !strcmp(e->d_name, *a);
		if (!ok)
			fuzz_die("'%s' created '%s' in the scratch directory", spec,
				 e->d_name);
	}
	closedir(d);
}

/* Little-endian input readers: missing bytes read as zero. */
struct fuzz_in {
	const uint8_t *p;
	size_t left;
};

static inline uint64_t fuzz_take(struct fuzz_in *in, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++) {
		if (!in->left)
			break;
		v |= (uint64_t)*in->p << (8 * i);
		in->p++;
		in->left--;
	}
	return v;
}

#endif

/* SPDX-License-Identifier: MIT */
/* Control-path error messages: one per thread, prefixed with the spec element
 * being opened so that a plugin's "32 bytes, expected 64" reads
 * "crypt: key file /k.bin: 32 bytes, expected 64". */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERROR_MAX 1024
#define PREFIX_DEPTH 16

static __thread char error_msg[ERROR_MAX];
static __thread const char *error_prefix[PREFIX_DEPTH];
static __thread int error_depth;

void dc__error_push_prefix(const char *prefix)
{
	if (error_depth < PREFIX_DEPTH)
		error_prefix[error_depth] = prefix;
	error_depth++;
}

void dc__error_pop_prefix(void)
{
	if (error_depth > 0)
		error_depth--;
}

/* URL query strings carry credentials (Azure SAS signatures): never echo them
 * in a message or a description. "https://h/p?sig=x;opt" → "https://h/p?…;opt". */
void dc__redact_urls(char *s)
{
	char *u = s;

	while ((u = strstr(u, "://")) != NULL) {
		char *q = u + 3, *end;

		while (*q && !strchr("?;,] '\"", *q))
			q++;
		if (*q != '?') {
			u = q;
			continue;
		}
		end = q + 1;
		while (*end && !strchr(";,] '\"", *end))
			end++;
		if (end - q > 4) {
			memcpy(q + 1, "...", 3);
			memmove(q + 4, end, strlen(end) + 1);
		}
		u = q + 1;
	}
}

static void error_vset(bool prefixed, const char *fmt, va_list ap)
{
	char tmp[ERROR_MAX];
	int n = 0;

	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	if (prefixed && error_depth > 0 && error_depth <= PREFIX_DEPTH) {
		const char *p = error_prefix[error_depth - 1];
		/* Do not stack the same prefix twice when a core helper re-reports. */
		if (p && strncmp(tmp, p, strlen(p)) != 0)
			n = snprintf(error_msg, sizeof(error_msg), "%s: ", p);
	}
	if (n < 0 || n >= ERROR_MAX)
		n = 0;
	snprintf(error_msg + n, sizeof(error_msg) - n, "%s", tmp);
	dc__redact_urls(error_msg);
}

DC_EXPORT void dc_verror(const char *fmt, va_list ap)
{
	error_vset(true, fmt, ap);
}

DC_EXPORT void dc_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	error_vset(true, fmt, ap);
	va_end(ap);
}

void dc__error_clear(void)
{
	error_msg[0] = 0;
}

bool dc__error_isset(void)
{
	return error_msg[0] != 0;
}

void dc__error_raw(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	error_vset(false, fmt, ap);
	va_end(ap);
}

DC_EXPORT int dc_fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	error_vset(true, fmt, ap);
	va_end(ap);
	return err;
}

DC_EXPORT uint32_t dc_version(void)
{
	return DC_VERSION(DC_VERSION_MAJOR, DC_VERSION_MINOR);
}

DC_EXPORT const char *dc_last_error(void)
{
	return error_msg[0] ? error_msg : "no error";
}

DC_EXPORT void dc_debug(const char *fmt, ...)
{
	static int enabled = -1;
	va_list ap;

	if (enabled < 0)
		enabled = getenv("DISKCORE_DEBUG") != NULL;
	if (!enabled)
		return;
	va_start(ap, fmt);
	fputs("diskcore: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

DC_EXPORT const char *dc_strerror(int result)
{
	switch (result) {
	case 0:
		return "success";
	case DC_E_ILLEGAL_BLOCK:
		return "illegal block (sector range outside the disk)";
	case DC_E_INVALID_INPUT:
		return "invalid input";
	case DC_E_IO:
		return "I/O error";
	case DC_E_MEDIUM:
		return "medium error";
	case DC_E_MEMORY_ACCESS:
		return "buffer access failed";
	case DC_E_READ_ONLY:
		return "disk is read-only";
	case DC_E_RESERVATION_CONFLICT:
		return "reservation conflict";
	case DC_E_ABORTED_PREEMPT:
		return "aborted by preempt-and-abort";
	case DC_E_UNSUPPORTED_EJECT:
		return "eject not supported";
	case DC_E_UNSUPPORTED:
		return "operation not supported by this disk";
	default:
		return result < 0 && strerrordesc_np(-result) ? strerrordesc_np(-result) :
								"unknown result";
	}
}

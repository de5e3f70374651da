/* SPDX-License-Identifier: MIT */
/* UTF-16 (either byte order) to and from UTF-8: the names in VHD parent
 * locators and headers and in VHDX parent locators and file identifiers.
 *
 * Our own rather than iconv(3): iconv_open() needs glibc's gconv modules at run
 * time (absent from minimal containers), allocates a descriptor per conversion
 * that threads cannot share, and stops at an embedded NUL only if asked in a
 * second pass; these formats want NUL-terminated names, strict UTF-8 and
 * paired surrogates, in sixty lines. */
#ifndef DISKCORE_COMMON_UTF16_H
#define DISKCORE_COMMON_UTF16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* UTF-16 bytes (big- or little-endian) to a malloc'd UTF-8 string, stopping at
 * a NUL unit (an odd last byte is ignored); NULL if a surrogate is unpaired or
 * memory runs out. */
char *utf16_to_utf8(const uint8_t *b, size_t bytes, bool big);

/* UTF-8 s to UTF-16 in out (room for max bytes), without a terminating NUL: the
 * bytes written, or -1 when s is not strict UTF-8 (overlong forms, surrogates,
 * beyond U+10FFFF) or does not fit. */
int utf8_to_utf16(const char *s, uint8_t *out, size_t max, bool big);

#endif

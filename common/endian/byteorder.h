/* SPDX-License-Identifier: MIT */
/* Byte order: loads and stores of little- and big-endian integers at any byte
 * address (wire formats and on-disk structures are rarely aligned), and a
 * codec for packed on-disk structures described by a layout string.
 *
 * The loads and stores are static inline: memcpy plus glibc's conversions
 * compile to one (byte-swapping) load or store on x86-64. */
#ifndef DISKCORE_COMMON_BYTEORDER_H
#define DISKCORE_COMMON_BYTEORDER_H

#include <endian.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* get_le16/32/64 and get_be16/32/64 load, put_le16/32/64 and put_be16/32/64
 * store: BYTEORDER_ACCESSORS(le, 32) defines get_le32() and put_le32(). */
#define BYTEORDER_ACCESSORS(order, bits)                                \
	static inline uint##bits##_t get_##order##bits(const void *p)   \
	{                                                               \
		uint##bits##_t v;                                       \
                                                                        \
		memcpy(&v, p, sizeof(v));                               \
		return order##bits##toh(v);                             \
	}                                                               \
	static inline void put_##order##bits(void *p, uint##bits##_t v) \
	{                                                               \
		v = hto##order##bits(v);                                \
		memcpy(p, &v, sizeof(v));                               \
	}

BYTEORDER_ACCESSORS(le, 16)
BYTEORDER_ACCESSORS(le, 32)
BYTEORDER_ACCESSORS(le, 64)
BYTEORDER_ACCESSORS(be, 16)
BYTEORDER_ACCESSORS(be, 32)
BYTEORDER_ACCESSORS(be, 64)

/* --- Packed structures ------------------------------------------------------
 *
 * An on-disk structure is declared as a packed struct whose fields are in host
 * order once decoded, with a layout string that says which bytes are integers
 * to convert, in the notation of Python's struct module:
 *
 *   '<' or '>' first   the structure is little- or big-endian;
 *   B H I Q            an unsigned integer of 1, 2, 4 or 8 bytes;
 *   Ns                 N bytes kept as they are (text, GUIDs, reserved space);
 *   N(...)             the group in parentheses N times (arrays of records);
 *   a count N before B, H, I or Q repeats it; spaces are ignored.
 *
 * endian_layout_size() of a layout equals the struct's size; the unit tests
 * check it for every layout, beside each struct's _Static_assert on its size. */

/* The bytes a layout describes (where it stops at a character it does not know). */
size_t endian_layout_size(const char *layout);
/* The size bytes at raw into *dst, each integer field in host order. */
void endian_decode(void *dst, const void *raw, size_t size, const char *layout);
/* *src (size bytes, host order) into raw in the structure's byte order. */
void endian_encode(void *raw, const void *src, size_t size, const char *layout);

/* For a packed struct name described by layout: name_decode(struct name *,
 * raw), name_encode(raw, const struct name *) and name_layout() (the tests
 * check its size against the struct's). */
#define ENDIAN_CODEC(name, layout)                                        \
	static inline const char *name##_layout(void)                     \
	{                                                                 \
		return layout;                                            \
	}                                                                 \
	static inline void name##_decode(struct name *s, const void *raw) \
	{                                                                 \
		endian_decode(s, raw, sizeof(*s), layout);                \
	}                                                                 \
	static inline void name##_encode(void *raw, const struct name *s) \
	{                                                                 \
		endian_encode(raw, s, sizeof(*s), layout);                \
	}

#endif

/* SPDX-License-Identifier: MIT */
/* vhdfmt: the parts of the VHD format (Microsoft "Virtual Hard Disk Image Format
 * Specification") that the vhd1 and vhd plugins share: the 512-byte footer, the
 * one's-complement checksum, CHS geometry, unique ids, and full-length file I/O;
 * and what vhd and vhdx share: zeroing file ranges, UTF-16 names, and as
 * differencing layers, quiet probing and the parent chain check behind
 * lower_spec(); and what all three share: the image lock and the create
 * rule's check of an existing image. Compiled into vhd1, vhd and vhdx;
 * nothing here is exported (plugins.map). */
#ifndef DISKCORE_VHDFMT_H
#define DISKCORE_VHDFMT_H

#include <diskcore/plugin.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VHD_SECTOR 512u
#define VHD_FOOTER_SIZE 512u
#define VHD_VERSION 0x00010000u
#define VHD_TYPE_FIXED 2u
#define VHD_TYPE_DYNAMIC 3u
#define VHD_TYPE_DIFF 4u
/* Footer field offsets. */
#define VHD_FOOTER_CHECKSUM_OFF 64u
/* Seconds from the Unix epoch to the VHD epoch (2000-01-01 00:00:00 UTC). */
#define VHD_EPOCH 946684800u
/* The deepest parent chain accepted: the core's layer limit. */
#define VHDFMT_MAX_CHAIN 64

struct vhd_footer {
	uint32_t features;
	uint32_t version;
	uint64_t data_offset;
	uint32_t timestamp;
	uint32_t creator_app;
	uint32_t creator_version;
	uint32_t creator_os;
	uint64_t original_size;
	uint64_t current_size;
	uint32_t geometry;
	uint32_t disk_type;
	uint32_t checksum;
	uint8_t unique_id[16];
	uint8_t saved_state;
};

/* Why a footer did not decode, in the order the checks run. */
enum vhdfmt_footer_status {
	VHDFMT_FOOTER_OK = 0,
	VHDFMT_FOOTER_BAD_COOKIE,
	VHDFMT_FOOTER_BAD_CHECKSUM,
	VHDFMT_FOOTER_BAD_VERSION,
};

static inline uint16_t vhd_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t vhd_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t vhd_get64(const uint8_t *p)
{
	return (uint64_t)vhd_get32(p) << 32 | vhd_get32(p + 4);
}

static inline void vhd_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void vhd_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void vhd_put64(uint8_t *p, uint64_t v)
{
	vhd_put32(p, (uint32_t)(v >> 32));
	vhd_put32(p + 4, (uint32_t)v);
}

/* One's complement of the byte sum of buf, skipping the 4 checksum bytes. */
uint32_t vhdfmt_checksum(const uint8_t *buf, size_t len, size_t csum_off);

/* Decode and check a footer: cookie, then checksum, then version (reference
 * §2.2 order). Fields are filled even when the status is not OK. */
enum vhdfmt_footer_status vhdfmt_footer_decode(const uint8_t buf[VHD_FOOTER_SIZE],
					       struct vhd_footer *f);
/* Encode f (its checksum field is recomputed and stored back into f). */
void vhdfmt_footer_encode(struct vhd_footer *f, uint8_t buf[VHD_FOOTER_SIZE]);
/* The footer OpenVMM's new_fixed() writes: geometry 0, creator fields per the
 * reference table, a fixed disk of `size` bytes with the given unique id. */
void vhdfmt_footer_fixed(struct vhd_footer *f, uint64_t size, const uint8_t uid[16]);

/* Make the (empty) file fd a fixed VHD of size bytes: zeroes, then a
 * vhdfmt_footer_fixed() footer with a random unique id; fsync. -errno. */
int vhdfmt_write_fixed(int fd, uint64_t size);

/* A random version-4 GUID, stored as Windows lays out a GUID in memory. */
int vhdfmt_new_uid(uint8_t uid[16]);
/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" of a GUID in Windows memory layout. */
void vhdfmt_uid_str(const uint8_t uid[16], char out[37]);
/* CHS geometry of a disk of `size` bytes, as the specification computes it. */
uint32_t vhdfmt_geometry(uint64_t size);

/* pread/pwrite the whole length; -ENODATA if the file ends first. */
int vhdfmt_pread(int fd, void *buf, size_t len, uint64_t off);
int vhdfmt_pwrite(int fd, const void *buf, size_t len, uint64_t off);
/* Move a buffer view to or from the file at off (dc_buf_pread/dc_buf_pwrite);
 * -errno, -ENODATA/-ENOSPC at an early EOF. */
int vhdfmt_xfer(int fd, const struct dc_buf *b, uint64_t off, bool write, int rwflags);
/* Map an errno from the helpers above onto a request result. */
int vhdfmt_result(struct dc_req *req, int neg_errno);
/* Zero [off, off+len) of the file: punch a hole, else write zeroes. */
int vhdfmt_zero(int fd, uint64_t off, uint64_t len);

/* UTF-16 bytes (big- or little-endian) to a malloc'd UTF-8 string, stopping at
 * a NUL unit; NULL if a surrogate is unpaired or memory runs out. */
char *vhdfmt_utf16_to_8(const uint8_t *b, size_t bytes, bool big);

/* dc_error() unless this thread is probing quietly. Probing other files
 * (parent candidates, the chain walk) must not leave their messages behind. */
void vhdfmt_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Enter (+1) or leave (-1) a quiet stretch on this thread; they nest. */
void vhdfmt_quiet(int delta);

/* The parent of the image at path, open read-only (and non-blocking) as fd: a
 * malloc'd real path, or NULL when it has none or it cannot be found. Called
 * inside a quiet stretch. */
typedef char *(*vhdfmt_parent_fn)(int fd, const char *path);

/* Walk the parent chain up from parent, the parent of the image whose file is
 * dev/ino, asking parent_of for each next link. A loop, or a chain deeper than
 * VHDFMT_MAX_CHAIN, is refused with -ELOOP and a message about path. A link
 * that cannot be opened or parsed ends the walk with 0: opening it as a layer
 * reports what is wrong with it. */
int vhdfmt_check_chain(const char *path, dev_t dev, ino_t ino, const char *parent,
		       vhdfmt_parent_fn parent_of);

/* The end of a differencing image's lower_spec(), once its parent resolved to
 * the real path parent: refuse a path a spec cannot hold, check the chain above
 * the image (path, open as fd), and write "form:parent" into buf (len bytes).
 * Returns 1, or -errno after a message. */
int vhdfmt_lower_spec(const char *form, const char *path, int fd, const char *parent,
		      vhdfmt_parent_fn parent_of, char *buf, size_t len);

/* Lock an open image (flock, never waiting): shared for a read-only open,
 * exclusive for a writable one, so no two opens write one image and none reads
 * it while another writes. The lock goes with the fd. -errno after a message. */
int vhdfmt_lock(int fd, const char *path, bool read_only);

/* ;overwrite with parent=: refuse (-ELOOP after a message) to empty the file
 * at path when the chain above parent runs through it. A guard against a
 * mistake, run before dc_create_open() empties the file. */
int vhdfmt_overwrite_guard(const char *path, const char *parent,
			   vhdfmt_parent_fn parent_of);

/* create= or parent= named an image that exists, so dc_create_open() opened it
 * unchanged: refuse it (-EEXIST after a message) unless it is what they
 * describe. want_size: create='s size (0: none), size: the image's virtual
 * size; want_parent: parent= as given (NULL: none), parent: the parent the
 * image names (NULL: it has none, or it cannot be found). */
int vhdfmt_check_existing(const char *path, uint64_t want_size, uint64_t size,
			  const char *want_parent, const char *parent);

#endif

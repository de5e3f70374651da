/* SPDX-License-Identifier: MIT */
/* Compressed clusters: raw deflate (zlib, no header, 4 KiB window as QEMU
 * writes it) or a zstd stream when the header's compression type says so.
 * Either must fill the whole cluster; the compressed length may include
 * padding after the stream ends. A stream that would inflate past the
 * cluster is refused (-EFBIG), never truncated (docs/security.md's
 * expansion bound): the output buffer is one cluster, and one more step into
 * a scratch buffer shows whether more would come. */
#include "qcow2.h"

#include <errno.h>
#include <zlib.h>
#ifdef QCOW2_HAVE_ZSTD
#include <zstd.h>
#endif

static int qcow2_inflate(const uint8_t *src, size_t slen, uint8_t *dst, size_t dlen)
{
	z_stream z = { 0 };
	int ret;

	/* Negative window bits: raw deflate; 15 accepts any window a writer
	 * chose. */
	if (inflateInit2(&z, -15) != Z_OK)
		return -ENOMEM;
	z.next_in = (Bytef *)src;
	z.avail_in = (uInt)slen;
	z.next_out = dst;
	z.avail_out = (uInt)dlen;
	ret = inflate(&z, Z_FINISH);
	if (ret == Z_BUF_ERROR && z.avail_out == 0) {
		uint8_t more[64];

		/* Full, and the stream has not ended: more output would mean
		 * more than a cluster; none (truncated, padding) is accepted
		 * as QEMU accepts it. */
		z.next_out = more;
		z.avail_out = sizeof(more);
		inflate(&z, Z_FINISH);
		ret = z.avail_out < sizeof(more) ? Z_DATA_ERROR : Z_STREAM_END;
		z.avail_out = 0;
		if (ret == Z_DATA_ERROR) {
			inflateEnd(&z);
			return -EFBIG;
		}
	}
	inflateEnd(&z);
	if (ret == Z_STREAM_END && z.avail_out == 0)
		return 0;
	return -EIO;
}

#ifdef QCOW2_HAVE_ZSTD
static int qcow2_unzstd(const uint8_t *src, size_t slen, uint8_t *dst, size_t dlen)
{
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	ZSTD_inBuffer in = { src, slen, 0 };
	ZSTD_outBuffer out = { dst, dlen, 0 };
	size_t r = 1;
	int ret = 0;

	if (!dctx)
		return -ENOMEM;
	while (out.pos < out.size) {
		size_t before = in.pos + out.pos;

		r = ZSTD_decompressStream(dctx, &out, &in);
		if (ZSTD_isError(r) || (r == 0 && out.pos < out.size) ||
		    in.pos + out.pos == before) {
			ret = -EIO;
			break;
		}
	}
	if (ret == 0 && r != 0) {
		uint8_t more[64];
		ZSTD_outBuffer o2 = { more, sizeof(more), 0 };

		/* The frame goes on past the cluster: any more output from it
		 * is refused. (What follows a finished frame is the next
		 * cluster's data, packed behind it, or padding.) */
		r = ZSTD_decompressStream(dctx, &o2, &in);
		if (!ZSTD_isError(r) && o2.pos > 0)
			ret = -EFBIG;
	}
	ZSTD_freeDCtx(dctx);
	return ret;
}
#endif

int qcow2_decompress(enum qcow2_ctype type, const uint8_t *src, size_t slen, uint8_t *dst,
		     size_t dlen)
{
	switch (type) {
	case QCOW2_ZLIB:
		return qcow2_inflate(src, slen, dst, dlen);
	case QCOW2_ZSTD:
#ifdef QCOW2_HAVE_ZSTD
		return qcow2_unzstd(src, slen, dst, dlen);
#else
		return -ENOTSUP;
#endif
	}
	return -EINVAL;
}

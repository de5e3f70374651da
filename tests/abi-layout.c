/* SPDX-License-Identifier: MIT */
/* Prints the binary layout of the public ABI for tests/test-abi.sh, which
 * compares it with the committed baseline abi/layout.txt (docs/abi.md):
 *
 *   struct NAME SIZE fixed|append   append: fields may be added at the end
 *   field NAME.MEMBER OFFSET SIZE
 *   const NAME VALUE                values a compiled program has baked in
 *   version header|abi|runtime MAJOR.MINOR
 *
 * Every member of every struct in diskcore.h and plugin.h is listed here;
 * test-abi.sh checks that against the headers, so a new struct or field that
 * is not listed fails the test until it is added below. */
#include <diskcore/plugin.h>

#include <stddef.h>
#include <stdio.h>

#define STRUCT(T, mode) printf("struct %s %zu %s\n", #T, sizeof(struct T), mode)
#define FIELD(T, f)                                                    \
	printf("field %s.%s %zu %zu\n", #T, #f, offsetof(struct T, f), \
	       sizeof(((struct T *)0)->f))
#define CONST(c) printf("const %s %lld\n", #c, (long long)(c))

/* Consumers and plugins allocate these (or arrays of them): their size is fixed
 * for the life of the major; they grow into their reserved tails. */
static void consumer_structs(void)
{
	STRUCT(dc_pr_caps, "fixed");
	FIELD(dc_pr_caps, types);
	FIELD(dc_pr_caps, persist_through_power_loss);

	STRUCT(dc_pr_controller, "fixed");
	FIELD(dc_pr_controller, key);
	FIELD(dc_pr_controller, host_id);
	FIELD(dc_pr_controller, host_id_len);
	FIELD(dc_pr_controller, controller_id);
	FIELD(dc_pr_controller, holds_reservation);

	STRUCT(dc_pr_report, "fixed");
	FIELD(dc_pr_report, generation);
	FIELD(dc_pr_report, reservation_type);
	FIELD(dc_pr_report, persist_through_power_loss);
	FIELD(dc_pr_report, ncontrollers);
	FIELD(dc_pr_report, max_controllers);
	FIELD(dc_pr_report, controllers);

	STRUCT(dc_pr_args, "fixed");
	FIELD(dc_pr_args, key);
	FIELD(dc_pr_args, new_key);
	FIELD(dc_pr_args, type);
	FIELD(dc_pr_args, ignore_key);
	FIELD(dc_pr_args, ptpl);
	FIELD(dc_pr_args, abort);
	FIELD(dc_pr_args, caps);
	FIELD(dc_pr_args, report);

	STRUCT(dc_info, "fixed");
	FIELD(dc_info, sector_count);
	FIELD(dc_info, sector_size);
	FIELD(dc_info, physical_sector_size);
	FIELD(dc_info, optimal_unmap_sectors);
	FIELD(dc_info, unmap_behavior);
	FIELD(dc_info, flags);
	FIELD(dc_info, disk_id);
	FIELD(dc_info, disk_type);
	FIELD(dc_info, reserved);

	STRUCT(dc_completion, "fixed");
	FIELD(dc_completion, user_data);
	FIELD(dc_completion, result);
	FIELD(dc_completion, detail);
	FIELD(dc_completion, reserved);

	STRUCT(dc_extent, "fixed");
	FIELD(dc_extent, offset);
	FIELD(dc_extent, length);
	FIELD(dc_extent, flags);
	FIELD(dc_extent, layer);
	FIELD(dc_extent, reserved);

	STRUCT(dc_check_result, "fixed");
	FIELD(dc_check_result, corruptions);
	FIELD(dc_check_result, leaks);
	FIELD(dc_check_result, checked);
	FIELD(dc_check_result, reserved);

	STRUCT(dc_io, "fixed");
	FIELD(dc_io, op);
	FIELD(dc_io, flags);
	FIELD(dc_io, sector);
	FIELD(dc_io, count);
	FIELD(dc_io, iov);
	FIELD(dc_io, iovcnt);
	FIELD(dc_io, pr);
	FIELD(dc_io, cb);
	FIELD(dc_io, user_data);
	FIELD(dc_io, reserved);
}

static void plugin_structs(void)
{
	STRUCT(dc_plugin_abi, "fixed");
	FIELD(dc_plugin_abi, struct_size);
	FIELD(dc_plugin_abi, abi_major);
	FIELD(dc_plugin_abi, abi_minor);

	/* Arrays a plugin hands in: the stride is ABI. */
	STRUCT(dc_option, "fixed");
	FIELD(dc_option, name);
	FIELD(dc_option, type);
	FIELD(dc_option, help);
	FIELD(dc_option, reserved);

	STRUCT(dc_form, "fixed");
	FIELD(dc_form, name);
	FIELD(dc_form, nfields);
	FIELD(dc_form, child);
	FIELD(dc_form, flags);
	FIELD(dc_form, syntax);
	FIELD(dc_form, help);
	FIELD(dc_form, options);
	FIELD(dc_form, reserved);

	STRUCT(dc_optval, "fixed");
	FIELD(dc_optval, name);
	FIELD(dc_optval, value);
	FIELD(dc_optval, num);

	/* Passed by value (dc_buf_sub). */
	STRUCT(dc_buf, "fixed");
	FIELD(dc_buf, iov);
	FIELD(dc_buf, iovcnt);
	FIELD(dc_buf, skip);
	FIELD(dc_buf, len);

	STRUCT(dc_marker, "fixed");
	FIELD(dc_marker, bits);
	FIELD(dc_marker, bit0);
	FIELD(dc_marker, sector);
	FIELD(dc_marker, count);

	/* The core allocates these and plugins only read them: appendable. */
	STRUCT(dc_req, "append");
	FIELD(dc_req, op);
	FIELD(dc_req, flags);
	FIELD(dc_req, sector);
	FIELD(dc_req, count);
	FIELD(dc_req, buf);
	FIELD(dc_req, marker);
	FIELD(dc_req, pr);
	FIELD(dc_req, ctx);
	FIELD(dc_req, qctx);
	FIELD(dc_req, node);
	FIELD(dc_req, result);
	FIELD(dc_req, detail);
	FIELD(dc_req, inst);

	STRUCT(dc_open_args, "append");
	FIELD(dc_open_args, struct_size);
	FIELD(dc_open_args, node);
	FIELD(dc_open_args, form);
	FIELD(dc_open_args, fields);
	FIELD(dc_open_args, nfields);
	FIELD(dc_open_args, opts);
	FIELD(dc_open_args, nopts);
	FIELD(dc_open_args, read_only);
	FIELD(dc_open_args, nchildren);
	FIELD(dc_open_args, force_share);

	/* The entry reports its size; the core copies that much. */
	STRUCT(dc_plugin, "append");
	FIELD(dc_plugin, struct_size);
	FIELD(dc_plugin, abi_major);
	FIELD(dc_plugin, abi_minor);
	FIELD(dc_plugin, kind);
	FIELD(dc_plugin, name);
	FIELD(dc_plugin, version);
	FIELD(dc_plugin, summary);
	FIELD(dc_plugin, usage);
	FIELD(dc_plugin, forms);
	FIELD(dc_plugin, ctx_size);
	FIELD(dc_plugin, ops);
	FIELD(dc_plugin, passthrough_ops);
	FIELD(dc_plugin, open);
	FIELD(dc_plugin, close);
	FIELD(dc_plugin, queue_open);
	FIELD(dc_plugin, queue_close);
	FIELD(dc_plugin, submit);
	FIELD(dc_plugin, io);
	FIELD(dc_plugin, sector_count);
	FIELD(dc_plugin, attach);
	FIELD(dc_plugin, lower_spec);
	FIELD(dc_plugin, describe);
	FIELD(dc_plugin, resize);
	FIELD(dc_plugin, queue_poll);
	FIELD(dc_plugin, extents);
	FIELD(dc_plugin, check);
	FIELD(dc_plugin, layer_flags);
}

static void consumer_consts(void)
{
	CONST(DC_E_ILLEGAL_BLOCK);
	CONST(DC_E_INVALID_INPUT);
	CONST(DC_E_IO);
	CONST(DC_E_MEDIUM);
	CONST(DC_E_MEMORY_ACCESS);
	CONST(DC_E_READ_ONLY);
	CONST(DC_E_RESERVATION_CONFLICT);
	CONST(DC_E_ABORTED_PREEMPT);
	CONST(DC_E_UNSUPPORTED_EJECT);
	CONST(DC_E_UNSUPPORTED);
	CONST(DC_MEDIUM_UNRECOVERED_READ);
	CONST(DC_MEDIUM_WRITE_FAULT);
	CONST(DC_MEDIUM_GUARD_CHECK);
	CONST(DC_MEDIUM_APP_TAG_CHECK);
	CONST(DC_MEDIUM_REF_TAG_CHECK);
	CONST(DC_OP_READ);
	CONST(DC_OP_WRITE);
	CONST(DC_OP_FLUSH);
	CONST(DC_OP_UNMAP);
	CONST(DC_OP_EJECT);
	CONST(DC_OP_PR_CAPS);
	CONST(DC_OP_PR_REPORT);
	CONST(DC_OP_PR_REGISTER);
	CONST(DC_OP_PR_RESERVE);
	CONST(DC_OP_PR_RELEASE);
	CONST(DC_OP_PR_CLEAR);
	CONST(DC_OP_PR_PREEMPT);
	CONST(DC_IO_FUA);
	CONST(DC_IO_BLOCK_LEVEL_ONLY);
	CONST(DC_UNMAP_UNSPECIFIED);
	CONST(DC_UNMAP_IGNORED);
	CONST(DC_UNMAP_ZEROES);
	CONST(DC_PR_WRITE_EXCLUSIVE);
	CONST(DC_PR_EXCLUSIVE_ACCESS);
	CONST(DC_PR_WRITE_EXCLUSIVE_REG_ONLY);
	CONST(DC_PR_EXCLUSIVE_ACCESS_REG_ONLY);
	CONST(DC_PR_WRITE_EXCLUSIVE_ALL_REGS);
	CONST(DC_PR_EXCLUSIVE_ACCESS_ALL_REGS);
	CONST(DC_INFO_READ_ONLY);
	CONST(DC_INFO_FUA_RESPECTED);
	CONST(DC_INFO_HAS_DISK_ID);
	CONST(DC_INFO_PR);
	CONST(DC_INFO_CAN_READ_CACHE);
	CONST(DC_INFO_EJECT);
	CONST(DC_OPEN_READ_ONLY);
	CONST(DC_QUEUE_POLL);
	CONST(DC_QUEUE_THREAD);
	CONST(DC_VERSION_MAJOR);
}

static void plugin_consts(void)
{
	CONST(DC_ABI_MAJOR);
	printf("const DC_PLUGIN_ENTRY_NAME %s\n", DC_PLUGIN_ENTRY_NAME);
	CONST(DC_KIND_BACKEND);
	CONST(DC_KIND_DECORATOR);
	CONST(DC_KIND_LAYER);
	CONST(DC_OPT_FLAG);
	CONST(DC_OPT_STRING);
	CONST(DC_OPT_SIZE);
	CONST(DC_OPT_UINT);
	CONST(DC_CHILD_NONE);
	CONST(DC_CHILD_ONE);
	CONST(DC_CHILD_LIST);
	CONST(DC_FORM_READ_CACHE);
	CONST(DC_FORM_WRITE_THROUGH);
	CONST(DC_IO_NO_OVERWRITE);
	CONST(DC_IO_NEXT_IS_ZERO);
}

int main(void)
{
	uint32_t v = dc_version();

	consumer_structs();
	plugin_structs();
	consumer_consts();
	plugin_consts();
	/* Minors grow; test-abi.sh checks that the three agree with each other,
	 * the soname and the version script. */
	printf("version header %d.%d\n", DC_VERSION_MAJOR, DC_VERSION_MINOR);
	printf("version abi %d.%d\n", DC_ABI_MAJOR, DC_ABI_MINOR);
	printf("version runtime %u.%u\n", (unsigned)(v >> 16), (unsigned)(v & 0xffff));
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * diskctl: the command-line front end of diskcore, and its reference consumer
 * (diskctl.h). This file dispatches to the subcommands and holds their help;
 * each subcommand's file holds its table of options (the rest of the help).
 */
#include "diskctl.h"

#include "../serve.h"

#include <getopt.h>
#include <string.h>

const struct ctl_cmd *ctl_current;

static const struct ctl_cmd ctl_cmds[] = {
	{ "info", "show a disk's metadata and its chain", "SPEC", 1, 1, "SPEC",
	  "Open SPEC read-only and print its metadata (size, sector sizes, read-only,\n"
	  "FUA, unmap behaviour, disk id, type) and every element of the chain with\n"
	  "the details its plugin describes.\n",
	  ctl_info_opts, ctl_info },
	{ "plugins", "list the plugins on the search path", NULL, 0, 0, "",
	  "Load every plugin file on the search path ($DISKCORE_PLUGIN_PATH, which\n"
	  "replaces the built-in directory; an empty element stands for it) and\n"
	  "print its name, kind, version, summary, usage and spec forms with their\n"
	  "options; files that were refused say why.\n",
	  ctl_plugins_opts, ctl_plugins },
	{ "cp", "copy one disk to another", "SRC DST", 2, 2, "SRC and DST",
	  "Copy every sector of SRC (opened read-only) to the start of DST, which\n"
	  "must be at least as large. DST is flushed at the end. SIGINT or SIGTERM\n"
	  "stops the copy cleanly and says how much of SRC DST holds (exit status\n"
	  "128 + the signal's number).\n",
	  ctl_cp_opts, ctl_cp },
	{ "read", "dump sectors", "SPEC SECTOR COUNT", 3, 3, "SPEC SECTOR COUNT",
	  "Read COUNT sectors from SECTOR and print them as a hex dump (xxd style,\n"
	  "offsets in bytes from the start of the disk) or as raw bytes.\n",
	  ctl_read_opts, ctl_read },
	{ "write", "write sectors", "SPEC SECTOR", 2, 2, "SPEC SECTOR",
	  "Write N sectors filled with BYTE (--pattern BYTE --count N), or the\n"
	  "contents of file F (--file F, a multiple of the sector size) at SECTOR,\n"
	  "then flush.\n",
	  ctl_write_opts, ctl_write },
	{ "create", "make a new image: raw, VHD, VHDX, qcow2, SQLite, differencing",
	  "SPEC [SIZE]", 1, 2, "SPEC",
	  "Make the image SPEC names, SIZE bytes of zeroes, through the options its\n"
	  "plugin declares for creating ('diskctl plugins' lists them). The kind\n"
	  "picks the format; options in SPEC shape it:\n"
	  "  file:X.img, X.img    raw file (sparse); X.vmgs a fixed VHD\n"
	  "  vhd:X.vhd            dynamic VHD (;block=SIZE); vhd1:X.vhd or file:X.vhd\n"
	  "                       a fixed one\n"
	  "  vhdx:X.vhdx          dynamic VHDX (;block=SIZE, ;sector=4096); with\n"
	  "                       ;fixed a fixed one\n"
	  "  qcow2:X.qcow2        qcow2 v3 (;cluster=SIZE)\n"
	  "  sql:X.dbhd           a disk in SQLite (OpenVMM's .dbhd)\n"
	  "With --parent, a differencing image over PARENT, of its size (SIZE may be\n"
	  "left out): vhd: and vhdx: over an image of their own format (a path,\n"
	  "relative to the current directory, or vhd:PATH / vhdx:PATH; the child\n"
	  "stores where it is relative to itself, and absolute), qcow2: over a\n"
	  "qcow2, raw, VHD or VHDX file, sqldiff:X.dbhd over any spec. An existing\n"
	  "file is never replaced without --overwrite.\n",
	  ctl_create_opts, ctl_create },
	{ "convert", "copy a disk into a new image of any format", "SRC DST", 2, 2,
	  "SRC and DST",
	  "Copy every sector of SRC (opened read-only) to DST. When DST's file does\n"
	  "not exist it is made first, as 'diskctl create DST SIZE' makes it, with\n"
	  "SRC's size (and SRC's sector size where DST's format has a choice), so\n"
	  "'convert vhdx:A.vhdx vhd:B.vhd' needs nothing made beforehand; an existing\n"
	  "DST must be at least as large. DST is flushed at the end. A progress bar\n"
	  "shows on a terminal. SIGINT or SIGTERM stops the copy cleanly: the\n"
	  "chunks in flight finish, DST is flushed, and the message says how much\n"
	  "of SRC it holds (it is incomplete); the exit status is then 128 + the\n"
	  "signal's number (130 for SIGINT).\n",
	  ctl_convert_opts, ctl_convert },
	{ "compare", "say whether two disks hold the same bytes", "A B", 2, 2, "A and B",
	  "Read A and B (read-only) and print 'identical: N bytes', or 'differ at\n"
	  "byte N' with the first byte that differs. Disks of different sizes\n"
	  "compare equal when the larger holds only zeroes past the end of the\n"
	  "smaller (as qemu-img compare). Exit status: 0 identical, 1 different,\n"
	  "2 an error (or wrong usage), as qemu-img compare.\n",
	  ctl_compare_opts, ctl_compare },
	{ "check", "check the metadata of every image in a chain", "SPEC", 1, 1, "SPEC",
	  "Open SPEC read-only and let every element that can (image formats:\n"
	  "allocation tables, logs, refcounts, databases) check its metadata;\n"
	  "print each finding as 'KIND: ELEMENT: MESSAGE' and a summary.\n"
	  "Exit status, as qemu-img check: 0 no errors, 2 corruptions, 3 leaks\n"
	  "only, 63 no element can check itself, 1 the check could not run.\n",
	  ctl_check_opts, ctl_check },
	{ "map",
	  "show where a disk's data, zeroes and holes are, and which layer holds them",
	  "SPEC", 1, 1, "SPEC",
	  "Open SPEC read-only and print its extents in order: start and length in\n"
	  "bytes, the kind, and the layer of the chain that holds them (0 is the\n"
	  "top; '-' where no layer does and the bytes read as zero).\n"
	  "Kinds: data; zero (reads as zeroes); hole (no storage, reads as zeroes);\n"
	  "unallocated (no storage here, but not known to read as zero: below\n"
	  "crypt). What a plugin cannot tell is shown as data.\n",
	  ctl_map_opts, ctl_map },
	{ "resize", "change a disk's size", "SPEC [+|-]SIZE", 2, 2, "SPEC and SIZE",
	  "Open SPEC read-write and change its size to SIZE bytes (or by SIZE,\n"
	  "with + or -) through the chain's resize (mem:, sql:, rbd:; qcow2:,\n"
	  "vhd: and vhdx: growing), then flush and print the new size. SIZE must\n"
	  "be a whole number of sectors. Shrinking drops what lies past the new\n"
	  "end and is refused without --shrink (as qemu-img resize).\n",
	  ctl_resize_opts, ctl_resize },
	{ "commit", "merge the top layer of a differencing chain into its parent", "SPEC",
	  1, 1, "SPEC",
	  "Copy what the top layer of SPEC holds (a vhd:, vhdx: or qcow2: child,\n"
	  "the sqldiff: layer of sqldiff:PATH:LOWER) into the layer below it, opened\n"
	  "writable on its own, then flush it, as qemu-img commit -d: the top\n"
	  "layer is left as it was (a vhd: or sqldiff: child reads the same over\n"
	  "the new parent; a vhdx: child no longer opens, as its parent changed).\n"
	  "SPEC is read without locks, the parent is locked for writing. SIGINT,\n"
	  "SIGTERM or an error stops it, saying how far it got; a chain that\n"
	  "still opens reads the same, so it can be run again.\n",
	  ctl_commit_opts, ctl_commit },
	{ "bench", "measure IOPS, throughput and latency", "SPEC", 1, 1, "SPEC",
	  "Keep QD requests of BS bytes in flight on each of N threads (one queue each)\n"
	  "and print IOPS, MB/s (10^6 bytes) and latency percentiles. Random offsets\n"
	  "are aligned to BS. Write workloads overwrite the disk. Give --time or\n"
	  "--count, not both.\n",
	  ctl_bench_opts, ctl_bench },
	{ "serve", SERVE_SUMMARY, "SPEC", 1, 1, "SPEC", SERVE_ABOUT, serve_opts,
	  serve_main }, /* tools/serve/ */
};

#define CTL_NCMDS (sizeof(ctl_cmds) / sizeof(ctl_cmds[0]))

static void ctl_main_help(FILE *f)
{
	fprintf(f, "usage: diskctl COMMAND [OPTIONS] ...\n\n"
		   "diskcore disk tool. A SPEC is a disk spec string, e.g. mem:1G,\n"
		   "'file:/x.img;direct' or memdiff:file:/x.img.\n\ncommands:\n");
	for (size_t i = 0; i < CTL_NCMDS; i++)
		fprintf(f, "  %-8s  %s\n", ctl_cmds[i].name, ctl_cmds[i].summary);
	fprintf(f,
		"\n'diskctl COMMAND --help' describes a command. Exit status: 0 success,\n"
		"1 failure, 2 wrong usage.\n");
}

int main(int argc, char **argv)
{
	const char *name;

	if (argc < 2) {
		ctl_main_help(stderr);
		return CTL_EXIT_USAGE;
	}
	name = argv[1];
	if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
		ctl_main_help(stdout);
		return 0;
	}
	if (!strcmp(name, "--version")) {
		printf("diskctl (diskcore) %d.%d\n", DC_VERSION_MAJOR, DC_VERSION_MINOR);
		return 0;
	}
	if (!strcmp(name, "help")) {
		if (argc == 2) {
			ctl_main_help(stdout);
			return 0;
		}
		name = argv[2];
	}
	for (size_t i = 0; i < CTL_NCMDS; i++) {
		if (strcmp(name, ctl_cmds[i].name))
			continue;
		ctl_current = &ctl_cmds[i];
		if (!strcmp(argv[1], "help")) {
			ctl_help(ctl_current, stdout);
			return 0;
		}
		optind = 0;
		return ctl_current->run(argc - 1, argv + 1);
	}
	fprintf(stderr, "diskctl: unknown command '%s'\nTry 'diskctl --help'.\n", name);
	return CTL_EXIT_USAGE;
}

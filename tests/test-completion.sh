#!/bin/bash
# SPDX-License-Identifier: MIT
# tools/completion/diskctl, sourced into bash as bash-completion would: the
# completions offered for commands, options, kinds (from `diskctl plugins` of
# the diskctl being completed, run once and cached) and paths inside specs.
set -u
# shellcheck source=tests/tap-lib.sh
. "$(dirname "$0")/tap-lib.sh"
PY=$(command -v python3) || skip "python3 is not installed"
tap_tmpdir completion
script=${DISKCORE_SOURCE_ROOT:?run this through meson test}/tools/completion/diskctl

# A diskctl that logs its arguments, to count what completion runs.
mkdir "$T/bin"
printf '#!/bin/sh\necho "$*" >>"%s/calls"\nexec "%s" "$@"\n' "$T" "$DISKCTL" >"$T/bin/diskctl"
chmod +x "$T/bin/diskctl"
prog=$T/bin/diskctl

# shellcheck source=tools/completion/diskctl
. "$script"
check "sourcing it registers _diskctl for diskctl" sh -c \
	"[ \"\$(bash -c '. \"$script\"; complete -p diskctl')\" = 'complete -F _diskctl diskctl' ]"

# complete LINE: run the completion with the cursor at the end of LINE; the
# candidates, sorted, one per line in $T/got. COMP_WORDS is split the way
# bash splits it (at ':' too), which the function must not rely on.
complete_line() {
	COMP_LINE=$1
	COMP_POINT=${#1}
	COMP_WORDBREAKS=$' \t\n"\'><=;|&(:'
	read -ra COMP_WORDS <<<"${1//:/ : }"
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	_diskctl
	printf '%s\n' "${COMPREPLY[@]}" | sort >"$T/got"
}
# want WORD...: exactly these candidates
want() { printf '%s\n' "$@" | sort >"$T/want"; cmp -s "$T/want" "$T/got"; }
# has_all WORD...: at least these
has_all() { for w; do grep -qxF -- "$w" "$T/got" || return 1; done; }

complete_line "$prog c"
check "diskctl c<TAB>: cp, create, convert, compare, check, commit" want cp create convert compare check commit
"$DISKCTL" --help | sed -n '/^commands:/,/^$/s/^  \([a-z]*\) .*/\1/p' | sort >"$T/cmds"
complete_line "$prog "
check "diskctl <TAB>: every command of diskctl --help" cmp -s "$T/cmds" "$T/got"

complete_line "$prog cp --"
check "diskctl cp --<TAB>: cp's long options" want --bs --help --no-sparse --qd --quiet --sparse
complete_line "$prog bench --rw rand"
check "diskctl bench --rw rand<TAB>: the random workloads" want randread randwrite
complete_line "$prog bench --bs "
check "nothing to offer for a size" want ""

# Kinds, from `diskctl plugins` of this diskctl.
"$DISKCTL" plugins --json | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
for k in sorted({f["name"] + ":" for p in d["plugins"] for f in p.get("forms", [])}):
    print(k)
' | sort >"$T/kinds"
check "diskctl plugins lists kinds" [ -s "$T/kinds" ]
: >"$T/calls"
complete_line "$prog info "
check "diskctl info <TAB>: every kind, each with its ':'" cmp -s "$T/kinds" "$T/got"
complete_line "$prog info mem"
check "diskctl info mem<TAB>: mem: and memdiff:" want mem: memdiff:
complete_line "$prog info memdiff:fi"
check "diskctl info memdiff:fi<TAB>: file: (after the last ':')" want file:
complete_line "$prog convert file:/x vh"
check "the second operand of convert is a spec too" has_all vhd: vhdx:
check "diskctl plugins ran once for all of them (cached)" \
	[ "$(grep -c '^plugins' "$T/calls")" -eq 1 ]
DISKCORE_PLUGIN_PATH=$T/empty complete_line "$prog info mem"
check "a new search path is asked again (none here: no kinds)" want ""

# Paths inside a spec.
mkdir "$T/dir"
: >"$T/dir/disk.img"
complete_line "$prog info memdiff:file:$T/dir/di"
check "a path after file: completes (after the last ':')" want "$T/dir/disk.img"
complete_line "$prog create --parent $T/di"
check "--parent takes a spec: a path" want "$T/dir/"
complete_line "$prog create vhdx:$T/dir/x.vhdx "
check "create's SIZE is not a spec" want ""

tap_done

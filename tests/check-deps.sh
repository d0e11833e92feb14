#!/bin/sh
# tests/check-deps.sh: the layers' one-way dependencies (make check-deps).
# common <- storage <- registry <- prewarm <- cmd: a file never includes a
# header of a layer above its own, and a directory's private internal.h is
# included only inside that directory (tests/ included).  Prints one line
# per violation, "file:line: includes 'header' (why)", and exits 1 if any.
#
#   tests/check-deps.sh [FILE...]   (default: every .c and .h of the tree)
set -eu

cd "$(dirname "$0")/.."

layer() {
	case $1 in
	common) echo 0 ;;
	storage) echo 1 ;;
	registry) echo 2 ;;
	prewarm) echo 3 ;;
	cmd) echo 4 ;;
	*) echo -1 ;;
	esac
}

if [ $# -eq 0 ]; then
	set -- $(find common storage registry prewarm cmd tests/unit tests/fuzz \
	    -name '*.[ch]' 2>/dev/null | sort)
fi

bad=0
for f in "$@"; do
	dir=$(dirname "$f")
	# "tests/unit" and "tests/fuzz" sit above every layer.
	case $dir in
	tests/*) from=tests ;;
	*) from=$dir ;;
	esac
	from_layer=$(layer "$from")
	grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
	    sed 's/^\([0-9]*\):[^"]*"\([^"]*\)".*/\1 \2/' >"${TMPDIR:-/tmp}/check-deps.$$" || true
	while read -r line inc; do
		# The header's path from the top, "../" resolved lexically.
		path=$(printf '%s/%s\n' "$dir" "$inc" | awk -F/ '{
			n = 0
			for (i = 1; i <= NF; i++) {
				if ($i == "..") n--
				else if ($i != "." && $i != "") p[++n] = $i
			}
			s = p[1]; for (i = 2; i <= n; i++) s = s "/" p[i]
			print s
		}')
		to=$(dirname "$path")
		to_layer=$(layer "$to")
		if [ "$(basename "$path")" = internal.h ] && [ "$to" != "$dir" ]; then
			echo "$f:$line: includes '$path' (private to $to/)"
			bad=1
		elif [ "$from" != tests ] && [ "$to_layer" -gt "$from_layer" ]; then
			echo "$f:$line: includes '$path' (layer $to/ is above $from/)"
			bad=1
		fi
	done <"${TMPDIR:-/tmp}/check-deps.$$"
	rm -f "${TMPDIR:-/tmp}/check-deps.$$"
done
[ "$bad" = 0 ] || {
	echo "check-deps: the layers are common <- storage <- registry <- prewarm <- cmd; move the code or add an accessor to the lower layer's public header" >&2
	exit 1
}

#!/usr/bin/env bash
# Checks prompt sets without building the server: every name listed in <LANG_DIR>/prompts.txt
# (and beep) has <LANG_DIR>/<name>.wav in the PBX's format — a plain WAV (44-byte header, PCM),
# 8 kHz, 16-bit signed, mono — that is not empty, not silent and not clipped; every language set
# has all the names of en/prompts.txt; music/hold.wav exists in the same format and lasts at
# least 10 s. Warns about WAV files no prompts.txt lists.
#
#   prompts/check.sh            # every language directory (each one with a prompts.txt)
#   prompts/check.sh en de      # only these
#
# Exit status 0 when everything is right, 1 otherwise. Requires: bash, sox (soxi), od.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v soxi >/dev/null || { echo "check.sh: soxi not found (apt-get install sox)" >&2; exit 1; }

errors=0
err() { echo "check.sh: ERROR: $*" >&2; errors=$((errors + 1)); }
warn() { echo "check.sh: warning: $*" >&2; }

# names FILE: the prompt names in a prompts.txt, in order.
names() {
    local line
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%$'\r'}
        [[ $line =~ ^[[:space:]]*(#|@|$) ]] && continue
        line=${line%%|*}
        printf '%s\n' "${line//[[:space:]]/}"
    done <"$1"
}

# check_wav FILE MIN_MS: format, header, duration and level of one file.
check_wav() {
    local f=$1 min_ms=$2 rel=${1#"$here"/}
    if [[ ! -f $f ]]; then err "$rel is missing"; return; fi
    local t r c b e s
    t=$(soxi -t "$f" 2>/dev/null) || { err "$rel: not a sound file sox can read"; return; }
    r=$(soxi -r "$f") c=$(soxi -c "$f") b=$(soxi -b "$f") e=$(soxi -e "$f") s=$(soxi -s "$f")
    if [[ $t != wav || $r != 8000 || $c != 1 || $b != 16 || $e != "Signed Integer PCM" ]]; then
        err "$rel: $t, $r Hz, $c channel(s), $b-bit $e; want wav, 8000 Hz, 1 channel, 16-bit Signed Integer PCM"
        return
    fi
    # The canonical header: "RIFF" . "WAVE" "fmt " size 16, format 1 (PCM), then "data" at 36.
    local riff wave fmt fmtlen format data
    riff=$(od -An -c -N4 "$f" | tr -d ' ') wave=$(od -An -c -j8 -N4 "$f" | tr -d ' ')
    fmt=$(od -An -c -j12 -N4 "$f" | tr -d ' ') data=$(od -An -c -j36 -N4 "$f" | tr -d ' ')
    fmtlen=$(od -An -tu4 -j16 -N4 "$f" | tr -d ' ') format=$(od -An -tu2 -j20 -N2 "$f" | tr -d ' ')
    if [[ $riff != RIFF || $wave != WAVE || $fmt != fmt || $fmtlen != 16 || $format != 1 || $data != data ]]; then
        err "$rel: not a plain 44-byte-header PCM WAV (fmt chunk $fmtlen bytes, format $format, '$data' at 36)"
    fi
    if ((s * 1000 < min_ms * 8000)); then
        err "$rel: $s samples ($(soxi -d "$f")), want at least $min_ms ms"
    fi
    local peak
    peak=$(sox "$f" -n stat 2>&1 | awk '/^Maximum amplitude/ { max = $3 } /^Minimum amplitude/ { min = -$3 }
        END { printf "%.4f", (max > min ? max : min) }')
    if awk -v p="$peak" 'BEGIN { exit !(p < 0.03) }'; then err "$rel: (nearly) silent, peak $peak"; fi
    if awk -v p="$peak" 'BEGIN { exit !(p > 0.99) }'; then err "$rel: clipped, peak $peak"; fi
}

langs=()
if (($#)); then
    for l in "$@"; do [[ $l == /* ]] && langs+=("$l") || langs+=("$here/$l"); done
else
    for d in "$here"/*/; do [[ -f $d/prompts.txt ]] && langs+=("${d%/}"); done
fi
((${#langs[@]})) || { err "no language directory with a prompts.txt"; exit 1; }

mapfile -t en_names < <(names "$here/en/prompts.txt")
for dir in "${langs[@]}"; do
    lang=${dir#"$here"/}
    list=$dir/prompts.txt
    if [[ ! -f $list ]]; then err "$lang/prompts.txt is missing"; continue; fi
    mapfile -t lang_names < <(names "$list")
    declare -A listed=()
    for name in "${lang_names[@]}"; do
        if [[ ! $name =~ ^[a-z0-9]+(-[a-z0-9]+)*$ ]]; then err "$lang/prompts.txt: '$name' is not kebab-case"; fi
        if [[ -n ${listed[$name]:-} ]]; then err "$lang/prompts.txt: '$name' is listed twice"; fi
        listed[$name]=1
        check_wav "$dir/$name.wav" 250
    done
    check_wav "$dir/beep.wav" 250
    listed[beep]=1
    for name in "${en_names[@]}"; do
        [[ -n ${listed[$name]:-} ]] || err "$lang/prompts.txt lacks '$name' (in en/prompts.txt)"
    done
    for f in "$dir"/*.wav; do
        [[ -e $f ]] || continue
        name=$(basename "$f" .wav)
        [[ -n ${listed[$name]:-} ]] || warn "$lang/$name.wav is not listed in $lang/prompts.txt"
    done
    echo "check.sh: $lang: $((${#lang_names[@]} + 1)) prompts checked"
    unset listed
done
check_wav "$here/music/hold.wav" 10000
echo "check.sh: music/hold.wav checked"

if ((errors)); then
    echo "check.sh: $errors error(s)" >&2
    exit 1
fi
echo "check.sh: all good"

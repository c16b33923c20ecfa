#!/usr/bin/env bash
# Generates Switchboard's voice prompts and hold music as WAV files (8 kHz, 16-bit signed PCM,
# mono: the format the PBX plays), with espeak-ng and sox.
#
#   prompts/make.sh                          # English (prompts/en), voice from en/prompts.txt
#   LANG_DIR=de VOICE=de prompts/make.sh     # another language set
#   prompts/make.sh -l de -v de -s 140       # the same with options
#   prompts/make.sh de de                    # ... or positional LANG_DIR [VOICE]
#
# Options (the environment variable in brackets; both override the @-lines of prompts.txt):
#   -l, --lang DIR     language directory, relative to prompts/ or absolute   [LANG_DIR, default en]
#   -v, --voice NAME   espeak-ng voice (espeak-ng --voices lists them)          [VOICE]
#   -s, --speed WPM    speaking rate in words per minute                        [SPEED]
#   -p, --pitch 0-99   voice pitch                                              [PITCH]
#       --no-music     do not (re)generate music/hold.wav                       [NO_MUSIC=1]
#       --no-check     do not run check.sh at the end
#       --check        only run check.sh (no generation)
#   -h, --help
#
# Reads <LANG_DIR>/prompts.txt (lines "name|text", # comments, @key=value defaults) and writes
# <LANG_DIR>/<name>.wav for every line, plus <LANG_DIR>/beep.wav (the record tone) and
# music/hold.wav (language independent). Deterministic (same input and tool versions give the
# same bytes: sox runs with -R and without dither) and idempotent (a file whose new content is
# identical is left untouched). Requires: bash, espeak-ng, sox. See README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "make.sh: $*" >&2; exit 1; }

lang_dir=${LANG_DIR:-}
voice=${VOICE:-}
speed=${SPEED:-}
pitch=${PITCH:-}
music=1
[[ ${NO_MUSIC:-0} == 1 ]] && music=0
check=1
check_only=0
positional=()
while (($#)); do
    case $1 in
        -l|--lang)  (($# >= 2)) || die "$1 needs a value"; lang_dir=$2; shift 2 ;;
        -v|--voice) (($# >= 2)) || die "$1 needs a value"; voice=$2; shift 2 ;;
        -s|--speed) (($# >= 2)) || die "$1 needs a value"; speed=$2; shift 2 ;;
        -p|--pitch) (($# >= 2)) || die "$1 needs a value"; pitch=$2; shift 2 ;;
        --no-music) music=0; shift ;;
        --no-check) check=0; shift ;;
        --check)    check_only=1; shift ;;
        -h|--help)  usage; exit 0 ;;
        -*)         die "unknown option $1 (see --help)" ;;
        *)          positional+=("$1"); shift ;;
    esac
done
((${#positional[@]} <= 2)) || die "too many arguments (see --help)"
((${#positional[@]} >= 1)) && lang_dir=${positional[0]}
((${#positional[@]} >= 2)) && voice=${positional[1]}
lang_dir=${lang_dir:-en}
[[ $lang_dir == /* ]] || lang_dir=$here/$lang_dir
list=$lang_dir/prompts.txt
[[ -f $list ]] || die "no $list (copy en/prompts.txt there and translate it, see README.md)"

if ((check_only)); then
    exec "$here/check.sh" "$lang_dir"
fi

command -v sox >/dev/null || die "sox not found (apt-get install sox)"

# Defaults from the @key=value lines of prompts.txt, then built-in ones.
file_voice='' file_speed='' file_pitch='' recorded=0
while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    case $line in
        @voice=*)  file_voice=${line#@voice=} ;;
        @speed=*)  file_speed=${line#@speed=} ;;
        @pitch=*)  file_pitch=${line#@pitch=} ;;
        @recorded) recorded=1 ;;
        @*)        die "$list: unknown directive: $line" ;;
    esac
done <"$list"
((recorded)) && die "$list says @recorded: its WAV files are recordings, not regenerated (run check.sh)"
voice=${voice:-${file_voice:-en}}
speed=${speed:-${file_speed:-150}}
pitch=${pitch:-${file_pitch:-50}}
if ! [[ $speed =~ ^[0-9]+$ ]] || ((speed < 80 || speed > 450)); then
    die "speed must be 80-450 words per minute"
fi
if ! [[ $pitch =~ ^[0-9]+$ ]] || ((pitch > 99)); then die "pitch must be 0-99"; fi

command -v espeak-ng >/dev/null || die "espeak-ng not found (apt-get install espeak-ng)"
espeak-ng -v "$voice" -q "" 2>/dev/null || die "espeak-ng has no voice '$voice' (espeak-ng --voices)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The output format, for every file: WAV, 8 kHz, 16-bit signed PCM, mono.
out_fmt=(-t wav -r 8000 -b 16 -e signed-integer -c 1)
# sox: -R repeatable (fixed seeds, e.g. for pluck), -D no dither (no random noise, so the same
# input gives the same bytes and silence stays digital silence), -V1 errors only.
sox_=(sox -R -D -V1)

written=0 unchanged=0
# install NEW DEST: move NEW to DEST unless DEST already has the same bytes.
install_file() {
    if [[ -f $2 ]] && cmp -s "$1" "$2"; then
        unchanged=$((unchanged + 1))
        rm -f "$1"
    else
        mv -f "$1" "$2"
        written=$((written + 1))
    fi
}

# --- voice prompts -------------------------------------------------------------------------------
# espeak-ng (22.05 kHz) -> trim leading/trailing silence (anything under -60 dBFS) -> resample to
# 8 kHz (very high quality) -> peak-normalise to -3 dBFS -> 100 ms of silence at each end.
# Read and validate the whole list first, so that a mistake on line 80 does not leave a half-made set.
declare -A seen=()
names=() texts=()
lineno=0
while IFS= read -r line || [[ -n $line ]]; do
    lineno=$((lineno + 1))
    line=${line%$'\r'}
    [[ $line =~ ^[[:space:]]*(#|@|$) ]] && continue
    [[ $line == *'|'* ]] || die "$list:$lineno: expected name|text: $line"
    name=${line%%|*}
    text=${line#*|}
    name=${name//[[:space:]]/}
    [[ $name =~ ^[a-z0-9]+(-[a-z0-9]+)*$ ]] || die "$list:$lineno: name '$name' is not kebab-case"
    [[ $name != beep ]] || die "$list:$lineno: 'beep' is the generated record tone"
    [[ -z ${seen[$name]:-} ]] || die "$list:$lineno: '$name' already defined on line ${seen[$name]}"
    seen[$name]=$lineno
    [[ $text =~ [^[:space:]] ]] || die "$list:$lineno: '$name' has no text"
    names+=("$name") texts+=("$text")
done <"$list"
n=${#names[@]}
((n > 0)) || die "$list has no prompts"

for i in "${!names[@]}"; do
    name=${names[$i]}
    printf '%s' "${texts[$i]}" | espeak-ng -b 1 -v "$voice" -s "$speed" -p "$pitch" --stdout >"$tmp/raw.wav"
    "${sox_[@]}" "$tmp/raw.wav" "${out_fmt[@]}" "$tmp/$name.wav" \
        silence 1 0.005 0.1% reverse silence 1 0.005 0.1% reverse \
        rate -v 8000 \
        gain -n -3 \
        pad 0.1 0.1
    install_file "$tmp/$name.wav" "$lang_dir/$name.wav"
done

# --- the record tone -----------------------------------------------------------------------------
# 1 kHz sine, 250 ms, 10 ms fades (no click), peak -9 dBFS (a pure tone at -3 dBFS is much
# louder than speech at the same peak), 100 ms of silence at each end like the prompts.
"${sox_[@]}" -r 8000 -c 1 -n "${out_fmt[@]}" "$tmp/beep.wav" \
    synth 0.25 sine 1000 fade h 0.01 0.25 0.01 gain -n -9 pad 0.1 0.1
install_file "$tmp/beep.wav" "$lang_dir/beep.wav"

echo "make.sh: $(basename "$lang_dir"): $((n + 1)) files (voice $voice, $speed wpm, pitch $pitch):" \
    "$written written, $unchanged unchanged"

# --- hold music ----------------------------------------------------------------------------------
# 30 s, loopable: eight chords of 3.75 s (C Am F G C Em F G; G leads back to C at the loop),
# each an up-and-down arpeggio of eight plucked notes (Karplus-Strong, sox "pluck") over a soft
# sine pad, with a little reverb. The fundamentals lie between 165 and 700 Hz (plucks from
# 247 Hz), nothing in the bass that a telephone earpiece would lose. The tail that rings past
# 30 s (last notes, reverb) is mixed back onto the start, so the file loops without a gap or a
# click. Peak -12 dBFS: quieter than speech.
make_music() {
    local mdir=$here/music m=$tmp/music
    mkdir -p "$mdir" "$m"
    local rate=16000 chord_len=3.75 step=0.46875 ring=2.2 pad_len=4.35
    # MIDI note numbers (60 = middle C): five per chord for the arpeggio, three for the pad.
    local chords=(
        "60 64 67 72 76" "60 64 69 72 76" "60 65 69 72 77" "59 62 67 71 74"
        "60 64 67 72 76" "59 64 67 71 76" "60 65 69 72 77" "59 62 67 71 74"
    )
    local pads=(
        "48 55 64" "45 52 60" "41 48 57" "43 50 59"
        "48 55 64" "40 47 55" "41 48 57" "43 50 59"
    )
    local pattern=(0 1 2 3 4 3 2 1)
    local accents=(1.0 0.7 0.8 0.75 0.9 0.7 0.75 0.65)
    local inputs=() c i t f idx seg
    hz() { awk -v n="$1" 'BEGIN { printf "%.3f", 440 * 2 ^ ((n - 69) / 12) }'; }
    for c in "${!chords[@]}"; do
        # One segment per chord, starting at the chord: its notes and its pad, each placed with
        # "pad <offset>" and mixed; the segments are then mixed the same way.
        read -r -a notes <<<"${chords[$c]}"
        seg=()
        for i in "${!pattern[@]}"; do
            idx=${pattern[$i]}
            f=$(hz "${notes[$idx]}")
            t=$(awk -v i="$i" -v s="$step" 'BEGIN { printf "%.5f", i * s }')
            # pluck only runs at 44.1-48 kHz: made at 48 kHz, then brought to $rate.
            "${sox_[@]}" -r 48000 -c 1 -n -r "$rate" -b 32 -e floating-point "$m/n$c-$i.wav" \
                synth "$ring" pluck "$f" fade q 0.004 "$ring" 1.6 lowpass 2400 \
                vol "${accents[$i]}" rate -v "$rate" pad "$t"
            seg+=(-v 0.11 "$m/n$c-$i.wav")
        done
        read -r -a pnotes <<<"${pads[$c]}"
        # The pad one octave up from the listed tones, so it stays above ~220 Hz.
        "${sox_[@]}" -r "$rate" -c 3 -n -c 1 -b 32 -e floating-point "$m/p$c.wav" \
            synth "$pad_len" sine "$(hz $((pnotes[0] + 12)))" sine "$(hz $((pnotes[1] + 12)))" \
            sine "$(hz $((pnotes[2] + 12)))" remix - fade h 0.6 "$pad_len" 0.9 vol 0.22
        seg+=(-v 0.11 "$m/p$c.wav")
        t=$(awk -v c="$c" -v L="$chord_len" 'BEGIN { printf "%.5f", c * L }')
        # sox -m clips the sum of its inputs: 0.11 each keeps nine inputs below full scale, 0.5
        # each the two chords that overlap; the result is normalised at the end.
        "${sox_[@]}" -m "${seg[@]}" -b 32 -e floating-point "$m/s$c.wav" pad "$t"
        inputs+=(-v 0.5 "$m/s$c.wav")
        rm -f "$m/n$c-"*.wav "$m/p$c.wav"
    done
    # Mix, let the reverb ring, resample to 8 kHz, normalise.
    "${sox_[@]}" -m "${inputs[@]}" -r 8000 -b 32 -e floating-point "$m/long.wav" \
        pad 0 1.5 reverb 45 50 70 20 10 rate -v 8000 gain -n -1
    # Fold everything past 30 s (240000 samples) back onto the start, at the final rate so that
    # nothing (no resampler edge) touches the loop point afterwards.
    "${sox_[@]}" "$m/long.wav" "$m/body.wav" trim 0 240000s
    "${sox_[@]}" "$m/long.wav" "$m/tail.wav" trim 240000s
    "${sox_[@]}" -m -v 0.5 "$m/body.wav" -v 0.5 "$m/tail.wav" "${out_fmt[@]}" "$m/hold.wav" \
        gain -n -12
    written=0 unchanged=0
    install_file "$m/hold.wav" "$mdir/hold.wav"
    echo "make.sh: music/hold.wav: $written written, $unchanged unchanged"
}
((music)) && make_music

if ((check)); then
    "$here/check.sh" "$lang_dir"
fi

#!/bin/sh
# A third signer, POSIX shell and openssl only, for the simplest commands: every string in the
# id/device/action/user alphabet (no escaping needed), integer times, flat integer or string
# args. It builds the canonical form by hand as docs/contract/signing.md says and prints the
# message to publish: the canonical bytes with "sig" added last.
#
#   sh sign.sh KEYHEX ID DEVICE ACTION USER IAT EXP [NAME=VALUE ...]
#
# No NAME=VALUE: no "args" member at all; a single "-": "args":{}. A VALUE of digits is an
# integer, anything else a string. The key is on the command line, so this is for test
# vectors and a lab, not for a platform's real keys.
set -eu
[ $# -ge 7 ] || { echo "usage: sh sign.sh KEYHEX ID DEVICE ACTION USER IAT EXP [NAME=VALUE ...]" >&2; exit 2; }
key=$1 id=$2 device=$3 action=$4 user=$5 iat=$6 exp=$7
shift 7

safe() { # the alphabet that needs no JSON escape; refuse anything else rather than guess
  case $1 in *[!A-Za-z0-9._:@-]*) echo "sign.sh: unsupported characters in '$1'" >&2; exit 2 ;; esac
}
integer() {
  case $1 in '' | - | *[!0-9-]* | ?*-* | -0* | 0?*) return 1 ;; *) return 0 ;; esac
}
for v in "$id" "$device" "$action" "$user"; do [ -z "$v" ] || safe "$v"; done
integer "$iat" && integer "$exp" || { echo "sign.sh: times must be integers" >&2; exit 2; }

args=""
if [ $# -eq 1 ] && [ "$1" = "-" ]; then
  args='{}'
elif [ $# -gt 0 ]; then
  for a in "$@"; do # checked here: an exit inside the pipeline below would not stop us
    case $a in *=*) ;; *) echo "sign.sh: expected NAME=VALUE, got '$a'" >&2; exit 2 ;; esac
    safe "${a%%=*}"
    integer "${a#*=}" || safe "${a#*=}"
  done
  # Names sorted by their bytes (LC_ALL=C), which is code-point order for ASCII.
  members=$(for a in "$@"; do
    name=${a%%=*} value=${a#*=}
    if integer "$value"; then printf '"%s":%s\n' "$name" "$value"
    else printf '"%s":"%s"\n' "$name" "$value"; fi
  done | LC_ALL=C sort | paste -sd, -)
  args="{$members}"
fi

# The top-level names in code-point order: action, args, device, exp, iat, id, user.
canonical="{\"action\":\"$action\""
[ -z "$args" ] || canonical="$canonical,\"args\":$args"
canonical="$canonical,\"device\":\"$device\",\"exp\":$exp,\"iat\":$iat,\"id\":\"$id\",\"user\":\"$user\"}"

sig=$(printf '%s' "$canonical" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key" | awk '{print $NF}')
printf '%s,"sig":"%s"}\n' "${canonical%\}}" "$sig"

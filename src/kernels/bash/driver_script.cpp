#include "driver_script.hpp"

namespace kernex::bash {

// Notes on the choices below:
// - Every driver builtin is called as `builtin X` so that user functions or
//   aliases named printf, read, source... cannot hijack the protocol.
// - SIGINT: a non-interactive shell without a trap would die with its state.
//   The trap returns 130 from the sourced cell; a DEBUG trap (inherited by
//   functions through set -T) keeps returning from every frame of the cell
//   until the driver is back at its own depth, so `f() { sleep 100; }; f; echo`
//   stops at once too. Both are undone after the cell.
// - set -e and set -x are switched off while the driver runs (a failing driver
//   test must not exit the shell, and its commands must not be traced) and
//   switched back on at the start of the next cell.
// - $? is carried from one cell to the next, as in a terminal (not when -e or
//   -x are on: setting them resets it).
const char* const driver_script = R"DRIVER(
__kx_depth=${#BASH_SOURCE[@]}
__kx_status=0 __kx_in_cell= __kx_interrupted= __kx_pre= __kx_saved_debug= __kx_saved_functrace=
builtin shopt -s expand_aliases
__kx_set_status() { return "$1"; }
__kx_interrupt() {
    __kx_interrupted=1
    __kx_saved_debug=$(builtin trap -p DEBUG)
    if [[ $- == *T* ]]; then __kx_saved_functrace=1; else __kx_saved_functrace=; fi
    builtin set -T
    builtin trap 'if [[ -n ${__kx_interrupted-} ]] && (( ${#BASH_SOURCE[@]} > __kx_depth )); then return 130; fi' DEBUG
}
builtin trap 'if [[ -n ${__kx_in_cell-} ]]; then if [[ -z ${__kx_interrupted-} ]]; then __kx_interrupt; fi; if (( ${#BASH_SOURCE[@]} > __kx_depth )); then return 130; fi; fi' INT
display() {
    local __kx_file __kx_ack __kx_failed=0
    if (( $# == 0 )); then
        builtin printf 'usage: display FILE...\nShows PNG, JPEG, GIF, SVG and HTML files as rich output.\n' >&2
        return 2
    fi
    for __kx_file in "$@"; do
        if [[ ! -f $__kx_file || ! -r $__kx_file ]]; then
            builtin printf 'display: %s: not a readable file\n' "$__kx_file" >&2
            __kx_failed=1
            continue
        fi
        if [[ $__kx_file != /* ]]; then __kx_file=$PWD/$__kx_file; fi
        builtin printf 'display %s\0' "$__kx_file" >&62
        # Wait until the kernel has read the file: the cell may delete it next.
        __kx_ack=
        IFS= builtin read -r -n 1 -u 61 __kx_ack
        if [[ $__kx_ack != 0 ]]; then __kx_failed=1; fi
    done
    return "$__kx_failed"
}
# `read` from the shell's own stdin (not redirected, no -u) during a cell asks
# the client (input_request), as IPython's input() does; otherwise, and when
# the client allows no stdin, it is bash's read as before (EOF at once).
read() {
    if [[ -z ${__kx_in_cell-} || ! /dev/stdin -ef /dev/fd/58 ]]; then
        builtin read "$@"
        return
    fi
    local __kx_prompt= __kx_secret=0 __kx_answer OPTIND=1 OPTARG= __kx_opt
    while builtin getopts ':ersa:d:i:n:N:p:t:u:' __kx_opt; do
        case $__kx_opt in
        p) __kx_prompt=$OPTARG ;;
        s) __kx_secret=1 ;;
        u) builtin read "$@"; return ;;
        esac
    done
    builtin printf 'input %s %s\0' "$__kx_secret" "$__kx_prompt" >&62
    IFS= builtin read -r -d '' -u 61 __kx_answer || return 1
    if [[ ${__kx_answer:0:1} != 0 ]]; then return 1; fi
    builtin read "$@" <<<"${__kx_answer:1}"
}
clear() {
    local __kx_wait=0 __kx_ack
    case ${1-} in
    '') ;;
    -w|--wait) __kx_wait=1 ;;
    *) builtin printf 'usage: clear [-w]\nClears the cell'"'"'s output (-w: when new output arrives).\n' >&2
       return 2 ;;
    esac
    builtin printf 'clear %s\0' "$__kx_wait" >&62
    # Output written after the clear must not reach the kernel before it.
    IFS= builtin read -r -n 1 -u 61 __kx_ack
    return 0
}
builtin printf 'ready %s\0' "$BASH_VERSION" >&62
while :; do
    __kx_rc=0
    IFS= builtin read -r -d '' -u 60 __kx_kind || __kx_rc=$?
    if (( __kx_rc > 128 )); then continue; elif (( __kx_rc != 0 )); then builtin exit 0; fi
    IFS= builtin read -r -d '' -u 60 __kx_code || builtin exit 0
    case $__kx_kind in
    cell)
        __kx_in_cell=1
        builtin printf 'start\0' >&62
        builtin source /dev/fd/63
        { __kx_status=$?; __kx_in_cell=; __kx_pre=
          if [[ $- == *e* ]]; then __kx_pre+='set -e; '; fi
          if [[ $- == *x* ]]; then __kx_pre+='set -x; '; fi
          builtin set +ex; } 2>/dev/null
        if [[ -n ${__kx_interrupted-} ]]; then
            builtin trap - DEBUG
            if [[ -n ${__kx_saved_debug-} ]]; then builtin eval -- "$__kx_saved_debug"; fi
            if [[ -z ${__kx_saved_functrace-} ]]; then builtin set +T; fi
            __kx_interrupted=
        fi
        __kx_code=
        builtin printf 'done %d\0' "$__kx_status" >&62
        ;;
    query)
        __kx_reply=$(builtin eval -- "$__kx_code" 2>/dev/null)
        builtin printf 'reply %s\0' "$__kx_reply" >&62
        __kx_reply=
        ;;
    esac
done
)DRIVER";

const char* const runner_script =
    "builtin eval -- \"${__kx_pre:-__kx_set_status $__kx_status; }$__kx_code\"\n";

const char* const runner_error_prefix = "/dev/fd/63: ";

}  // namespace kernex::bash

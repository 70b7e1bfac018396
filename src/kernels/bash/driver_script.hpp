// The bash side of the kernel: a driver loop that runs inside the long-lived
// shell, and the one-line runner it sources for every cell.
//
// Channels (fd numbers inside the shell):
//   60  command pipe, kernel -> shell: records "KIND\0PAYLOAD\0", KIND is
//       `cell` (PAYLOAD is the code) or `query` (code run in a subshell whose
//       stdout is the answer)
//   61  ack pipe, kernel -> shell: one byte per `display` or `clear`
//       request ('0' done, '1' not); per `input` request "0VALUE\0" (the
//       client's answer) or "1\0" (stdin not allowed)
//   62  control pipe, shell -> kernel: NUL-terminated records
//       "ready VERSION", "start", "done STATUS", "display PATH", "clear 0|1",
//       "input 0|1 PROMPT" (1: a password), "reply TEXT"
//   63  a memfd holding runner_script
//   58  the shell's own stdin, kept to recognise it (see `read`)
// stdin is an empty pipe (EOF at once, like /dev/null), so user code cannot
// eat the command channel; cell completion and $? travel on fd 62, never in
// stdout. The builtin `read` on that stdin asks the client instead.
#pragma once

namespace kernex::bash {

inline constexpr int command_fd = 60;
inline constexpr int ack_fd = 61;
inline constexpr int control_fd = 62;
inline constexpr int runner_fd = 63;
inline constexpr int stdin_fd = 58;

// Passed as `bash --noprofile --norc -c DRIVER bash`.
extern const char* const driver_script;
// The file the driver sources for each cell (sourced, so that `return` from
// the SIGINT trap can unwind the cell; evaluated, so that $LINENO counts the
// cell's own lines).
extern const char* const runner_script;
// How bash names the runner in its error messages ("/dev/fd/63: line 2: ...").
extern const char* const runner_error_prefix;

}  // namespace kernex::bash
